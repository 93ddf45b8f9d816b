"""The v2 manager on a real cgroup2 tree.

On a pure v2 host that is /sys/fs/cgroup. On this hybrid host every v1 controller is
bound to v1, so the cgroup2 tree at /sys/fs/cgroup/unified has only hugetlb; a private
cgroup2 mount would not help (controllers cannot be in two hierarchies). What the
tree does have are the core files (cgroup.procs, cgroup.freeze, cgroup.kill,
cgroup.events, cgroup.subtree_control), so creation, processes, freezing, killing,
hugetlb limits and raw unified keys are tested for real here; memory/cpu/pids/io
writes run for real only where those controllers exist, and otherwise the test
checks the refusal. Their file formats are pinned by tests/unit/cgroups.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from engine.errors import FailedPrecondition, InvalidArgument
from engine.runtime.cgroups import detect, layout, notify, open_manager


def _root() -> str | None:
    if detect() == "v2":
        return layout.CGROUP_ROOT
    m = layout.hybrid_unified()
    return m.mountpoint if m is not None else None


ROOT = _root()
pytestmark = pytest.mark.skipif(ROOT is None, reason="no cgroup2 tree mounted on this host")


def v2(path):
    return open_manager(path, version="v2", root=ROOT)


def read(m, name):
    with open(os.path.join(m.paths()[""], name)) as f:
        return f.read().strip()


def cpu_ticks(pid):
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def paused(spawn, script, **kw):
    """A shell that waits for a line on stdin before running ``script`` (so it can join first)."""
    return spawn(["sh", "-c", "read x; " + script], stdin=subprocess.PIPE, **kw)


def go(p):
    p.stdin.write(b"go\n")
    p.stdin.flush()


def test_create_enables_controllers_in_parents_and_destroy(parent, unified_subtree):
    m = v2(parent + "/c")
    m.create()
    assert m.exists()
    root_available = set(Path(os.path.join(ROOT, "cgroup.controllers")).read_text().split())
    parent_dir = ROOT + parent
    assert set(Path(os.path.join(parent_dir, "cgroup.subtree_control")).read_text().split()) == root_available
    assert m.controllers() == root_available
    m.destroy()
    assert not m.exists()
    m.destroy()


def test_processes_recursive_and_proc_cgroup(parent, spawn):
    m = v2(parent + "/c")
    leaf = v2(parent + "/c/leaf")
    sub = v2(parent + "/c/sub")
    m.create()
    leaf.create()
    sub.create()
    a = spawn(["sleep", "1000"])
    b = spawn(["sleep", "1000"])
    leaf.add(a.pid)
    sub.add(b.pid)
    assert layout.parse_proc_cgroup(Path(f"/proc/{a.pid}/cgroup").read_text())[""] == parent + "/c/leaf"
    assert sorted(m.pids()) == sorted([a.pid, b.pid])
    assert sub.pids() == [b.pid]
    assert leaf.stats()["pids"]["current"] == 1
    if m.controllers():
        # "no internal processes": c now delegates controllers to its children
        with pytest.raises(FailedPrecondition, match="no internal processes"):
            m.add(a.pid)


def test_freeze_thaw_real_process(parent, spawn):
    m = v2(parent + "/c")
    m.create()
    busy = spawn(["sh", "-c", "while :; do :; done"])
    m.add(busy.pid)
    assert not m.is_frozen()
    m.freeze()
    assert m.is_frozen()
    assert "frozen 1" in read(m, "cgroup.events")
    t0 = cpu_ticks(busy.pid)
    time.sleep(0.3)
    assert cpu_ticks(busy.pid) == t0
    m.thaw()
    assert not m.is_frozen()
    time.sleep(0.3)
    assert cpu_ticks(busy.pid) > t0


def test_kill_all_uses_cgroup_kill_on_a_forking_tree(parent, spawn, subreaper):
    m = v2(parent + "/c")
    m.create()
    assert os.path.exists(os.path.join(m.paths()[""], "cgroup.kill"))
    forker = paused(spawn, "while :; do sleep 1000 & sleep 0.01; done")
    m.add(forker.pid)
    go(forker)
    time.sleep(0.3)
    m.freeze()  # so that no short-lived child exits by itself between listing and killing
    before = m.pids()
    assert len(before) > 3
    m.kill_all(signal.SIGKILL)
    assert m.wait_empty(5)
    reaped = subreaper()
    assert set(before) <= set(reaped)
    assert all(os.WIFSIGNALED(reaped[p]) and os.WTERMSIG(reaped[p]) == signal.SIGKILL for p in before)
    m.thaw()
    m.destroy()


def test_kill_all_other_signal_freezes_signals_thaws(parent, spawn):
    m = v2(parent + "/c")
    m.create()
    p = spawn(["sleep", "1000"])
    m.add(p.pid)
    m.kill_all(signal.SIGTERM)
    assert p.wait(timeout=5) == -signal.SIGTERM
    assert not m.is_frozen()


def test_hugetlb_and_raw_unified_keys(parent, unified_subtree):
    m = v2(parent + "/c")
    m.create()
    if "hugetlb" not in m.controllers():
        with pytest.raises(FailedPrecondition, match="hugetlb controller is not enabled"):
            m.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 2 << 20}]})
        return
    assert m.set({"hugepageLimits": [{"pageSize": "2MB", "limit": 6 << 20}]}) == []
    assert read(m, "hugetlb.2MB.max") == str(6 << 20)
    if os.path.exists(os.path.join(m.paths()[""], "hugetlb.2MB.rsvd.max")):
        assert read(m, "hugetlb.2MB.rsvd.max") == str(6 << 20)
    m.set({"unified": {"hugetlb.2MB.max": "max"}})
    assert read(m, "hugetlb.2MB.max") == "max"
    st = m.stats()
    assert st["hugetlb"]["2MB"] == {"failcnt": 0}  # nothing used, so usage is omitted
    with pytest.raises(InvalidArgument, match="controller 'rdma' not available"):
        m.set({"unified": {"rdma.max": "mlx4_0 hca_handle=2"}})
    with pytest.raises(InvalidArgument, match="the kernel rejected the value"):
        m.set({"unified": {"hugetlb.2MB.max": "lots"}})
    assert read(m, "hugetlb.2MB.max") == "max"


def test_resource_controllers_apply_or_refuse_clearly(parent):
    m = v2(parent + "/c")
    m.create()
    have = m.controllers()
    res = {
        "memory": {"limit": 64 << 20, "swap": 96 << 20},
        "cpu": {"shares": 512, "quota": 20000},
        "pids": {"limit": 7},
    }
    if {"memory", "cpu", "pids"} <= have:
        m.set(res)
        assert read(m, "memory.max") == str(64 << 20)
        if os.path.exists(os.path.join(m.paths()[""], "memory.swap.max")):
            assert read(m, "memory.swap.max") == str(32 << 20)
        assert read(m, "cpu.weight") == "59"
        assert read(m, "cpu.max") == "20000 100000"
        assert read(m, "pids.max") == "7"
    else:
        with pytest.raises(FailedPrecondition, match="controller is not enabled for"):
            m.set(res)


def _try_devices(m, spawn) -> str:
    p = paused(
        spawn,
        "head -c1 /dev/zero >/dev/null 2>&1; echo zero=$?; : >/dev/null; echo null=$?",
        stdout=subprocess.PIPE,
    )
    m.add(p.pid)
    out, _ = p.communicate(b"go\n", timeout=10)
    return out


def test_device_rules_are_enforced_with_a_bpf_filter(parent, spawn):
    from engine.runtime.cgroups.v2 import bpf

    m = v2(parent + "/c")
    m.create()
    only_null = [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
    ]
    assert m.set({"devices": only_null}) == []
    assert _try_devices(m, spawn) == b"zero=1\nnull=0\n"
    fd = os.open(m.paths()[""], os.O_RDONLY | os.O_DIRECTORY)
    try:
        first = bpf.attached_ids(fd)
        assert len(first) == 1
        # an update replaces the program (never two, never none in between)
        m.set({"devices": [*only_null, {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "r"}]})
        second = bpf.attached_ids(fd)
        assert len(second) == 1 and second != first
        assert _try_devices(m, spawn) == b"zero=0\nnull=0\n"
        m.set({"devices": [{"allow": True, "access": "rwm"}]})
        assert bpf.attached_ids(fd) == []
    finally:
        os.close(fd)


def test_inotify_watch_on_cgroup_events_fires(parent, spawn):
    """The mechanism behind oom_event_fd on v2: inotify IN_MODIFY on a cgroup2 events file."""
    m = v2(parent + "/c")
    m.create()
    p = spawn(["sleep", "1000"])
    m.add(p.pid)
    fd = notify.inotify_fd(os.path.join(m.paths()[""], "cgroup.events"))
    try:
        time.sleep(0.2)  # the kernel reports the "populated 1" change from add() asynchronously
        while select.select([fd], [], [], 0)[0]:
            os.read(fd, 4096)
        assert select.select([fd], [], [], 0.2)[0] == []
        p.kill()
        p.wait()
        assert select.select([fd], [], [], 5)[0] == [fd]
        assert len(os.read(fd, 4096)) >= 16  # one inotify_event record
    finally:
        os.close(fd)
    if "memory" not in m.controllers():
        with pytest.raises(FailedPrecondition, match="memory controller is not enabled"):
            m.oom_event_fd()
        with pytest.raises(FailedPrecondition):
            m.oom_kill_count()
