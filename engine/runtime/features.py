"""``features``: what this runtime implements, in the runtime-spec "features" JSON shape."""

from __future__ import annotations

from typing import Any

from engine.runtime import caps, mounts
from engine.runtime.spec import NAMESPACE_TYPES, OCI_VERSION

VERSION = "0.1.0"


def features() -> dict:
    opts = sorted(set(mounts.FLAGS) | set(mounts.PROPAGATION) | {"tmpcopyup", "idmap", "ridmap"})
    out: dict[str, Any] = {
        "ociVersionMin": "1.0.0",
        "ociVersionMax": OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": opts,
        "linux": {
            "namespaces": list(NAMESPACE_TYPES),
            "capabilities": list(caps.NAMES[: caps.last_cap() + 1]),
            "cgroup": {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": False},
            "seccomp": {"enabled": True},
            "apparmor": {"enabled": False},
            "selinux": {"enabled": False},
            "intelRdt": {"enabled": False},
            "mountExtensions": {"idmap": {"enabled": True}},
        },
        "annotations": {
            "org.opencontainers.runc.version": VERSION,
            "io.github.engine.runtime.version": VERSION,
        },
    }
    from engine.runtime import seccomp as sc

    sec = out["linux"]["seccomp"]
    sec["actions"] = sorted(set(sc._FIXED_ACTIONS) | set(sc._RET_ACTIONS))
    sec["operators"] = sorted(sc._OPS)
    sec["archs"] = [
        "SCMP_ARCH_X86",
        "SCMP_ARCH_X32",
        "SCMP_ARCH_X86_64",
        "SCMP_ARCH_AARCH64",
        "SCMP_ARCH_ARM",
    ]
    sec["knownFlags"] = sorted(sc._SPEC_FLAGS)
    sec["supportedFlags"] = sorted(sc._SPEC_FLAGS)
    return out


def version_text() -> str:
    # runc's shape: containerd's runc shim parses "version", "commit" and "spec" lines
    return f"engine-runtime version {VERSION}\ncommit: engine-{VERSION}\nspec: {OCI_VERSION}\n"
