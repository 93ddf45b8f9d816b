"""v1 blkio controller: weights and throttling; I/O statistics.

CFQ (blkio.weight) is gone from current kernels; BFQ provides blkio.bfq.weight and
blkio.bfq.weight_device instead, so like runc we use blkio.weight when present and the
bfq files otherwise (weights then only matter on devices scheduled by BFQ). Leaf
weights existed only with CFQ; without blkio.leaf_weight they are reported as not
enforced. Throttle files take one "MAJ:MIN RATE" line per write.

Stats: the first family of files present wins, in runc's order: BFQ with debug
counters, BFQ, CFQ, throttle recursive, throttle.
"""

from __future__ import annotations

from .. import fs
from ..resources import Resources
from ..stats import Stats, parse_blkio_lines

THROTTLE_FILES = {
    "rbps": "blkio.throttle.read_bps_device",
    "wbps": "blkio.throttle.write_bps_device",
    "riops": "blkio.throttle.read_iops_device",
    "wiops": "blkio.throttle.write_iops_device",
}


def weight_files(d: str) -> tuple[str, str]:
    if fs.exists(d, "blkio.weight"):
        return "blkio.weight", "blkio.weight_device"
    return "blkio.bfq.weight", "blkio.bfq.weight_device"


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    weight_file, weight_device_file = weight_files(d)
    if r.blkio_weight:
        w.write(d, weight_file, str(r.blkio_weight))
    has_leaf = fs.exists(d, "blkio.leaf_weight")
    if r.blkio_leaf_weight:
        if has_leaf:
            w.write(d, "blkio.leaf_weight", str(r.blkio_leaf_weight))
        else:
            w.warn("blockIO.leafWeight is not enforced: this kernel has no blkio.leaf_weight (no CFQ)")
    for wd in r.weight_devices:
        if wd.weight:
            w.write(d, weight_device_file, f"{wd.major}:{wd.minor} {wd.weight}", old=None)
        if wd.leaf_weight:
            if has_leaf:
                w.write(d, "blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}", old=None)
            else:
                w.warn("blockIO.weightDevice leafWeight is not enforced: no blkio.leaf_weight_device")
    for short, name in THROTTLE_FILES.items():
        for td in r.throttle.get(short, []):
            w.write(d, name, f"{td.major}:{td.minor} {td.rate}", old=None)


_BFQ_DEBUG = [
    ("blkio.bfq.sectors_recursive", "sectorsRecursive"),
    ("blkio.bfq.io_service_time_recursive", "ioServiceTimeRecursive"),
    ("blkio.bfq.io_wait_time_recursive", "ioWaitTimeRecursive"),
    ("blkio.bfq.io_merged_recursive", "ioMergedRecursive"),
    ("blkio.bfq.io_queued_recursive", "ioQueueRecursive"),
    ("blkio.bfq.time_recursive", "ioTimeRecursive"),
    ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
    ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive"),
]
_BFQ = [
    ("blkio.bfq.io_serviced_recursive", "ioServicedRecursive"),
    ("blkio.bfq.io_service_bytes_recursive", "ioServiceBytesRecursive"),
]
_CFQ = [(name.replace("blkio.bfq.", "blkio."), key) for name, key in _BFQ_DEBUG]
_THROTTLE_REC = [
    ("blkio.throttle.io_serviced_recursive", "ioServicedRecursive"),
    ("blkio.throttle.io_service_bytes_recursive", "ioServiceBytesRecursive"),
]
_THROTTLE = [
    ("blkio.throttle.io_serviced", "ioServicedRecursive"),
    ("blkio.throttle.io_service_bytes", "ioServiceBytesRecursive"),
]


def stats(d: str, s: Stats) -> None:
    for family in (_BFQ_DEBUG, _BFQ, _CFQ, _THROTTLE_REC, _THROTTLE):
        if not fs.exists(d, family[0][0]):
            continue
        out = {}
        for name, key in family:
            text = fs.read_opt(d, name)
            if text is not None:
                out[key] = parse_blkio_lines(text)
        s.blkio = out
        return
