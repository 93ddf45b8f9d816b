"""Unpack throughput: a ~100 MB gzip layer of random files applied by engine/images/unpack.py.

Builds one layer (N random files of 4 KiB–1 MiB in nested dirs, PAX tar, gzip level 6 — random data, so
the compressed and uncompressed sizes are about equal, the worst case for the decompressor's input rate),
then measures, in interleaved rounds:

* decompress only (read the whole stream, discard): isal igzip_threaded (the default), isal igzip
  single-threaded, stdlib gzip;
* the full unpack onto a fresh directory on disk with each decompressor, split by ApplyResult into time
  waiting for decompressed bytes and time parsing/writing files.

    .venv/bin/python bench/unpack.py [--mb 100] [--rounds 3] [--root /var/tmp] [--json bench/results/unpack.json]
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import shutil
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from engine.images.unpack import apply_to_dir, open_decompressed  # noqa: E402

IMPLS = ("isal", "isal-single", "stdlib")


_HEX = bytes.maketrans(bytes(range(256)), bytes(b"0123456789abcdef"[i % 16] for i in range(256)))


def build_layer(path: Path, mb: int, data: str) -> int:
    """`data`: random (incompressible: gzip stores it) or text (hex-like, 4 bits/byte: real inflate work)."""
    rnd = random.Random(42)
    total, i = 0, 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        while total < mb << 20:
            d = f"d{i % 17}/s{i % 5}"
            size = rnd.choice((4096, 16384, 65536, 262144, 1 << 20))
            ti = tarfile.TarInfo(f"{d}/f{i}")
            ti.size, ti.mode, ti.mtime = size, 0o644, 1_700_000_000
            blob = os.urandom(size)
            tf.addfile(ti, io.BytesIO(blob if data == "random" else blob.translate(_HEX)))
            total += size
            i += 1
    raw = buf.getvalue()
    path.write_bytes(gzip.compress(raw, compresslevel=6))
    return len(raw)


def decompress_only(path: Path, impl: str) -> float:
    with open(path, "rb") as f:
        t = time.perf_counter()
        dec, _ = open_decompressed(f, gzip_impl=impl)  # type: ignore[arg-type]
        while dec.read(1 << 20):
            pass
        dec.close()
        return time.perf_counter() - t


def unpack(path: Path, impl: str, root: str) -> dict[str, float]:
    target = tempfile.mkdtemp(prefix="bench-unpack-", dir=root)
    try:
        with open(path, "rb") as f:
            t = time.perf_counter()
            res = apply_to_dir(f, target, gzip_impl=impl)
            total = time.perf_counter() - t
        return {"total": total, "decompress": res.decompress_seconds, "apply": res.apply_seconds,
                "size": res.size}
    finally:
        shutil.rmtree(target)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--root", default="/var/tmp")
    ap.add_argument("--json", default="")
    ap.add_argument("--data", default="random,text", help="comma list of random, text")
    args = ap.parse_args()
    results: dict[str, object] = {"rounds": args.rounds, "cpus": os.cpu_count()}
    for data in args.data.split(","):
        results[data] = run(args, data)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


def run(args: argparse.Namespace, data: str) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="bench-layer-", dir=args.root))
    try:
        layer = work / "layer.tar.gz"
        size = build_layer(layer, args.mb, data)
        mb = size / 1e6
        dec: dict[str, list[float]] = {k: [] for k in IMPLS}
        full: dict[str, list[dict[str, float]]] = {k: [] for k in IMPLS}
        for _ in range(args.rounds):
            for impl in IMPLS:
                dec[impl].append(decompress_only(layer, impl))
                full[impl].append(unpack(layer, impl, args.root))
        csize = layer.stat().st_size / 1e6
        out: dict[str, object] = {"uncompressed_mb": round(mb, 1), "compressed_mb": round(csize, 1)}
        print(f"{data} layer: {mb:.1f} MB uncompressed, {csize:.1f} MB gzip; median of {args.rounds}")
        print(f"{'gzip':12} {'decompress-only':>16} {'unpack':>10} {'(waiting dec.':>14} {'apply)':>8}")
        for impl in IMPLS:
            d = statistics.median(dec[impl])
            t = statistics.median(r["total"] for r in full[impl])
            wd = statistics.median(r["decompress"] for r in full[impl])
            wa = statistics.median(r["apply"] for r in full[impl])
            print(f"{impl:12} {mb / d:13.0f} MB/s {mb / t:7.0f} MB/s {wd:11.2f} s {wa:7.2f} s")
            out[impl] = {"decompress_only_mb_s": round(mb / d, 1), "unpack_mb_s": round(mb / t, 1),
                         "unpack_wait_decompress_s": round(wd, 3), "unpack_apply_s": round(wa, 3)}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)

if __name__ == "__main__":
    main()
