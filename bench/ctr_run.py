"""``ctr run --rm IMG ID true`` end to end: engine against Debian's containerd 1.6 (runc shim, /usr/bin/runc),
in the same run, interleaved round by round so both see the same machine load.

Not a test: prints a table and writes bench/results/ctr_run.json. Needs root. Each daemon gets its own
temporary root and socket (engine through tests.harness.EngineDaemon, containerd through
tests/e2e/containerd/real_containerd.py), imports the same offline busybox OCI archive into the namespace
``bench``, runs ``--warmup`` rounds that are not counted, then ``--rounds`` timed rounds; each round runs
one container on each daemon, in alternating order. Everything is removed afterwards.

``--profile out.svg`` records the engine daemon with py-spy (if installed) during the timed rounds
(``out.txt``: collapsed stacks instead of a flame graph).

    .venv/bin/python bench/ctr_run.py [--rounds 30] [--warmup 5] [--profile /tmp/engine.svg]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.containerd.real_containerd import RealContainerd, remove_cgroups  # noqa: E402
from tests.harness import EngineDaemon  # noqa: E402
from tests.support.images import busybox_oci_archive  # noqa: E402

IMG = "docker.io/library/busybox:latest"
NS = "bench-ctr-run"


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_once(sock: str, cid: str, fifo_dir: str) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(["ctr", "--address", sock, "-n", NS, "run", "--rm", "--fifo-dir", fifo_dir, IMG, cid, "true"],
                       capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"ctr run on {sock} failed ({r.returncode}): {r.stderr}")
    return dt


def summary(xs: list[float]) -> dict[str, float]:
    return {"median_ms": round(statistics.median(xs) * 1000, 1), "p90_ms": round(pct(xs, 90) * 1000, 1),
            "min_ms": round(min(xs) * 1000, 1), "mean_ms": round(statistics.fmean(xs) * 1000, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--profile", default="", help="write a py-spy flame graph of the engine daemon here")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ctr_run.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ctr-run-bench-"))
    engine, real = EngineDaemon(), RealContainerd()
    spy: subprocess.Popen | None = None
    try:
        engine.start()
        real.start()
        archive = busybox_oci_archive(work)
        for ctr in (engine.ctr, real.ctr):
            ctr("-n", NS, "images", "import", str(archive))
        socks = {"engine": engine.containerd_sock, "containerd": real.sock}
        times: dict[str, list[float]] = {"engine": [], "containerd": []}
        fifo = str(work / "fifo")
        for i in range(args.warmup):
            for sock in socks.values():
                run_once(sock, f"w{i}", fifo)
        pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if args.profile and pyspy and engine.proc is not None:
            fmt = "raw" if args.profile.endswith(".txt") else "flamegraph"  # raw: collapsed stacks, one per line
            spy = subprocess.Popen([pyspy, "record", "-o", args.profile, "-f", fmt, "-r", "250", "-p",
                                    str(engine.proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        for i in range(args.rounds):
            order = list(socks.items()) if i % 2 == 0 else list(reversed(socks.items()))
            for name, sock in order:
                times[name].append(run_once(sock, f"r{i}", fifo))
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
            spy = None
        result = {
            "what": "ctr run --rm busybox ID true, wall time per run (ctr 1.6.20 client), interleaved rounds",
            "rounds": args.rounds, "warmup": args.warmup,
            "engine": summary(times["engine"]), "containerd": summary(times["containerd"]),
        }
        result["ratio_median_engine_over_containerd"] = round(
            result["engine"]["median_ms"] / result["containerd"]["median_ms"], 3)
        result["ratio_p90_engine_over_containerd"] = round(
            result["engine"]["p90_ms"] / result["containerd"]["p90_ms"], 3)
        print(f"{'':12} {'median':>9} {'p90':>9} {'min':>9}")
        for name in ("engine", "containerd"):
            s = result[name]
            print(f"{name:12} {s['median_ms']:>7} ms {s['p90_ms']:>7} ms {s['min_ms']:>7} ms")
        print(f"ratio engine/containerd: median {result['ratio_median_engine_over_containerd']},"
              f" p90 {result['ratio_p90_engine_over_containerd']}")
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        if spy is not None:
            spy.kill()
            spy.wait()
        real.namespaces.add(NS)
        real.cleanup()
        engine.cleanup()
        remove_cgroups(NS)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
