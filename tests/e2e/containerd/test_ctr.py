"""Debian's real ``ctr`` (containerd 1.6) and ``containerd publish`` against engine's containerd socket.

Each test drives an isolated ``engine daemon`` (the ``engine_daemon`` fixture) with the real Go
clients and checks what they print: version, plugins, namespaces, events (subscribed before
anything happens, filtered, published), clean UNIMPLEMENTED answers for services engine does not
implement yet, and that bad input is refused with nothing written.
"""

from __future__ import annotations

import os
import re
import select
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from google.protobuf import any_pb2

import engine
from engine.api.containerd.gen.containerd.events import task_pb2

pytestmark = pytest.mark.e2e

CTR = "/usr/bin/ctr"
CONTAINERD = "/usr/bin/containerd"


def ctr(
    daemon: Any, *args: str, namespace: str = "default", check: bool = True, timeout: float = 20
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [CTR, "--address", str(daemon.containerd_sock), "--namespace", namespace, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"ctr {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
    return proc


def table(out: str) -> list[list[str]]:
    """Rows of a ctr tabwriter table, header first; ctr prints version warnings on stderr."""
    return [line.split() for line in out.splitlines() if line.strip()]


@contextmanager
def ctr_events(daemon: Any, *filters: str) -> Iterator[LineReader]:
    proc = subprocess.Popen(
        [CTR, "--address", str(daemon.containerd_sock), "events", *filters],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield LineReader(proc)
    finally:
        proc.kill()
        proc.wait(timeout=10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


class LineReader:
    """Lines a running process prints, with a deadline (ctr writes each event with one write)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.buf = b""

    def line(self, timeout: float) -> str | None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()


EVENT_LINE = re.compile(r"^(\S+ \S+ \S+ \S+) (\S+) (\S+) (.*)$")


def parse_event(line: str) -> tuple[str, str, str]:
    """(namespace, topic, event JSON) from a ``ctr events`` line: ``<time> <ns> <topic> <json>``."""
    m = EVENT_LINE.match(line)
    assert m, line
    return m.group(2), m.group(3), m.group(4)


def wait_subscribed(daemon: Any, events: LineReader, prefix: str) -> tuple[str, str, str]:
    """Create namespaces `prefix-N` until ctr events prints one (ctr says nothing when it has
    subscribed); return that first line, parsed."""
    for i in range(40):
        ctr(daemon, "namespaces", "create", f"{prefix}-{i}")
        line = events.line(0.5)
        if line is not None:
            return parse_event(line)
    raise AssertionError("ctr events printed nothing")


def test_version(engine_daemon: Any) -> None:
    out = ctr(engine_daemon, "version").stdout
    server = out.split("Server:", 1)[1]
    assert re.search(rf"Version:\s+{re.escape(engine.__version__)}\n", server), out
    assert re.search(r"UUID: [0-9a-f-]{36}\n", server), out
    again = ctr(engine_daemon, "version").stdout.split("Server:", 1)[1]
    assert again == server  # the UUID is stable


def test_plugins_ls_tells_the_truth_and_filters(engine_daemon: Any) -> None:
    rows = table(ctr(engine_daemon, "plugins", "ls").stdout)
    assert rows[0] == ["TYPE", "ID", "PLATFORMS", "STATUS"]
    status = {(r[0], r[1]): r[3] for r in rows[1:]}
    for ok in ("version", "namespaces", "events", "introspection"):
        assert status[("io.containerd.grpc.v1", ok)] == "ok"
    for missing in ("transfer",):
        assert status[("io.containerd.grpc.v1", missing)] == "error"
    one = table(ctr(engine_daemon, "plugins", "ls", "type==io.containerd.grpc.v1,id==namespaces").stdout)
    assert one[1:] == [["io.containerd.grpc.v1", "namespaces", "-", "ok"]]
    either = table(ctr(engine_daemon, "plugins", "ls", "-q", "id==version", "id==events").stdout)
    assert sorted(r[0] for r in either) == ["events", "version"]
    detail = ctr(engine_daemon, "plugins", "ls", "-d", "id==transfer").stdout
    assert "Unimplemented" in detail and "not implemented yet" in detail
    bad = ctr(engine_daemon, "plugins", "ls", "id=leases", check=False)
    assert bad.returncode != 0 and "unsupported operator" in bad.stderr and "invalid argument" in bad.stderr


def test_namespaces_create_ls_label_rm(engine_daemon: Any) -> None:
    ctr(engine_daemon, "namespaces", "create", "e2e-a", "team=red", "tier=1")
    ctr(engine_daemon, "namespaces", "create", "e2e-b")
    rows = table(ctr(engine_daemon, "namespaces", "ls").stdout)
    assert rows[0] == ["NAME", "LABELS"]
    assert ["e2e-a", "team=red,tier=1"] in rows and ["e2e-b"] in rows
    # set one label, clear another (an empty value clears), keep the third untouched
    ctr(engine_daemon, "namespaces", "label", "e2e-a", "tier=", "owner=me")
    rows = table(ctr(engine_daemon, "namespaces", "ls").stdout)
    assert ["e2e-a", "owner=me,team=red"] in rows
    dup = ctr(engine_daemon, "namespaces", "create", "e2e-a", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    out = ctr(engine_daemon, "namespaces", "rm", "e2e-a", "e2e-b").stdout
    assert out.split() == ["e2e-a", "e2e-b"]
    assert ctr(engine_daemon, "namespaces", "ls", "-q").stdout.split() == []


def test_namespaces_rm_of_a_missing_one(engine_daemon: Any) -> None:
    # ctr treats NOT_FOUND as already gone: it prints the name and exits 0, as with containerd.
    # The NOT_FOUND itself is pinned in tests/unit/containerd/test_containerd_server.py.
    proc = ctr(engine_daemon, "namespaces", "rm", "e2e-never-made")
    assert proc.stdout.split() == ["e2e-never-made"]
    assert "unable to delete" not in proc.stderr


@pytest.mark.parametrize("name", ["bad name", "_lead", "trail-", "a..b", "x" * 77, "sémantique"])
def test_invalid_namespace_names_are_refused_and_nothing_is_written(engine_daemon: Any, name: str) -> None:
    before = ctr(engine_daemon, "namespaces", "ls", "-q").stdout
    proc = ctr(engine_daemon, "namespaces", "create", name, check=False)
    assert proc.returncode != 0
    assert "invalid argument" in proc.stderr, proc.stderr
    assert ctr(engine_daemon, "namespaces", "ls", "-q").stdout == before


def test_ctr_events_receives_namespace_events(engine_daemon: Any) -> None:
    with ctr_events(engine_daemon) as events:
        ns, topic, body = wait_subscribed(engine_daemon, events, "e2e-ev")
        assert topic == "/namespaces/create" and body.startswith('{"name":"e2e-ev-')
        ctr(engine_daemon, "namespaces", "create", "e2e-lab", "k=v")
        ctr(engine_daemon, "namespaces", "label", "e2e-lab", "k=w")
        ctr(engine_daemon, "namespaces", "rm", "e2e-lab")
        got = [parse_event(line) for line in (events.line(10) or "" for _ in range(3)) if line]
    assert [(t, b) for _, t, b in got] == [
        ("/namespaces/create", '{"name":"e2e-lab","labels":{"k":"v"}}'),
        ("/namespaces/update", '{"name":"e2e-lab","labels":{"k":"w"}}'),
        ("/namespaces/delete", '{"name":"e2e-lab"}'),
    ]


def test_ctr_events_filters(engine_daemon: Any) -> None:
    with ctr_events(engine_daemon, 'topic=="/namespaces/delete"', "event.name==e2e-f-keep") as events:
        # subscribe: deletes of e2e-f-* namespaces show up; creates must not
        for i in range(40):
            ctr(engine_daemon, "namespaces", "create", f"e2e-f-{i}")
            ctr(engine_daemon, "namespaces", "rm", f"e2e-f-{i}")
            first = events.line(0.5)
            if first is not None:
                break
        else:
            raise AssertionError("ctr events printed nothing")
        assert parse_event(first)[1] == "/namespaces/delete"
        ctr(engine_daemon, "namespaces", "create", "e2e-f-other")
        ctr(engine_daemon, "namespaces", "create", "e2e-f-keep")
        line = events.line(10)
        assert line is not None
        assert parse_event(line)[1:] == ("/namespaces/create", '{"name":"e2e-f-keep"}')
        assert events.line(0.5) is None  # e2e-f-other's create was filtered out, nothing else came


@pytest.mark.parametrize("bad", ["topic==/namespaces/create/", "topic=x", 'topic=="open', 'a~="("'])
def test_ctr_events_with_a_bad_filter_is_invalid_argument(engine_daemon: Any, bad: str) -> None:
    proc = subprocess.run(
        [CTR, "--address", str(engine_daemon.containerd_sock), "events", bad],
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert proc.returncode != 0
    assert "code = InvalidArgument" in proc.stderr, proc.stderr


def _oom_any(container_id: str) -> bytes:
    event = task_pb2.TaskOOM(container_id=container_id)
    return any_pb2.Any(
        type_url="containerd.events.TaskOOM", value=event.SerializeToString()
    ).SerializeToString()


def publish(daemon: Any, topic: str, namespace: str, payload: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [
            CONTAINERD,
            "--address",
            str(daemon.containerd_sock),
            "publish",
            "--topic",
            topic,
            "--namespace",
            namespace,
        ],
        input=payload,
        capture_output=True,
        timeout=20,
    )


def test_containerd_publish_reaches_ctr_events(engine_daemon: Any) -> None:
    with ctr_events(engine_daemon, "topic~=|^/tasks/|") as events:
        for i in range(40):
            proc = publish(engine_daemon, "/tasks/oom", "e2e-pub", _oom_any(f"c{i}"))
            assert proc.returncode == 0, proc.stderr
            line = events.line(0.5)
            if line is not None:
                break
        else:
            raise AssertionError("ctr events printed nothing")
        ns, topic, body = parse_event(line)
        assert (ns, topic) == ("e2e-pub", "/tasks/oom")
        assert re.fullmatch(r'\{"container_id":"c\d+"\}', body), body
        # refused publishes: nothing reaches the subscriber
        for bad_topic, bad_ns in (("tasks/oom", "e2e-pub"), ("/", "e2e-pub"), ("/tasks/oom", "bad ns")):
            proc = publish(engine_daemon, bad_topic, bad_ns, _oom_any("refused"))
            assert proc.returncode != 0
            assert b"invalid argument" in proc.stderr, proc.stderr
        assert events.line(1.0) is None


def test_unimplemented_services_answer_cleanly(engine_daemon: Any) -> None:
    # ctr 1.6 has no command left that calls an unimplemented service: ask Transfer (1.7) directly
    import asyncio

    from grpclib.client import Channel
    from grpclib.const import Status
    from grpclib.exceptions import GRPCError

    from engine.api.containerd.gen.containerd.services.transfer.v1 import transfer_grpc, transfer_pb2

    async def call() -> None:
        ch = Channel(path=engine_daemon.containerd_sock)
        try:
            await transfer_grpc.TransferStub(ch).Transfer(transfer_pb2.TransferRequest(),
                                                          metadata={"containerd-namespace": "default"})
        finally:
            ch.close()

    with pytest.raises(GRPCError) as err:
        asyncio.run(call())
    assert err.value.status == Status.UNIMPLEMENTED
    assert err.value.message == "containerd.services.transfer.v1.Transfer/Transfer is not implemented yet"


def test_namespaces_survive_a_restart(engine_daemon: Any) -> None:
    ctr(engine_daemon, "namespaces", "create", "e2e-keep", "a=b")
    uuid_before = ctr(engine_daemon, "version").stdout.split("UUID:", 1)[1].split()[0]
    engine_daemon.stop()
    engine_daemon.start()
    assert ["e2e-keep", "a=b"] in table(ctr(engine_daemon, "namespaces", "ls").stdout)
    assert ctr(engine_daemon, "version").stdout.split("UUID:", 1)[1].split()[0] == uuid_before
