"""v2 devices: the OCI allow/deny list enforced by an eBPF device filter (see bpf.py).

cgroup v2 has no devices.allow/deny files; the rules are modelled exactly as for v1
(..devices) and compiled into a BPF_CGROUP_DEVICE program attached to the cgroup.
An allow-all list needs no program. If the kernel cannot load or attach the program
(no CONFIG_CGROUP_BPF, no privilege), set() fails rather than run the container with
device access silently open. The program change is not rolled back by a later failure
in set(); the error names it.
"""

from __future__ import annotations

from .. import devices as devmod
from .. import fs
from ..resources import Resources


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.devices is None:
        return
    from . import bpf  # ctypes: only imported when device rules are applied on v2

    bpf.apply(d, devmod.build_model(r.devices))
    w.mark(d, "device filter (bpf)")
