"""Cgroups for the runtime: v1 (per-controller hierarchies) and v2 (unified) behind one interface.

    from engine.runtime.cgroups import detect, open_manager
    m = open_manager("/engine/abc")      # V1Manager or V2Manager, chosen by detect()
    m.create(); m.set(spec["linux"]["resources"]); m.add(pid)
    m.freeze(); m.thaw(); m.pids(); m.stats(); m.kill_all(9); m.destroy()

Layout (after youki's libcgroups): detect.py finds the layout and mounts; resources.py
validates OCI linux.resources up front; convert.py holds the v1<->v2 value
conversions; devices.py models device rules; stats.py shapes runc's stats JSON;
fs.py does file I/O, error mapping and rollback; v1/ and v2/ hold one module per
controller plus the manager in their __init__. Only os, errno and time are imported here
so the runtime CLI stays fast (ctypes is loaded only for a v2 OOM watch).
"""

from __future__ import annotations

from engine.errors import InvalidArgument

from .base import CgroupManager
from .devices import DEFAULT_ALLOWED_DEVICES
from .layout import clean_path, detect

__all__ = ["CgroupManager", "DEFAULT_ALLOWED_DEVICES", "detect", "open_manager"]


def open_manager(path: str, *, version: str | None = None, root: str | None = None) -> CgroupManager:
    """A manager for cgroup ``path`` ("/engine/abc", or relative to our own cgroup).

    ``version`` forces "v1" or "v2" (default: detect()); ``root`` sets the v2 mount
    point (tests use the hybrid host's /sys/fs/cgroup/unified). The root cgroup itself
    is refused: destroying or killing it would take the host down with it.
    """
    if not isinstance(path, str) or not path.strip():
        raise InvalidArgument("cgroup path must be a non-empty string")
    cleaned = clean_path(path)
    if cleaned in ("/", "", "."):
        raise InvalidArgument(f"cgroup path {path!r} names the root cgroup")
    version = version or detect()
    if version == "v2":
        from .v2 import V2Manager

        return V2Manager(cleaned, root=root or "/sys/fs/cgroup")
    if version == "v1":
        from .v1 import V1Manager

        return V1Manager(cleaned)
    raise InvalidArgument(f"unknown cgroup version {version!r}")
