"""TaskEnv: an in-process journal + containers + tasks service on private roots, closable and reopenable.

Reopening (``await env.reopen()``) closes the service and the journal and builds new ones on the same
roots, then starts recovery: a daemon restart without the process boundary. ``cleanup`` removes
everything a test made (shims, containers, cgroups, mounts, files) even when it failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from engine.config import Config
from engine.events.journal import Journal
from engine.events.verify import verify_path
from engine.services import all_projections
from engine.services.containers import OCI_SPEC_TYPE_URL, AnyBlob, Container, ContainerService, Runtime
from engine.services.tasks import TaskService
from tests.support.spec import default_spec

NS = "tasktest"
ACTOR = "test"


def pid_alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(str(path))]


class TaskEnv:
    def __init__(self, rootfs: Path, workdir: Path) -> None:
        self.rootfs = rootfs
        self.workdir = workdir
        self.cgroup_parent = f"engine-tasks-test-{uuid.uuid4().hex[:10]}"
        self.config = Config(root=str(workdir / "root"), exec_root=str(workdir / "run"),
                             cgroup_parent=self.cgroup_parent)
        self.journal: Journal | None = None
        self.containers: ContainerService | None = None
        self.tasks: TaskService | None = None
        self.runtime = ""  # an OCI runtime binary for the shims; "" = the in-process engine runtime

    async def open(self, *, recover: bool = False) -> TaskService:
        Path(self.config.root).mkdir(parents=True, exist_ok=True)
        self.journal = Journal(self.config.db_path, all_projections())
        await self.journal.open()
        self.containers = ContainerService(self.journal)
        self.tasks = TaskService(self.journal, self.containers, self.config, runtime=self.runtime)
        if recover:
            self.tasks.start_recovery()
        return self.tasks

    async def close(self) -> None:
        if self.tasks is not None:
            await self.tasks.close()
        if self.journal is not None:
            await self.journal.close()
        self.tasks = self.journal = self.containers = None

    async def reopen(self) -> TaskService:
        await self.close()
        return await self.open(recover=True)

    def spec(self, cid: str, args: list[str], rootfs: str | None = None, **kw) -> dict:
        spec = default_spec(args, rootfs=rootfs or str(self.rootfs), cgroups_path=f"/{self.cgroup_parent}/{cid}",
                            terminal=kw.pop("terminal", False))
        assert not kw, kw
        return spec

    async def container(self, args: list[str], cid: str = "", rootfs: str | None = None, **kw) -> str:
        cid = cid or f"t{uuid.uuid4().hex[:8]}"
        spec = self.spec(cid, args, rootfs, **kw)
        assert self.containers is not None
        await self.containers.create(NS, Container(id=cid, runtime=Runtime(name="io.containerd.runc.v2"),
                                                   spec=AnyBlob(OCI_SPEC_TYPE_URL, json.dumps(spec).encode())),
                                     actor=ACTOR)
        return cid

    async def run(self, args: list[str], cid: str = "", **create_kw) -> str:
        cid = await self.container(args, cid)
        assert self.tasks is not None
        await self.tasks.create(NS, cid, actor=ACTOR, **create_kw)
        await self.tasks.start(NS, cid, actor=ACTOR)
        return cid

    def verify(self) -> None:
        report = verify_path(str(self.config.db_path), all_projections())
        assert report.ok, report.to_dict()

    async def events(self, cid: str) -> list:
        assert self.journal is not None
        return [e async for e in self.journal.history(where="subject = ?", params=(cid,))]

    def cgroup_dirs(self) -> list[Path]:
        return [d / self.cgroup_parent for d in Path("/sys/fs/cgroup").iterdir() if (d / self.cgroup_parent).is_dir()]

    def leftovers(self) -> list[str]:
        """What the service should have removed: shim sockets, state dirs, bundles, mounts, cgroups."""
        out: list[str] = []
        for sub in ("run/shims", "root/shims", "run/bundles"):
            top = self.workdir / sub
            if top.is_dir():
                out += [str(p) for p in top.glob("*/*")]
        out += mounts_under(self.workdir)
        out += [str(p) for top in self.cgroup_dirs() for p in top.iterdir() if p.is_dir()]
        return out

    async def cleanup(self) -> None:
        with contextlib.suppress(Exception):
            await self.close()
        state_root = self.workdir / "root" / "shims"
        for pidfile in state_root.glob("*/*/shim.pid") if state_root.is_dir() else []:
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        for rt_root in state_root.glob("*/*/runtime") if state_root.is_dir() else []:
            from engine.runtime import delete

            for c in rt_root.iterdir():
                if self.runtime:
                    subprocess.run([self.runtime, "--root", str(rt_root), "delete", "--force", c.name],
                                   capture_output=True, timeout=20)
                    continue
                with contextlib.suppress(Exception):
                    delete.delete(str(rt_root), c.name, force=True)
        for top in self.cgroup_dirs():
            for fz in top.rglob("freezer.state"):
                with contextlib.suppress(OSError):
                    fz.write_text("THAWED")
            for procs in top.rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for pid in procs.read_text().split():
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
        for top in self.cgroup_dirs():
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [top]:
                deadline = time.monotonic() + 5
                while d.exists():
                    try:
                        d.rmdir()
                    except OSError:
                        if time.monotonic() > deadline:
                            break
                        time.sleep(0.02)
        for m in sorted(mounts_under(self.workdir), key=len, reverse=True):
            subprocess.run(["umount", "-l", m], capture_output=True)
        if not mounts_under(self.workdir):
            shutil.rmtree(self.workdir, ignore_errors=True)
