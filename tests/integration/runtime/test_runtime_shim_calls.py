"""The calls containerd's runc shim makes (through go-runc), with the flags it passes.

go-runc drives a runtime with: global ``--root --log <file> --log-format json``;
``create --bundle B --pid-file P [--console-socket S] [--no-pivot] [--no-new-keyring]
[--preserve-fds N]``; ``exec --process F --detach --pid-file P``; ``kill [--all] <signum>``;
``update --resources - <id>`` (JSON on stdin); ``events --stats``; ``ps --format json``;
``delete [--force]``; and it parses ``--version``.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

from tests.support.ociruntime import reap, subreaper


def test_version_output_parses_like_go_runc(rt):
    r = rt("--version")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert re.fullmatch(r"\S+ version \S+", lines[0]), lines[0]
    assert any(re.fullmatch(r"commit: \S+", line) for line in lines), r.stdout
    assert any(re.fullmatch(r"spec: \d+\.\d+\.\d+\S*", line) for line in lines), r.stdout


def test_json_log_file_gets_the_error(rt):
    log = rt.workdir / "log.json"
    r = rt("state", rt.new_id("nope"), global_args=("--log", str(log), "--log-format", "json"))
    assert r.returncode == 1
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    assert entries, "nothing in the log file"
    assert entries[-1]["level"] == "error"
    assert entries[-1]["msg"]


def test_create_with_shim_flags_and_preserved_fd(rt):
    extra = rt.workdir / "extra"
    extra.write_text("through fd 3\n")
    b = rt.bundle(["sh", "-c", "cat <&3; echo ok"])
    b.write()
    pid_file = rt.workdir / "init.pid"
    log = rt.workdir / "log.json"
    args = [rt.path, "--root", str(rt.root), "--log", str(log), "--log-format", "json", "create", "--bundle"]
    args += [str(b.path), "--pid-file", str(pid_file), "--no-new-keyring", "--preserve-fds", "1", b.id]
    # fd 3 of the runtime is the file; --preserve-fds 1 hands it on to the container
    with open(b.path / "out", "w") as out, open(b.path / "err", "w") as err:
        proc = subprocess.run(
            ["sh", "-c", 'exec 3<"$0"; exec "$@"', str(extra), *args],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            timeout=20,
        )
    if proc.returncode != 0:
        rt.skip_if_hybrid_refusal((b.path / "err").read_text() + (log.read_text() if log.exists() else ""))
    assert proc.returncode == 0, (b.path / "err").read_text()
    assert int(pid_file.read_text()) == b.state()["pid"]
    b.start().ok()
    assert b.wait_output("ok") == "through fd 3\nok\n"


def test_exec_detached_with_pid_file(rt):
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    b.start().ok()
    init = b.state()["pid"]
    process = dict(b.process, args=["sleep", "60"], terminal=False)
    spec_file = rt.workdir / "process.json"
    spec_file.write_text(json.dumps(process))
    pid_file = rt.workdir / "exec.pid"
    with subreaper(), open(rt.workdir / "exec.out", "w") as out:
        r = rt(
            "exec",
            "--process",
            str(spec_file),
            "--detach",
            "--pid-file",
            str(pid_file),
            b.id,
            stdout=out,
            stderr=out,
        )
    assert r.returncode == 0, (rt.workdir / "exec.out").read_text()
    pid = int(pid_file.read_text())
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        assert os.readlink(f"/proc/{pid}/ns/{ns}") == os.readlink(f"/proc/{init}/ns/{ns}"), ns
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        assert f.read().split(b"\0")[:2] == [b"sleep", b"60"]
    r = rt("ps", "--format", "json", b.id)
    assert sorted(r.ok().json()) == sorted([init, pid])
    reap(pid, kill=True)  # adopted by the test (as by a shim): stop and reap it


def test_kill_all_with_a_signal_number(rt):
    b = rt.bundle(["sh", "-c", "sleep 60 & sleep 60 & echo ready; wait"])
    b.create().ok()
    b.start().ok()
    b.wait_output("ready")
    pids = rt("ps", "--format", "json", b.id).ok().json()
    assert len(pids) == 3
    rt("kill", "--all", b.id, "9").ok()
    b.wait_status("stopped")
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [p for p in pids if alive(p)] == []


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_update_resources_from_stdin(rt):
    b = rt.bundle(["sleep", "60"])
    b.linux["resources"]["pids"] = {"limit": 50}
    b.create().ok()
    b.start().ok()
    resources = {"pids": {"limit": 42}, "memory": {"limit": 96 * 1024 * 1024}}
    rt("update", "--resources", "-", b.id, input=json.dumps(resources)).ok()
    base = f"{rt.cgroup_parent}/{b.id}"
    with open(f"/sys/fs/cgroup/pids/{base}/pids.max") as f:
        assert f.read().strip() == "42"
    with open(f"/sys/fs/cgroup/memory/{base}/memory.limit_in_bytes") as f:
        assert f.read().strip() == str(96 * 1024 * 1024)


def test_events_stats(rt):
    b = rt.bundle(["sh", "-c", "sleep 60 & echo ready; wait"])
    b.create().ok()
    b.start().ok()
    b.wait_output("ready")
    r = rt("events", "--stats", b.id)
    assert r.returncode == 0, r.stderr
    event = json.loads(r.stdout.splitlines()[0])
    assert event["type"] == "stats"
    assert event["id"] == b.id
    data = event["data"]
    assert data["pids"]["current"] == 2
    assert data["memory"]["usage"]["usage"] > 0
    assert data["cpu"]["usage"]["total"] > 0
