"""Load a compiled seccomp program in a forked child and report what syscalls did.

The child sets no_new_privs with prctl(2) and installs the program with seccomp(2), both
through ctypes, then runs a probe function and sends its result back over a pipe as JSON.
"""

from __future__ import annotations

import ctypes
import json
import os
from collections.abc import Callable
from typing import Any

PR_SET_NO_NEW_PRIVS = 38
SYS_SECCOMP = 317  # x86_64
SECCOMP_SET_MODE_FILTER = 1

_libc = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(prog: bytes, flags: int = 0) -> int:
    """Install ``prog`` into the calling process (irreversible: call it in a child)."""
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _SockFprog(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    rc = _libc.syscall(SYS_SECCOMP, SECCOMP_SET_MODE_FILTER, ctypes.c_uint(flags), ctypes.byref(fprog))
    if rc < 0:
        raise OSError(ctypes.get_errno(), "seccomp(SECCOMP_SET_MODE_FILTER)")
    return rc


def run_filtered(prog: bytes, probe: Callable[[], Any], flags: int = 0) -> tuple[Any, int]:
    """Fork; in the child install ``prog`` and run ``probe``. Return (probe result, wait status).

    The result is None when the child died before reporting (e.g. killed by the filter).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never return into pytest
        code = 0
        try:
            os.close(r)
            install(prog, flags)
            out = json.dumps({"ok": probe()}).encode()
        except BaseException as err:  # report everything to the parent
            out = json.dumps({"error": repr(err)}).encode()
            code = 3
        try:
            os.write(w, out)
        finally:
            os._exit(code)
    os.close(w)
    data = b""
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        return None, status
    msg = json.loads(data)
    if "error" in msg:
        raise AssertionError(f"child failed: {msg['error']}")
    return msg["ok"], status


def try_call(fn: Callable[[], Any]) -> int:
    """Run ``fn``; return 0 on success or the errno it failed with."""
    try:
        fn()
    except OSError as err:
        return err.errno or -1
    return 0
