"""Loading and checking an OCI bundle's config.json (runtime-spec v1.2, Linux).

Only what the runtime needs before it makes anything: a bad bundle, invalid JSON, a missing
rootfs or a missing ``process`` fail here, with one-line errors, before any side effect.
The config stays a plain dict (spec field names); plan.py reads it.
"""

from __future__ import annotations

import os

from engine.errors import InvalidArgument, NotFound
from engine.runtime import fastjson

OCI_VERSION = "1.2.0"

_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-.")

NAMESPACE_TYPES = ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")


def check_id(container_id: str) -> None:
    if not container_id or not _ID_CHARS.issuperset(container_id) or container_id in (".", ".."):
        raise InvalidArgument(f"invalid container id format: {container_id}")


def _errstr(e: OSError) -> str:
    return (e.strerror or str(e)).lower()


def load_bundle(bundle: str) -> tuple[dict, str, str]:
    """(config, absolute bundle path, absolute rootfs path) for a bundle directory."""
    bundle = os.path.abspath(bundle or ".")
    try:
        st = os.stat(bundle)
    except OSError as e:
        raise NotFound(f"chdir {bundle}: {_errstr(e)}") from e
    if not os.path.isdir(bundle):
        raise InvalidArgument(f"chdir {bundle}: not a directory") from None
    path = os.path.join(bundle, "config.json")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError as e:
        raise NotFound("JSON specification file config.json not found") from e
    except OSError as e:
        raise InvalidArgument(f"open {path}: {_errstr(e)}") from e
    try:
        config = fastjson.loads(raw)
    except ValueError as e:
        raise InvalidArgument(f"invalid config.json: {str(e).splitlines()[0]}") from e
    if not isinstance(config, dict):
        raise InvalidArgument("invalid config.json: not a JSON object")
    del st
    rootfs = check_config(config, bundle)
    return config, bundle, rootfs


def check_config(config: dict, bundle: str) -> str:
    """Validate the parts create depends on; returns the absolute rootfs path."""
    root = config.get("root")
    if not isinstance(root, dict) or not root.get("path"):
        raise InvalidArgument("invalid config.json: root.path is required")
    rootfs = root["path"]
    if not os.path.isabs(rootfs):
        rootfs = os.path.join(bundle, rootfs)
    try:
        st = os.stat(rootfs)
    except OSError as e:
        raise NotFound(f"invalid rootfs: stat {rootfs}: {_errstr(e)}") from e
    import stat as _stat

    if not _stat.S_ISDIR(st.st_mode):
        raise InvalidArgument(f"invalid rootfs: not a directory: {rootfs}")
    rootfs = os.path.realpath(rootfs)
    proc = config.get("process")
    if not isinstance(proc, dict):
        raise InvalidArgument("invalid config.json: process is required")
    check_process(proc)
    linux = config.get("linux") or {}
    if not isinstance(linux, dict):
        raise InvalidArgument("invalid config.json: linux must be an object")
    seen = set()
    for ns in linux.get("namespaces") or ():
        t = ns.get("type")
        if t not in NAMESPACE_TYPES:
            raise InvalidArgument(f"invalid config.json: unknown namespace type {t!r}")
        if t in seen:
            raise InvalidArgument(f"invalid config.json: duplicate namespace {t}")
        seen.add(t)
    for m in config.get("mounts") or ():
        if not isinstance(m, dict) or not m.get("destination"):
            raise InvalidArgument("invalid config.json: a mount needs a destination")
    if config.get("hostname") and "uts" not in seen:
        raise InvalidArgument("unable to set hostname without a new uts namespace")
    return rootfs


def check_process(proc: dict) -> None:
    args = proc.get("args")
    if not args or not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise InvalidArgument("args must not be empty")
    cwd = proc.get("cwd", "/")
    if not isinstance(cwd, str) or not cwd.startswith("/"):
        raise InvalidArgument(f"cwd property must be an absolute path: {cwd!r}")


def namespaces(config: dict) -> dict[str, str]:
    """Namespace type -> path ('' for a new namespace)."""
    return {ns["type"]: ns.get("path") or "" for ns in (config.get("linux") or {}).get("namespaces") or ()}
