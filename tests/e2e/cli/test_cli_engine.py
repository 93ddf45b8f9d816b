"""The `engine` CLI as a user runs it: version, info, events (following, JSON), `journal tail` with every
filter (the audit question "who did what, when"), `journal verify` online and offline (and that it catches
an edited journal), host selection (-H, ENGINE_HOST) and one-line errors with exit code 1."""

from __future__ import annotations

import json
import os
import queue
import select
import shutil
import signal
import sqlite3
import subprocess
import threading
import time

import pytest

from tests.harness import ENGINE

pytestmark = pytest.mark.e2e


def engine(d, *args: str, check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    proc = subprocess.run([ENGINE, *args], env={**d.env, **(env or {})}, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"engine {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def jlines(out: str) -> list[dict]:
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def ctr_pid(d, *args: str) -> int:  # type: ignore[no-untyped-def]
    """Run ctr and return its pid (the actor the journal records for it)."""
    proc = subprocess.Popen(["ctr", "--address", d.containerd_sock, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    return proc.pid


def listeners(d) -> int:  # type: ignore[no-untyped-def]
    return d.request("GET", "/info")[1]["NEventsListener"]


def wait_for(pred, timeout: float = 10, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def history(shared_daemon) -> dict:  # type: ignore[no-untyped-def]
    """A small known history: cli-a created, cli-b created, labelled and deleted, by known ctr pids."""
    d = shared_daemon
    h = {"t0": time.time_ns()}
    h["a"] = ctr_pid(d, "namespaces", "create", "cli-a")
    time.sleep(0.01)
    h["t1"] = time.time_ns()
    h["b"] = ctr_pid(d, "namespaces", "create", "cli-b", "team=x")
    h["label"] = ctr_pid(d, "namespaces", "label", "cli-b", "team=y")
    h["rm"] = ctr_pid(d, "namespaces", "rm", "cli-b")
    h["t2"] = time.time_ns()
    h["all"] = jlines(engine(d, "journal", "tail", "-n", "0", "--format", "json").stdout)
    return h


# ---- version / info ------------------------------------------------------------------------------------


def test_version(shared_daemon) -> None:
    out = engine(shared_daemon, "version").stdout
    assert "Client:" in out and "Server:" in out and "API version: 1.50 (minimum version 1.24)" in out
    doc = json.loads(engine(shared_daemon, "version", "--format", "json").stdout)
    assert doc["Server"]["ApiVersion"] == "1.50" and doc["Client"]["Version"]


def test_info(shared_daemon) -> None:
    out = engine(shared_daemon, "info").stdout
    assert f"Root Dir:            {shared_daemon.root}" in out
    assert "Journal Seq:" in out and "Namespaces:" in out
    doc = json.loads(engine(shared_daemon, "info", "--format", "json").stdout)
    assert doc["DockerRootDir"] == str(shared_daemon.root)
    assert doc["EngineJournal"]["Path"] == str(shared_daemon.root / "engine.db")


# ---- events -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_events_follows_until_interrupted(shared_daemon, fmt: str) -> None:
    d = shared_daemon
    before = listeners(d)
    args = [ENGINE, "events", "--filter", "type=namespace.*"] + (["--format", "json"] if fmt == "json" else [])
    proc = subprocess.Popen(args, env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listeners(d) > before, what="engine events to subscribe")
        name = f"live-{fmt}"
        pid = ctr_pid(d, "namespaces", "create", name)
        ready, _, _ = select.select([proc.stdout], [], [], 10)
        assert ready, "engine events printed nothing"
        line = proc.stdout.readline()
        if fmt == "json":
            ev = json.loads(line)
            assert (ev["type"], ev["subject"], ev["namespace"]) == ("namespace.created", name, name)
            assert ev["actor"] == f"uid=0 gid=0 pid={pid} comm=ctr"
            assert len(ev["hash"]) == 64 and len(ev["prev_hash"]) == 64
        else:
            assert f" namespace.created {name} " in line
            assert f"actor=[uid=0 gid=0 pid={pid} comm=ctr]" in line and "cause=api" in line
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert proc.wait(10) == 0
        assert "Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    wait_for(lambda: listeners(d) == before, what="the subscription to go")


def test_events_with_a_past_until_prints_the_window_and_exits(shared_daemon, history) -> None:
    out = engine(shared_daemon, "events", "--since", str(history["t1"] / 1e9), "--until", str(history["t2"] / 1e9),
                 "--format", "json").stdout
    got = [(e["type"], e["subject"]) for e in jlines(out)]
    assert got == [("namespace.created", "cli-b"), ("namespace.updated", "cli-b"), ("namespace.deleted", "cli-b")]


# ---- journal tail --------------------------------------------------------------------------------------


def tail(d, *args: str) -> list[dict]:  # type: ignore[no-untyped-def]
    return jlines(engine(d, "journal", "tail", "--format", "json", *args).stdout)


def test_tail_defaults_and_n(shared_daemon, history) -> None:
    every = tail(shared_daemon, "-n", "0")
    assert [e["seq"] for e in every] == list(range(1, len(every) + 1))
    assert every[0]["type"] == "daemon.initialized" and every[1]["type"] == "daemon.started"
    last2 = tail(shared_daemon, "-n", "2")
    assert last2 == every[-2:]
    default = tail(shared_daemon)
    assert default == every[-20:]
    text = engine(shared_daemon, "journal", "tail", "-n", "1").stdout.splitlines()
    assert len(text) == 1 and f"#{every[-1]['seq']} {every[-1]['type']}" in text[0]


def test_tail_by_type(shared_daemon, history) -> None:
    names = lambda evs: [(e["type"], e["subject"]) for e in evs if e["subject"].startswith("cli-")]  # noqa: E731
    assert names(tail(shared_daemon, "-n", "0", "--type", "namespace.created")) == [
        ("namespace.created", "cli-a"), ("namespace.created", "cli-b")]
    globbed = tail(shared_daemon, "-n", "0", "--type", "namespace.*")
    assert all(e["type"].startswith("namespace.") for e in globbed)
    assert names(globbed) == [("namespace.created", "cli-a"), ("namespace.created", "cli-b"),
                              ("namespace.updated", "cli-b"), ("namespace.deleted", "cli-b")]
    two = tail(shared_daemon, "-n", "0", "--type", "namespace.updated", "--type", "namespace.deleted")
    assert {e["type"] for e in two} == {"namespace.updated", "namespace.deleted"}
    daemon = tail(shared_daemon, "-n", "0", "--type", "daemon.*")
    assert [e["type"] for e in daemon][:2] == ["daemon.initialized", "daemon.started"]
    assert tail(shared_daemon, "-n", "0", "--type", "no.such.type") == []


def test_tail_by_subject_and_namespace(shared_daemon, history) -> None:
    b = tail(shared_daemon, "-n", "0", "--subject", "cli-b")
    assert [e["type"] for e in b] == ["namespace.created", "namespace.updated", "namespace.deleted"]
    assert b[0]["event"] == {"name": "cli-b", "labels": {"team": "x"}}
    assert tail(shared_daemon, "-n", "0", "--namespace", "cli-a") == [
        e for e in history["all"] if e["namespace"] == "cli-a"]
    both = tail(shared_daemon, "-n", "0", "--subject", "cli-*")
    assert {e["subject"] for e in both} >= {"cli-a", "cli-b"}


def test_tail_by_actor(shared_daemon, history) -> None:
    who = f"uid=0 gid=0 pid={history['label']} comm=ctr"
    got = tail(shared_daemon, "-n", "0", "--actor", who)
    assert [(e["type"], e["subject"], e["actor"]) for e in got] == [("namespace.updated", "cli-b", who)]
    ctr_all = tail(shared_daemon, "-n", "0", "--actor", "*comm=ctr")
    assert {history[k] for k in ("a", "b", "label", "rm")} <= {int(e["actor"].split("pid=")[1].split()[0])
                                                                for e in ctr_all}
    daemon = tail(shared_daemon, "-n", "0", "--actor", "daemon")
    assert daemon and all(e["actor"] == "daemon" for e in daemon)


def test_tail_by_time(shared_daemon, history) -> None:
    window = tail(shared_daemon, "-n", "0", "--since", str(history["t1"] / 1e9), "--until", str(history["t2"] / 1e9))
    assert [e["subject"] for e in window] == ["cli-b"] * 3
    since_rfc = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(history["t0"] // 1_000_000_000)) + "Z"
    later = tail(shared_daemon, "-n", "0", "--since", since_rfc)
    assert {"cli-a", "cli-b"} <= {e["subject"] for e in later}
    assert tail(shared_daemon, "-n", "0", "--until", "1") == []
    recent = tail(shared_daemon, "-n", "0", "--since", "10m")
    assert {"cli-a", "cli-b"} <= {e["subject"] for e in recent}


def test_tail_by_seq(shared_daemon, history) -> None:
    b = [e for e in history["all"] if e["subject"] == "cli-b"]
    lo, hi = b[0]["seq"], b[-1]["seq"]
    got = tail(shared_daemon, "-n", "0", "--from-seq", str(lo), "--to-seq", str(hi))
    assert [e["seq"] for e in got] == list(range(lo, hi + 1))
    assert [e["seq"] for e in tail(shared_daemon, "-n", "0", "--to-seq", "2")] == [1, 2]
    assert [e["seq"] for e in tail(shared_daemon, "-n", "2", "--from-seq", "1", "--to-seq", "5")] == [4, 5]
    combined = tail(shared_daemon, "-n", "0", "--from-seq", str(lo), "--type", "namespace.deleted",
                    "--subject", "cli-b")
    assert [e["seq"] for e in combined] == [hi]


# ---- verify ---------------------------------------------------------------------------------------------


def test_verify_online(shared_daemon, history) -> None:
    out = engine(shared_daemon, "journal", "verify").stdout
    assert "journal verified" in out and "projection namespaces:" in out and "ok" in out
    report = json.loads(engine(shared_daemon, "journal", "verify", "--format", "json").stdout)
    assert report["ok"] is True and report["chain_errors"] == []
    assert report["last_seq"] >= history["all"][-1]["seq"]
    assert report["tables"]["namespaces"]["ok"] is True


def test_verify_offline_and_tampering(engine_daemon, tmp_path) -> None:
    d = engine_daemon
    for n in ("v1", "v2"):
        d.ctr("namespaces", "create", n, "k=v")
    d.ctr("namespaces", "rm", "v2")
    online = json.loads(engine(d, "journal", "verify", "--format", "json").stdout)
    assert d.stop() == 0
    off = engine(d, "journal", "verify", "--root", str(d.root), "--format", "json", env={"ENGINE_HOST": "unix:///nope"})
    report = json.loads(off.stdout)
    assert report["ok"] is True
    assert report["last_seq"] == online["last_seq"] + 1  # daemon.stopped came after
    assert "journal verified" in engine(d, "journal", "verify", "--root", str(d.root)).stdout

    def tampered(sql: str) -> subprocess.CompletedProcess:
        copy = tmp_path / f"root-{abs(hash(sql))}"
        shutil.copytree(d.root, copy)
        conn = sqlite3.connect(copy / "engine.db")
        conn.executescript("DROP TRIGGER IF EXISTS events_no_update; DROP TRIGGER IF EXISTS events_no_delete;" + sql)
        conn.close()
        return engine(d, "journal", "verify", "--root", str(copy), check=False)

    edited = tampered("UPDATE events SET actor = 'someone else' WHERE type = 'namespace.created';")
    assert edited.returncode == 1 and "journal verification FAILED" in edited.stdout
    assert "chain:" in edited.stdout
    gap = tampered("DELETE FROM events WHERE seq = 4;")
    assert gap.returncode == 1 and "chain:" in gap.stdout
    projection = tampered("UPDATE namespaces SET labels = '{\"k\":\"forged\"}' WHERE name = 'v1';")
    assert projection.returncode == 1 and "projection namespaces:" in projection.stdout
    assert "DIFFERS" in projection.stdout
    missing = engine(d, "journal", "verify", "--root", str(tmp_path / "empty"), check=False)
    assert missing.returncode == 1 and "no journal at" in missing.stderr


# ---- hosts and errors ----------------------------------------------------------------------------------


def test_host_flag_and_engine_host(shared_daemon) -> None:
    sock = shared_daemon.docker_host
    env = {k: v for k, v in os.environ.items() if k != "ENGINE_HOST"}
    # -H wins over a wrong ENGINE_HOST
    proc = subprocess.run([ENGINE, "-H", sock, "version", "--format", "json"], capture_output=True, text=True,
                          env={**env, "ENGINE_HOST": "unix:///nonexistent.sock"}, timeout=30)
    assert proc.returncode == 0, proc.stderr
    # ENGINE_HOST alone
    proc = subprocess.run([ENGINE, "info", "--format", "json"], capture_output=True, text=True,
                          env={**env, "ENGINE_HOST": sock}, timeout=30)
    assert proc.returncode == 0 and json.loads(proc.stdout)["DockerRootDir"] == str(shared_daemon.root)
    # --host long form
    proc = subprocess.run([ENGINE, "--host", sock, "journal", "tail", "-n", "1"], capture_output=True, text=True,
                          env=env, timeout=30)
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1


@pytest.mark.parametrize("host,needle", [
    ("unix:///nonexistent/engine.sock", "cannot connect to the engine daemon at unix:///nonexistent/engine.sock"),
    ("tcp://127.0.0.1:1", "cannot talk to the engine daemon at tcp://127.0.0.1:1"),
    ("ssh://somewhere", "invalid host"),
])
@pytest.mark.parametrize("cmd", [["info"], ["version"], ["journal", "tail"], ["journal", "verify"], ["events"]])
def test_unreachable_daemon_is_a_clear_error(host: str, needle: str, cmd: list[str]) -> None:
    proc = subprocess.run([ENGINE, "-H", host, *cmd], capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], proc.stderr


@pytest.mark.parametrize("args,needle", [
    (["events", "--filter", "foo=bar"], "invalid filter 'foo=bar'"),
    (["events", "--filter", "type"], "invalid filter 'type'"),
    (["events", "--since", "not-a-time"], "invalid value for since"),
    (["journal", "tail", "--since", "yesterday-ish"], "invalid value for since"),
    (["journal", "tail", "--until", "nope"], "invalid value for until"),
    (["journal", "tail", "--from-seq", "-1"], "from_seq must not be negative"),
    (["journal", "tail", "--from-seq", "abc"], "--from-seq"),
    (["journal", "tail", "-n", "many"], "-n"),
    (["journal", "tail", "--no-such-flag"], "--no-such-flag"),
    (["nosuchcommand"], "nosuchcommand"),
    (["events", "--format"], "--format"),
])
def test_bad_flags_and_filters_are_one_line_and_exit_1(shared_daemon, args: list[str], needle: str) -> None:
    proc = engine(shared_daemon, *args, check=False)
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert needle in lines[0], lines[0]
    assert proc.stdout == ""


def test_tail_follow_prints_the_last_match_then_live_ones(shared_daemon, history) -> None:
    d = shared_daemon
    before = listeners(d)
    proc = subprocess.Popen([ENGINE, "journal", "tail", "-n", "1", "-f", "--type", "namespace.created", "--format",
                             "json"], env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True)
    reader.start()
    try:
        last = json.loads(lines.get(timeout=10))
        assert last["type"] == "namespace.created"
        wait_for(lambda: listeners(d) > before, what="the follower to go live")
        ctr_pid(d, "namespaces", "create", "tail-follow")
        ctr_pid(d, "namespaces", "rm", "tail-follow")  # filtered out
        ctr_pid(d, "namespaces", "create", "tail-follow-2")
        got = [json.loads(lines.get(timeout=10)) for _ in range(2)]
        assert [(e["type"], e["subject"]) for e in got] == [("namespace.created", "tail-follow"),
                                                           ("namespace.created", "tail-follow-2")]
        assert got[0]["seq"] > last["seq"]
    finally:
        proc.terminate()
        proc.wait(10)
        reader.join(5)
        proc.stdout.close()
        proc.stderr.close()


def test_events_with_a_future_until_exits_at_until(shared_daemon) -> None:
    d = shared_daemon
    before = listeners(d)
    t0 = time.time()
    proc = subprocess.Popen([ENGINE, "events", "--since", f"{t0:.6f}", "--until", f"{t0 + 1.5:.6f}", "--format",
                             "json"], env=d.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: listeners(d) > before, what="engine events to subscribe")
    ctr_pid(d, "namespaces", "create", "until-window")
    out, err = proc.communicate(timeout=15)
    took = time.time() - t0
    assert proc.returncode == 0, err
    assert 1.4 <= took < 5, took
    assert [e["subject"] for e in jlines(out)] == ["until-window"]


@pytest.mark.parametrize("how", ["SIGTERM", "SIGKILL"])
def test_events_reports_a_daemon_that_goes_away(engine_daemon, how: str) -> None:
    d = engine_daemon
    proc = subprocess.Popen([ENGINE, "events", "--format", "json"], env=d.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: listeners(d) == 1, what="engine events to subscribe")
        ctr_pid(d, "namespaces", "create", "before-the-end")
        if how == "SIGKILL":
            d.kill()
        else:
            assert d.stop() == 0
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert [e["subject"] for e in jlines(out) if e["type"] == "namespace.created"] == ["before-the-end"]
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "lost the connection to the engine daemon" in lines[0], err
