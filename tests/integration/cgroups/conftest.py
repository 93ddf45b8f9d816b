"""Fixtures for the cgroup integration tests (root, real kernel).

``parent`` is a unique cgroup path "/engine-test-<hex>" that no one else uses. Its
teardown does not trust the code under test: it walks every cgroup hierarchy mounted
on the host (v1 controllers, named hierarchies, cgroup2), thaws, SIGKILLs whatever is
left under the parent, and removes the directories bottom-up, failing the test if
anything stays behind. ``spawn`` starts processes that are killed and reaped at the
end whatever happened. ``unified_subtree`` (autouse, so it is torn down after
every other fixture) restores the cgroup2 root's subtree_control, where the managers
enable hugetlb on this hybrid host.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from engine.runtime.cgroups import detect, layout


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/cgroups" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(autouse=True)
def _need_root():
    if os.geteuid() != 0:
        pytest.skip("needs root: creates real cgroups")


def _hierarchy_dirs(path: str) -> list[str]:
    out = []
    seen = set()
    for m in layout.parse_mountinfo(Path("/proc/self/mountinfo").read_text()):
        if m.mountpoint in seen:
            continue
        seen.add(m.mountpoint)
        out.append(m.mountpoint + path)
    return out


def _pids_under(d: str) -> list[int]:
    pids = []
    for top, _dirs, files in os.walk(d):
        if "cgroup.procs" in files:
            with contextlib.suppress(OSError):
                pids += [int(x) for x in Path(os.path.join(top, "cgroup.procs")).read_text().split()]
    return pids


def _thaw(d: str) -> None:
    for top, _dirs, files in os.walk(d):
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            if name in files:
                try:
                    with open(os.path.join(top, name), "w") as f:
                        f.write(value)
                except OSError:
                    pass


def remove_everywhere(path: str) -> list[str]:
    """Kill and remove cgroup ``path`` in every hierarchy; return the dirs that remain."""
    dirs = [d for d in _hierarchy_dirs(path) if os.path.isdir(d)]
    for d in dirs:
        _thaw(d)
    for _ in range(100):
        pids = set()
        for d in dirs:
            pids.update(_pids_under(d))
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    left = []
    for d in dirs:
        for top, _subdirs, _files in sorted(os.walk(d), key=lambda t: -t[0].count("/")):
            for _ in range(50):
                try:
                    os.rmdir(top)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
        if os.path.isdir(d):
            left.append(d)
    return left


@pytest.fixture
def parent():
    path = f"/engine-test-{uuid.uuid4().hex[:12]}"
    yield path
    left = remove_everywhere(path)
    assert not left, f"cgroups left behind: {left}"


@pytest.fixture
def spawn():
    procs: list[subprocess.Popen] = []

    def start(args: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(args, **kw)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)


@pytest.fixture(autouse=True)
def unified_subtree():
    """Restore the cgroup2 root's subtree_control; one test at a time across xdist workers.

    The lock is a flock on the cgroup2 root directory itself (nothing to clean up), held
    for the whole test, so one worker's restore cannot race another worker's enable.
    """
    import fcntl

    root = layout.HYBRID_UNIFIED if detect() == "v1" else layout.CGROUP_ROOT
    ctl = os.path.join(root, "cgroup.subtree_control")
    if not os.path.exists(ctl):
        yield root
        return
    lock = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        before = set(Path(ctl).read_text().split())
        yield root
        for c in set(Path(ctl).read_text().split()) - before:
            try:
                with open(ctl, "w") as f:
                    f.write(f"-{c}")
            except OSError:
                pass  # still used by a cgroup someone else made: leave it on
    finally:
        os.close(lock)


@pytest.fixture
def subreaper():
    """Make this process the reaper of orphans for one test, and reap whatever it inherits.

    PID 1 on these machines reaps orphans late, and an unreaped zombie pins its v1
    cgroups (rmdir says EBUSY although cgroup.procs is empty). The engine's shim is a
    subreaper for the same reason; a test that kills a process tree does the same.
    Yields a function that reaps every child and returns {pid: wait status}.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    PR_SET_CHILD_SUBREAPER = 36
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0

    def reap_all(timeout: float = 5.0) -> dict[int, int]:
        got: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                time.sleep(0.01)
                continue
            got[pid] = status
        return got

    try:
        yield reap_all
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        reap_all(1.0)
