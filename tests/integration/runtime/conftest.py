"""Fixtures of the runtime conformance suite: every test runs once per runtime binary.

``rt`` is a ``tests.support.ociruntime.Runtime`` for runc, crun or engine-runtime with a
private state root and cgroup parent; it is cleaned up after the test whatever happened.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# tests/ is not a package on sys.path (pyproject sets no pythonpath): make tests.support importable
_REPO = str(Path(__file__).resolve().parents[3])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support.ociruntime import Runtime, mounts_under, runtime_paths  # noqa: E402

RUNTIMES = ["runc", "crun", "engine"]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration/runtime" in str(item.fspath):
            item.add_marker(pytest.mark.root)


@pytest.fixture(params=RUNTIMES)
def rt(request):
    if os.geteuid() != 0:
        pytest.skip("needs root: real namespaces, cgroups and mounts")
    name = request.param
    path = runtime_paths()[name]
    if not os.path.exists(path):
        pytest.fail(f"{name} runtime binary is missing at {path}")
    # not pytest's tmp_path: its parents are mode 0700, which a user-namespaced container
    # root (an unprivileged host uid) cannot traverse to reach its rootfs
    workdir = Path(tempfile.mkdtemp(prefix=f"ocirt-{name}-"))
    workdir.chmod(0o755)
    runtime = Runtime(name, path, workdir)
    try:
        yield runtime
    finally:
        problems = runtime.cleanup()
        left = mounts_under(workdir)
        # never rmtree through a mount: it would delete the mounted files
        assert not left, f"mounts left under {workdir}: {left}"
        shutil.rmtree(workdir, ignore_errors=True)
    # `delete --force` must leave nothing for the cleanup to do by hand
    assert not problems, f"{name}: delete --force left: {problems}"
