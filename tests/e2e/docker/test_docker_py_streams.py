"""docker-py against engine's streams: containers.run output, exec_run (exit codes, demux), attach_socket
on a TTY container, logs(stream=True), put/get_archive, and its errors."""

from __future__ import annotations

import io
import socket
import tarfile
import time

import docker
import pytest

from tests.e2e.docker.dockerapi_util import journal
from tests.harness import EngineDaemon


def demux(buf: bytes) -> list[tuple[int, bytes]]:
    """stdcopy frames → [(stream, all its bytes)] in order of first appearance."""
    out: dict[int, bytes] = {}
    while buf:
        stream, size = buf[0], int.from_bytes(buf[4:8], "big")
        out[stream] = out.get(stream, b"") + buf[8:8 + size]
        buf = buf[8 + size:]
    return list(out.items())


@pytest.fixture(scope="module")
def client(d: EngineDaemon):  # type: ignore[no-untyped-def]
    c = docker.DockerClient(base_url=d.docker_host, timeout=30)
    try:
        yield c
    finally:
        c.close()


def test_run_remove_returns_output(client: docker.DockerClient) -> None:
    assert client.containers.run("busybox", "echo hi", remove=True) == b"hi\n"
    out = client.containers.run("busybox", ["sh", "-c", "echo a; echo b >&2"], remove=True, stderr=True)
    assert sorted(out.splitlines()) == [b"a", b"b"]
    with pytest.raises(docker.errors.ContainerError) as err:
        client.containers.run("busybox", ["sh", "-c", "exit 3"], remove=True)
    assert err.value.exit_status == 3


def test_exec_run(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", "sleep 1000", detach=True)
    try:
        res = c.exec_run(["sh", "-c", "echo out; echo err >&2; exit 2"])
        assert res.exit_code == 2 and sorted(res.output.splitlines()) == [b"err", b"out"]
        res = c.exec_run(["sh", "-c", "echo out; echo err >&2"], demux=True)
        assert res.exit_code == 0 and res.output == (b"out\n", b"err\n")
        res = c.exec_run("tty", tty=True)
        assert res.output.startswith(b"/dev/pts/")
        api = client.api
        eid = api.exec_create(c.id, ["sh", "-c", "exit 9"])["Id"]
        api.exec_start(eid, detach=True)
        deadline = time.monotonic() + 5
        while api.exec_inspect(eid)["Running"] or api.exec_inspect(eid)["ExitCode"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        info = api.exec_inspect(eid)
        assert info["ExitCode"] == 9 and info["ContainerID"] == c.id and info["ProcessConfig"]["entrypoint"] == "sh"
        with pytest.raises(docker.errors.APIError) as err:
            api.exec_start(eid, detach=True)
        assert err.value.status_code == 409
    finally:
        c.remove(force=True)


def test_attach_socket_tty(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", "sh", tty=True, stdin_open=True)
    try:
        c.start()
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stderr": 1, "stream": 1})
        raw: socket.socket = sock._sock  # the hijacked connection
        raw.settimeout(10)
        raw.sendall(b"echo from-$((40+2))\n")
        buf = b""
        while b"from-42" not in buf:
            chunk = raw.recv(4096)
            assert chunk, buf
            buf += chunk
        raw.sendall(b"exit\n")
        while raw.recv(4096):  # the stream ends with the container
            pass
        sock.close()
        assert c.wait(timeout=10)["StatusCode"] == 0
    finally:
        c.remove(force=True)


def test_server_side_detach_keys(client: docker.DockerClient, d: EngineDaemon) -> None:
    c = client.containers.create("busybox", "sh", tty=True, stdin_open=True)
    try:
        c.start()
        sock = client.api.attach_socket(c.id, params={"stdin": 1, "stdout": 1, "stream": 1,
                                                      "detachKeys": "ctrl-a,x"})
        raw: socket.socket = sock._sock
        raw.settimeout(10)
        raw.sendall(b"echo one-$((0+1))\n")
        buf = b""
        while b"one-1" not in buf:
            chunk = raw.recv(4096)
            assert chunk, buf
            buf += chunk
        raw.sendall(b"\x01x")  # the daemon finds the keys and ends the attach; the shell runs on
        while raw.recv(4096):
            pass
        sock.close()
        c.reload()
        assert c.status == "running"
        types = [e["type"] for e in journal(d, "type=docker_stream.*")]
        assert "docker_stream.detached" in types
        status, body = d.request("POST", f"/containers/{c.id}/attach?stream=1&stdin=1&detachKeys=ctrl-1")
        assert status == 400 and "Invalid detach keys" in body["message"]
    finally:
        c.remove(force=True)


def test_two_attached_clients_both_get_everything(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", ["sh", "-c", "sleep 0.5; for i in 1 2 3 4 5 6; do echo t$i; sleep 0.05; done"])
    try:
        socks = [client.api.attach_socket(c.id, params={"stdout": 1, "stderr": 1, "stream": 1}) for _ in range(2)]
        c.start()
        outs = []
        for sock in socks:
            raw: socket.socket = sock._sock
            raw.settimeout(10)
            buf = b""
            while chunk := raw.recv(4096):
                buf += chunk
            sock.close()
            outs.append(buf)
        want = [(1, b"".join(f"t{i}\n".encode() for i in range(1, 7)))]
        assert demux(outs[0]) == want and demux(outs[1]) == want
    finally:
        c.remove(force=True)


def test_logs_stream_and_follow(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "for i in 1 2 3; do echo l$i; sleep 0.2; done"], detach=True)
    try:
        lines = list(c.logs(stream=True, follow=True))
        assert b"".join(lines) == b"l1\nl2\nl3\n"
        assert c.logs(tail=1) == b"l3\n"
        stamped = c.logs(timestamps=True).splitlines()
        assert len(stamped) == 3 and stamped[0].endswith(b"Z l1")
    finally:
        c.remove(force=True)


def test_archive_round_trip(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", "sleep 1000", detach=True)
    try:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            data = b"payload\n"
            ti = tarfile.TarInfo("p.txt")
            ti.size, ti.mode, ti.uid = len(data), 0o600, 4321
            tf.addfile(ti, io.BytesIO(data))
        assert c.put_archive("/tmp", buf.getvalue())
        chunks, stat = c.get_archive("/tmp/p.txt")
        assert stat["name"] == "p.txt" and stat["size"] == 8 and stat["mode"] == 0o600
        with tarfile.open(fileobj=io.BytesIO(b"".join(chunks))) as tf:
            assert tf.getnames() == ["p.txt"] and tf.extractfile("p.txt").read() == b"payload\n"  # type: ignore[union-attr]
        assert c.exec_run("stat -c %u /tmp/p.txt").output == b"0\n"
        with pytest.raises(docker.errors.NotFound):
            c.get_archive("/nope")
        with pytest.raises(docker.errors.NotFound):
            c.put_archive("/nope", buf.getvalue())
    finally:
        c.remove(force=True)


def test_top_and_diff(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "touch /tmp/z; sleep 1000"], detach=True)
    try:
        top = c.top()
        assert "PID" in top["Titles"] and any(p[-1].startswith("sleep") or "sleep" in p[-1]
                                              for p in top["Processes"])
        deadline = time.monotonic() + 5
        while {"Path": "/tmp/z", "Kind": 1} not in (c.diff() or []):
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        c.remove(force=True)
