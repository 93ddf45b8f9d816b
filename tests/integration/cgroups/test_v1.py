"""The v1 manager on the real kernel: files read back, real processes, freeze, kill, OOM."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.errors import EngineError, FailedPrecondition, InvalidArgument
from engine.runtime.cgroups import DEFAULT_ALLOWED_DEVICES, detect, layout, open_manager

pytestmark = pytest.mark.skipif(detect() != "v1", reason="host has no cgroup v1 controllers")

UNLIMITED = 9223372036854771712


def read(m, ctrl, name):
    with open(os.path.join(m.paths()[ctrl], name)) as f:
        return f.read().strip()


def proc_cgroups(pid):
    return layout.parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_detect_reports_v1_for_this_layout():
    root_fs = [ln for ln in Path("/proc/self/mountinfo").read_text().splitlines() if " /sys/fs/cgroup " in ln]
    assert root_fs and " - tmpfs " in root_fs[0]
    assert detect() == "v1"


def test_create_in_every_hierarchy_and_destroy(parent):
    m = open_manager(parent + "/c")
    assert not m.exists()
    m.create()
    m.create()  # idempotent
    assert m.exists()
    for name, d in m.paths().items():
        assert os.path.isdir(d), name
    assert "name=systemd" in m.paths()
    assert read(m, "cpuset", "cpuset.cpus") and read(m, "cpuset", "cpuset.mems")
    m.destroy()
    assert not m.exists()
    assert not any(os.path.exists(d) for d in m.paths().values())
    m.destroy()  # nothing left: no error


def test_set_reads_back(parent, unified_subtree):
    m = open_manager(parent + "/c")
    m.create()
    warnings = m.set(
        {
            "memory": {"limit": 64 << 20, "swap": 128 << 20, "reservation": 32 << 20, "swappiness": 10},
            "cpu": {"shares": 512, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"},
            "pids": {"limit": 40},
            "blockIO": {"weight": 300},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}],
            "devices": [{"allow": False, "access": "rwm"}, *DEFAULT_ALLOWED_DEVICES],
        }
    )
    assert read(m, "memory", "memory.limit_in_bytes") == str(64 << 20)
    assert read(m, "memory", "memory.memsw.limit_in_bytes") == str(128 << 20)
    assert read(m, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert read(m, "memory", "memory.swappiness") == "10"
    assert read(m, "cpu", "cpu.shares") == "512"
    assert read(m, "cpu", "cpu.cfs_quota_us") == "50000"
    assert read(m, "cpu", "cpu.cfs_period_us") == "200000"
    assert read(m, "cpuset", "cpuset.cpus") == "0"
    assert read(m, "pids", "pids.max") == "40"
    weight_file = (
        "blkio.weight"
        if os.path.exists(os.path.join(m.paths()["blkio"], "blkio.weight"))
        else "blkio.bfq.weight"
    )
    assert read(m, "blkio", weight_file).split()[-1] == "300"
    assert sorted(read(m, "devices", "devices.list").splitlines()) == sorted(
        [
            "c *:* m",
            "b *:* m",
            "c 1:3 rwm",
            "c 1:8 rwm",
            "c 1:7 rwm",
            "c 5:0 rwm",
            "c 1:5 rwm",
            "c 1:9 rwm",
            "c 136:* rwm",
            "c 5:2 rwm",
            "c 10:200 rwm",
        ]
    )
    # hugetlb lives in the cgroup2 tree on this hybrid host
    assert read(m, "", "hugetlb.2MB.max") == str(4 << 20)
    assert m.stats()["hugetlb"]["2MB"] == {"failcnt": 0}
    assert warnings == []
    # a second set changes only what it names and the devices transition is minimal
    m.set({"memory": {"limit": 256 << 20, "swap": -1}, "devices": [{"allow": True, "access": "rwm"}]})
    assert read(m, "memory", "memory.limit_in_bytes") == str(256 << 20)
    assert int(read(m, "memory", "memory.memsw.limit_in_bytes")) == UNLIMITED
    assert read(m, "cpu", "cpu.shares") == "512"
    assert read(m, "devices", "devices.list") == "a *:* rwm"
    m.set({"pids": {"limit": -1}, "cpu": {"quota": -1}})
    assert read(m, "pids", "pids.max") == "max"
    assert read(m, "cpu", "cpu.cfs_quota_us") == "-1"


def test_kernel_refusal_rolls_back_earlier_writes(parent):
    m = open_manager(parent + "/c")
    m.create()
    # memory is written before cpu; the new parent has no realtime budget, so the kernel refuses
    with pytest.raises(InvalidArgument, match="realtime runtime also needs budget.*rolled back"):
        m.set({"memory": {"limit": 64 << 20}, "cpu": {"shares": 256, "realtimeRuntime": 10000}})
    assert int(read(m, "memory", "memory.limit_in_bytes")) == UNLIMITED
    assert read(m, "cpu", "cpu.shares") == "1024"
    with pytest.raises(InvalidArgument, match="cpuset.cpus"):
        m.set({"cpu": {"cpus": "64"}})  # no such CPU
    assert read(m, "cpuset", "cpuset.cpus") == read(m, "cpuset", "../cpuset.cpus")


def test_bad_input_changes_nothing(parent):
    m = open_manager(parent + "/c")
    m.create()
    with pytest.raises(InvalidArgument, match="the minimum allowed cpu-shares is 2"):
        m.set({"memory": {"limit": 64 << 20}, "cpu": {"shares": 1}})
    assert int(read(m, "memory", "memory.limit_in_bytes")) == UNLIMITED


def test_add_process_pids_recursive_and_stats(parent, spawn):
    m = open_manager(parent + "/c")
    sub = open_manager(parent + "/c/sub")
    m.create()
    sub.create()
    m.set({"pids": {"limit": 20}, "memory": {"limit": 128 << 20}})
    busy = spawn(["sh", "-c", "while :; do :; done"])
    sleeper = spawn(["sleep", "1000"])
    m.add(busy.pid)
    sub.add(sleeper.pid)
    for key, path in proc_cgroups(busy.pid).items():
        if key in m.paths():
            assert path == parent + "/c", key
    assert proc_cgroups(sleeper.pid)["memory"] == parent + "/c/sub"
    assert sorted(m.pids()) == sorted([busy.pid, sleeper.pid])
    assert sub.pids() == [sleeper.pid]
    time.sleep(0.3)
    st = m.stats()
    assert st["cpu"]["usage"]["total"] > 50_000_000  # the busy loop ran >= 50 ms
    assert len(st["cpu"]["usage"]["percpu"]) == os.cpu_count()
    assert st["pids"] == {"current": 2, "limit": 20}
    assert st["memory"]["usage"]["limit"] == 128 << 20
    assert st["memory"]["usage"]["usage"] > 0
    assert "total_rss" in st["memory"]["raw"]
    assert st["cpuset"]["cpus"] == list(range(os.cpu_count()))
    assert st["intel_rdt"] == {} and st["network_interfaces"] is None


def test_freeze_thaw_stops_and_resumes_a_real_process(parent, spawn):
    m = open_manager(parent + "/c")
    m.create()
    busy = spawn(["sh", "-c", "while :; do :; done"])
    m.add(busy.pid)
    time.sleep(0.1)
    assert not m.is_frozen()
    m.freeze()
    assert m.is_frozen()
    assert read(m, "freezer", "freezer.state") == "FROZEN"
    t0 = cpu_ticks(busy.pid)
    time.sleep(0.3)
    assert cpu_ticks(busy.pid) == t0, "a frozen process kept running"
    m.thaw()
    assert not m.is_frozen()
    time.sleep(0.3)
    assert cpu_ticks(busy.pid) > t0


def test_kill_all_reaches_every_process_even_forking_ones(parent, spawn, subreaper):
    m = open_manager(parent + "/c")
    m.create()
    # a shell that keeps forking children: freeze-signal-thaw must still catch them all
    forker = spawn(["sh", "-c", "read x; while :; do sleep 1000 & sleep 0.01; done"], stdin=subprocess.PIPE)
    m.add(forker.pid)  # before it forks anything
    forker.stdin.write(b"go\n")
    forker.stdin.flush()
    time.sleep(0.3)
    m.freeze()  # so that no short-lived child exits by itself between listing and killing
    before = m.pids()
    assert len(before) > 3
    m.kill_all(signal.SIGKILL)
    assert m.wait_empty(5), m.pids()
    reaped = subreaper()
    assert set(before) <= set(reaped), "a process of the cgroup was not killed"
    assert forker.pid in reaped
    assert all(os.WIFSIGNALED(reaped[p]) and os.WTERMSIG(reaped[p]) == signal.SIGKILL for p in before)
    assert not m.is_frozen()
    m.destroy()
    assert not m.exists()


def test_kill_all_with_other_signal(parent, spawn):
    m = open_manager(parent + "/c")
    m.create()
    p = spawn(["sleep", "1000"])
    m.add(p.pid)
    m.kill_all(signal.SIGTERM)
    assert p.wait(timeout=5) == -signal.SIGTERM


def test_destroy_refuses_while_processes_live(parent, spawn):
    m = open_manager(parent + "/c")
    m.create()
    p = spawn(["sleep", "1000"])
    m.add(p.pid)
    with pytest.raises(
        FailedPrecondition, match=rf"1 process\(es\) still in it \(pids {p.pid}\); kill them first"
    ):
        m.destroy()
    assert m.exists()
    p.kill()
    p.wait()
    m.destroy()
    assert not m.exists()


def test_memory_limit_below_usage_is_refused_and_says_why(parent, spawn):
    m = open_manager(parent + "/c")
    m.create()
    hog = spawn(
        [
            sys.executable,
            "-c",
            "import sys; sys.stdin.readline(); b = b'x' * (40 << 20); "
            "print('ok', flush=True); sys.stdin.readline()",
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE,
    )
    m.add(hog.pid)
    hog.stdin.write(b"go\n")
    hog.stdin.flush()
    assert hog.stdout.readline().strip() == b"ok"
    with pytest.raises(FailedPrecondition, match="rejecting memory limit 4096 <= usage"):
        m.set({"memory": {"limit": 4096, "checkBeforeUpdate": True}})
    # without the check the kernel refuses (anonymous memory, no swap to reclaim into)
    if not Path("/proc/swaps").read_text().strip().count("\n"):
        with pytest.raises(
            FailedPrecondition, match=r"unable to set memory limit to 8388608 \(current usage: \d+"
        ):
            m.set({"memory": {"limit": 8 << 20}})
        assert int(read(m, "memory", "memory.limit_in_bytes")) == UNLIMITED


def test_oom_is_counted_and_signalled(parent, spawn):
    m = open_manager(parent + "/c")
    m.create()
    m.set({"memory": {"limit": 48 << 20, "swap": 48 << 20}})
    assert m.oom_kill_count() == 0
    efd = m.oom_event_fd()
    try:
        # start paused, join the cgroup, then allocate far more than the limit
        hog = spawn(
            [sys.executable, "-c", "import sys; sys.stdin.readline(); b = b'x' * (400 << 20)"],
            stdin=subprocess.PIPE,
        )
        m.add(hog.pid)
        hog.stdin.write(b"go\n")
        hog.stdin.flush()
        assert hog.wait(timeout=30) == -signal.SIGKILL
        ready, _, _ = select.select([efd], [], [], 10)
        assert ready == [efd], "the oom eventfd did not become readable"
        assert int.from_bytes(os.read(efd, 8), "little") >= 1
        assert m.oom_kill_count() >= 1
    finally:
        os.close(efd)


def test_missing_cgroup_errors_are_clear(parent):
    m = open_manager(parent + "/never-created")
    assert not m.exists()
    assert m.pids() == []
    with pytest.raises(EngineError, match="does not exist"):
        m.set({"pids": {"limit": 3}})
