"""v1 devices controller: turn the OCI allow/deny list into devices.allow/deny writes.

The modelling and the minimal transition live in ..devices (pure, unit-tested); this
module reads devices.list, writes the transition, and checks the result read back.
A device list cannot be restored from one read, so these writes are not rolled back.
"""

from __future__ import annotations

from engine.errors import EngineError

from .. import devices as devmod
from .. import fs
from ..resources import Resources


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    if r.devices is None:
        return
    target = devmod.build_model(r.devices)
    current = devmod.parse_list(fs.read(d, "devices.list"))
    for rule in current.transition_to(target):
        w.write(d, "devices.allow" if rule.allow else "devices.deny", rule.cgroup_string(), old=None)
    after = devmod.parse_list(fs.read(d, "devices.list"))
    if target.default_allow != after.default_allow or (not target.default_allow and after != target):
        raise EngineError(f"devices cgroup {d} does not match the requested rules after writing them")
