"""Helpers for the shim integration tests: ShimEnv (bundles, shims, clients, cleanup) and process checks."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from engine.runtime.shim.client import ShimClient, shim_argv, spawn_from_fork_server, spawn_shim
from tests.support.spec import default_spec

REPO = Path(__file__).resolve().parents[3]


def reap_if_child(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pid_gone(pid: int) -> bool:
    """Gone or a zombie (a zombie that is our adopted child gets reaped here)."""
    reap_if_child(pid)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def wait_gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_gone(pid):
            return True
        time.sleep(0.01)
    return False


class ShimEnv:
    def __init__(self, rootfs: Path, workdir: Path) -> None:
        self.rootfs = rootfs
        self.workdir = workdir
        self.cgroup_parent = f"engine-shim-test-{uuid.uuid4().hex[:10]}"
        self.shims: list[dict] = []
        self.clients: list[ShimClient] = []
        self.fork_server: subprocess.Popen | None = None

    def bundle(self, cid: str, args: list[str], **kw) -> str:
        spec = default_spec(
            args,
            rootfs=str(self.rootfs),
            cgroups_path=f"/{self.cgroup_parent}/{cid}",
            terminal=kw.pop("terminal", False),
        )
        mem = kw.pop("memory", None)
        if mem:
            spec["linux"]["resources"]["memory"] = {"limit": mem, "swap": mem}
        if kw.pop("no_pidns", False):
            spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != "pid"]
        assert not kw, kw
        b = self.workdir / "bundles" / cid
        b.mkdir(parents=True)
        (b / "config.json").write_text(json.dumps(spec))
        return str(b)

    def paths(self, cid: str) -> dict:
        return {
            "socket": str(self.workdir / "shims" / "test" / f"{cid}.sock"),
            "state": str(self.workdir / "state" / cid),
        }

    def start_fork_server(self) -> str:
        sock = str(self.workdir / "forkserver.sock")
        self.fork_server = subprocess.Popen(
            [sys.executable, "-m", "engine.runtime.shim.main", "fork-server", "--socket", sock],
            stdout=subprocess.PIPE,
            cwd=str(REPO),
        )
        assert self.fork_server.stdout is not None
        self.fork_server.stdout.readline()
        return sock

    async def spawn(self, cid: str, runtime: str = "", fork_server: str = "") -> dict:
        p = self.paths(cid)
        argv = shim_argv(cid, "test", p["socket"], p["state"], runtime=runtime)
        pid = await (spawn_from_fork_server(fork_server, argv) if fork_server else spawn_shim(argv))
        rec = {"id": cid, "pid": pid, "runtime": runtime, **p}
        self.shims.append(rec)
        return rec

    async def client(self, rec: dict) -> ShimClient:
        c = await ShimClient.connect(rec["socket"])
        self.clients.append(c)
        return c

    async def new(
        self,
        args: list[str],
        *,
        runtime: str = "",
        fork_server: str = "",
        create: bool = True,
        cid: str = "",
        create_kw: dict | None = None,
        **bundle_kw,
    ):
        cid = cid or f"c{uuid.uuid4().hex[:8]}"
        bundle = self.bundle(cid, args, **bundle_kw)
        rec = await self.spawn(cid, runtime=runtime, fork_server=fork_server)
        c = await self.client(rec)
        rec["bundle"] = bundle
        if create:
            await c.create(bundle, **(create_kw or {}))
        return rec, c

    def cgroup_dirs(self) -> list[Path]:
        # every hierarchy: the v1 controllers and the hybrid host's cgroup2 at /sys/fs/cgroup/unified
        return [
            d / self.cgroup_parent
            for d in Path("/sys/fs/cgroup").iterdir()
            if (d / self.cgroup_parent).is_dir()
        ]

    async def cleanup(self) -> None:
        for c in self.clients:
            await c.close()
        for rec in self.shims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rec["pid"], signal.SIGKILL)
            wait_gone(rec["pid"], 5)
            root = os.path.join(rec["state"], "runtime")
            if os.path.isdir(root):
                if rec["runtime"]:
                    subprocess.run(
                        [rec["runtime"], "--root", root, "delete", "--force", rec["id"]],
                        capture_output=True,
                        timeout=20,
                    )
                else:
                    from engine.runtime import delete

                    with contextlib.suppress(Exception):
                        delete.delete(root, rec["id"], force=True)
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
        if self.fork_server is not None:
            self.fork_server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.fork_server.wait(5)
            if self.fork_server.poll() is None:
                self.fork_server.kill()
                self.fork_server.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)
