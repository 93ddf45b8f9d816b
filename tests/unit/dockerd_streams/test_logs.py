"""The json-file reader against files written by the shim's own writer (engine/runtime/shim/jsonlog.py)."""

from __future__ import annotations

import asyncio
import os

from engine.runtime.shim.jsonlog import PARTIAL, JSONFileWriter, go_time
from engine.services.dockerd import logs

T0 = 1_795_000_000_000_000_000


def write(path: str, items: list[tuple[str, bytes]], max_size: int = -1, max_file: int = 1) -> None:
    w = JSONFileWriter(path, max_size=max_size, max_file=max_file)
    for i, (stream, data) in enumerate(items):
        w.write(stream, data, ns=T0 + i * 1_000_000_000)
    w.close()


def test_time_round_trip() -> None:
    for ns in (T0, T0 + 5, T0 + 120_000_000, T0 + 999_999_999):
        assert logs.parse_time(go_time(ns)) == ns
    assert logs.format_time(T0 + 5) .endswith(".000000005Z")
    assert logs.parse_time("2026-11-23T22:00:00+01:00") == logs.parse_time("2026-11-23T21:00:00Z")


def test_read_all_tail_since_until(tmp_path) -> None:
    p = str(tmp_path / "c-json.log")
    write(p, [("stdout", b"one\n"), ("stderr", b"two\n"), ("stdout", b"three\n"), ("stdout", b"four\n")])
    msgs, pos = logs.read_log(p)
    assert [(m.stream, m.data) for m in msgs] == [("stdout", b"one\n"), ("stderr", b"two\n"),
                                                  ("stdout", b"three\n"), ("stdout", b"four\n")]
    assert pos.offset == os.path.getsize(p) and pos.inode == os.stat(p).st_ino
    assert [m.data for m in logs.read_log(p, tail=2)[0]] == [b"three\n", b"four\n"]
    assert logs.read_log(p, tail=0)[0] == []
    assert len(logs.read_log(p, tail=100)[0]) == 4
    assert [m.data for m in logs.read_log(p, since_ns=T0 + 2_000_000_000)[0]] == [b"three\n", b"four\n"]
    assert [m.data for m in logs.read_log(p, until_ns=T0 + 1_000_000_000)[0]] == [b"one\n", b"two\n"]
    assert msgs[1].time_ns == T0 + 1_000_000_000


def test_missing_log_is_empty(tmp_path) -> None:
    assert logs.read_log(str(tmp_path / "nope-json.log")) == ([], logs.Position())


def test_partial_lines_are_joined(tmp_path) -> None:
    p = str(tmp_path / "c-json.log")
    long = b"x" * (PARTIAL * 2 + 10) + b"\n"
    write(p, [("stdout", long), ("stdout", b"after\n")])
    with open(p, "rb") as f:
        assert len(f.read().splitlines()) == 4  # the shim wrote 3 entries for the long line
    msgs, _ = logs.read_log(p)
    assert [m.data for m in msgs] == [long, b"after\n"]


def test_rotated_files_in_order_and_tail_across_them(tmp_path) -> None:
    p = str(tmp_path / "c-json.log")
    write(p, [("stdout", f"line {i}\n".encode()) for i in range(40)], max_size=400, max_file=10)
    assert os.path.exists(p + ".1") and os.path.exists(p + ".2")
    msgs, _ = logs.read_log(p)
    assert [m.data for m in msgs] == [f"line {i}\n".encode() for i in range(40)]
    assert [m.data for m in logs.read_log(p, tail=7)[0]] == [f"line {i}\n".encode() for i in range(33, 40)]


def test_follow_appends_and_rotation_until_stopped(tmp_path) -> None:
    p = str(tmp_path / "c-json.log")
    write(p, [("stdout", b"before\n")])

    async def main() -> list[bytes]:
        msgs, pos = logs.read_log(p)
        assert [m.data for m in msgs] == [b"before\n"]
        stop = asyncio.get_running_loop().create_future()
        got: list[bytes] = []

        async def reader() -> None:
            async for m in logs.follow(p, pos, stopped=stop):
                got.append(m.data)

        task = asyncio.create_task(reader())
        w = JSONFileWriter(p, max_size=300, max_file=3)
        for i in range(20):
            w.write("stdout", f"live {i}\n".encode())
            await asyncio.sleep(0.005)
        w.write("stdout", b"no newline yet")
        w.close()  # flushes the last partial line
        await asyncio.sleep(0.05)
        stop.set_result(None)
        await asyncio.wait_for(task, 5)
        return got

    got = asyncio.run(main())
    assert got == [f"live {i}\n".encode() for i in range(20)] + [b"no newline yet"]


def test_follow_wakes_without_polling_latency(tmp_path) -> None:
    p = str(tmp_path / "c-json.log")
    write(p, [])

    async def main() -> float:
        _, pos = logs.read_log(p)
        stop = asyncio.get_running_loop().create_future()
        it = logs.follow(p, pos, stopped=stop)
        loop = asyncio.get_running_loop()
        w = JSONFileWriter(p)
        loop.call_later(0.2, lambda: w.write("stdout", b"hi\n"))
        t0 = loop.time()
        m = await asyncio.wait_for(it.__anext__(), 5)
        took = loop.time() - t0
        assert m.data == b"hi\n"
        stop.set_result(None)
        await it.aclose()
        w.close()
        return took

    assert asyncio.run(main()) < 0.3


def test_frame() -> None:
    assert logs.frame(1, b"hi\n") == b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n"
    assert logs.frame(2, b"") == b"\x02\x00\x00\x00\x00\x00\x00\x00"
