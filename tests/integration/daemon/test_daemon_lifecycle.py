"""The daemon's life cycle as a process: its sockets (mode, group), the root lock, SIGTERM/SIGINT with
clients connected, SIGHUP reloads, and the crash marker after SIGKILL."""

from __future__ import annotations

import contextlib
import fcntl
import grp
import json
import os
import signal
import socket
import stat
import subprocess
import time
import uuid

import pytest
from daemon_util import (
    events_listeners,
    free_port,
    journal_rows,
    open_stream,
    read_to_eof,
    run_daemon,
    wait_for,
)

from tests.harness import ENGINE as ENGINE_BIN

pytestmark = pytest.mark.root


def sock_stat(path: str) -> os.stat_result:
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode), path
    return st


@contextlib.contextmanager
def group(name: str):  # type: ignore[no-untyped-def]
    """The group exists for the duration (made and removed here unless it existed). A flock serialises
    concurrent runs that use the same name, so one run cannot delete it under another."""
    with open("/etc/group") as lock:  # an existing file to flock: nothing is left behind
        fcntl.flock(lock, fcntl.LOCK_EX)
        existed = True
        try:
            grp.getgrnam(name)
        except KeyError:
            existed = False
            subprocess.run(["groupadd", name], check=True, capture_output=True)
        try:
            yield grp.getgrnam(name).gr_gid
        finally:
            if not existed:
                subprocess.run(["groupdel", name], check=False, capture_output=True)


def test_sockets_are_0660(engine_daemon) -> None:
    for path in (engine_daemon.docker_sock, engine_daemon.containerd_sock):
        st = sock_stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o660, oct(st.st_mode)
        assert st.st_uid == 0


def test_sockets_belong_to_the_engine_group_when_it_exists(daemon_factory) -> None:
    with group("engine") as gid:
        d = daemon_factory()
        for path in (d.docker_sock, d.containerd_sock):
            st = sock_stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert st.st_gid == gid, (path, st.st_gid, gid)


def test_sockets_belong_to_the_group_given_with_group_flag(daemon_factory) -> None:
    name = f"engt{uuid.uuid4().hex[:8]}"
    with group(name) as gid:
        d = daemon_factory("--group", name)
        for path in (d.docker_sock, d.containerd_sock):
            st = sock_stat(path)
            assert stat.S_IMODE(st.st_mode) == 0o660
            assert st.st_gid == gid, f"{path} is not owned by the --group {name} ({gid}) but by gid {st.st_gid}"
    # a group that does not exist leaves the sockets root-owned (as dockerd does without `docker`)
    d2 = daemon_factory("--group", f"nogroup{uuid.uuid4().hex[:8]}")
    assert sock_stat(d2.docker_sock).st_gid == 0


@pytest.mark.parametrize("same_exec_root", [False, True])
def test_second_daemon_on_the_same_root_exits_at_once(engine_daemon, tmp_path, same_exec_root: bool) -> None:
    exec_root = str(engine_daemon.exec_root) if same_exec_root else str(tmp_path / "run2")
    t0 = time.monotonic()
    proc = run_daemon("--root", str(engine_daemon.root), "--exec-root", exec_root)
    assert time.monotonic() - t0 < 10
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert f"pid {engine_daemon.proc.pid}" in err, err
    assert "already running" in err and str(engine_daemon.root) in err
    assert len(err.splitlines()) == 1, err  # one clear line, not a traceback
    # the first daemon is untouched: same sockets, still serving, journal has no second start
    assert engine_daemon.request("GET", "/_ping")[0] == 200
    engine_daemon.ctr("version")
    status, body = engine_daemon.request("GET", "/engine/journal?type=daemon.started")
    starts = [body] if isinstance(body, dict) else [json.loads(x) for x in body.splitlines()]
    assert [s["event"]["pid"] for s in starts] == [engine_daemon.proc.pid]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_exits_0_and_cleans_up(daemon_factory, sig: signal.Signals) -> None:
    d = daemon_factory()
    d.ctr("namespaces", "create", "before-stop")
    # clients connected at the stop: a live events stream (until far ahead), a journal follower,
    # an idle keep-alive connection and a half-sent request
    events = open_stream(d, f"/v1.50/events?until={time.time() + 120:.3f}")
    follower = open_stream(d, "/engine/journal?follow=1&tail=1")
    wait_for(lambda: events_listeners(d) == 2, what="two subscriptions")
    idle = socket.socket(socket.AF_UNIX)
    idle.connect(d.docker_sock)
    idle.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\n\r\n")
    assert idle.recv(4096).startswith(b"HTTP/1.1 200")
    half = socket.socket(socket.AF_UNIX)
    half.connect(d.docker_sock)
    half.sendall(b"GET /version HTTP/1.1\r\nHo")
    pid = d.proc.pid
    t0 = time.monotonic()
    d.proc.send_signal(sig)
    rc = d.proc.wait(15)
    took = time.monotonic() - t0
    assert rc == 0, d.log()
    assert took < 5, f"stopping took {took:.1f}s"
    # every client saw its connection end (not left hanging)
    for s in (events, follower, idle, half):
        s.settimeout(5)
        read_to_eof(s)
        s.close()
    assert not os.path.exists(d.docker_sock) and not os.path.exists(d.containerd_sock)
    rows = journal_rows(d.root)
    assert rows[-1]["type"] == "daemon.stopped", rows[-1]
    assert rows[-1]["event"]["signal"] == sig.name and rows[-1]["event"]["pid"] == pid
    assert rows[-1]["actor"] == "daemon"
    assert [r["subject"] for r in rows if r["type"] == "namespace.created"] == ["before-stop"]
    assert f"stopping on {sig.name}" in d.log()
    # the lock is released and the next start sees a clean stop
    d.start()
    started = [r for r in journal_rows(d.root) if r["type"] == "daemon.started"]
    assert started[-1]["event"].get("previous_stop_clean", True) is True  # True is the default, omitted
    assert "did not stop cleanly" not in d.log()


def test_sigkill_leaves_a_crash_marker(engine_daemon) -> None:
    engine_daemon.kill()
    assert os.path.exists(engine_daemon.docker_sock)  # nobody removed it
    engine_daemon.start()  # the stale sockets are replaced
    started = [r for r in journal_rows(engine_daemon.root) if r["type"] == "daemon.started"]
    assert [s["event"].get("previous_stop_clean", True) for s in started] == [True, False]
    assert "did not stop cleanly" in engine_daemon.log()
    assert engine_daemon.request("GET", "/_ping")[0] == 200


def test_sighup_reload_journals_a_docker_daemon_reload_event(daemon_factory) -> None:
    d = daemon_factory(start=False)
    d.base.mkdir(parents=True, exist_ok=True)
    cfg = d.base / "daemon.json"
    cfg.write_text(json.dumps({"labels": ["a=1"]}))
    d.extra_args = ["--config", str(cfg)]
    d.start()
    assert d.request("GET", "/info")[1]["Labels"] == ["a=1"]
    cfg.write_text(json.dumps({"labels": ["a=2", "b=3"], "log-level": "info"}))
    t0 = time.time()
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: d.request("GET", "/info")[1]["Labels"] == ["a=2", "b=3"], what="the new labels")
    out = d.docker("events", "--since", f"{t0:.6f}", "--until", f"{time.time() + 0.001:.6f}",
                   "--format", "{{json .}}").stdout.splitlines()
    assert len(out) == 1, out
    msg = json.loads(out[0])
    assert (msg["Type"], msg["Action"]) == ("daemon", "reload")
    assert msg["Actor"]["Attributes"]["labels"] == "a=2,b=3"
    assert msg["Actor"]["ID"] == d.request("GET", "/info")[1]["ID"]
    # a broken file is not applied: logged, nothing journaled, the daemon keeps running
    seq = d.request("GET", "/info")[1]["EngineJournal"]["LastSeq"]
    cfg.write_text("{not json")
    d.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "config not reloaded" in d.log(), what="the reload error in the log")
    assert d.request("GET", "/info")[1]["EngineJournal"]["LastSeq"] == seq
    assert d.request("GET", "/info")[1]["Labels"] == ["a=2", "b=3"]
    assert d.proc.poll() is None
    # without --config, SIGHUP is harmless
    plain = daemon_factory()
    plain.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "no config file to reload" in plain.log(), what="the log line")
    assert plain.request("GET", "/_ping")[0] == 200


def _as_user(uid: int, gid: int):  # type: ignore[no-untyped-def]
    def drop() -> None:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)

    return drop


def test_socket_permissions_and_the_unix_actor(daemon_factory) -> None:
    """0660 means it: a user outside the group cannot connect; one in the group can, and the journal records
    that user's uid/gid/pid (SO_PEERCRED) as the actor."""
    name = f"engt{uuid.uuid4().hex[:8]}"
    with group(name) as gid:
        d = daemon_factory("--group", name)
        os.chmod(d.base, 0o711)  # let another user reach the sockets under the test's temp dir
        nobody = 65534
        probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1])\n"
                 "except PermissionError:\n    sys.exit(13)\n")
        for path in (d.docker_sock, d.containerd_sock):
            outsider = subprocess.run(["python3", "-c", probe, path], preexec_fn=_as_user(nobody, nobody),
                                      capture_output=True, timeout=30)
            assert outsider.returncode == 13, (path, outsider.stderr)
            member = subprocess.run(["python3", "-c", probe, path], preexec_fn=_as_user(nobody, gid),
                                    capture_output=True, timeout=30)
            assert member.returncode == 0, (path, member.stderr)
        proc = subprocess.Popen(["ctr", "--address", d.containerd_sock, "namespaces", "create", "by-nobody"],
                                preexec_fn=_as_user(nobody, gid), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={"PATH": os.environ["PATH"], "HOME": "/"})
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        denied = subprocess.run(["ctr", "--address", d.containerd_sock, "namespaces", "create", "by-outsider"],
                                preexec_fn=_as_user(nobody, nobody), capture_output=True, text=True, timeout=30,
                                env={"PATH": os.environ["PATH"], "HOME": "/"})
        assert denied.returncode != 0 and "permission denied" in denied.stderr
        rows = [r for r in journal_rows(d.root) if r["type"] == "namespace.created"]
        assert [(r["subject"], r["actor"]) for r in rows] == [
            ("by-nobody", f"uid={nobody} gid={gid} pid={proc.pid} comm=ctr")]
        d.stop()


def test_sigterm_during_a_burst_finishes_what_it_answered(daemon_factory) -> None:
    """Stop while ctr clients are mid-burst: exit 0, every answered request journaled, and daemon.stopped is
    the journal's last event (nothing is appended after it)."""
    import threading

    d = daemon_factory()
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def worker(w: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"term-w{w}-{i}"
            i += 1
            p = subprocess.run(["ctr", "--address", d.containerd_sock, "--connect-timeout", "1s",
                                "namespaces", "create", name],
                               capture_output=True, timeout=15)
            if p.returncode == 0:
                with lock:
                    acked.append(name)

    threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(3)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 10, what="the burst to get going")
    t0 = time.monotonic()
    d.proc.send_signal(signal.SIGTERM)
    rc = d.proc.wait(15)
    took = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(30)
    assert rc == 0, d.log()
    assert took < 5, f"stopping took {took:.1f}s"
    rows = journal_rows(d.root)
    stopped = [i for i, r in enumerate(rows) if r["type"] == "daemon.stopped"]
    assert stopped, "no daemon.stopped"
    after = [(r["seq"], r["type"], r["subject"]) for r in rows[stopped[-1] + 1:]]
    assert not after, f"appended after daemon.stopped: {after}\n{d.log()[-3000:]}"
    created = {r["subject"] for r in rows if r["type"] == "namespace.created"}
    assert set(acked) <= created, sorted(set(acked) - created)[:10]
    proc = subprocess.run([ENGINE_BIN, "journal", "verify", "--root", str(d.root)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_journal_is_not_readable_by_other_users(engine_daemon) -> None:
    """The journal is the audit trail (and will hold container configs): an unprivileged local user must not
    read it, even knowing its fixed path (<root>/engine.db), as dockerd keeps /var/lib/docker 0710."""
    d = engine_daemon
    d.ctr("namespaces", "create", "secret-ns", "token=hunter2")
    os.chmod(d.base, 0o711)  # the temp dir stands in for /var/lib: traversable, like it
    probe = ("import sys\ntry:\n    open(sys.argv[1], 'rb').read(16)\nexcept PermissionError:\n    sys.exit(13)\n")
    readable = []
    for name in ("engine.db", "engine.db-wal", "engine.db-shm"):
        path = d.root / name
        if not path.exists():
            continue
        p = subprocess.run(["python3", "-c", probe, str(path)], preexec_fn=_as_user(65534, 65534),
                           capture_output=True, timeout=30)
        if p.returncode != 13:
            readable.append(f"{name} ({oct(stat.S_IMODE(path.stat().st_mode))}, root dir "
                            f"{oct(stat.S_IMODE(d.root.stat().st_mode))})")
    assert not readable, f"readable by uid 65534: {', '.join(readable)}"


def test_second_daemon_on_the_same_exec_root_does_not_steal_the_sockets(engine_daemon, tmp_path) -> None:
    """A different --root but the same --exec-root: the sockets there belong to a live daemon. Replacing them
    would leave it running unreachable (dockerd refuses through its pidfile); the second one must exit."""
    proc = subprocess.Popen([ENGINE_BIN, "daemon", "--root", str(tmp_path / "root2"), "--exec-root",
                             str(engine_daemon.exec_root)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        rc = proc.wait(3)  # a refusal is immediate
    except subprocess.TimeoutExpired:
        rc = None
    try:
        who = engine_daemon.request("GET", "/info", timeout=5)[1]["DockerRootDir"]
    except OSError as err:
        who = f"unreachable ({err})"
    if proc.poll() is None:
        proc.terminate()
    _, err = proc.communicate(timeout=15)
    assert rc not in (None, 0), f"the second daemon kept running; docker.sock now answers for: {who}"
    assert who == str(engine_daemon.root), who
    engine_daemon.ctr("version")


def test_a_refused_tcp_host_touches_nothing(tmp_path) -> None:
    """The refusal of `-H tcp://…` without TLS is a configuration error: like the other bad settings it should
    come before the root is created and anything is journaled."""
    port = free_port()
    proc = run_daemon("--root", str(tmp_path / "root"), "--exec-root", str(tmp_path / "run"),
                      "-H", f"tcp://127.0.0.1:{port}")
    assert proc.returncode == 1 and "without TLS" in proc.stderr
    assert not (tmp_path / "root").exists(), (
        f"root created and journaled: {[r['type'] for r in journal_rows(tmp_path / 'root')]}")
