"""Stdio through the shim: FIFOs, json-file logs (Docker's bytes), rotation, attach, stdin, TTY, exec."""

from __future__ import annotations

import asyncio
import json
import os
import re

import pytest

from engine.runtime.shim.wire import STDERR, STDOUT

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,8}[1-9])?Z$")
PROC = {"cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"]}


def go_json_string(s: str) -> str:
    """What dockerd's json-file writer makes of ``s``, built from Python's json and Go's rules."""
    out = json.dumps(s, ensure_ascii=False)
    for short, long in (
        ("\\t", "\\u0009"),
        ("\\b", "\\u0008"),
        ("\\f", "\\u000c"),
        ("<", "\\u003c"),
        (">", "\\u003e"),
        ("&", "\\u0026"),
        ("\u2028", "\\u2028"),
        ("\u2029", "\\u2029"),
    ):
        out = out.replace(short, long)
    return out


def log_entries(path: str) -> list[dict]:
    with open(path, "rb") as f:
        raw = f.read()
    out = []
    for line in raw.split(b"\n")[:-1]:
        d = json.loads(line)
        # Docker's bytes: keys in order log, stream, time; compact; the time as Go's RFC3339Nano
        assert list(d) == ["log", "stream", "time"], line
        assert TIME_RE.match(d["time"]), d["time"]
        expect = (
            '{"log":'
            + go_json_string(d["log"])
            + ',"stream":"'
            + d["stream"]
            + '","time":"'
            + d["time"]
            + '"}'
        ).encode()
        assert line == expect, (line, expect)
        out.append(d)
    assert raw.endswith(b"\n")
    return out


async def test_json_file_log_is_dockers(shims):
    log = str(shims.workdir / "logs" / "c-json.log")
    script = "echo hello; echo '<b>&\"x\"' >&2; printf 'tab\\there\\n'; printf 'no newline'"
    _, c = await shims.new(["sh", "-c", script], create_kw={"log": {"path": log}})
    await c.start()
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 0
    ents = log_entries(log)
    assert [(e["stream"], e["log"]) for e in ents if e["stream"] == "stdout"] == [
        ("stdout", "hello\n"),
        ("stdout", "tab\there\n"),
        ("stdout", "no newline"),
    ]
    assert [e["log"] for e in ents if e["stream"] == "stderr"] == ['<b>&"x"\n']
    with open(log, "rb") as f:
        assert b'"log":"\\u003cb\\u003e\\u0026\\"x\\"\\n","stream":"stderr"' in f.read()
    await c.delete()
    assert os.path.exists(log), "the log belongs to the daemon: Delete keeps it"


async def test_long_lines_split_like_docker(shims):
    log = str(shims.workdir / "logs" / "long-json.log")
    # 40000 'a' then a newline: Docker writes 16384 + 16384 (partial, no newline) + 7232 + "\n"
    _, c = await shims.new(
        ["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' a; echo"], create_kw={"log": {"path": log}}
    )
    await c.start()
    await asyncio.wait_for(c.wait(), 10)
    ents = log_entries(log)
    assert [len(e["log"]) for e in ents] == [16384, 16384, 7233]
    assert ents[-1]["log"].endswith("\n") and not ents[0]["log"].endswith("\n")
    await c.delete()


async def test_log_rotation(shims):
    log = str(shims.workdir / "logs" / "rot-json.log")
    _, c = await shims.new(
        ["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line-$i; i=$((i+1)); done"],
        create_kw={"log": {"path": log, "max_size": 4096, "max_file": 3}},
    )
    await c.start()
    await asyncio.wait_for(c.wait(), 10)
    files = sorted(os.listdir(os.path.dirname(log)))
    assert files == ["rot-json.log", "rot-json.log.1", "rot-json.log.2"], files
    for name in files:
        assert os.path.getsize(os.path.join(os.path.dirname(log), name)) <= 4096
    # the newest lines are in the current file, older in .1, older still in .2; the oldest dropped
    cur = [e["log"] for e in log_entries(log)]
    one = [e["log"] for e in log_entries(log + ".1")]
    two = [e["log"] for e in log_entries(log + ".2")]
    seq = [int(x.strip().split("-")[1]) for x in two + one + cur]
    assert seq == list(range(seq[0], 300)) and seq[0] > 0
    await c.delete()


async def test_fifos_stdout_stderr_and_stdin(shims):
    fifos = {}
    for name in ("in", "out", "err"):
        fifos[name] = str(shims.workdir / f"fifo-{name}")
        os.mkfifo(fifos[name])
    _, c = await shims.new(
        ["sh", "-c", "read a; echo got-$a; echo err-$a >&2; cat"],
        create_kw={"stdin": fifos["in"], "stdout": fifos["out"], "stderr": fifos["err"]},
    )
    rout = os.open(fifos["out"], os.O_RDONLY | os.O_NONBLOCK)
    rerr = os.open(fifos["err"], os.O_RDONLY | os.O_NONBLOCK)
    win = os.open(fifos["in"], os.O_WRONLY)
    try:
        await c.start()
        os.write(win, b"x\nmore\n")
        os.close(win)
        win = -1
        # the stdin FIFO's end closes the process's stdin: cat ends, the container exits
        assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 0
        assert os.read(rout, 4096) == b"got-x\nmore\n"
        assert os.read(rerr, 4096) == b"err-x\n"
    finally:
        for fd in (rout, rerr, win):
            if fd >= 0:
                os.close(fd)
    await c.delete()


async def test_output_never_blocks_without_reader(shims):
    """1 MiB to a FIFO nobody reads and to the log: the process finishes, the log has it all."""
    out = str(shims.workdir / "fifo-out")
    os.mkfifo(out)
    log = str(shims.workdir / "logs" / "big-json.log")
    _, c = await shims.new(
        [
            "sh",
            "-c",
            "i=0; while [ $i -lt 20000 ]; do echo 0123456789012345678901234567890123456789012345; i=$((i+1)); done",
        ],
        create_kw={"stdout": out, "log": {"path": log}},
    )
    await c.start()
    assert (await asyncio.wait_for(c.wait(), 30))["exit_status"] == 0
    assert len(log_entries(log)) == 20000
    await c.delete()


async def test_several_readers_and_stdin_write_close(shims):
    log = str(shims.workdir / "logs" / "att-json.log")
    _, c = await shims.new(
        ["sh", "-c", "while read l; do echo o-$l; echo e-$l >&2; done; echo bye"],
        create_kw={"open_stdin": True, "log": {"path": log}},
    )
    c2 = await shims.client(shims.shims[-1])

    async def collect(cl):
        got = {STDOUT: b"", STDERR: b""}
        async for stream, data in cl.attach():
            got[stream] += data
        return got

    t1 = asyncio.ensure_future(collect(c))
    t2 = asyncio.ensure_future(collect(c2))
    await asyncio.sleep(0.1)
    await c.start()
    c.write_stdin(b"a\nb\n")
    await c.drain()
    await asyncio.sleep(0.2)
    await c.close_io()
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 0
    r1, r2 = await asyncio.wait_for(asyncio.gather(t1, t2), 10)
    assert r1 == r2 == {STDOUT: b"o-a\no-b\nbye\n", STDERR: b"e-a\ne-b\n"}
    assert [e["log"] for e in log_entries(log) if e["stream"] == "stdout"] == ["o-a\n", "o-b\n", "bye\n"]
    await c.delete()


async def test_tty_container_and_resize(shims):
    _, c = await shims.new(
        ["sh", "-c", "stty size; read x; echo got-$x; stty size"],
        terminal=True,
        create_kw={"terminal": True, "open_stdin": True},
    )

    async def collect():
        buf = b""
        async for stream, data in c.attach():
            assert stream == STDOUT
            buf += data
        return buf

    await c.resize_pty(100, 30)
    t = asyncio.ensure_future(collect())
    await asyncio.sleep(0.1)
    await c.start()
    await asyncio.sleep(0.3)
    await c.resize_pty(120, 40)
    c.write_stdin(b"hi\n")
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 0
    out = (await asyncio.wait_for(t, 10)).replace(b"\r\n", b"\n")
    assert b"30 100\n" in out and b"got-hi\n" in out and b"40 120\n" in out, out
    assert (await c.state())["terminal"] is True
    await c.delete()


@pytest.mark.parametrize("tty", [False, True])
async def test_exec(shims, tty):
    _, c = await shims.new(["sleep", "100"])
    await c.start()
    spec = dict(PROC, args=["sh", "-c", "echo in-$(hostname); exit 5"], terminal=tty)
    await c.exec("e1", spec)
    got = []

    async def collect():
        async for _s, data in c.attach("e1"):
            got.append(data)

    t = asyncio.ensure_future(collect())
    await asyncio.sleep(0.05)
    res = await c.start("e1")
    assert res["pid"] > 0
    assert (await asyncio.wait_for(c.wait("e1"), 10))["exit_status"] == 5
    await asyncio.wait_for(t, 10)
    assert b"".join(got).replace(b"\r\n", b"\n") == b"in-container\n"
    st = await c.state("e1")
    assert st["status"] == "stopped" and st["exit_status"] == 5
    await c.delete("e1")
    assert (await c.state())["status"] == "running"
    await c.kill(9)
    await asyncio.wait_for(c.wait(), 10)
    await c.delete()


async def test_exec_stdin_and_events(shims):
    _, c = await shims.new(["sleep", "100"])
    await c.start()
    await c.exec("cat", dict(PROC, args=["cat"]), open_stdin=True)
    chunks = []

    async def collect():
        async for _s, data in c.attach("cat"):
            chunks.append(data)

    t = asyncio.ensure_future(collect())
    await asyncio.sleep(0.05)
    await c.start("cat")
    c.write_stdin(b"ping\n", exec_id="cat")
    await c.close_io("cat")
    assert (await asyncio.wait_for(c.wait("cat"), 10))["exit_status"] == 0
    await asyncio.wait_for(t, 10)
    assert b"".join(chunks) == b"ping\n"
    evs = []
    async for ev in c.events(after=0):
        evs.append((ev["type"], ev["exec_id"]))
        if ev["type"] == "exit":
            break
    assert evs == [
        ("create", ""),
        ("start", ""),
        ("exec_added", "cat"),
        ("exec_started", "cat"),
        ("exit", "cat"),
    ]
    await c.kill(9)
    await asyncio.wait_for(c.wait(), 10)
    await c.delete()
