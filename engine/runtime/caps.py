"""Capability names (as the OCI spec writes them) to numbers and bit masks.

Unknown names are ignored, as runc does (a newer config on an older kernel must still run);
``unknown()`` lists them so the CLI can warn.
"""

from __future__ import annotations

NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {n: i for i, n in enumerate(NAMES)}

_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability this kernel knows (/proc/sys/kernel/cap_last_cap)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except OSError:
            _last_cap = len(NAMES) - 1
    return _last_cap


def mask(names: list[str] | None) -> int:
    """Bit mask of the named capabilities that this kernel supports."""
    m = 0
    top = last_cap()
    for n in names or ():
        i = NUMBERS.get(n.upper() if n.upper().startswith("CAP_") else "CAP_" + n.upper())
        if i is not None and i <= top:
            m |= 1 << i
    return m


def unknown(names: list[str] | None) -> list[str]:
    return [n for n in names or () if n.upper() not in NUMBERS and "CAP_" + n.upper() not in NUMBERS]


def names(m: int) -> list[str]:
    return [NAMES[i] for i in range(len(NAMES)) if m & (1 << i)]


def all_mask() -> int:
    return (1 << (last_cap() + 1)) - 1
