"""Fixtures for the runtime library's own integration tests (root, real kernel).

``core`` gives a private state root, a unique cgroup parent and a bundle factory built from
the shared busybox rootfs builder and default spec; after the test every container under
the root is force-deleted and the cgroup parent removed, whatever happened.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

_REPO = str(Path(__file__).resolve().parents[3])
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from tests.support.rootfs import build_busybox_rootfs  # noqa: E402
from tests.support.spec import default_spec  # noqa: E402


def pytest_collection_modifyitems(items):
    for item in items:
        if "runtime_core" in str(item.fspath):
            item.add_marker(pytest.mark.root)


class Core:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.root = str(workdir / "state")
        self.parent = f"engine-core-{uuid.uuid4().hex[:10]}"
        self._rootfs: Path | None = None

    def bundle(self, args: list[str], **changes) -> tuple[str, Path, dict]:
        cid = f"c-{uuid.uuid4().hex[:10]}"
        b = self.workdir / cid
        b.mkdir()
        build_busybox_rootfs(b / "rootfs")
        spec = default_spec(args)
        spec["linux"]["cgroupsPath"] = f"/{self.parent}/{cid}"
        for k, v in changes.items():
            spec[k] = v
        (b / "config.json").write_text(json.dumps(spec))
        return cid, b, spec

    def write(self, b: Path, spec: dict) -> None:
        (b / "config.json").write_text(json.dumps(spec))

    def cgroup_dirs(self, cid: str) -> list[str]:
        out = []
        for d in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", d, self.parent, cid)
            if os.path.isdir(p):
                out.append(p)
        return out

    def cleanup(self) -> None:
        from engine.runtime import state as st
        from engine.runtime.delete import delete

        for cid in st.list_ids(self.root):
            try:  # noqa: SIM105
                delete(self.root, cid, force=True)
            except Exception:  # keep cleaning
                pass
        for d in os.listdir("/sys/fs/cgroup"):
            p = os.path.join("/sys/fs/cgroup", d, self.parent)
            if os.path.isdir(p):
                for sub in sorted((os.path.join(r, x) for r, ds, _ in os.walk(p) for x in ds), reverse=True):
                    try:  # noqa: SIM105
                        os.rmdir(sub)
                    except OSError:
                        pass
                try:  # noqa: SIM105
                    os.rmdir(p)
                except OSError:
                    pass


@pytest.fixture
def core():
    if os.geteuid() != 0:
        pytest.skip("needs root: real namespaces, cgroups and mounts")
    workdir = Path(tempfile.mkdtemp(prefix="rtcore-"))
    workdir.chmod(0o755)
    c = Core(workdir)
    try:
        yield c
    finally:
        c.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
