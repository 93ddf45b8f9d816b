"""Peer benchmark: containerd's Namespaces API served by engine and by containerd itself, side by side.

Starts both daemons on temp roots and private sockets (containerd from Debian's package, its CRI plugin
disabled), then, in interleaved rounds, drives each with the same grpclib client: N concurrent workers
doing Create then Delete of a fresh namespace. Reports ops/s, p50/p99 latency per call, the daemons'
idle and loaded RSS, and engine/containerd ratios. Every engine call is also a journal append (with its
hash chain and projection); containerd writes bbolt.

    .venv/bin/python bench/namespaces.py [--seconds 2] [--rounds 3] [--workers 1,16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grpclib.client import Channel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.api.containerd.gen.containerd.services.namespaces.v1 import namespace_grpc, namespace_pb2  # noqa: E402

NS_HEADER = [("containerd-namespace", "default")]


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_socket(path: str, proc: subprocess.Popen, timeout: float = 20) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited {proc.returncode}")
        if os.path.exists(path):
            return
        time.sleep(0.02)
    raise TimeoutError(path)


def start_engine(base: Path) -> tuple[subprocess.Popen, str]:
    base.mkdir(parents=True)
    engine = str(Path(sys.prefix) / "bin" / "engine")
    proc = subprocess.Popen([engine, "daemon", "--root", str(base / "root"), "--exec-root", str(base / "run"),
                             "--log-level", "warn"], stdout=subprocess.DEVNULL, stderr=open(base / "log", "wb"))
    sock = str(base / "run" / "containerd.sock")
    wait_socket(sock, proc)
    wait_socket(str(base / "run" / "docker.sock"), proc)
    return proc, sock


def start_containerd(base: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("containerd")
    if binary is None:
        raise RuntimeError("containerd is not installed (Debian package containerd)")
    base.mkdir(parents=True)
    sock = str(base / "containerd.sock")
    (base / "config.toml").write_text(
        'version = 2\n'
        f'root = "{base}/root"\nstate = "{base}/state"\n'
        'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n'
        f'[grpc]\n  address = "{sock}"\n[ttrpc]\n  address = "{sock}.ttrpc"\n'
        f'[debug]\n  level = "warn"\n'
    )
    proc = subprocess.Popen([binary, "--config", str(base / "config.toml")], stdout=subprocess.DEVNULL,
                            stderr=open(base / "log", "wb"))
    wait_socket(sock, proc)
    time.sleep(0.3)
    return proc, sock


async def drive(sock: str, workers: int, seconds: float, tag: str) -> dict:
    channel = Channel(path=sock)
    stub = namespace_grpc.NamespacesStub(channel)
    lat: list[float] = []
    stop = time.monotonic() + seconds

    async def worker(w: int) -> int:
        n = 0
        while time.monotonic() < stop:
            name = f"b{tag}-{w}-{n}"
            t0 = time.perf_counter()
            await stub.Create(namespace_pb2.CreateNamespaceRequest(
                namespace=namespace_pb2.Namespace(name=name, labels={"bench": "1"})), metadata=NS_HEADER)
            t1 = time.perf_counter()
            await stub.Delete(namespace_pb2.DeleteNamespaceRequest(name=name), metadata=NS_HEADER)
            t2 = time.perf_counter()
            lat.extend(((t1 - t0) * 1e3, (t2 - t1) * 1e3))
            n += 2
        return n

    t0 = time.perf_counter()
    ops = sum(await asyncio.gather(*[worker(w) for w in range(workers)]))
    elapsed = time.perf_counter() - t0
    channel.close()
    lat.sort()
    return {"ops_per_s": ops / elapsed, "p50_ms": lat[len(lat) // 2], "p99_ms": lat[int(len(lat) * 0.99)]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", default="1,16")
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-ns-", dir="/tmp"))
    procs = {}
    try:
        procs["engine"] = start_engine(base / "engine")
        procs["containerd"] = start_containerd(base / "containerd")
        time.sleep(0.5)
        idle = {name: rss_kib(p.pid) for name, (p, _) in procs.items()}
        results: dict[str, dict[int, list[dict]]] = {n: {} for n in procs}
        order = list(procs)
        for r in range(args.rounds):
            for workers in [int(w) for w in args.workers.split(",")]:
                for name in (order if r % 2 == 0 else order[::-1]):  # interleaved, alternating first
                    res = asyncio.run(drive(procs[name][1], workers, args.seconds, f"{r}{name[0]}"))
                    results[name].setdefault(workers, []).append(res)
        loaded = {name: rss_kib(p.pid) for name, (p, _) in procs.items()}
        rows = []
        for workers in [int(w) for w in args.workers.split(",")]:
            row = {"workers": workers}
            for name in procs:
                runs = results[name][workers]
                row[name] = {k: round(statistics.median(x[k] for x in runs), 3) for k in runs[0]}
            row["ops_ratio_engine_vs_containerd"] = round(row["engine"]["ops_per_s"] / row["containerd"]["ops_per_s"], 2)
            rows.append(row)
            print(f"workers={workers:<3} engine {row['engine']['ops_per_s']:>8.0f} ops/s p50 {row['engine']['p50_ms']:.2f} "
                  f"p99 {row['engine']['p99_ms']:.2f} ms | containerd {row['containerd']['ops_per_s']:>8.0f} ops/s "
                  f"p50 {row['containerd']['p50_ms']:.2f} p99 {row['containerd']['p99_ms']:.2f} ms | "
                  f"ratio {row['ops_ratio_engine_vs_containerd']}")
        print(f"RSS idle: engine {idle['engine'] / 1024:.1f} MiB, containerd {idle['containerd'] / 1024:.1f} MiB; "
              f"after load: engine {loaded['engine'] / 1024:.1f} MiB, containerd {loaded['containerd'] / 1024:.1f} MiB")
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "namespaces.json").write_text(json.dumps({"rows": rows, "rss_kib_idle": idle, "rss_kib_loaded": loaded},
                                                        indent=2))
    finally:
        for p, _ in procs.values():
            p.send_signal(signal.SIGTERM)
        for p, _ in procs.values():
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
