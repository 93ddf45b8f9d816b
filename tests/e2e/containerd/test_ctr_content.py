"""Debian's real ``ctr`` (containerd 1.6) against engine's Content and Leases services.

The daemon does not build the content services yet (the lead wires them into engine/daemon.py), so each
test serves the containerd API in-process on a temp socket with the same ``serve_containerd`` the daemon
uses, over a real journal and content store, and drives it with ctr as a subprocess: content ingest,
ls, get, label, rm, active/abort of a partial ingest, leases create/ls/rm, and bad input.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

import engine.api.containerd.content  # noqa: F401  (registers the Content and Leases servicers)
from engine.api.containerd.server import serve_containerd
from engine.config import Config
from engine.services import Services
from engine.services.namespaces import NamespaceService
from tests.unit.content.conftest import Env, open_env

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("ctr") is None, reason="ctr is not installed")]

CTR = "/usr/bin/ctr"


class Server:
    def __init__(self, env: Env, sock: Path) -> None:
        self.env = env
        self.sock = sock

    async def ctr(self, *args: str, input: bytes = b"", namespace: str = "default",
                  check: bool = True) -> tuple[int, bytes, str]:
        proc = await asyncio.create_subprocess_exec(
            CTR, "--address", str(self.sock), "--namespace", namespace, *args,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(input), 30)
        assert proc.returncode is not None
        if check and proc.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}): {err.decode()}")
        return proc.returncode, out, err.decode()


@pytest.fixture
async def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = await open_env(tmp_path)
    services = Services(journal=env.journal, namespaces=NamespaceService(env.journal), daemon_uuid="test-uuid",
                        config=Config(root=str(tmp_path)), started_ns=time.time_ns(),
                        extra={"content": env.content, "leases": env.leases})
    sock = tmp_path / "containerd.sock"
    srv: Any = await serve_containerd(services, str(sock), "root")
    try:
        yield Server(env, sock)
    finally:
        srv.close()
        await asyncio.wait_for(srv.wait_closed(), 5)
        await env.journal.close()


def rows(out: bytes) -> list[list[str]]:
    return [line.split() for line in out.decode().splitlines() if line.strip()]


async def test_ingest_ls_get_label_rm(server: Server) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    await server.ctr("content", "ingest", "--expected-size", str(len(data)), "--expected-digest", dgst, "my-ref",
                     input=data)
    assert server.env.store.read(dgst) == data
    _, out, _ = await server.ctr("content", "ls")
    table = rows(out)
    assert table[0][:2] == ["DIGEST", "SIZE"]
    assert [r[0] for r in table[1:]] == [dgst]
    assert table[1][1] == "3.146MB"  # go-units HumanSize of 3145745 bytes
    _, got, _ = await server.ctr("content", "get", dgst)
    assert got == data
    await server.ctr("content", "label", dgst, "foo=bar", "containerd.io/gc.root=1")
    info = await server.env.content.info("default", dgst)
    assert info.labels == {"foo": "bar", "containerd.io/gc.root": "1"}
    _, out, _ = await server.ctr("content", "ls", "labels.foo==bar")
    assert [r[0] for r in rows(out)[1:]] == [dgst]
    _, out, _ = await server.ctr("content", "ls", "labels.foo==nope")
    assert rows(out)[1:] == []
    _, out, _ = await server.ctr("content", "ls", "-q", namespace="other")
    assert out.strip() == b""
    await server.ctr("content", "rm", dgst)
    assert not server.env.store.exists(dgst)
    _, out, _ = await server.ctr("content", "ls", "-q")
    assert out.strip() == b""
    types = [e.type for e in await server.env.journal.read()]
    assert "content.committed" in types and "content.deleted" in types and "content.blob_removed" in types


async def test_wrong_digest_is_refused_and_nothing_is_stored(server: Server) -> None:
    data = b"some bytes\n" * 1000
    wrong = "sha256:" + hashlib.sha256(b"other").hexdigest()
    code, _, err = await server.ctr("content", "ingest", "--expected-digest", wrong, "bad-ref", input=data,
                                    check=False)
    assert code != 0 and "unexpected commit digest" in err and wrong in err, err
    assert list(server.env.store.walk()) == []
    code, _, err = await server.ctr("content", "get", "sha256:nothex", check=False)
    assert code != 0 and "invalid" in err.lower(), err
    code, _, err = await server.ctr("content", "get", "sha256:" + "0" * 64, check=False)
    assert code != 0 and "not found" in err, err


async def test_active_ingest_shows_and_aborts(server: Server) -> None:
    w = await server.env.content.writer("default", "half-done", total=100, actor="test")
    await w.write(b"x" * 40)
    await w.close()
    _, out, _ = await server.ctr("content", "active")
    table = rows(out)
    assert table[0][0] == "REF" and table[1][0] == "half-done" and "40" in " ".join(table[1])
    await server.env.content.abort("default", "half-done", actor="test")
    _, out, _ = await server.ctr("content", "active")
    assert rows(out)[1:] == []


async def test_leases_create_ls_rm(server: Server) -> None:
    _, out, _ = await server.ctr("leases", "create", "--expires", "1h", "--id", "lease-1", "a=b")
    assert out.decode().strip() == "lease-1"
    _, out, _ = await server.ctr("leases", "ls")
    table = rows(out)
    assert table[0][:2] == ["ID", "CREATED"] and table[1][0] == "lease-1"
    assert "a=b" in out.decode() and "containerd.io/gc.expire=" in out.decode()
    _, out, _ = await server.ctr("leases", "ls", "-q", "labels.a==b")
    assert out.decode().split() == ["lease-1"]
    code, _, err = await server.ctr("leases", "create", "--id", "lease-1", check=False)
    assert code != 0 and "already exists" in err
    data = b"leased bytes"
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    w = await server.env.content.writer("default", "r2", lease="lease-1", actor="t")
    await w.write(data)
    await w.commit()
    await server.env.gc.collect()
    assert server.env.store.exists(dgst)  # the lease protects it
    await server.ctr("leases", "rm", "--sync", "lease-1")
    assert not server.env.store.exists(dgst)  # --sync collected it before returning
    _, out, _ = await server.ctr("leases", "ls", "-q")
    assert out.decode().strip() == ""
    code, _, err = await server.ctr("leases", "rm", "lease-1", check=False)
    assert code != 0 and "not found" in err


async def test_content_rm_is_published_as_content_delete(server: Server) -> None:
    data = b"to be deleted"
    dgst = "sha256:" + hashlib.sha256(data).hexdigest()
    await server.ctr("content", "ingest", "r", input=data)
    proc = await asyncio.create_subprocess_exec(CTR, "--address", str(server.sock), "events",
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        await asyncio.sleep(0.5)  # let ctr subscribe: events before it are not replayed to it
        await server.ctr("content", "rm", dgst)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        assert "default" in line and "/content/delete" in line and dgst in line, line
        await server.env.gc.collect()  # collections are not published (containerd does not either)
        await server.ctr("content", "ingest", "r2", input=b"collected")
        await server.env.gc.collect()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(proc.stdout.readline(), 0.5)
    finally:
        proc.kill()
        await proc.wait()
