"""`docker stats --no-stream` with the real docker CLI shows the memory a container allocated (50 MiB written to
its /dev/shm, charged to its cgroup) and its pids; the API's one-shot and stream modes answer Docker's shape."""

from __future__ import annotations

import re
import socket

from tests.harness import EngineDaemon


def _mib(text: str) -> float:
    m = re.match(r"([\d.]+)(B|KiB|MiB|GiB)", text.strip())
    assert m, text
    return float(m.group(1)) * {"B": 1 / 2**20, "KiB": 1 / 1024, "MiB": 1, "GiB": 1024}[m.group(2)]


def test_stats_no_stream_shows_allocated_memory(d: EngineDaemon) -> None:
    d.docker("run", "-d", "--name", "hog", "--memory", "256m", "busybox", "sh", "-c",
             "dd if=/dev/zero of=/dev/shm/fill bs=1M count=50 2>/dev/null; touch /tmp/ready; sleep 60")
    try:
        d.docker("exec", "hog", "sh", "-c", "while [ ! -e /tmp/ready ]; do sleep 0.05; done")
        out = d.docker("stats", "--no-stream", "--format", "{{.Name}} {{.MemUsage}} {{.PIDs}}", "hog").stdout
        name, usage, _slash, limit, pids = out.split()
        assert name == "hog" and 45 <= _mib(usage) <= 80 and _mib(limit) == 256 and int(pids) >= 1, out
        status, body = d.request("GET", "/containers/hog/stats?stream=false&one-shot=true")
        assert status == 200 and body["name"] == "/hog" and body["memory_stats"]["limit"] == 256 << 20
        assert body["precpu_stats"]["cpu_usage"]["total_usage"] == 0 and body["cpu_stats"]["online_cpus"] >= 1
    finally:
        d.docker("rm", "-f", "hog")


def test_stream_sends_one_object_a_second_and_stopped_is_zero(d: EngineDaemon) -> None:
    d.docker("run", "-d", "--name", "ticker", "busybox", "sleep", "60")
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(d.docker_sock)
        s.settimeout(10)
        s.sendall(b"GET /containers/ticker/stats HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while buf.count(b'"read"') < 2:
            buf += s.recv(65536)
        s.close()
    finally:
        d.docker("rm", "-f", "ticker")
    d.docker("create", "--name", "idle", "busybox", "true")
    try:
        status, body = d.request("GET", "/containers/idle/stats?stream=false")
        assert status == 200 and body["read"] == "0001-01-01T00:00:00Z" and body["memory_stats"] == {}
    finally:
        d.docker("rm", "idle")
    status, body = d.request("GET", "/containers/nope/stats?stream=false")
    assert status == 404 and body["message"] == "No such container: nope"
