"""The lifecycle: create, start, state, kill, delete; exec, ps, list, pause/resume, update."""

from __future__ import annotations

import json
import time

import pytest


def proc_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_create_start_kill_delete(rt):
    b = rt.bundle(["sh", "-c", "echo started; exec sleep 60"])
    b.create().ok()
    st = b.state()
    assert st["id"] == b.id
    assert st["status"] == "created"
    assert st["bundle"] == str(b.path)
    assert st["ociVersion"]
    pid = st["pid"]
    assert pid > 0 and proc_alive(pid)
    time.sleep(0.1)
    assert b.output() == ""  # the user process has not run yet

    b.start().ok()
    assert b.state()["status"] == "running"
    assert b.wait_output("started") == "started\n"
    assert b.state()["pid"] == pid

    b.kill("KILL").ok()
    b.wait_status("stopped")
    assert not proc_alive(pid)

    b.delete().ok()
    r = rt("state", b.id)
    assert r.returncode == 1
    assert rt.leftovers(b.id, b) == []


def test_state_stopped_after_the_process_exits(rt):
    b = rt.bundle(["true"])
    b.create().ok()
    b.start().ok()
    b.wait_status("stopped")
    b.delete().ok()
    assert rt.leftovers(b.id, b) == []


@pytest.mark.parametrize("sig", ["TERM", "SIGTERM", "15"])
def test_kill_signal_spellings(rt, sig):
    b = rt.bundle(
        ["sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done"]
    )
    b.create().ok()
    b.start().ok()
    b.wait_output("ready")
    b.kill(sig).ok()
    b.wait_status("stopped")
    assert "got-term" in b.output()


def test_start_twice_fails(rt):
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    b.start().ok()
    r = b.start()
    assert r.returncode == 1
    assert b.status() == "running"


def test_run_detached(rt):
    b = rt.bundle(["sleep", "60"])
    b.write()
    with open(b.path / "out", "w") as out:
        r = rt("run", "--detach", "--bundle", str(b.path), b.id, stdout=out, stderr=out)
    if r.returncode != 0:
        rt.skip_if_hybrid_refusal((b.path / "out").read_text())
    assert r.returncode == 0, (b.path / "out").read_text()
    assert b.status() == "running"
    b.delete("--force").ok()
    assert rt.leftovers(b.id, b) == []


def test_pid_file(rt):
    b = rt.bundle(["sleep", "60"])
    pid_file = rt.workdir / "pid"
    b.create("--pid-file", str(pid_file)).ok()
    assert int(pid_file.read_text()) == b.state()["pid"]


def test_exec_in_a_running_container(rt):
    b = rt.bundle(["sleep", "60"])
    b.spec["hostname"] = "exec-host"
    b.create().ok()
    b.start().ok()
    r = b.exec("sh", "-c", "hostname; echo $PATH; id -u")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "exec-host"
    assert lines[1].startswith("/usr/local/sbin")
    assert lines[2] == "0"
    assert b.exec("sh", "-c", "exit 5").returncode == 5
    r = rt(
        "exec",
        "--env",
        "FOO=bar",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        b.id,
        "sh",
        "-c",
        "echo $FOO $(pwd) $(id -u)",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "bar /tmp 1000\n"


def test_exec_with_a_process_json(rt):
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    b.start().ok()
    process = dict(
        b.process, args=["sh", "-c", "echo from-json $X"], env=b.process["env"] + ["X=1"], terminal=False
    )
    path = rt.workdir / "process.json"
    path.write_text(json.dumps(process))
    r = rt("exec", "--process", str(path), b.id)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "from-json 1\n"


def test_exec_into_a_stopped_container_fails(rt):
    b = rt.bundle(["true"])
    b.create().ok()
    b.start().ok()
    b.wait_status("stopped")
    r = b.exec("true")
    assert r.returncode != 0
    assert r.stderr.strip()


def test_ps(rt):
    b = rt.bundle(["sh", "-c", "sleep 60 & echo ready; wait"])
    b.create().ok()
    b.start().ok()
    b.wait_output("ready")
    pid = b.state()["pid"]
    r = rt("ps", "--format", "json", b.id)
    assert r.returncode == 0, r.stderr
    pids = r.json()
    assert pid in pids and len(pids) == 2
    r = rt("ps", b.id)
    assert r.returncode == 0, r.stderr
    assert "PID" in r.stdout.splitlines()[0]
    assert str(pid) in r.stdout


def test_list(rt):
    a = rt.bundle(["sleep", "60"])
    a.create().ok()
    c = rt.bundle(["sleep", "60"])
    c.create().ok()
    c.start().ok()
    r = rt("list", "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = {row["id"]: row for row in r.json()}
    assert set(rows) == {a.id, c.id}
    assert rows[a.id]["status"] == "created"
    assert rows[c.id]["status"] == "running"
    assert rows[c.id]["pid"] == c.state()["pid"]
    assert rows[c.id]["bundle"] == str(c.path)
    r = rt("list")
    assert r.returncode == 0
    assert "ID" in r.stdout.splitlines()[0] and a.id in r.stdout


def test_list_empty(rt):
    r = rt("list", "--format", "json")
    assert r.returncode == 0, r.stderr
    assert r.json() in (None, [])  # runc prints null, crun []


def test_pause_and_resume(rt):
    b = rt.bundle(["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /dev/shm/n; sleep 0.02; done"])
    b.create().ok()
    b.start().ok()
    rt("pause", b.id).ok()
    assert b.status() == "paused"
    with open(f"/sys/fs/cgroup/freezer/{rt.cgroup_parent}/{b.id}/freezer.state") as f:
        assert f.read().strip() == "FROZEN"
    pid = b.state()["pid"]
    with open(f"/proc/{pid}/stat") as f:
        utime_before = f.read()
    time.sleep(0.2)
    with open(f"/proc/{pid}/stat") as f:
        assert f.read() == utime_before  # nothing ran while frozen
    rt("resume", b.id).ok()
    assert b.status() == "running"
    with open(f"/sys/fs/cgroup/freezer/{rt.cgroup_parent}/{b.id}/freezer.state") as f:
        assert f.read().strip() == "THAWED"


def test_delete_force_of_a_paused_container(rt):
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    b.start().ok()
    rt("pause", b.id).ok()
    b.delete("--force").ok()
    assert rt.leftovers(b.id, b) == []


def test_update_pids_and_memory(rt):
    b = rt.bundle(["sleep", "60"])
    b.linux["resources"].update({"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 50}})
    b.create().ok()
    b.start().ok()
    base = f"{rt.cgroup_parent}/{b.id}"
    rt("update", "--pids-limit", "20", "--memory", "128M", b.id).ok()
    with open(f"/sys/fs/cgroup/pids/{base}/pids.max") as f:
        assert f.read().strip() == "20"
    with open(f"/sys/fs/cgroup/memory/{base}/memory.limit_in_bytes") as f:
        assert f.read().strip() == str(128 * 1024 * 1024)
    resources = rt.workdir / "resources.json"
    resources.write_text(json.dumps({"pids": {"limit": 33}}))
    rt("update", "--resources", str(resources), b.id).ok()
    with open(f"/sys/fs/cgroup/pids/{base}/pids.max") as f:
        assert f.read().strip() == "33"


def test_no_runtime_process_stays_behind(rt):
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    b.start().ok()
    pid = b.state()["pid"]
    assert proc_alive(pid)
    # only the container's own process carries its marker; no runtime helper lingers
    assert rt.marked_pids(b.id) == [pid]
