"""The typed parent <-> child protocol, and the setup program the child interprets.

Parent and container process talk over one ``SOCK_SEQPACKET`` socket pair: every datagram is one
message, ``u32 type, i32 value, payload``.  The numbers mirror engine/native/csrc/spawn.h (a unit
test parses the header and compares).  Sequence for ``create``::

    parent                               child (C, engine/native)
    spawn() -------------------------->  waits
                  <-- USERNS(pid)        (stage-1 path, new user namespace only)
    write uid/gid maps, USERNS_DONE -->
                  <-- PID(init pid)      (stage-1 path only)
    cgroup join; GO(state, program) -->  runs the program...
                  <-- HOOKS              (only if createRuntime/prestart hooks)
    run hooks, HOOKS_DONE ------------>
                  <-- READY | ERROR(errno, message)
                                         blocks opening the exec FIFO, then execve

``Program`` is the flat plan: a list of (op, ints, strings) records.  Building it is pure Python
and is what the unit tests look at; ``encode()`` gives the bytes the C side decodes.
"""

from __future__ import annotations

import struct

MSG_USERNS = 1
MSG_USERNS_DONE = 2
MSG_PID = 3
MSG_GO = 4
MSG_HOOKS = 5
MSG_HOOKS_DONE = 6
MSG_READY = 7
MSG_ERROR = 8
MSG_SECCOMP_FD = 9
MSG_SECCOMP_DONE = 10

OP_SETNS = 1
OP_UNSHARE = 2
OP_SETHOSTNAME = 3
OP_SETDOMAINNAME = 4
OP_ROOT_PROPAGATION = 5
OP_OPEN_ROOT = 6
OP_MOUNT = 7
OP_MKDEV = 8
OP_SYMLINK = 9
OP_UNLINK = 10
OP_SYNC_HOOKS = 11
OP_HOOK = 12
OP_PIVOT = 13
OP_CHROOT = 14
OP_WRITE = 15
OP_MASK = 16
OP_READONLY = 17
OP_REMOUNT_ROOT_RO = 18
OP_RLIMIT = 19
OP_PERSONALITY = 20
OP_SETSID = 21
OP_CONSOLE = 22
OP_BOUNDING = 23
OP_USER = 24
OP_CAPS = 25
OP_NNP = 26
OP_SECCOMP = 27
OP_UMASK = 28
OP_CHDIR = 29
OP_LOOKUP = 30
OP_READY = 31
OP_WAIT_FIFO = 32
OP_CLOSE_FROM = 33
OP_EXEC = 34
OP_IOPRIO = 35
OP_SCHED = 36
OP_AFFINITY = 37
OP_DUP2 = 38
OP_KEYRING = 39
OP_IDMAP_MOUNT = 40

MNT_IN_ROOT = 1
MNT_FILE = 2
MNT_COPYUP = 4

CHILD_FAILED = 121  # exit status of a child that reported an error
MAX_INTS = 256
MAX_STRS = 8192

OP_NAMES = {v: k for k, v in globals().items() if k.startswith("OP_") and isinstance(v, int)}

_HDR = struct.Struct("<Ii")
_REC = struct.Struct("<III")
_U32 = struct.Struct("<I")


def _s64(v: int) -> int:
    """Store unsigned 64-bit values (RLIM_INFINITY, cap masks) in the signed slot."""
    return v - (1 << 64) if v >= (1 << 63) else v


class Program:
    """An ordered list of setup operations for the container process."""

    __slots__ = ("ops",)

    def __init__(self) -> None:
        self.ops: list[tuple[int, tuple[int, ...], tuple[str | bytes, ...]]] = []

    def add(self, op: int, ints: tuple[int, ...] = (), strs: tuple[str | bytes, ...] = ()) -> None:
        if len(ints) > MAX_INTS or len(strs) > MAX_STRS:
            from engine.errors import InvalidArgument

            raise InvalidArgument(
                f"{OP_NAMES.get(op, op)}: too many values (at most {MAX_INTS} numbers, {MAX_STRS} strings)"
            )
        self.ops.append((op, ints, strs))

    def names(self) -> list[str]:
        """The op names in order (for tests and --debug)."""
        return [OP_NAMES[op] for op, _, _ in self.ops]

    def find(self, op: int) -> list[tuple[tuple[int, ...], tuple[str | bytes, ...]]]:
        return [(i, s) for o, i, s in self.ops if o == op]

    def encode(self) -> bytes:
        out = []
        for op, ints, strs in self.ops:
            out.append(_REC.pack(op, len(ints), len(strs)))
            if ints:
                out.append(struct.pack(f"<{len(ints)}q", *[_s64(i) for i in ints]))
            for s in strs:
                b = s.encode() if isinstance(s, str) else s
                out.append(_U32.pack(len(b)))
                out.append(b)
                out.append(b"\0")
        return b"".join(out)


def pack_msg(mtype: int, value: int = 0, payload: bytes = b"") -> bytes:
    return _HDR.pack(mtype, value) + payload


def unpack_msg(data: bytes) -> tuple[int, int, bytes]:
    if len(data) < _HDR.size:
        raise ValueError("short message")
    mtype, value = _HDR.unpack_from(data)
    return mtype, value, data[_HDR.size :]


def go_payload(state_json: bytes, program: Program) -> bytes:
    return _U32.pack(len(state_json)) + state_json + program.encode()
