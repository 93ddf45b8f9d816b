"""Pull + unpack of a 4-layer ~300 MB image (random data, gzip) from a local registry into an empty store:
engine against Debian's containerd 1.6 (``ctr images pull --plain-http``, which unpacks into overlayfs),
interleaved round by round on the same machine.

Not a test: prints a table and writes bench/results/pull.json. Needs root, docker-registry and skopeo.
The image is built here (seeded random files, gzip through isal), put into ``docker-registry`` on
127.0.0.1 by skopeo; every round starts each side on an empty temp root (a fresh engine daemon, a fresh
containerd) so nothing is cached, and times the pull from request to unpacked image.

engine is driven through its Docker API (``POST /images/create``, the docker CLI's pull) when the daemon
serves it; when it does not (the route is another helper's), through the same PullService in-process
over a fresh root (``--via`` says which; the result records it). engine extracts each layer as soon as
its blob is committed, in parallel with the other layers' downloads and extractions (overlayfs staging,
engine/images/unpacker.py), so fetch and unpack overlap; the split comes from the daemon's ``pulled …``
log line (or the service's timings): fetch (resolve + download + verify + commit, with the extractions
running meanwhile), the time any layer was being extracted (decompress + apply), the unpack tail after
the last download, and decompress = isal gunzip of the same blobs timed alone, so apply ≈ busy −
decompress (an upper bound: extractions run two at a time).

    .venv/bin/python bench/pull.py [--rounds 3] [--layer-mb 75] [--via auto|api|inprocess] [--profile f.svg]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
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
from tests.support.registry import TestRegistry, _tar_of_files, image_layout  # noqa: E402

NS = "bench-pull"


def build_image(work: Path, layer_mb: int) -> tuple[Path, list[Path]]:
    import random

    tars = []
    for i in range(4):
        rnd = random.Random(1000 + i)
        files = {f"data/l{i}/f{j}.bin": rnd.randbytes(layer_mb * (1 << 20) // 8) for j in range(8)}
        tars.append(_tar_of_files(files))
    layout, _ = image_layout(work / "img", tars, level=1)
    manifest = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    m = json.loads((layout / "blobs/sha256" / manifest.split(":")[1]).read_text())
    return layout, [layout / "blobs/sha256" / d["digest"].split(":")[1] for d in m["layers"]]


def decompress_seconds(blobs: list[Path]) -> float:
    from isal import igzip_threaded

    t0 = time.perf_counter()
    for b in blobs:
        with igzip_threaded.open(b, "rb") as f:
            while f.read(1 << 20):
                pass
    return time.perf_counter() - t0


def engine_api(ref: str, spy_to: str = "") -> dict[str, float] | None:
    d = EngineDaemon().start()
    spy = None
    try:
        pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if spy_to and pyspy and d.proc is not None:
            fmt = "raw" if spy_to.endswith(".txt") else "flamegraph"
            spy = subprocess.Popen([pyspy, "record", "-o", spy_to, "-f", fmt, "-r", "200", "--threads", "-p",
                                    str(d.proc.pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        repo, tag = ref.rsplit(":", 1)
        t0 = time.perf_counter()
        status, body = d.request("POST", f"/images/create?fromImage={repo}&tag={tag}", timeout=600,
                                 headers={"X-Registry-Auth": "e30="})
        total = time.perf_counter() - t0
        if status == 404 and isinstance(body, dict) and body.get("message") == "page not found":
            return None
        text = body.decode() if isinstance(body, bytes) else json.dumps(body)
        if status != 200 or "errorDetail" in text:
            raise RuntimeError(f"engine pull failed: {status} {text[-500:]}")
        m = re.search(r"pulled \S+ \(\S+\): fetch ([0-9.]+)s, unpack ([0-9.]+)s, \d+ bytes of layers; layers "
                      r"applied during ([0-9.]+)s", d.log())
        if m is None:
            raise RuntimeError("no timing line in the daemon log")
        return {"total": total, "fetch": float(m.group(1)), "unpack": float(m.group(2)), "apply": float(m.group(3))}
    finally:
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            spy.wait(30)
        d.cleanup()


def engine_inprocess(ref: str) -> dict[str, float]:
    from engine.services.pull import PullService
    from tests.integration.images.helpers import services_at
    from tests.integration.registry.conftest import remove_root

    async def run(root: Path) -> dict[str, float]:
        s = await services_at(root)
        p = PullService(s)
        try:
            t0 = time.perf_counter()
            await p.pull("moby", ref, actor="bench")
            total = time.perf_counter() - t0
            return {"total": total, "fetch": p.last_timings["resolve_fetch"], "unpack": p.last_timings["unpack"],
                    "apply": p.last_timings["apply_busy"]}
        finally:
            await p.close()
            await s.journal.close()

    root = Path(tempfile.mkdtemp(prefix="pull-bench-eng-"))
    try:
        import uvloop

        return uvloop.run(run(root))
    finally:
        remove_root(root)


def containerd_pull(ref: str) -> float:
    real = RealContainerd().start()
    try:
        t0 = time.perf_counter()
        real.ctr("-n", NS, "images", "pull", "--plain-http", ref, timeout=600)
        return time.perf_counter() - t0
    finally:
        real.namespaces.add(NS)
        real.cleanup()
        remove_cgroups(NS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layer-mb", type=int, default=75)
    ap.add_argument("--via", choices=("auto", "api", "inprocess"), default="auto")
    ap.add_argument("--profile", default="", help="py-spy flame graph of the engine daemon's first pull (api)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "pull.json"))
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="pull-bench-"))
    reg = TestRegistry()
    try:
        t0 = time.perf_counter()
        layout, blobs = build_image(work, args.layer_mb)
        size = sum(b.stat().st_size for b in blobs)
        reg.start()
        reg.skopeo_copy(f"oci:{layout}", "big:1")
        print(f"image: 4 layers, {size / 1e6:.1f} MB compressed (built and pushed in {time.perf_counter() - t0:.1f}s)")
        ref = f"{reg.host}/big:1"
        via = args.via
        if via in ("auto", "api"):
            first = engine_api(ref, args.profile)
            if first is None:
                if via == "api":
                    raise SystemExit("the daemon does not serve POST /images/create")
                via = "inprocess"
            else:
                via = "api"
        eng: list[dict[str, float]] = []
        ctd: list[float] = []
        for i in range(args.rounds):
            sides = ["engine", "containerd"] if i % 2 == 0 else ["containerd", "engine"]
            for side in sides:
                if side == "engine":
                    r = engine_api(ref) if via == "api" else engine_inprocess(ref)
                    assert r is not None
                    eng.append(r)
                else:
                    ctd.append(containerd_pull(ref))
            print(f"round {i + 1}: engine {eng[-1]['total']:.2f}s (fetch {eng[-1]['fetch']:.2f}s, layers applied "
                  f"during {eng[-1]['apply']:.2f}s of it, tail {eng[-1]['unpack']:.2f}s), containerd {ctd[-1]:.2f}s")
        dec = decompress_seconds(blobs)
        med = statistics.median
        e_total, c_total = med([r["total"] for r in eng]), med(ctd)
        result = {
            "what": "pull + unpack of a 4-layer random gzip image from docker-registry on 127.0.0.1 into an empty "
                    "store; median of interleaved rounds",
            "via": via, "rounds": args.rounds, "compressed_mb": round(size / 1e6, 1),
            "engine": {"total_s": round(e_total, 3), "MBps": round(size / 1e6 / e_total, 1),
                       "fetch_s": round(med([r["fetch"] for r in eng]), 3),
                       "unpack_after_fetch_s": round(med([r["unpack"] for r in eng]), 3),
                       "decompress_and_apply_busy_s": round(med([r["apply"] for r in eng]), 3),
                       "decompress_alone_s": round(dec, 3)},
            "containerd": {"total_s": round(c_total, 3), "MBps": round(size / 1e6 / c_total, 1)},
        }
        result["engine"]["apply_s_estimate"] = round(result["engine"]["decompress_and_apply_busy_s"] - dec, 3)
        result["ratio_engine_over_containerd_MBps"] = round(c_total / e_total, 2)
        print(json.dumps(result, indent=2))
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    _ = asyncio  # the in-process path runs its own loop
    sys.exit(main())
