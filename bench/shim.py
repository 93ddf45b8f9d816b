"""Shim benchmark: start latency and per-shim memory, fresh ``engine-shim`` process vs forked by the
fork server.

Not a test: prints a table and writes bench/results/shim.json. Needs root (real containers from a
busybox rootfs, cgroups under a unique parent, cleaned up afterwards).

* latency: spawn shim → connect → Create → Start → Wait of ``/bin/true`` → Delete, split per step,
  ``--runs`` times (median and p90);
* memory: ``--containers`` shims each running ``sleep``, then Rss and Pss from
  /proc/<shim>/smaps_rollup (mean per shim); containerd-shim-runc-v2 measured 13.2 MB RSS and
  2.6 MB PSS per shim on this machine kind with 50 running (issue 4).

    .venv/bin/python bench/shim.py [--runs 20] [--containers 30] [--modes fresh,fork]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.runtime.shim.client import ShimClient, shim_argv, spawn_from_fork_server, spawn_shim  # noqa: E402
from tests.support.rootfs import build_busybox_rootfs  # noqa: E402
from tests.support.spec import default_spec  # noqa: E402

VENV_SHIM = str(Path(sys.executable).parent / "engine-shim")


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def smaps_rollup(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[0] in ("Rss:", "Pss:", "Private_Dirty:", "Shared_Clean:"):
                out[parts[0][:-1]] = int(parts[1])
    return out


class Bench:
    def __init__(self, work: Path, rootfs: Path) -> None:
        self.work, self.rootfs = work, rootfs
        self.parent = f"engine-shim-bench-{uuid.uuid4().hex[:8]}"
        self.fork_server: subprocess.Popen | None = None
        self.fork_sock = str(work / "fork.sock")
        self.pids: list[int] = []

    def bundle(self, cid: str, args: list[str]) -> str:
        b = self.work / "b" / cid
        b.mkdir(parents=True)
        spec = default_spec(args, rootfs=str(self.rootfs), cgroups_path=f"/{self.parent}/{cid}")
        (b / "config.json").write_text(json.dumps(spec))
        return str(b)

    def start_fork_server(self) -> None:
        self.fork_server = subprocess.Popen(
            [VENV_SHIM, "fork-server", "--socket", self.fork_sock], stdout=subprocess.PIPE
        )
        assert self.fork_server.stdout is not None
        self.fork_server.stdout.readline()

    async def spawn(self, mode: str, cid: str) -> tuple[int, str]:
        sock = str(self.work / "s" / f"{cid}.sock")
        argv = shim_argv(cid, "bench", sock, str(self.work / "st" / cid))
        if mode == "fork":
            pid = await spawn_from_fork_server(self.fork_sock, argv)
        else:
            pid = await spawn_shim(argv, executable=VENV_SHIM)
        self.pids.append(pid)
        return pid, sock

    async def one_true(self, mode: str) -> dict[str, float]:
        cid = f"t{uuid.uuid4().hex[:8]}"
        bundle = self.bundle(cid, ["/bin/true"])
        t0 = time.perf_counter()
        _, sock = await self.spawn(mode, cid)
        c = await ShimClient.connect(sock)
        t1 = time.perf_counter()
        await c.create(bundle)
        t2 = time.perf_counter()
        await c.start()
        t3 = time.perf_counter()
        res = await c.wait()
        t4 = time.perf_counter()
        assert res["exit_status"] == 0, res
        await c.delete()
        t5 = time.perf_counter()
        await c.close()
        ms = 1000.0
        return {
            "spawn": (t1 - t0) * ms,
            "create": (t2 - t1) * ms,
            "start": (t3 - t2) * ms,
            "wait": (t4 - t3) * ms,
            "total": (t4 - t0) * ms,
            "delete": (t5 - t4) * ms,
        }

    async def memory(self, mode: str, n: int) -> dict:
        clients, shim_pids = [], []
        try:
            for _ in range(n):
                cid = f"m{uuid.uuid4().hex[:8]}"
                bundle = self.bundle(cid, ["sleep", "1000"])
                pid, sock = await self.spawn(mode, cid)
                c = await ShimClient.connect(sock)
                await c.create(bundle)
                await c.start()
                clients.append(c)
                shim_pids.append(pid)
            await asyncio.sleep(1.0)
            rolls = [smaps_rollup(p) for p in shim_pids]
            return {k: sum(r[k] for r in rolls) / len(rolls) / 1024 for k in ("Rss", "Pss", "Private_Dirty")}
        finally:
            for c in clients:
                with contextlib.suppress(Exception):
                    await c.kill(9)
                    await asyncio.wait_for(c.wait(), 10)
                    await c.delete()
                await c.close()

    def cleanup(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.fork_server is not None:
            self.fork_server.terminate()
            self.fork_server.wait()
        for ctl in Path("/sys/fs/cgroup").iterdir():
            top = ctl / self.parent
            if top.is_dir():
                for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [
                    top
                ]:
                    with contextlib.suppress(OSError):
                        d.rmdir()


async def run(args: argparse.Namespace) -> dict:
    work = Path(tempfile.mkdtemp(prefix="shim-bench-"))
    work.chmod(0o755)
    results: dict = {
        "runs": args.runs,
        "containers": args.containers,
        "modes": {},
        "containerd-shim-runc-v2": {"Rss_MB": 13.2, "Pss_MB": 2.6, "source": "issue 4, 50 running"},
    }
    b = Bench(work, build_busybox_rootfs(work / "rootfs"))
    try:
        for mode in args.modes.split(","):
            if mode == "fork" and b.fork_server is None:
                b.start_fork_server()
            await b.one_true(mode)  # warm the page cache
            samples = [await b.one_true(mode) for _ in range(args.runs)]
            lat = {
                k: {"median": pct([s[k] for s in samples], 50), "p90": pct([s[k] for s in samples], 90)}
                for k in samples[0]
            }
            mem = await b.memory(mode, args.containers)
            results["modes"][mode] = {"latency_ms": lat, "memory_MiB_per_shim": mem}
    finally:
        b.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--containers", type=int, default=30)
    ap.add_argument("--modes", default="fresh,fork")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/shim.py needs root")
    res = asyncio.run(run(args))
    print(
        f"{'mode':6} {'spawn':>8} {'create':>8} {'start':>8} {'wait':>8} {'total':>8}   {'RSS MiB':>8} {'PSS MiB':>8}"
    )
    for mode, r in res["modes"].items():
        lat, mem = r["latency_ms"], r["memory_MiB_per_shim"]
        print(
            f"{mode:6} "
            + " ".join(f"{lat[k]['median']:8.1f}" for k in ("spawn", "create", "start", "wait", "total"))
            + f"   {mem['Rss']:8.2f} {mem['Pss']:8.2f}"
        )
    print("containerd-shim-runc-v2: 13.2 MB RSS, 2.6 MB PSS per shim (issue 4)")
    out = Path(__file__).resolve().parent / "results" / "shim.json"
    out.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
