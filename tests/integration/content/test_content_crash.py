"""Crash: a writer process SIGKILLed mid-ingest; a new store on the same root resumes the ingest from its
offset with the right digest, or garbage collection / abort cleans it up. The lock is cross-process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.errors import Unavailable
from engine.images.content import digests
from tests.unit.content.conftest import open_env

CHUNK = 64 * 1024
DATA = os.urandom(CHUNK * 200)  # 12.5 MiB
DGST = digests.of_bytes(DATA)

WRITER = textwrap.dedent("""
    import asyncio, sys
    from pathlib import Path
    from tests.unit.content.conftest import open_env

    async def main(root, data_path, chunk, stop_at):
        env = await open_env(Path(root))
        data = Path(data_path).read_bytes()
        w = await env.content.writer("ns", "layer-1", total=len(data), actor="writer")
        off = 0
        while True:
            if stop_at and off >= stop_at:
                print("paused", off, flush=True)
                await asyncio.sleep(3600)
            await w.write(data[off:off + chunk])
            off += chunk
            if off == chunk:
                print("writing", flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
""")


@pytest.fixture
def writer(tmp_path: Path):  # type: ignore[no-untyped-def]
    data_path = tmp_path / "payload"
    data_path.write_bytes(DATA)
    procs: list[subprocess.Popen[str]] = []

    def start(stop_at: int = 0) -> subprocess.Popen[str]:
        p = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "root"), str(data_path), str(CHUNK),
                              str(stop_at)], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[3])
        procs.append(p)
        return p

    (tmp_path / "root").mkdir()
    try:
        yield start
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            assert p.stdout is not None
            p.stdout.close()


async def test_killed_mid_write_resumes_from_its_offset(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    p = writer()
    assert p.stdout is not None and p.stdout.readline().strip() == "writing"
    os.kill(p.pid, signal.SIGKILL)  # somewhere in the middle of the stream of writes
    p.wait()
    env = await open_env(tmp_path / "root")
    try:
        st = await env.content.status("ns", "layer-1")
        assert 0 < st.offset <= len(DATA) and st.total == len(DATA)
        w = await env.content.writer("ns", "layer-1", actor="resumer")
        assert w.offset == st.offset
        await w.write(DATA[w.offset:])
        info = await w.commit(len(DATA), DGST)
        assert info.digest == DGST
        assert env.store.read(DGST) == DATA
        assert await env.content.list_statuses("ns") == []
        types = [e.type for e in await env.journal.read()]
        assert types == ["namespace.created", "content.ingest_started", "content.committed"]
    finally:
        await env.journal.close()


async def test_lock_is_held_across_processes_then_gc_cleans_the_dead_writers_ingest(tmp_path: Path,
                                                                                      writer) -> None:  # type: ignore[no-untyped-def]
    p = writer(stop_at=CHUNK * 10)
    assert p.stdout is not None
    assert p.stdout.readline().strip() == "writing"
    assert p.stdout.readline().split() == ["paused", str(CHUNK * 10)]
    env = await open_env(tmp_path / "root")
    try:
        with pytest.raises(Unavailable, match="ref layer-1 locked"):
            await env.content.writer("ns", "layer-1", actor="other")
        report = await env.gc.collect(ingest_expiry_ns=0)  # locked: never collected
        assert report.ingests == []
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert (await env.content.status("ns", "layer-1")).offset == CHUNK * 10
        report = await env.gc.collect(ingest_expiry_ns=0)
        assert report.ingests == [("ns", "layer-1")]
        assert list((tmp_path / "root" / "content" / "ingest").iterdir()) == []
        assert await env.content.list_statuses("ns") == []
        evs = await env.journal.read()
        assert [(e.type, e.cause) for e in evs[-2:]] == [("content.ingest_aborted", "gc"), ("gc.collected", "gc")]
    finally:
        await env.journal.close()


async def test_killed_writer_ingest_can_be_aborted(tmp_path: Path, writer) -> None:  # type: ignore[no-untyped-def]
    p = writer(stop_at=CHUNK * 3)
    assert p.stdout is not None
    p.stdout.readline()
    p.stdout.readline()
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    env = await open_env(tmp_path / "root")
    try:
        await env.content.abort("ns", "layer-1", actor="t")
        assert env.store.list_statuses() == [] and list(env.store.walk()) == []
    finally:
        await env.journal.close()
