"""v2 io controller: weights and io.max throttling; io.stat statistics.

With BFQ, io.bfq.weight takes the OCI blkio weight unchanged (same 1..1000 scale) and,
on kernels whose io.bfq.weight shows "default N" lines, per-device weights too.
Without BFQ the weight is converted to io.weight's 1..10000 scale (runc's formula)
and per-device weights go to io.weight as "MAJ:MIN W". Throttles become io.max lines
"MAJ:MIN rbps=N" (or wbps/riops/wiops). Leaf weights have no v2 meaning.
"""

from __future__ import annotations

from .. import fs
from ..convert import blkio_weight_to_io_weight
from ..resources import Resources
from ..stats import Stats, parse_io_stat


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    bfq = fs.read_opt(d, "io.bfq.weight")
    if r.blkio_weight:
        if bfq is not None:
            w.write(d, "io.bfq.weight", str(r.blkio_weight), old=None)
        else:
            w.write(d, "io.weight", str(blkio_weight_to_io_weight(r.blkio_weight)), old=None)
    bfq_per_device = bfq is not None and not bfq.strip().isdigit()
    for wd in r.weight_devices:
        if not wd.weight:
            continue
        if bfq_per_device:
            w.write(d, "io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}", old=None)
        else:
            w.write(d, "io.weight", f"{wd.major}:{wd.minor} {blkio_weight_to_io_weight(wd.weight)}", old=None)
    if r.blkio_leaf_weight or any(wd.leaf_weight for wd in r.weight_devices):
        w.warn("blockIO leaf weights are not enforced on cgroup v2")
    for short, items in r.throttle.items():
        for td in items:
            w.write(d, "io.max", f"{td.major}:{td.minor} {short}={td.rate}", old=None)


def stats(d: str, s: Stats) -> None:
    text = fs.read_opt(d, "io.stat")
    if text is not None:
        s.blkio = parse_io_stat(text)
