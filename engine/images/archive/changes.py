"""``docker import --change`` / ``docker commit --change``: Dockerfile instructions applied to an image config.

Accepted as Docker accepts them for an import: CMD, ENTRYPOINT (JSON array or shell form, the latter
wrapped in ``/bin/sh -c``), ENV (``K=V …`` or the legacy ``K V``), WORKDIR, USER, EXPOSE (``80``,
``53/udp``), LABEL (``k=v …``), VOLUME (JSON array or words), STOPSIGNAL. ONBUILD and anything else is
refused with Docker's ``<INSTR> is not a valid change command`` (ONBUILD: engine does not build images, so
a trigger could never fire; we say so rather than store it). Quotes in ``K=V`` words follow the shell's
rules (``shlex``), as Docker's word splitting does for the common cases.

The config is Docker's ``config`` section as a JSON dict with Pascal-case keys (``Cmd``, ``Env`` …).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

from engine.errors import InvalidArgument

ALLOWED = ("CMD", "ENTRYPOINT", "ENV", "EXPOSE", "LABEL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR")


def _json_or_shell(rest: str, shell: bool) -> list[str]:
    if rest.startswith("["):
        try:
            v = json.loads(rest)
        except ValueError:
            v = None
        if isinstance(v, list) and all(isinstance(x, str) for x in v):
            return v
    return ["/bin/sh", "-c", rest] if shell else _words(rest)


def _words(rest: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError as err:
        raise InvalidArgument(f"dockerfile parse error: {err}") from err


def _pairs(instr: str, rest: str, legacy: bool) -> list[tuple[str, str]]:
    words = _words(rest)
    if not words:
        raise InvalidArgument(f"{instr} requires at least one argument")
    if legacy and "=" not in words[0]:
        key, _, value = rest.strip().partition(" ")
        return [(key, value.strip())]
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise InvalidArgument(f"{instr} names can not be blank" if not key else
                                  f"Syntax error - can't find = in {w!r}. Must be of the form: name=value")
        out.append((key, value))
    return out


def apply_change(cfg: dict[str, Any], change: str) -> None:
    line = change.strip()
    if not line:
        return
    instr, _, rest = line.partition(" ")
    instr, rest = instr.upper(), rest.strip()
    if instr not in ALLOWED:
        raise InvalidArgument(f"{instr.lower()} is not a valid change command")
    if instr in ("CMD", "ENTRYPOINT"):
        cfg["Cmd" if instr == "CMD" else "Entrypoint"] = _json_or_shell(rest, shell=True)
    elif instr == "ENV":
        env = list(cfg.get("Env") or [])
        for key, value in _pairs(instr, rest, legacy=True):
            env = [e for e in env if e.partition("=")[0] != key] + [f"{key}={value}"]
        cfg["Env"] = env
    elif instr == "LABEL":
        labels = dict(cfg.get("Labels") or {})
        labels.update(_pairs(instr, rest, legacy=False))
        cfg["Labels"] = labels
    elif instr == "EXPOSE":
        ports = dict(cfg.get("ExposedPorts") or {})
        for p in _words(rest):
            port, _, proto = p.partition("/")
            if not port.replace("-", "").isdigit():
                raise InvalidArgument(f"invalid containerPort: {port}")
            ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
        cfg["ExposedPorts"] = ports
    elif instr == "VOLUME":
        vols = dict(cfg.get("Volumes") or {})
        for v in _json_or_shell(rest, shell=False):
            if not v:
                raise InvalidArgument("VOLUME specified can not be an empty string")
            vols[v] = {}
        cfg["Volumes"] = vols
    elif not rest:
        raise InvalidArgument(f"{instr} requires exactly one argument")
    elif instr == "WORKDIR":
        cfg["WorkingDir"] = rest
    elif instr == "USER":
        cfg["User"] = rest
    elif instr == "STOPSIGNAL":
        cfg["StopSignal"] = rest


def apply_changes(cfg: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """A copy of `cfg` with `changes` applied in order; InvalidArgument on an instruction Docker refuses."""
    out = dict(cfg)
    for c in changes:
        apply_change(out, c)
    return out
