"""A container's own mounts as Docker takes them: ``Binds`` (``-v``), ``Mounts`` (``--mount``), with Docker's
refusals; ``MountPoint`` is both what inspect's ``Mounts`` shows and the OCI mount the spec gets.

A ``-v /host:/dest`` whose source is missing is created (Docker's Binds rule); a ``--mount type=bind``
whose source is missing is a 400 (``bind source path does not exist``). A ``-v name:/dest`` is a named
volume; an image's VOLUME without a mount becomes an anonymous one (containers.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidArgument
from engine.services.dockerd.spec import TMPFS_DEFAULTS


@dataclass
class MountPoint:
    """One of the container's mounts as Docker shows it (inspect's Mounts) and as the spec needs it."""

    type: str  # bind | volume | tmpfs
    source: str
    destination: str
    rw: bool = True
    mode: str = ""
    propagation: str = "rprivate"
    name: str = ""  # a volume's name
    create_source: bool = False  # a -v bind whose source is made when missing (Docker's Binds)
    tmpfs_options: list[str] = field(default_factory=list)

    def docker(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Type": self.type, "Source": self.source, "Destination": self.destination,
                               "Mode": self.mode, "RW": self.rw, "Propagation": self.propagation if self.type == "bind"
                               else ""}
        if self.type == "volume":
            out = {"Type": "volume", "Name": self.name, "Source": self.source, "Destination": self.destination,
                   "Driver": "local", "Mode": self.mode, "RW": self.rw, "Propagation": ""}
        if self.type == "tmpfs":
            out["Source"] = ""
        return out

    def oci(self) -> dict[str, Any]:
        if self.type == "tmpfs":
            return {"destination": self.destination, "type": "tmpfs", "source": "tmpfs",
                    "options": list(TMPFS_DEFAULTS) + self.tmpfs_options}
        opts = ["rbind", self.propagation or "rprivate"]
        if not self.rw:
            opts.append("ro")
        return {"destination": self.destination, "type": "bind", "source": self.source, "options": opts}


_PROPAGATIONS = ("private", "rprivate", "shared", "rshared", "slave", "rslave")


def _check_dest(dest: str, kind: str) -> None:
    if not dest.startswith("/"):
        raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid mount path: '{dest}' mount path "
                              "must be absolute")
    if os.path.normpath(dest) == "/":
        raise InvalidArgument(f"invalid mount config for type \"{kind}\": invalid specification: destination can't "
                              "be '/'")


def parse_binds(binds: list[str]) -> list[MountPoint]:
    """Docker's ``-v`` strings: ``/host:/dest[:opts]`` (a bind) or ``name:/dest[:opts]`` (a named volume)."""
    out = []
    for spec in binds:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
            raise InvalidArgument(f"invalid volume specification: '{spec}'")
        src, dest = parts[0], parts[1]
        mode = parts[2] if len(parts) == 3 else ""
        rw, prop = True, "rprivate"
        for o in [x for x in mode.split(",") if x]:
            if o in ("ro", "rw"):
                rw = o == "rw"
            elif o in ("z", "Z", "nocopy", "copy"):
                continue
            elif o in _PROPAGATIONS:
                prop = o
            else:
                raise InvalidArgument(f"invalid mode: {mode}")
        if not dest.startswith("/"):
            raise InvalidArgument(f"invalid volume specification: '{spec}': invalid mount config for type "
                                  f"\"bind\": invalid mount path: '{dest}' mount path must be absolute")
        if src.startswith("/"):
            out.append(MountPoint("bind", os.path.normpath(src), os.path.normpath(dest), rw, mode, prop,
                                  create_source=True))
        else:
            out.append(MountPoint("volume", "", os.path.normpath(dest), rw, mode, "", name=src))
    return out


def parse_mounts(mounts: list[Any]) -> list[MountPoint]:
    """Docker's ``--mount`` objects (type bind, volume, tmpfs)."""
    out = []
    for m in mounts:
        if not isinstance(m, dict):
            raise InvalidArgument("invalid mount config: expected an object")
        kind = m.get("Type") or ""
        target = m.get("Target") or ""
        if not target:
            raise InvalidArgument(f"invalid mount config for type \"{kind}\": field Target must not be empty")
        _check_dest(target, kind)
        ro = bool(m.get("ReadOnly"))
        if kind == "bind":
            src = m.get("Source") or ""
            if not src:
                raise InvalidArgument('invalid mount config for type "bind": field Source must not be empty')
            if not src.startswith("/"):
                raise InvalidArgument(f"invalid mount config for type \"bind\": invalid mount path: '{src}' mount "
                                      "path must be absolute")
            if not os.path.exists(src):
                raise InvalidArgument(f'invalid mount config for type "bind": bind source path does not exist: {src}')
            prop = ((m.get("BindOptions") or {}).get("Propagation")) or "rprivate"
            if prop not in _PROPAGATIONS:
                raise InvalidArgument(f"invalid mount config for type \"bind\": invalid propagation mode: {prop}")
            out.append(MountPoint("bind", os.path.normpath(src), os.path.normpath(target), not ro, "", prop))
        elif kind == "volume":
            nocopy = bool((m.get("VolumeOptions") or {}).get("NoCopy"))
            out.append(MountPoint("volume", "", os.path.normpath(target), not ro, "nocopy" if nocopy else "", "",
                                  name=m.get("Source") or ""))
        elif kind == "tmpfs":
            if m.get("Source"):
                raise InvalidArgument('invalid mount config for type "tmpfs": field Source must not be specified')
            topts = m.get("TmpfsOptions") or {}
            extra = []
            if topts.get("SizeBytes"):
                extra.append(f"size={int(topts['SizeBytes'])}")
            if topts.get("Mode"):
                extra.append(f"mode={int(topts['Mode']):o}")
            if ro:
                extra.append("ro")
            out.append(MountPoint("tmpfs", "", os.path.normpath(target), not ro, "", "", tmpfs_options=extra))
        else:
            raise InvalidArgument(f"mount type unknown: \"{kind}\"" if kind else "invalid mount config: missing Type")
    return out


def check_duplicates(points: list[MountPoint], tmpfs: dict[str, str] | None) -> None:
    seen: set[str] = set()
    for dest in [p.destination for p in points] + [os.path.normpath(d) for d in (tmpfs or {})]:
        if dest in seen:
            raise InvalidArgument(f"Duplicate mount point: {dest}")
        seen.add(dest)
