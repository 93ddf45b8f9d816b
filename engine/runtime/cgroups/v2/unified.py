"""v2 raw ``unified`` resources: each key is a file in the container's cgroup.

Values are written as given (one write per line for multi-line values, as the kernel
accepts one entry per write). If the file is missing or refused for lack of
permission, the error names the controller when that controller is not available in
this cgroup, as the spec requires a clear error for unavailable controllers.
"""

from __future__ import annotations

from engine.errors import EngineError, InvalidArgument, PermissionDenied, Unimplemented

from .. import fs


def check(d: str, unified: dict[str, str]) -> None:
    """Refuse, before anything is written, keys whose file is absent and whose controller is unavailable."""
    available = set((fs.read_opt(d, "cgroup.controllers") or "").split())
    for key in unified:
        controller = key.split(".", 1)[0]
        if controller != "cgroup" and controller not in available and not fs.exists(d, key):
            raise InvalidArgument(
                f"unified resource {key!r} can't be set: controller {controller!r} not available"
            )


def apply(w: fs.Writer, d: str, unified: dict[str, str]) -> None:
    available = set((fs.read_opt(d, "cgroup.controllers") or "").split())
    for key, value in unified.items():
        controller = key.split(".", 1)[0]
        lines = [ln for ln in value.splitlines() if ln.strip()] or [value]
        try:
            for i, line in enumerate(lines):
                w.write(d, key, line, old=fs.AUTO if len(lines) == 1 and i == 0 else None)
        except (Unimplemented, PermissionDenied) as err:
            if controller not in available and controller != "cgroup":
                raise InvalidArgument(
                    f"unified resource {key!r} can't be set: controller {controller!r} not available"
                ) from err
            raise
        except EngineError as err:
            raise type(err)(f"unable to set unified resource {key!r}: {err}") from err
