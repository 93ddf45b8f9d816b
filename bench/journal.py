"""Journal benchmark: appends/s with 1, 8 and 64 concurrent writers, and append → subscriber latency.

Not a test: prints a table and writes bench/results/journal.json. Runs in-process on uvloop with the
daemon's default durability (synchronous=NORMAL, WAL), two event kinds:
  * raw        ContainerdPublished: insert + hash only (no projection)
  * namespace  namespace.created: a precondition check and a projection row, as a real command does
Latency is measured from the call to append() to the moment a live subscriber holds the event.

    .venv/bin/python bench/journal.py [--seconds 3] [--durability normal]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.events.journal import Journal  # noqa: E402
from engine.events.types import ContainerdPublished  # noqa: E402
from engine.services import all_projections  # noqa: E402
from engine.services.namespaces import NamespaceService  # noqa: E402


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


async def run_case(kind: str, writers: int, seconds: float, durability: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-journal-") as d:
        j = Journal(Path(d) / "engine.db", all_projections(), synchronous=durability)
        await j.open()
        ns = NamespaceService(j)
        sent: dict[str, int] = {}
        latencies: list[float] = []
        stop = asyncio.Event()

        async def subscriber() -> None:
            async for env in j.subscribe():
                t0 = sent.pop(env.subject, None)
                if t0 is not None:
                    latencies.append((time.perf_counter_ns() - t0) / 1e6)

        async def writer(w: int) -> int:
            n = 0
            while not stop.is_set():
                key = f"w{w}-{n}"
                sent[key] = time.perf_counter_ns()
                if kind == "raw":
                    await j.append([ContainerdPublished(topic=key, type_url="bench", value=b"x" * 64)],
                                   namespace="bench", actor="bench")
                else:
                    await ns.create(key, {"bench": "1"}, actor="bench")
                n += 1
            return n

        sub = asyncio.create_task(subscriber())
        await asyncio.sleep(0.05)
        t0 = time.perf_counter()
        tasks = [asyncio.create_task(writer(w)) for w in range(writers)]
        await asyncio.sleep(seconds)
        stop.set()
        counts = await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - t0
        await asyncio.sleep(0.05)
        sub.cancel()
        stats = j.stats
        await j.close()
        total = sum(counts)
        return {"kind": kind, "writers": writers, "events": total, "seconds": round(elapsed, 3),
                "events_per_s": round(total / elapsed), "batches": stats.batches,
                "mean_batch": round(stats.events / max(stats.batches, 1), 1),
                "latency_ms_p50": round(pct(latencies, 50), 3), "latency_ms_p99": round(pct(latencies, 99), 3),
                "latency_samples": len(latencies)}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--durability", default="normal")
    ap.add_argument("--switch-interval", type=float, default=None,
                    help="sys.setswitchinterval in seconds (the daemon sets its own; default: the daemon's)")
    args = ap.parse_args()
    from engine.daemon import SWITCH_INTERVAL

    sys.setswitchinterval(args.switch_interval if args.switch_interval is not None else SWITCH_INTERVAL)
    rows = []
    for kind in ("raw", "namespace"):
        for writers in (1, 8, 64):
            rows.append(await run_case(kind, writers, args.seconds, args.durability))
            r = rows[-1]
            print(f"{r['kind']:<10} writers={r['writers']:<3} {r['events_per_s']:>8} ev/s  batch≈{r['mean_batch']:<6} "
                  f"p50 {r['latency_ms_p50']:.3f} ms  p99 {r['latency_ms_p99']:.3f} ms", flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    meta = {"durability": args.durability, "switch_interval": sys.getswitchinterval(), "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    (out / "journal.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    uvloop.run(main())
