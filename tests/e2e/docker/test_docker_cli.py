"""The real docker CLI (28.2.2) against engine's Docker API socket: version negotiation, info, and events
(past windows, filters, live following), with `daemon reload` events made by SIGHUP."""

from __future__ import annotations

import json
import select
import subprocess
import time

import pytest
from dockerapi_util import docker_env, events_listeners, journal, reload, reload_daemon, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def shared_daemon():  # type: ignore[no-untyped-def]
    d = reload_daemon()
    try:
        yield d.start()
    finally:
        d.cleanup()


def docker(d, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    proc = subprocess.run(["docker", *args], env={**docker_env(d), **(env or {})}, capture_output=True, text=True,
                          timeout=30, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"docker {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def secs(ns: int) -> str:
    return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"


def test_docker_version(shared_daemon) -> None:
    v = json.loads(docker(shared_daemon, "version", "--format", "{{json .}}").stdout)
    assert v["Client"]["Version"] == "28.2.2"
    assert v["Client"]["ApiVersion"] == "1.50"  # negotiated down to the daemon's, which is 1.50
    assert v["Server"]["ApiVersion"] == "1.50"
    assert v["Server"]["MinAPIVersion"] == "1.24"
    assert v["Server"]["Os"] == "linux"
    text = docker(shared_daemon, "version").stdout
    assert "API version:      1.50 (minimum version 1.24)" in text


def test_docker_version_with_an_older_api_version(shared_daemon) -> None:
    v = json.loads(docker(shared_daemon, "version", "--format", "{{json .}}",
                          env={"DOCKER_API_VERSION": "1.24"}).stdout)
    assert v["Client"]["ApiVersion"] == "1.24"
    assert v["Server"]["ApiVersion"] == "1.50"


def test_docker_refuses_a_too_old_api_version(shared_daemon) -> None:
    proc = docker(shared_daemon, "version", check=False, env={"DOCKER_API_VERSION": "1.23"})
    assert proc.returncode != 0
    assert "client version 1.23 is too old. Minimum supported API version is 1.24" in proc.stderr


def test_docker_info(shared_daemon) -> None:
    info = json.loads(docker(shared_daemon, "info", "--format", "{{json .}}").stdout)
    assert not info.get("ServerErrors"), info.get("ServerErrors")
    assert info["ID"] == journal(shared_daemon)[0]["subject"]
    assert info["OSType"] == "linux"
    assert info["DockerRootDir"] == str(shared_daemon.root)
    assert info["Labels"] == ["e2e=docker"]
    text = docker(shared_daemon, "info").stdout
    assert "Server Version:" in text and "Cgroup Driver: cgroupfs" in text


def test_docker_events_window_shows_a_daemon_reload(shared_daemon) -> None:
    t0 = time.time_ns()
    ev = reload(shared_daemon)
    t2 = time.time_ns() + 1_000_000
    out = docker(shared_daemon, "events", "--since", secs(t0), "--until", secs(t2)).stdout
    lines = out.splitlines()
    assert len(lines) == 1, out
    # `<RFC 3339 nano time> daemon reload <id> (labels=..., log-level=..., name=...)`
    stamp, typ, action, actor, attrs = lines[0].split(" ", 4)
    assert (typ, action, actor) == ("daemon", "reload", ev["subject"])
    assert "labels=e2e=docker" in attrs and "name=" in attrs
    assert stamp.startswith(time.strftime("%Y-%m-%dT", time.gmtime(ev["time_ns"] / 1e9)))
    # RFC 3339 bounds give the same window
    rfc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 // 1_000_000_000))
    out2 = docker(shared_daemon, "events", "--since", rfc, "--until", secs(t2)).stdout
    assert lines[0] in out2.splitlines()


def test_docker_events_filters(shared_daemon) -> None:
    t0 = time.time_ns()
    ev = reload(shared_daemon)
    t2 = secs(time.time_ns() + 1_000_000)
    got = docker(shared_daemon, "events", "--since", secs(t0), "--until", t2, "--filter", "type=daemon",
                 "--format", "{{json .}}").stdout.splitlines()
    assert len(got) == 1
    msg = json.loads(got[0])
    assert msg["Type"] == "daemon" and msg["Action"] == "reload" and msg["timeNano"] == ev["time_ns"]
    assert msg["Actor"]["ID"] == ev["subject"]
    none = docker(shared_daemon, "events", "--since", secs(t0), "--until", t2, "--filter", "type=container").stdout
    assert none == ""
    none = docker(shared_daemon, "events", "--since", secs(t0), "--until", t2, "--filter", "event=start").stdout
    assert none == ""


def test_docker_events_since_0_until_1_is_empty_and_exits(shared_daemon) -> None:
    t0 = time.monotonic()
    proc = docker(shared_daemon, "events", "--since", "0", "--until", "1")
    assert proc.stdout == "" and time.monotonic() - t0 < 10


def test_docker_events_bad_input(shared_daemon) -> None:
    proc = docker(shared_daemon, "events", "--since", "0", "--until", "1", "--filter", "foo=bar", check=False)
    assert proc.returncode != 0 and "invalid filter 'foo'" in proc.stderr
    proc = docker(shared_daemon, "events", "--since", "20", "--until", "10", check=False)
    assert proc.returncode != 0 and "`since` time must be before `until` time" in proc.stderr


def test_docker_events_follows_live(shared_daemon) -> None:
    before = events_listeners(shared_daemon)
    proc = subprocess.Popen(["docker", "events", "--filter", "type=daemon", "--format", "{{json .}}"],
                            env=docker_env(shared_daemon), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: events_listeners(shared_daemon) > before, what="docker events to subscribe")
        ev = reload(shared_daemon)
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "docker events printed nothing"
        msg = json.loads(proc.stdout.readline())
        assert msg["Action"] == "reload" and msg["timeNano"] == ev["time_ns"]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
        proc.stderr.close()
    wait_for(lambda: events_listeners(shared_daemon) == before, what="the subscription to go with the client")
