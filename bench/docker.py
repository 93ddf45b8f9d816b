"""Docker-role benchmark: the real docker CLI against engine (and against Debian's dockerd when installed).

Three measurements, as issue 7 asks, each daemon on its own temp root and socket, in interleaved rounds:

* ``docker run --rm busybox true``: wall time of the whole CLI invocation (median, p90);
* ``docker ps -a`` with 100 containers created;
* 50 concurrent ``docker run -d busybox sleep 60``: wall time until all 50 CLIs returned.

It also reports the daemon's RSS idle and with the 50 containers running, and the per-container PSS of
their shims. The busybox image is built offline (tests/support/images.py) and loaded through
``docker load``. This machine has no dockerd: when ``dockerd`` is missing, only engine is measured and the
report says so (issue 7 quotes dockerd 20.10 on this machine kind: run --rm ≈ 330 ms, ps -a (100) ≈ 38 ms,
50 concurrent run -d ≈ 7–10 s).

    .venv/bin/python bench/docker.py [--rounds 15] [--ps 100] [--concurrent 50]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.harness import EngineDaemon  # noqa: E402
from tests.support.images import busybox_docker_archive  # noqa: E402


class Peer:
    def __init__(self, name: str, env: dict[str, str], pid: int) -> None:
        self.name, self.env, self.pid = name, env, pid

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, timeout=300)
        if check and p.returncode != 0:
            raise RuntimeError(f"{self.name}: docker {' '.join(args)}: {p.stderr.strip()}")
        return p


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def children_named(name: str) -> list[int]:
    out = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if name.encode() in f.read():
                    out.append(int(pid))
        except OSError:
            continue
    return out


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def start_dockerd(base: Path) -> tuple[subprocess.Popen, Peer] | None:
    binary = shutil.which("dockerd")
    if binary is None:
        return None
    sock = base / "docker.sock"
    proc = subprocess.Popen([binary, "--data-root", str(base / "root"), "--exec-root", str(base / "exec"),
                             "-H", f"unix://{sock}", "--pidfile", str(base / "pid"), "--bridge", "none",
                             "--iptables=false"], stdout=subprocess.DEVNULL, stderr=open(base / "log", "wb"))
    env = {**os.environ, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONFIG": str(base / "cfg")}
    for _ in range(300):
        if subprocess.run(["docker", "version"], env=env, capture_output=True).returncode == 0:
            return proc, Peer("dockerd", env, proc.pid)
        time.sleep(0.1)
    proc.kill()
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--ps", type=int, default=100)
    ap.add_argument("--concurrent", type=int, default=50)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-docker-"))
    archive = busybox_docker_archive(tmp, "busybox:latest")
    eng = EngineDaemon(["--log-level", "warn"]).start()
    peers = [Peer("engine", eng.env, eng.proc.pid)]  # type: ignore[union-attr]
    dockerd = start_dockerd(tmp / "dockerd")
    if dockerd is not None:
        peers.append(dockerd[1])
    results: dict[str, dict[str, object]] = {p.name: {} for p in peers}
    try:
        for p in peers:
            p.docker("load", "-i", str(archive))
            p.docker("run", "--rm", "busybox", "true")  # warm-up
            results[p.name]["rss_idle_kib"] = rss_kib(p.pid)
        runs: dict[str, list[float]] = {p.name: [] for p in peers}
        for _ in range(args.rounds):
            for p in peers:
                runs[p.name].append(timed(lambda p=p: p.docker("run", "--rm", "busybox", "true")))
        for p in peers:
            xs = sorted(runs[p.name])
            results[p.name]["run_rm_ms"] = {"median": round(statistics.median(xs), 1),
                                            "p90": round(xs[int(len(xs) * 0.9) - 1], 1)}
        for p in peers:
            for i in range(args.ps):
                p.docker("create", "--name", f"ps-{i}", "busybox", "true")
        ps: dict[str, list[float]] = {p.name: [] for p in peers}
        for _ in range(args.rounds):
            for p in peers:
                ps[p.name].append(timed(lambda p=p: p.docker("ps", "-a")))
        for p in peers:
            results[p.name][f"ps_a_{args.ps}_ms"] = round(statistics.median(ps[p.name]), 1)
            p.docker("rm", *[f"ps-{i}" for i in range(args.ps)])
        for p in peers:
            with ThreadPoolExecutor(args.concurrent) as pool:
                t = time.perf_counter()
                ids = list(pool.map(lambda i, p=p: p.docker("run", "-d", "busybox", "sleep", "60").stdout.strip(),
                                    range(args.concurrent)))
                results[p.name][f"run_d_x{args.concurrent}_s"] = round(time.perf_counter() - t, 2)
            results[p.name]["rss_loaded_kib"] = rss_kib(p.pid)
            shims = children_named("engine-shim") if p.name == "engine" else children_named("containerd-shim")
            if shims:
                results[p.name]["shim_pss_kib_each"] = round(sum(pss_kib(s) for s in shims) / len(shims))
            p.docker("rm", "-f", *ids)
        if dockerd is None:
            results["note"] = {"dockerd": "not installed on this machine; compare with issue 7's dockerd 20.10 "
                                          "figures (run --rm ~330 ms, ps -a (100) ~38 ms, 50x run -d 7-10 s)"}
        print(json.dumps(results, indent=2))
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "docker.json").write_text(json.dumps(results, indent=2))
    finally:
        eng.cleanup()
        if dockerd is not None:
            dockerd[0].terminate()
            dockerd[0].wait(30)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
