"""v2 devices: NOT ENFORCED.

cgroup v2 has no devices.allow/deny files; device access is controlled by attaching a
BPF_CGROUP_DEVICE eBPF program to the cgroup (runc generates and loads one). This
engine does not load BPF programs yet, so on cgroup v2 the rules are validated and
then reported as a warning, and the container can open any device node it can reach
(its /dev is still limited to what the runtime creates, and without CAP_MKNOD it
cannot make new nodes). An allow-all list loses nothing and gives no warning.
"""

from __future__ import annotations

from .. import devices as devmod
from .. import fs
from ..resources import Resources


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.devices is None:
        return
    model = devmod.build_model(r.devices)
    if model.default_allow and not model.exceptions:
        return
    w.warn(
        "device cgroup rules are not enforced on cgroup v2 (needs a BPF_CGROUP_DEVICE program, "
        "not implemented): the container may open any device node present in its /dev"
    )
