"""The streaming commands with the real docker CLI: run (attached, -it under a pty), attach and its detach
keys, exec (-it, -d, exit codes), logs (-f, --tail, --since, -t), cp both ways (symlinks stay inside the
container), top, export, diff, and the errors Docker gives for bad input."""

from __future__ import annotations

import io
import json
import re
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from tests.e2e.docker.dockerapi_util import journal
from tests.e2e.docker.term import Term
from tests.harness import EngineDaemon


def inspect(d: EngineDaemon, name: str) -> dict:
    return json.loads(d.docker("inspect", name).stdout)[0]


def wait_exit(d: EngineDaemon, name: str) -> int:
    return int(d.docker("wait", name, timeout=30).stdout.strip())


# ---- run ------------------------------------------------------------------------------------------
def test_run_prints_and_exit_codes(d: EngineDaemon) -> None:
    r = d.docker("run", "--rm", "busybox", "echo", "hi")
    assert r.stdout == "hi\n" and r.returncode == 0
    r = d.docker("run", "--rm", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert r.returncode == 3 and r.stdout == "out\n" and r.stderr == "err\n"
    r = d.docker("run", "--name", "exit3", "busybox", "sh", "-c", "exit 3", check=False)
    assert r.returncode == 3
    assert inspect(d, "exit3")["State"]["ExitCode"] == 3
    d.docker("rm", "exit3")


def test_run_it_under_a_pty(d: EngineDaemon) -> None:
    t = Term(d, "run", "--rm", "-it", "busybox", "sh")
    try:
        t.read_until(b"# ")
        t.send(b"echo $((6*7))\r")
        t.read_until(b"42")
        t.send(b"stty size\r")
        t.read_until(b"24 80")
        t.send(b"exit 5\r")
        assert t.wait() == 5
    finally:
        t.close()


def test_detach_keys_then_attach(d: EngineDaemon) -> None:
    t = Term(d, "run", "-it", "--name", "det", "busybox", "sh")
    try:
        t.read_until(b"# ")
        t.send(b"\x10\x11")  # ctrl-p ctrl-q: the daemon ends the attach, the container runs on
        assert t.wait() == 0
    finally:
        t.close()
    assert inspect(d, "det")["State"]["Running"] is True
    a = Term(d, "attach", "det")
    try:
        time.sleep(0.3)
        a.send(b"echo back-$((1+1))\r")
        a.read_until(b"back-2")
        a.send(b"\x10\x11")
        a.wait()
        assert b"read escape sequence" in a.buf
    finally:
        a.close()
    assert inspect(d, "det")["State"]["Running"] is True
    a = Term(d, "attach", "det")
    try:
        time.sleep(0.3)
        a.send(b"exit 0\r")
        assert a.wait() == 0
    finally:
        a.close()
    assert wait_exit(d, "det") == 0
    kinds = [e["type"] for e in journal(d, "type=docker_stream.*")]
    assert "docker_stream.attached" in kinds  # (the CLI spots its detach keys itself and just hangs up)
    d.docker("rm", "-f", "det")


# ---- exec -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sleeper(d: EngineDaemon):  # type: ignore[no-untyped-def]
    d.docker("run", "-d", "--name", "sleeper", "busybox", "sleep", "1000")
    yield "sleeper"
    d.docker("rm", "-f", "sleeper", check=False)


def test_exec(d: EngineDaemon, sleeper: str) -> None:
    assert d.docker("exec", sleeper, "echo", "hi").stdout == "hi\n"
    r = d.docker("exec", sleeper, "sh", "-c", "echo o; echo e >&2; exit 7", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (7, "o\n", "e\n")
    assert d.docker("exec", "-w", "/tmp", "-e", "X=y", sleeper, "sh", "-c", "pwd; echo $X").stdout == "/tmp\ny\n"
    assert d.docker("exec", "-u", "65534", sleeper, "id", "-u").stdout == "65534\n"
    r = d.docker("exec", sleeper, "/no-such-binary", check=False)
    assert r.returncode == 127 and "no-such-binary" in r.stdout
    r = d.docker("exec", "-u", "ghost", sleeper, "id", check=False)
    assert r.returncode == 126 and "unable to find user ghost" in r.stdout
    capeff = d.docker("exec", "--privileged", sleeper, "grep", "CapEff", "/proc/self/status").stdout.split()[1]
    capbnd = next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("CapBnd:"))
    assert int(capeff, 16) == int(capbnd, 16)  # every capability the daemon holds
    r = subprocess.run(["docker", "exec", "-i", sleeper, "sh", "-c", "cat; echo end"], input="piped\n",
                       capture_output=True, text=True, env=d.env, timeout=30)
    assert (r.returncode, r.stdout) == (0, "piped\nend\n")  # stdin forwarded, then its EOF
    d.docker("exec", "-d", sleeper, "touch", "/tmp/detached")
    deadline = time.monotonic() + 5
    while d.docker("exec", sleeper, "test", "-e", "/tmp/detached", check=False).returncode != 0:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    created = [e for e in journal(d, "type=docker_exec.created")]
    assert any(e["event"]["cmd"] == ["echo", "hi"] for e in created)


def test_exec_it(d: EngineDaemon, sleeper: str) -> None:
    t = Term(d, "exec", "-it", sleeper, "sh")
    try:
        t.read_until(b"# ")
        t.send(b"echo $((7*6))x\r")
        t.read_until(b"42x")
        t.send(b"exit 4\r")
        assert t.wait() == 4
    finally:
        t.close()


def test_exec_into_a_stopped_container_is_409(d: EngineDaemon) -> None:
    d.docker("run", "--name", "stopped1", "busybox", "true")
    r = d.docker("exec", "stopped1", "echo", "x", check=False)
    assert r.returncode != 0 and "is not running" in r.stderr
    cid = inspect(d, "stopped1")["Id"]
    status, body = d.request("POST", f"/containers/{cid}/exec", {"Cmd": ["echo"]})
    assert status == 409 and body["message"] == f"container {cid} is not running"
    d.docker("rm", "stopped1")


def test_unknown_exec_is_404(d: EngineDaemon) -> None:
    status, body = d.request("GET", "/exec/" + "ab" * 32 + "/json")
    assert status == 404 and body["message"] == "No such exec instance: " + "ab" * 32
    status, body = d.request("POST", "/exec/nope/start", {"Detach": True})
    assert status == 404


# ---- logs -----------------------------------------------------------------------------------------
def test_logs_tail_since_timestamps(d: EngineDaemon) -> None:
    # apart in time, so each line has its own timestamp (the shim stamps a read, not a line)
    d.docker("run", "--name", "lg", "busybox", "sh", "-c",
             "for i in 1 2 3 4 5; do echo line$i; sleep 0.02; done; echo err >&2")
    r = d.docker("logs", "lg")
    assert r.stdout == "".join(f"line{i}\n" for i in range(1, 6)) and r.stderr == "err\n"
    r = d.docker("logs", "--tail", "2", "lg")
    assert r.stdout == "line5\n" and r.stderr == "err\n"
    r = d.docker("logs", "-t", "lg")
    stamped = r.stdout.splitlines()
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z line\d$", ln) for ln in stamped), stamped
    third = stamped[2].split()[0]
    r = d.docker("logs", "--since", third, "lg")
    assert r.stdout.splitlines()[0] == "line3"
    assert d.docker("logs", "--since", "2100-01-01T00:00:00Z", "lg").stdout == ""
    d.docker("rm", "lg")


def test_logs_follow_while_printing(d: EngineDaemon) -> None:
    d.docker("run", "-d", "--name", "lf", "busybox", "sh", "-c",
             "for i in 1 2 3 4 5 6; do echo n$i; sleep 0.3; done")
    p = subprocess.Popen(["docker", "logs", "-f", "lf"], env=d.env, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None
        t0 = time.monotonic()
        first = p.stdout.readline()
        assert first == "n1\n" and time.monotonic() - t0 < 1.5  # arrives while the container still runs
        rest = p.stdout.read()
        assert p.wait(timeout=15) == 0  # ends when the container exits
        assert rest == "".join(f"n{i}\n" for i in range(2, 7))
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    d.docker("rm", "-f", "lf")


# ---- cp, top, export, diff -------------------------------------------------------------------------------
def test_cp_both_ways_with_symlinks_inside(d: EngineDaemon, sleeper: str, tmp_path: Path) -> None:
    host_dir = tmp_path / "host-only"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host secret\n")
    d.docker("exec", sleeper, "sh", "-c",
             f"mkdir -p /data && echo inside > /data/f && ln -sf /etc /data/abs && "
             f"ln -sf ../../../../../../../..{host_dir} /data/up && mkdir -p {host_dir} && "
             f"echo container > {host_dir}/secret")
    out = tmp_path / "out"
    d.docker("cp", f"{sleeper}:/data/f", str(out))
    assert out.read_text() == "inside\n"
    d.docker("cp", f"{sleeper}:/data/abs/passwd", str(tmp_path / "passwd"))
    assert (tmp_path / "passwd").read_text() == d.docker("exec", sleeper, "cat", "/etc/passwd").stdout
    d.docker("cp", f"{sleeper}:/data/up/secret", str(tmp_path / "secret"))
    assert (tmp_path / "secret").read_text() == "container\n"  # the container's path, not the host's
    src = tmp_path / "src.txt"
    src.write_text("to the container\n")
    d.docker("cp", str(src), f"{sleeper}:/data/up/")
    assert not (host_dir / "src.txt").exists()
    assert d.docker("exec", sleeper, "cat", f"{host_dir}/src.txt").stdout == "to the container\n"
    srcdir = tmp_path / "tree"
    (srcdir / "sub").mkdir(parents=True)
    (srcdir / "sub" / "x").write_text("x\n")
    d.docker("cp", str(srcdir), f"{sleeper}:/data/")
    assert d.docker("exec", sleeper, "cat", "/data/tree/sub/x").stdout == "x\n"
    assert d.docker("exec", sleeper, "stat", "-c", "%u", "/data/tree/sub/x").stdout.strip() == "0"
    d.docker("cp", f"{sleeper}:/data/tree", str(tmp_path / "back"))
    assert (tmp_path / "back" / "sub" / "x").read_text() == "x\n"
    kinds = {e["type"] for e in journal(d, "type=docker_stream.*")}
    assert {"docker_stream.path_accessed", "docker_stream.extracted"} <= kinds


def test_cp_stopped_container_and_missing_paths(d: EngineDaemon, tmp_path: Path) -> None:
    d.docker("run", "--name", "cpstop", "busybox", "sh", "-c", "echo stopped > /tmp/s")
    d.docker("cp", "cpstop:/tmp/s", str(tmp_path / "s"))
    assert (tmp_path / "s").read_text() == "stopped\n"
    (tmp_path / "in").write_text("in\n")
    d.docker("cp", str(tmp_path / "in"), "cpstop:/tmp/in")
    d.docker("cp", "cpstop:/tmp/in", str(tmp_path / "in2"))
    assert (tmp_path / "in2").read_text() == "in\n"
    r = d.docker("cp", "cpstop:/nope", str(tmp_path / "x"), check=False)
    assert r.returncode != 0 and "Could not find the file /nope in container cpstop" in r.stderr
    r = d.docker("cp", str(tmp_path / "in"), "cpstop:/nope/file", check=False)
    assert r.returncode != 0 and "Could not find the file /nope in container" in r.stderr, r.stderr
    d.docker("rm", "cpstop")


def test_top(d: EngineDaemon, sleeper: str) -> None:
    lines = d.docker("top", sleeper).stdout.splitlines()
    assert lines[0].split()[:2] == ["UID", "PID"]
    assert any(ln.endswith("sleep 1000") for ln in lines[1:])
    lines = d.docker("top", sleeper, "-o", "pid,comm").stdout.splitlines()
    assert lines[0].split() == ["PID", "COMMAND"] and any(ln.split()[-1] == "sleep" for ln in lines[1:])


def test_export_and_diff(d: EngineDaemon) -> None:
    d.docker("run", "--name", "ch", "busybox", "sh", "-c", "touch /tmp/new && rm /etc/group && echo x >> /etc/passwd")
    names = tarfile.open(fileobj=io.BytesIO(subprocess.run(
        ["docker", "export", "ch"], env=d.env, capture_output=True, check=True, timeout=60).stdout)).getnames()
    assert "bin/busybox" in names and "tmp/new" in names and "etc/group" not in names
    diff = d.docker("diff", "ch").stdout.splitlines()
    assert "A /tmp/new" in diff and "D /etc/group" in diff and "C /etc/passwd" in diff and "C /tmp" in diff
    assert not any(ln.endswith((" /proc", " /sys", " /dev", "/etc/hosts", "/etc/resolv.conf")) for ln in diff), diff
    d.docker("rm", "ch")
