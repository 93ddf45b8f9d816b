"""The `engine` CLI's container verbs against a real test daemon (busybox imported offline): run in every
mode (--rm, -d, exit codes, missing command → 127, -e/-w/-u/--entrypoint/--hostname/-l), ps/logs/exec/
inspect/top/cp/stats, and the lifecycle verbs, with docker's output. (Terminal sessions: test_cli_tty.py.)"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ENGINE, EngineDaemon
from tests.support.images import image_id, import_busybox

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def d(shared_daemon: EngineDaemon) -> Iterator[EngineDaemon]:
    import_busybox(shared_daemon)
    yield shared_daemon


def engine(d: EngineDaemon, *args: str, check: bool = True, stdin: bytes | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([ENGINE, *args], env=d.env, capture_output=True, timeout=timeout,
                       input=stdin if stdin is not None else b"")
    if check:
        assert p.returncode == 0, f"engine {args}: {p.returncode}\n{p.stdout!r}\n{p.stderr!r}\n{d.log()[-2000:]}"
    return p


def out(d: EngineDaemon, *args: str) -> str:
    return engine(d, *args).stdout.decode()


def wait_for(pred, timeout: float = 15, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def names(d: EngineDaemon, *flags: str) -> list[str]:
    return out(d, "ps", *flags, "--format", "{{.Names}}").split()


def test_run_rm_prints_output_and_leaves_nothing(d: EngineDaemon) -> None:
    p = engine(d, "run", "--rm", "--name", "rm1", "busybox", "echo", "hello")
    assert p.stdout == b"hello\n" and p.stderr == b""
    wait_for(lambda: "rm1" not in names(d, "-a"), what="--rm removal")


def test_run_exit_code_and_separate_streams(d: EngineDaemon) -> None:
    p = engine(d, "run", "--name", "ex3", "busybox", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (3, b"out\n", b"err\n")
    assert out(d, "inspect", "-f", "{{.State.ExitCode}} {{.State.Status}}", "ex3") == "3 exited\n"
    assert out(d, "ps", "-a", "--filter", "name=ex3", "--format", "{{.Status}}").startswith("Exited (3) ")
    engine(d, "rm", "ex3")


def test_run_errors_use_dockers_codes(d: EngineDaemon) -> None:
    p = engine(d, "run", "--rm", "busybox", "definitely-not-here", check=False)
    assert p.returncode == 127
    assert p.stderr.decode().startswith("engine: Error response from daemon: ")
    assert "executable file not found" in p.stderr.decode()
    engine(d, "create", "--name", "dupe", "busybox")
    p = engine(d, "run", "--name", "dupe", "busybox", check=False)
    assert p.returncode == 125 and 'Conflict. The container name "/dupe" is already in use' in p.stderr.decode()
    engine(d, "rm", "dupe")
    p = engine(d, "rm", "no-such-ctr", check=False)
    assert (p.returncode, p.stderr) == (1, b"Error response from daemon: No such container: no-such-ctr\n")


def test_run_env_workdir_user_entrypoint_labels(d: EngineDaemon) -> None:
    p = engine(d, "run", "--rm", "-e", "A=1", "-w", "/tmp", "-u", "1:2", "busybox", "sh", "-c",
               'echo "$A $(pwd) $(id -u):$(id -g)"')
    assert p.stdout == b"1 /tmp 1:2\n"
    p = engine(d, "run", "--rm", "--entrypoint", "echo", "busybox", "via", "entrypoint")
    assert p.stdout == b"via entrypoint\n"
    p = engine(d, "run", "--rm", "--hostname", "h8host", "busybox", "hostname")
    assert p.stdout == b"h8host\n"
    cid = out(d, "create", "-l", "team=cli", "--name", "lab", "busybox").strip()
    assert len(cid) == 64
    assert out(d, "inspect", "-f", '{{index .Config.Labels "team"}}', "lab") == "cli\n"
    assert names(d, "-a", "--filter", "label=team=cli") == ["lab"]
    engine(d, "rm", "lab")


def test_detached_lifecycle(d: EngineDaemon, tmp_path: Path) -> None:
    cid = out(d, "run", "-d", "--name", "web", "busybox", "sh", "-c",
              "echo start; while true; do echo tick; sleep 0.2; done").strip()
    try:
        assert len(cid) == 64
        assert out(d, "ps", "-q") .split().count(cid[:12]) == 1
        assert cid in out(d, "ps", "-q", "--no-trunc").split()
        row = json.loads(out(d, "ps", "--filter", "name=web", "--format", "json"))
        assert row["ID"] == cid[:12] and row["Names"] == "web" and row["State"] == "running"
        assert row["Image"] == "busybox" and row["Status"].startswith("Up ")
        table = out(d, "ps").splitlines()
        assert table[0].startswith("CONTAINER ID   IMAGE     COMMAND ")
        wait_for(lambda: out(d, "logs", "web").count("tick") >= 2, what="ticks")
        logs = out(d, "logs", "-t", "--tail", "1", "web").splitlines()
        assert len(logs) == 1 and logs[0].endswith(" tick") and logs[0][:4].isdigit() and "T" in logs[0]
        assert out(d, "logs", "web").startswith("start\ntick\n")
        # exec: exit code, stdin, env/user/workdir
        p = engine(d, "exec", "web", "sh", "-c", "echo in-exec; exit 4", check=False)
        assert (p.returncode, p.stdout) == (4, b"in-exec\n")
        assert engine(d, "exec", "-i", "web", "cat", stdin=b"piped in\n").stdout == b"piped in\n"
        p = engine(d, "exec", "-e", "X=y", "-u", "5", "-w", "/etc", "web", "sh", "-c", 'echo "$X $(id -u) $(pwd)"')
        assert p.stdout == b"y 5 /etc\n"
        engine(d, "exec", "-d", "web", "sh", "-c", "echo detached > /tmp/d")
        wait_for(lambda: engine(d, "exec", "web", "cat", "/tmp/d", check=False).stdout == b"detached\n")
        top = out(d, "top", "web").splitlines()
        assert top[0].split()[:2] == ["UID", "PID"] and any("while true" in ln for ln in top[1:])
        assert out(d, "inspect", "-f", "{{.State.Status}} {{.Name}} {{.Config.Image}}", "web") == \
            "running /web busybox\n"
        doc = json.loads(out(d, "inspect", "web"))
        assert doc[0]["Id"] == cid and out(d, "inspect", "web").startswith("[\n    {\n")
        # cp both ways
        (tmp_path / "in.txt").write_text("from host\n")
        p = engine(d, "cp", str(tmp_path / "in.txt"), "web:/tmp/")
        assert p.stderr.decode().startswith("Successfully copied ")
        assert engine(d, "exec", "web", "cat", "/tmp/in.txt").stdout == b"from host\n"
        engine(d, "cp", "web:/tmp/in.txt", str(tmp_path / "back.txt"))
        assert (tmp_path / "back.txt").read_text() == "from host\n"
        engine(d, "exec", "web", "sh", "-c", "mkdir -p /tmp/tree/sub && echo leaf > /tmp/tree/sub/f")
        engine(d, "cp", "web:/tmp/tree", str(tmp_path))
        assert (tmp_path / "tree" / "sub" / "f").read_text() == "leaf\n"
        stats = out(d, "stats", "--no-stream", "web").splitlines()
        assert stats[0].startswith("CONTAINER ID   NAME      CPU %") and stats[1].startswith(cid[:12] + "   web ")
        engine(d, "pause", "web")
        assert "(Paused)" in out(d, "ps", "--filter", "name=web", "--format", "{{.Status}}")
        engine(d, "unpause", "web")
        engine(d, "rename", "web", "web2")
        assert "web2" in names(d)
        assert engine(d, "restart", "-t", "0", "web2").stdout == b"web2\n"
        assert out(d, "inspect", "-f", "{{.State.Running}}", "web2") == "true\n"
        assert engine(d, "kill", "-s", "KILL", "web2").stdout == b"web2\n"
        assert out(d, "wait", "web2") == "137\n"
    finally:
        engine(d, "rm", "-f", "web", "web2", check=False)
    wait_for(lambda: not {"web", "web2"} & set(names(d, "-a")), what="removal")


def test_stop_start_attach_and_rm_force(d: EngineDaemon) -> None:
    engine(d, "run", "-d", "--name", "sleeper", "busybox", "sleep", "300")
    assert engine(d, "stop", "-t", "1", "sleeper").stdout == b"sleeper\n"
    assert out(d, "inspect", "-f", "{{.State.Status}}", "sleeper") == "exited\n"
    p = engine(d, "attach", "sleeper", check=False)
    assert p.returncode == 1 and b"You cannot attach to a stopped container" in p.stderr
    assert engine(d, "start", "sleeper").stdout == b"sleeper\n"
    p = engine(d, "rm", "sleeper", check=False)
    assert p.returncode == 1 and p.stderr.startswith(b"Error response from daemon: ")
    assert engine(d, "rm", "-f", "sleeper").stdout == b"sleeper\n"
    engine(d, "create", "--name", "once", "busybox", "sh", "-c", "echo started; exit 6")
    p = engine(d, "start", "-a", "once", check=False)
    assert (p.returncode, p.stdout) == (6, b"started\n")
    engine(d, "rm", "once")


def test_image_id_column(d: EngineDaemon) -> None:
    engine(d, "create", "--name", "idcol", "busybox")
    row = json.loads(out(d, "ps", "-a", "--filter", "name=idcol", "--format", "json"))
    assert row["Image"] == "busybox"
    assert out(d, "inspect", "-f", "{{.Image}}", "idcol").strip() == image_id()
    engine(d, "rm", "idcol")


def test_run_proxies_signals_to_the_container(d: EngineDaemon) -> None:
    import signal

    proc = subprocess.Popen([ENGINE, "run", "--rm", "busybox", "sh", "-c",
                             'trap "echo got-term; exit 7" TERM; echo ready; while true; do sleep 0.1; done'],
                            env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)  # --sig-proxy (the default) sends it on to the container
        rest, err = proc.communicate(timeout=20)
        assert (proc.returncode, rest) == (7, b"got-term\n"), err
    finally:
        proc.kill()
        proc.wait()


def test_run_resource_and_host_flags_reach_the_container(d: EngineDaemon, tmp_path: Path) -> None:
    cidfile = tmp_path / "cid"
    p = engine(d, "run", "--rm", "--cidfile", str(cidfile), "--ulimit", "nofile=321:654", "--shm-size", "8m",
               "--add-host", "db.example:10.9.8.7", "--read-only", "--tmpfs", "/scratch", "-m", "64m",
               "--cap-drop", "ALL", "busybox", "sh", "-c",
               "ulimit -n; grep db.example /etc/hosts; df -k /dev/shm | tail -1; touch /x 2>&1 || echo ro;"
               " touch /scratch/ok && echo tmpfs-ok")
    lines = p.stdout.decode().splitlines()
    assert lines[0] == "321" and lines[1].split() == ["10.9.8.7", "db.example"]
    assert lines[2].split()[1] == "8192" and "Read-only file system" in lines[3] and lines[-1] == "tmpfs-ok"
    assert len(cidfile.read_text()) == 64


def test_run_i_forwards_stdin_and_half_closes(d: EngineDaemon) -> None:
    p = engine(d, "run", "-i", "--rm", "busybox", "sh", "-c", "cat; echo after-eof", stdin=b"line 1\nline 2\n")
    assert p.stdout == b"line 1\nline 2\nafter-eof\n"
