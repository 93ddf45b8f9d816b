"""Platforms: parsing, normalising and matching ``os/arch[/variant]`` as containerd does.

Normalisation follows containerd's platforms package: ``x86_64``/``x86-64`` → ``amd64`` (variant
``v1`` dropped), ``aarch64`` → ``arm64`` (``v8`` dropped, it is the default), ``armhf`` → ``arm/v7``,
``armel`` → ``arm/v6``, bare ``arm`` → ``arm/v7``, ``i386`` → ``386``; OS names are lower-cased and
``macos`` is ``darwin``. Matching a wanted platform accepts the same OS and a compatible architecture,
best first: the exact variant, then older variants of the same architecture (arm/v7 runs v6 and v5,
arm64 runs arm/v8..v5), then 32-bit x86 on amd64 — the order in which ``choose`` prefers manifests.
The default platform is this host's (linux and the machine's architecture).
"""

from __future__ import annotations

import platform as _platform
import re

import msgspec

from engine.errors import InvalidArgument

_COMPONENT = re.compile(r"^[A-Za-z0-9_.-]+$")
_KNOWN_OS = {"aix", "android", "darwin", "dragonfly", "freebsd", "illumos", "ios", "js", "linux", "netbsd",
             "openbsd", "plan9", "solaris", "windows", "wasip1", "zos"}


class Platform(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename={
        "os_version": "os.version", "os_features": "os.features"}):
    """An OCI platform; field names on the wire are the OCI ones (``os``, ``architecture`` …)."""

    architecture: str = ""
    os: str = ""
    os_version: str = ""
    os_features: list[str] = []
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def normalize_arch(arch: str, variant: str) -> tuple[str, str]:
    arch, variant = arch.lower(), variant.lower()
    if arch == "i386":
        return "386", ""
    if arch in ("x86_64", "x86-64", "amd64"):
        return "amd64", "" if variant == "v1" else variant
    if arch in ("aarch64", "arm64"):
        if variant in ("8", "v8", "v8.0"):
            variant = ""
        elif variant in ("9", "9.0", "v9.0"):
            variant = "v9"
        return "arm64", variant
    if arch == "armhf":
        return "arm", "v7"
    if arch == "armel":
        return "arm", "v6"
    if arch == "arm":
        if variant in ("", "7"):
            return "arm", "v7"
        if variant in ("5", "6", "8"):
            return "arm", "v" + variant
    return arch, variant


def normalize(p: Platform) -> Platform:
    os = p.os.lower()
    if os == "macos":
        os = "darwin"
    arch, variant = normalize_arch(p.architecture, p.variant)
    return msgspec.structs.replace(p, os=os, architecture=arch, variant=variant)


def host() -> Platform:
    """This host's platform (linux, the machine's architecture normalised; arm reads its variant)."""
    machine = _platform.machine() or "amd64"
    variant = ""
    if machine.startswith("armv"):
        variant, machine = machine[3:4], "arm"
    return normalize(Platform(os="linux", architecture=machine, variant=variant))


def parse(spec: str) -> Platform:
    """``os/arch[/variant]``, or one component (an OS with the host's arch, else an arch on linux)."""
    parts = spec.split("/")
    if not spec or any(not _COMPONENT.match(p) for p in parts) or len(parts) > 3:
        raise InvalidArgument(f"invalid platform {spec!r}: want os/arch[/variant]")
    if len(parts) == 1:
        if parts[0].lower() in _KNOWN_OS or parts[0].lower() == "macos":
            h = host()
            return normalize(Platform(os=parts[0], architecture=h.architecture, variant=h.variant))
        return normalize(Platform(os="linux", architecture=parts[0]))
    return normalize(Platform(os=parts[0], architecture=parts[1], variant=parts[2] if len(parts) == 3 else ""))


def _vector(p: Platform) -> list[tuple[str, str]]:
    """(arch, variant) pairs p can run, best first."""
    arch, variant = p.architecture, p.variant
    if arch == "amd64":
        out = [("amd64", variant)]
        if variant.startswith("v") and variant[1:].isdigit():
            out += [("amd64", f"v{n}") for n in range(int(variant[1:]) - 1, 1, -1)] + [("amd64", "")]
        return [*out, ("386", "")]
    if arch == "arm":
        n = int(variant[1:]) if variant[1:].isdigit() else 7
        return [("arm", f"v{k}") for k in range(n, 4, -1)]
    if arch == "arm64":
        out = [("arm64", variant)]
        if variant.startswith("v") and variant[1:].replace(".", "").isdigit() and variant != "":
            out.append(("arm64", ""))
        return [*out, *[("arm", f"v{k}") for k in range(8, 4, -1)]]
    return [(arch, variant)]


def rank(want: Platform, have: Platform) -> int | None:
    """How well `have` serves `want` (0 best), or None if it cannot run there."""
    want, have = normalize(want), normalize(have)
    if want.os != have.os:
        return None
    vector = _vector(want)
    try:
        return vector.index((have.architecture, have.variant))
    except ValueError:
        return None


def matches(want: Platform, have: Platform) -> bool:
    return rank(want, have) is not None
