"""Signal names and numbers as ``kill`` accepts them: "KILL", "SIGKILL", "9", "sigrtmin+3"."""

from __future__ import annotations

from engine.errors import InvalidArgument

_NAMES = {
    "HUP": 1,
    "INT": 2,
    "QUIT": 3,
    "ILL": 4,
    "TRAP": 5,
    "ABRT": 6,
    "IOT": 6,
    "BUS": 7,
    "FPE": 8,
    "KILL": 9,
    "USR1": 10,
    "SEGV": 11,
    "USR2": 12,
    "PIPE": 13,
    "ALRM": 14,
    "TERM": 15,
    "STKFLT": 16,
    "CHLD": 17,
    "CLD": 17,
    "CONT": 18,
    "STOP": 19,
    "TSTP": 20,
    "TTIN": 21,
    "TTOU": 22,
    "URG": 23,
    "XCPU": 24,
    "XFSZ": 25,
    "VTALRM": 26,
    "PROF": 27,
    "WINCH": 28,
    "IO": 29,
    "POLL": 29,
    "PWR": 30,
    "SYS": 31,
}
SIGRTMIN = 34
SIGRTMAX = 64


def parse(sig: str) -> int:
    """Parse a signal given by name or number; raises InvalidArgument like runc's message."""
    s = sig.strip()
    if s.isdigit():
        n = int(s)
        if 0 < n <= SIGRTMAX:
            return n
        raise InvalidArgument(f"unknown signal {sig!r}".replace("'", '"'))
    u = s.upper()
    if u.startswith("SIG"):
        u = u[3:]
    if u in _NAMES:
        return _NAMES[u]
    for base, n0, sign in (("RTMIN", SIGRTMIN, 1), ("RTMAX", SIGRTMAX, -1)):
        if u == base:
            return n0
        if u.startswith(base + ("+" if sign > 0 else "-")):
            off = u[len(base) + 1 :]
            if off.isdigit():
                n = n0 + sign * int(off)
                if SIGRTMIN <= n <= SIGRTMAX:
                    return n
    raise InvalidArgument(f'unknown signal "{sig}"')


def name(n: int) -> str:
    for k, v in _NAMES.items():
        if v == n:
            return "SIG" + k
    return f"SIG{n}"
