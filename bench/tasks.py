"""Tasks benchmark (issue 4): start latency through the daemon's task service, split, and memory per shim,
engine beside Debian's containerd in one run.

* **Latency:** `ctr run --rm IMG id /bin/true` against each daemon (interleaved rounds); for engine the
  journal gives the split of every run: shim spawn + runtime create (`task.create_requested` →
  `task.created`), start (`task.start_requested` → `task.started`), the process's life (→ `task.exited`)
  and the delete (`task.delete_requested` → `task.deleted`).
* **Memory:** 50 `sleep` containers started with `ctr run -d` on each daemon; RSS and PSS
  (`/proc/<pid>/smaps_rollup`) per shim: engine's shims (forked from the daemon's warm fork server) and
  containerd-shim-runc-v2. containerd's shim was measured at 2.6 MB PSS on this machine kind.

    .venv/bin/python bench/tasks.py [--rounds 20] [--containers 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.containerd.real_containerd import RealContainerd  # noqa: E402
from tests.harness import EngineDaemon  # noqa: E402
from tests.support.images import busybox_oci_archive  # noqa: E402

NS, IMG = "bench", "docker.io/library/busybox:latest"


def smaps(pid: int) -> tuple[int, int]:
    rss = pss = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Rss:"):
                    rss = int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def ctr(sock: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ctr", "--address", sock, "-n", NS, *args], capture_output=True, text=True, timeout=120,
                          check=True)


def journal(d: EngineDaemon, after: int) -> list[dict]:
    status, body = d.request("GET", f"/engine/journal?namespace={NS}&from_seq={after + 1}")
    assert status == 200, body
    if isinstance(body, dict):
        return [body]
    return [json.loads(x) for x in (body or b"").decode().splitlines() if x.strip()]


def split(events: list[dict]) -> dict[str, float]:
    t = {e["type"]: e["time_ns"] for e in events}
    out = {}
    for name, a, b in (("spawn+create", "task.create_requested", "task.created"),
                       ("start", "task.start_requested", "task.started"),
                       ("run", "task.started", "task.exited"),
                       ("delete", "task.delete_requested", "task.deleted")):
        if a in t and b in t:
            out[name] = (t[b] - t[a]) / 1e6
    return out


def last_seq(d: EngineDaemon) -> int:
    status, body = d.request("GET", "/engine/journal?tail=1")
    if isinstance(body, dict):
        return int(body["seq"])
    return int(json.loads((body or b"").decode().splitlines()[-1])["seq"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--containers", type=int, default=50)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tasks-"))
    eng, real = EngineDaemon(["--log-level", "warn"]), RealContainerd()
    try:
        eng.start()
        real.start()
        real.namespaces.add(NS)
        archive = busybox_oci_archive(work)
        socks = {"engine": eng.containerd_sock, "containerd": real.sock}
        for sock in socks.values():
            ctr(sock, "images", "import", str(archive))
            ctr(sock, "run", "--rm", IMG, "warm", "/bin/true")
        wall: dict[str, list[float]] = {k: [] for k in socks}
        parts: dict[str, list[float]] = {}
        for i in range(args.rounds):
            for name, sock in (list(socks.items()) if i % 2 == 0 else list(reversed(socks.items()))):
                before = last_seq(eng) if name == "engine" else 0
                t = time.perf_counter()
                ctr(sock, "run", "--rm", IMG, f"t{i}", "/bin/true")
                wall[name].append((time.perf_counter() - t) * 1000)
                if name == "engine":
                    for k, v in split(journal(eng, before)).items():
                        parts.setdefault(k, []).append(v)
        result: dict[str, object] = {
            "latency_ms": {k: round(statistics.median(v), 1) for k, v in wall.items()},
            "engine_split_ms": {k: round(statistics.median(v), 2) for k, v in parts.items()},
        }
        mem: dict[str, dict[str, float]] = {}
        for name, sock in socks.items():
            for i in range(args.containers):
                ctr(sock, "run", "-d", IMG, f"s{i}", "sleep", "600")
            time.sleep(1)
            if name == "engine":
                events = [e for e in journal(eng, 0) if e["type"] == "task.created" and e["subject"].startswith("s")]
                pids = [e["event"]["shim_pid"] for e in events]
            else:
                pids = [int(p) for p in os.listdir("/proc") if p.isdigit()
                        and b"containerd-shim-runc-v2" in Path(f"/proc/{p}/cmdline").read_bytes()
                        and str(real.base).encode() in Path(f"/proc/{p}/cmdline").read_bytes()]
            sizes = [smaps(p) for p in pids if os.path.exists(f"/proc/{p}")]
            mem[name] = {"shims": len(sizes),
                         "rss_mib_each": round(sum(r for r, _ in sizes) / len(sizes) / 1024, 2) if sizes else 0,
                         "pss_mib_each": round(sum(p for _, p in sizes) / len(sizes) / 1024, 2) if sizes else 0}
            for i in range(args.containers):
                subprocess.run(["ctr", "--address", sock, "-n", NS, "tasks", "kill", "-s", "9", f"s{i}"],
                               capture_output=True)
        result["memory_50_sleep_containers"] = mem
        result["ratio_latency_engine_over_containerd"] = round(
            result["latency_ms"]["engine"] / result["latency_ms"]["containerd"], 3)  # type: ignore[index]
        print(json.dumps(result, indent=2))
        out = Path(__file__).parent / "results"
        out.mkdir(exist_ok=True)
        (out / "tasks.json").write_text(json.dumps(result, indent=2))
    finally:
        real.cleanup()
        eng.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
