"""Benchmark: ``<runtime> run`` of /bin/true from a prepared bundle, engine-runtime vs runc vs crun.

Usage (root): ``/work/main/.venv/bin/python bench/runtime.py [-n 30] [--out bench/results/runtime.json]``

Method:

* One busybox bundle per runtime, prepared before timing (rootfs from Debian's
  busybox-static, config in the shape of ``runc spec`` with ``terminal: false``); each run
  gets a fresh container id and its own cgroupsPath under one benchmark parent, and the
  runtime's ``run`` creates, starts, waits and deletes the container, so one sample is the
  whole life of a container as a caller sees it (wall time of the CLI process).
* Runtimes are interleaved round-robin (the order rotates every round) so that drift in the
  machine's load hits all of them alike; a few warm-up runs each are not counted.
* crun 1.8 refuses this machine's hybrid cgroup layout; the benchmark then tries crun without
  cgroupsPath and with ``--cgroup-manager=disabled`` and, if that fails too, reports crun as
  unavailable with the error it printed.
* Reports median, p90 (nearest rank), mean and min in ms, and each median's ratio to runc's.
  The table goes to stdout, everything (with the raw samples) to the JSON file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.support.ociruntime import cgroup_mounts, engine_runtime_path  # noqa: E402
from tests.support.rootfs import build_busybox_rootfs  # noqa: E402
from tests.support.spec import default_spec  # noqa: E402

WARMUP = 3
TIMEOUT = 30.0


class Candidate:
    """One runtime under test: binary, global options, bundle, state root."""

    def __init__(self, name: str, path: str, work: Path, parent: str) -> None:
        self.name = name
        self.path = path
        self.global_opts: list[str] = []
        self.root = work / f"state-{name}"
        self.bundle = work / f"bundle-{name}"
        self.parent = parent
        self.use_cgroups = True
        self.samples_ms: list[float] = []
        self.note = ""
        self.error = ""
        build_busybox_rootfs(self.bundle / "rootfs")

    def write_config(self, cid: str) -> None:
        spec = default_spec(["/bin/true"])
        if self.use_cgroups:
            # one level per runtime under the benchmark parent, one cgroup per container
            spec["linux"]["cgroupsPath"] = f"/{self.parent}/{self.name}/{cid}"
        (self.bundle / "config.json").write_text(json.dumps(spec))

    def run_once(self) -> tuple[float, subprocess.CompletedProcess]:
        cid = f"b{uuid.uuid4().hex[:12]}"
        self.write_config(cid)  # not timed
        cmd = [
            self.path,
            *self.global_opts,
            "--root",
            str(self.root),
            "run",
            "--bundle",
            str(self.bundle),
            cid,
        ]
        t0 = time.perf_counter_ns()
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=TIMEOUT)
        elapsed = (time.perf_counter_ns() - t0) / 1e6
        return elapsed, proc


def probe(c: Candidate) -> bool:
    """Make sure the runtime can run the bundle; for crun try the fallbacks."""
    attempts: list[tuple[str, list[str], bool]] = [("", [], True)]
    if c.name == "crun":
        attempts += [
            ("without cgroupsPath", [], False),
            ("--cgroup-manager=disabled, without cgroupsPath", ["--cgroup-manager=disabled"], False),
        ]
    errors = []
    for note, opts, cgroups in attempts:
        c.global_opts, c.use_cgroups = opts, cgroups
        try:
            _, proc = c.run_once()
        except (OSError, subprocess.TimeoutExpired) as err:
            errors.append(f"{note or 'default'}: {err}")
            continue
        if proc.returncode == 0:
            c.note = note
            return True
        errors.append(f"{note or 'default'}: exit {proc.returncode}: {proc.stderr.strip().splitlines()[-1:]}")
    c.error = "; ".join(errors)
    return False


def pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    rank = max(1, round(q * len(ordered) + 0.5 - 1e-9))  # nearest rank
    return ordered[min(rank, len(ordered)) - 1]


def remove_cgroups(parent: str) -> None:
    for mount in cgroup_mounts():
        top = Path(mount) / parent
        if not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for d in [*dirs, top]:
            try:
                d.rmdir()
            except OSError as err:
                print(f"warning: cannot remove {d}: {err}", file=sys.stderr)


def version_of(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except OSError as err:
        return f"unavailable: {err}"
    return out.splitlines()[0] if out else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--iterations", type=int, default=30)
    ap.add_argument("--out", default=str(REPO / "bench/results/runtime.json"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/runtime.py needs root", file=sys.stderr)
        return 2
    paths = {"engine": engine_runtime_path(), "runc": shutil.which("runc") or "/usr/sbin/runc"}
    paths["crun"] = shutil.which("crun") or "/usr/bin/crun"
    parent = f"engine-bench-{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    work.chmod(0o755)
    try:
        cands = [Candidate(name, p, work, parent) for name, p in paths.items()]
        ready = [c for c in cands if probe(c)]
        for c in ready:
            for _ in range(WARMUP):
                c.run_once()
        failures: dict[str, int] = {c.name: 0 for c in ready}
        for i in range(args.iterations):
            k = i % len(ready)
            for c in ready[k:] + ready[:k]:
                ms, proc = c.run_once()
                if proc.returncode != 0:
                    failures[c.name] += 1
                    continue
                c.samples_ms.append(ms)
    finally:
        remove_cgroups(parent)
        shutil.rmtree(work, ignore_errors=True)

    runc = next((c for c in cands if c.name == "runc" and c.samples_ms), None)
    runc_median = statistics.median(runc.samples_ms) if runc else None
    results: dict[str, Any] = {}
    print(
        f"{'runtime':<8} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'mean ms':>8} {'min ms':>8} {'x runc':>7}  note"
    )
    for c in cands:
        if not c.samples_ms:
            reason = c.error or "every timed run failed"
            results[c.name] = {
                "available": False,
                "reason": reason,
                "path": c.path,
                "version": version_of(c.path),
            }
            print(f"{c.name:<8} {'-':>4} {'unavailable':>10}  {reason}")
            continue
        med = statistics.median(c.samples_ms)
        row = {
            "available": True,
            "path": c.path,
            "version": version_of(c.path),
            "n": len(c.samples_ms),
            "failed_runs": failures.get(c.name, 0),
            "median_ms": round(med, 3),
            "p90_ms": round(pct(c.samples_ms, 0.9), 3),
            "mean_ms": round(statistics.fmean(c.samples_ms), 3),
            "min_ms": round(min(c.samples_ms), 3),
            "ratio_to_runc": round(med / runc_median, 3) if runc_median else None,
            "note": c.note,
            "samples_ms": [round(s, 3) for s in c.samples_ms],
        }
        results[c.name] = row
        ratio = f"{row['ratio_to_runc']:.2f}" if row["ratio_to_runc"] else "-"
        print(
            f"{c.name:<8} {row['n']:>4} {row['median_ms']:>10.1f} {row['p90_ms']:>8.1f} {row['mean_ms']:>8.1f} "
            f"{row['min_ms']:>8.1f} {ratio:>7}  {c.note}{' failed runs: ' + str(row['failed_runs']) if row['failed_runs'] else ''}"
        )
    report = {
        "benchmark": "runtime run /bin/true (create+start+wait+delete), wall time of the CLI",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "kernel": platform.release(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "iterations": args.iterations,
        "warmup": WARMUP,
        "order": "round-robin, rotating start",
        "results": results,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
