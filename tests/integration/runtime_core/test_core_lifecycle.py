"""The runtime library end to end (no CLI): lifecycle, clean failure, exec, pause, console,
and the stage-1 spawn path (joined pid namespace, time namespace)."""

from __future__ import annotations

import array
import contextlib
import os
import socket
import subprocess
import time

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, NotFound
from engine.runtime import state as st
from engine.runtime.create import create
from engine.runtime.delete import delete
from engine.runtime.execute import execute
from engine.runtime.kill import kill
from engine.runtime.pause import pause, resume
from engine.runtime.process import ContainerError
from engine.runtime.query import state
from engine.runtime.run import run
from engine.runtime.start import start


def _wait_status(root, cid, want, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s = state(root, cid)["status"]
        if s == want:
            return
        time.sleep(0.01)
    raise AssertionError(f"{cid} is {s}, wanted {want}")


def test_create_start_kill_delete(core):
    cid, b, _ = core.bundle(["sleep", "60"])
    c = create(core.root, cid, str(b))
    s = state(core.root, cid)
    assert s["status"] == "created" and s["pid"] == c.pid and s["bundle"] == str(b)
    dirs = core.cgroup_dirs(cid)
    assert dirs and all(str(c.pid) in open(os.path.join(d, "cgroup.procs")).read().split() for d in dirs)  # noqa: SIM115
    with pytest.raises(AlreadyExists):
        create(core.root, cid, str(b))
    assert state(core.root, cid)["status"] == "created"  # the failed duplicate left it alone
    start(core.root, cid)
    assert state(core.root, cid)["status"] == "running"
    with pytest.raises(FailedPrecondition, match="already running"):
        start(core.root, cid)
    with pytest.raises(FailedPrecondition, match="not stopped: running"):
        delete(core.root, cid)
    kill(core.root, cid, 9)
    _wait_status(core.root, cid, "stopped")
    with pytest.raises(FailedPrecondition, match="container not running"):
        kill(core.root, cid, 9)
    delete(core.root, cid)
    assert not os.path.exists(os.path.join(core.root, cid))
    assert core.cgroup_dirs(cid) == []
    with pytest.raises(NotFound, match="container does not exist"):
        state(core.root, cid)


def test_failures_leave_nothing_behind(core):
    cid, b, spec = core.bundle(["true"])
    # fails in the child (C side): a sysctl the kernel does not have
    spec["linux"]["sysctl"] = {"kernel.no_such_sysctl_xyz": "1"}
    core.write(b, spec)
    with pytest.raises(ContainerError, match="no_such_sysctl_xyz"):
        create(core.root, cid, str(b))
    assert not os.path.exists(os.path.join(core.root, cid))
    assert core.cgroup_dirs(cid) == []
    # fails in the parent, after the process exists: a bind source that is missing
    spec["linux"].pop("sysctl")
    spec["mounts"].append({"destination": "/x", "type": "bind", "source": "/no/such/src"})
    core.write(b, spec)
    with pytest.raises(Exception, match="/no/such/src"):
        create(core.root, cid, str(b))
    assert not os.path.exists(os.path.join(core.root, cid))
    assert core.cgroup_dirs(cid) == []
    with open("/proc/self/mountinfo") as f:
        assert str(b) not in f.read()


def test_run_returns_the_exit_status(core, capfd):
    cid, b, _ = core.bundle(["sh", "-c", "echo out; exit 5"])
    assert run(core.root, cid, str(b)) == 5
    assert capfd.readouterr().out == "out\n"
    assert not os.path.exists(os.path.join(core.root, cid))
    # without a pid namespace the shell is not an init, so SIGKILL from itself works
    cid, b, spec = core.bundle(["sh", "-c", "kill -9 $$"])
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]
    core.write(b, spec)
    assert run(core.root, cid, str(b)) == 128 + 9


def test_exec_joins_namespaces_and_cgroup(core, tmp_path):
    cid, b, _ = core.bundle(["sleep", "60"], hostname="exec-host", root={"path": "rootfs", "readonly": False})
    c = create(core.root, cid, str(b))
    start(core.root, cid)
    out = b / "rootfs" / "tmp"
    proc = {
        "args": [
            "sh",
            "-c",
            "hostname > /tmp/h; echo $$ > /tmp/pid; cat /proc/self/cgroup > /tmp/cg; exit 3",
        ],
        "env": ["PATH=/bin"],
        "cwd": "/",
        "user": {"uid": 0, "gid": 0},
    }
    assert execute(core.root, cid, proc) == 3
    assert (out / "h").read_text() == "exec-host\n"
    assert int((out / "pid").read_text()) > 1  # inside the container's pid namespace
    assert f"/{core.parent}/{cid}" in (out / "cg").read_text()
    assert c.pid > 0


def test_pause_and_resume(core):
    cid, b, _ = core.bundle(["sleep", "60"])
    create(core.root, cid, str(b))
    start(core.root, cid)
    pause(core.root, cid)
    assert state(core.root, cid)["status"] == "paused"
    with pytest.raises(FailedPrecondition):
        pause(core.root, cid)
    resume(core.root, cid)
    assert state(core.root, cid)["status"] == "running"
    delete(core.root, cid, force=True)
    assert core.cgroup_dirs(cid) == []


def test_console_socket_gets_a_pty_master(core, tmp_path):
    cid, b, spec = core.bundle(["sh", "-c", "tty; sleep 30"])
    spec["process"]["terminal"] = True
    core.write(b, spec)
    path = str(tmp_path / "console.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    try:
        create(core.root, cid, str(b), console_socket=path)
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
        fds.frombytes(anc[0][2])
        master = fds[0]
        assert msg.startswith(b"/dev/pts/")
        start(core.root, cid)
        data = b""
        deadline = time.monotonic() + 5
        while b"\n" not in data and time.monotonic() < deadline:
            data += os.read(master, 100)
        assert data.strip().startswith(b"/dev/pts/")
        os.close(master)
        conn.close()
    finally:
        srv.close()


def test_stage1_path_joins_a_pid_namespace(core):
    cid_a, ba, _ = core.bundle(["sleep", "60"])
    a = create(core.root, cid_a, str(ba))
    start(core.root, cid_a)
    cid_b, bb, spec = core.bundle(
        ["sh", "-c", "ps -o pid,args > /tmp/ps"], root={"path": "rootfs", "readonly": False}
    )
    spec["linux"]["namespaces"] = [{"type": "mount"}, {"type": "pid", "path": f"/proc/{a.pid}/ns/pid"}]
    del spec["hostname"]
    core.write(bb, spec)
    assert run(core.root, cid_b, str(bb)) == 0
    text = (bb / "rootfs/tmp/ps").read_text()
    assert "sleep 60" in text  # the other container's init is visible: same pid namespace


def test_time_namespace_offsets(core):
    cid, b, spec = core.bundle(["cat", "/proc/uptime"])
    spec["linux"]["namespaces"].append({"type": "time"})
    spec["linux"]["timeOffsets"] = {"boottime": {"secs": 86400 * 365, "nanosecs": 0}}
    core.write(b, spec)
    out = b / "out"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
    saved = os.dup(1)
    os.dup2(fd, 1)
    try:
        assert run(core.root, cid, str(b)) == 0
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(fd)
    with open("/proc/uptime") as f:
        host = float(f.read().split()[0])
    inside = float(out.read_text().split()[0])
    assert inside - host > 86400 * 364
    assert st.list_ids(core.root) == []


def test_spec_1_2_process_io_priority_scheduler_affinity(core, capfd):
    cid, b, spec = core.bundle(
        [
            "sh",
            "-c",
            "cat /proc/self/status | grep Cpus_allowed_list; "
            "grep -E '^policy|^prio' /proc/self/sched; ionice -p $$ || true",
        ]
    )
    spec["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    spec["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    spec["process"]["execCPUAffinity"] = {"initial": "0", "final": "0"}
    core.write(b, spec)
    assert run(core.root, cid, str(b)) == 0
    out = capfd.readouterr().out
    assert "Cpus_allowed_list:\t0\n" in out
    assert any(
        line.split()[-1] == "3" for line in out.splitlines() if line.startswith("policy")
    )  # SCHED_BATCH
    assert any(line.split()[-1] == "125" for line in out.splitlines() if line.startswith("prio"))  # nice 5


def test_stdio_fds_for_a_shim(core, tmp_path):
    # the shim hands the container its own stdio (FIFOs or pipes) without touching ours
    cid, b, _ = core.bundle(["sh", "-c", "read line; echo out:$line; echo err:$line >&2"])
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    r_err, w_err = os.pipe()
    create(core.root, cid, str(b), stdio=(r_in, w_out, w_err))
    for fd in (r_in, w_out, w_err):
        os.close(fd)
    start(core.root, cid)
    os.write(w_in, b"hello\n")
    os.close(w_in)
    assert os.read(r_out, 100) == b"out:hello\n"
    assert os.read(r_err, 100) == b"err:hello\n"
    _wait_status(core.root, cid, "stopped")
    os.close(r_out)
    os.close(r_err)
    delete(core.root, cid)


def test_exec_stdio(core):
    cid, b, _ = core.bundle(["sleep", "60"])
    create(core.root, cid, str(b))
    start(core.root, cid)
    r, w = os.pipe()
    proc = {"args": ["sh", "-c", "echo exec-out"], "env": ["PATH=/bin"], "cwd": "/"}
    assert execute(core.root, cid, proc, stdio=(0, w, 2)) == 0
    os.close(w)
    assert os.read(r, 100) == b"exec-out\n"
    os.close(r)


def test_seccomp_user_notification_reaches_the_listener(core, tmp_path, capfd):
    import fcntl
    import json
    import struct
    import threading

    cid, b, spec = core.bundle(
        ["sh", "-c", "mkdir /tmp/x; echo rc=$?"], root={"path": "rootfs", "readonly": False}
    )
    path = str(tmp_path / "listener.sock")
    spec["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": path,
        "listenerMetadata": "hello",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    }
    core.write(b, spec)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got = {}

    def listener():
        conn, _ = srv.accept()
        fds = array.array("i")
        msg, anc, _, _ = conn.recvmsg(65536, socket.CMSG_SPACE(fds.itemsize))
        fds.frombytes(anc[0][2])
        got["msg"] = json.loads(msg)
        fd = fds[0]
        # answer one notification: EACCES
        buf = bytearray(80)
        fcntl.ioctl(fd, 0xC0502100, buf)  # SECCOMP_IOCTL_NOTIF_RECV
        notif_id = struct.unpack_from("<Q", buf)[0]
        got["nr"] = struct.unpack_from("<i", buf, 16)[0]
        fcntl.ioctl(fd, 0xC0182101, struct.pack("<QqiI", notif_id, 0, -13, 0))  # NOTIF_SEND
        os.close(fd)
        conn.close()

    t = threading.Thread(target=listener, daemon=True)
    t.start()
    try:
        assert run(core.root, cid, str(b)) == 0
    finally:
        srv.close()
    t.join(5)
    captured = capfd.readouterr()
    assert "rc=1" in captured.out
    assert "Permission denied" in captured.err
    msg = got["msg"]
    assert msg["fds"] == ["seccompFd"] and msg["metadata"] == "hello"
    assert msg["state"]["id"] == cid and msg["pid"] > 0
    assert got["nr"] in (83, 258)  # mkdir, mkdirat on x86_64


def test_concurrent_starts_release_once(core):
    import threading

    cid, b, _ = core.bundle(["sleep", "60"])
    create(core.root, cid, str(b))
    results = []

    def go():
        try:
            start(core.root, cid)
            results.append("ok")
        except FailedPrecondition as e:
            results.append(str(e))

    threads = [threading.Thread(target=go) for _ in range(3)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert time.monotonic() - t0 < 5
    assert results.count("ok") == 1, results
    assert all(r == "ok" or "already running" in r for r in results)
    assert state(core.root, cid)["status"] == "running"


def test_session_keyring_unless_told_not_to(core, capfd):
    for new_keyring in (True, False):
        cid, b, spec = core.bundle(["sh", "-c", "cat /proc/keys"])
        spec["linux"]["maskedPaths"] = []
        core.write(b, spec)
        assert run(core.root, cid, str(b), new_keyring=new_keyring) == 0
        out = capfd.readouterr().out
        assert (f"_ses.{cid}:" in out) is new_keyring


def test_a_large_environment_fits_the_setup_message(core, capfd):
    # 300 KB of environment (each string under the kernel's 128 KiB MAX_ARG_STRLEN)
    cid, b, spec = core.bundle(["sh", "-c", "env | grep -c '^BIG'"])
    spec["process"]["env"] += [f"BIG{i}=" + "X" * 30_000 for i in range(10)]
    core.write(b, spec)
    assert run(core.root, cid, str(b)) == 0
    assert capfd.readouterr().out == "10\n"


def test_idmapped_bind_mount(core, capfd):
    # the container's root is host uid 200000; a host directory owned by root, idmapped with the
    # container's mapping, shows as owned by the container's root (plain bind: nobody, 65534)
    shared = core.workdir / "shared"  # not tmp_path: its parents are 0700, closed to uid 200000
    shared.mkdir()
    (shared / "f").write_text("x")
    cid, b, spec = core.bundle(["sh", "-c", "stat -c %u /idm/f /plain/f"])
    spec["linux"]["namespaces"].append({"type": "user"})
    spec["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    spec["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    spec["mounts"].append(
        {
            "destination": "/idm",
            "type": "bind",
            "source": str(shared),
            "options": ["rbind", "idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
            "gidMappings": [{"containerID": 0, "hostID": 200000, "size": 65536}],
        }
    )
    spec["mounts"].append(
        {"destination": "/plain", "type": "bind", "source": str(shared), "options": ["rbind"]}
    )
    core.write(b, spec)
    subprocess.run(["chown", "-R", "-h", "200000:200000", str(b / "rootfs")], check=True)
    assert run(core.root, cid, str(b)) == 0
    assert capfd.readouterr().out.split() == ["0", "65534"]
    assert os.stat(shared / "f").st_uid == 0  # the files themselves are unchanged


def test_exec_process_for_a_shim(core):
    # what an in-process shim calls: the pid back, the pty master over a socket it holds
    from engine.runtime.execute import exec_process

    cid, b, _ = core.bundle(["sleep", "60"])
    create(core.root, cid, str(b))
    start(core.root, cid)
    mine, theirs = socket.socketpair()
    proc = {"args": ["sh", "-c", "tty; exit 7"], "env": ["PATH=/bin"], "cwd": "/", "terminal": True}
    pid = exec_process(core.root, cid, proc, console_fd=theirs.fileno())
    theirs.close()
    fds = array.array("i")
    _, anc, _, _ = mine.recvmsg(1024, socket.CMSG_SPACE(fds.itemsize))
    fds.frombytes(anc[0][2])
    data = b""
    deadline = time.monotonic() + 5
    while b"\n" not in data and time.monotonic() < deadline:
        data += os.read(fds[0], 100)
    assert data.startswith(b"/dev/pts/")
    os.close(fds[0])
    mine.close()
    # the process is not our child (it was forked by the stage-1 child): poll until it is gone
    deadline = time.monotonic() + 5
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.01)
    assert pid > 0
