"""Device access on cgroup v2: a BPF_CGROUP_DEVICE program built from the rule model.

cgroup v2 has no devices.allow/deny; the kernel instead runs eBPF programs of type
BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup on every device open/mknod, with a
context of (access_type, major, minor) where access_type = access << 16 | type
(type: 1 block, 2 char; access bits: 1 mknod, 2 read, 4 write). Returning 0 denies.

The program is generated from the same ``devices.DeviceModel`` the v1 controller uses
(default plus exact-key exceptions, wildcards allowed in the key), so both versions
enforce the same semantics as the kernel's v1 devices controller:

* deny-by-default: allowed when some exception matches type/major/minor and its
  permissions cover every requested access bit;
* allow-by-default: denied when some exception matches and shares a requested bit.

It is assembled by hand (a few instruction forms, 8 bytes each), loaded with bpf(2)
through ctypes (imported only here), and attached with BPF_F_ALLOW_MULTI; programs
previously attached by us are then detached, so an update never leaves a window with
no program. An allow-all model needs no program: existing ones are detached.
"""

from __future__ import annotations

import ctypes
import os
import struct

from engine.errors import EngineError

from ..devices import WILDCARD, DeviceModel

# bpf(2) commands and constants (uapi/linux/bpf.h)
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

DEV_BLOCK, DEV_CHAR = 1, 2
ACC_MKNOD, ACC_READ, ACC_WRITE = 1, 2, 4
_TYPE = {"b": DEV_BLOCK, "c": DEV_CHAR}
_ACC = {"m": ACC_MKNOD, "r": ACC_READ, "w": ACC_WRITE}

# instruction opcodes
LDX_W = 0x61  # dst = *(u32 *)(src + off)
ALU32_AND_K = 0x54
ALU32_RSH_K = 0x74
ALU32_MOV_K = 0xB4
ALU32_MOV_X = 0xBC
JNE_K = 0x55
JNE_X = 0x5D
JEQ_K = 0x15
EXIT = 0x95


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _perm_bits(perms: str) -> int:
    return sum(_ACC[p] for p in set(perms))


def assemble(model: DeviceModel) -> bytes:
    """The program for ``model`` as raw bpf_insn bytes."""
    prog = [
        _insn(LDX_W, dst=2, src=1, off=0),  # r2 = access_type
        _insn(ALU32_AND_K, dst=2, imm=0xFFFF),  # r2 = device type
        _insn(LDX_W, dst=3, src=1, off=0),
        _insn(ALU32_RSH_K, dst=3, imm=16),  # r3 = requested access bits
        _insn(LDX_W, dst=4, src=1, off=4),  # r4 = major
        _insn(LDX_W, dst=5, src=1, off=8),  # r5 = minor
    ]
    verdict = 0 if model.default_allow else 1  # what a matching exception decides
    for (dtype, major, minor), perms in sorted(
        model.exceptions.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])
    ):
        # each check jumps over the rest of this block when it fails
        block: list[tuple[str, tuple[int, int, int, int]]] = [("jump", (JNE_K, 2, 0, _TYPE[dtype]))]
        bits = _perm_bits(perms)
        if bits != 7:
            block.append(("insn", (ALU32_MOV_X, 1, 3, 0)))
            block.append(("insn", (ALU32_AND_K, 1, 0, bits)))
            if model.default_allow:
                block.append(("jump", (JEQ_K, 1, 0, 0)))  # no requested bit is denied: skip
            else:
                block.append(("jump", (JNE_X, 1, 3, 0)))  # some requested bit not allowed: skip
        if major != WILDCARD:
            block.append(("jump", (JNE_K, 4, 0, major)))
        if minor != WILDCARD:
            block.append(("jump", (JNE_K, 5, 0, minor)))
        block.append(("insn", (ALU32_MOV_K, 0, 0, verdict)))
        block.append(("exit", (EXIT, 0, 0, 0)))
        n = len(block)
        for i, (kind, (code, dst, src, imm)) in enumerate(block):
            off = n - i - 1 if kind == "jump" else 0
            prog.append(_insn(code, dst=dst, src=src, off=off, imm=imm))
    prog.append(_insn(ALU32_MOV_K, dst=0, imm=1 if model.default_allow else 0))
    prog.append(_insn(EXIT))
    return b"".join(prog)


_libc = None


def _bpf(cmd: int, attr: bytearray) -> int:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    nr = SYS_BPF.get(os.uname().machine)
    if nr is None:
        raise EngineError(f"bpf(2) syscall number unknown for {os.uname().machine}")
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ret = _libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def load(model: DeviceModel) -> int:
    """Load the program for ``model``; returns its fd."""
    code = assemble(model)
    insns = ctypes.create_string_buffer(code, len(code))
    license_ = ctypes.create_string_buffer(b"Apache")
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(128)
    struct.pack_into(
        "<IIQQIIQ",
        attr,
        0,
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(code) // 8,
        ctypes.addressof(insns),
        ctypes.addressof(license_),
        1,
        len(log),
        ctypes.addressof(log),
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as err:
        detail = log.value.decode(errors="replace").strip().splitlines()[-3:]
        raise EngineError(
            f"load device filter program: {(err.strerror or str(err)).lower()}"
            + (f" ({'; '.join(detail)})" if detail else "")
        ) from err


def attached_ids(cgroup_fd: int) -> list[int]:
    ids = (ctypes.c_uint32 * 64)()
    attr = bytearray(128)
    # target_fd, attach_type, query_flags, attach_flags, prog_ids, prog_cnt
    struct.pack_into("<IIIIQI", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0, ctypes.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[: min(count, 64)])


def _fd_by_id(prog_id: int) -> int:
    attr = bytearray(128)
    struct.pack_into("<I", attr, 0, prog_id)
    return _bpf(BPF_PROG_GET_FD_BY_ID, attr)


def apply(cgroup_dir: str, model: DeviceModel) -> None:
    """Make ``model`` the device policy of the cgroup at ``cgroup_dir``."""
    dirfd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        old = attached_ids(dirfd)
        allow_all = model.default_allow and not model.exceptions
        if not allow_all:
            prog = load(model)
            try:
                attr = bytearray(128)
                struct.pack_into("<IIII", attr, 0, dirfd, prog, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
                _bpf(BPF_PROG_ATTACH, attr)
            except OSError as err:
                raise EngineError(
                    f"attach device filter to {cgroup_dir}: {(err.strerror or str(err)).lower()}"
                ) from err
            finally:
                os.close(prog)
        for prog_id in old:
            try:
                fd = _fd_by_id(prog_id)
            except OSError:
                continue  # already gone
            try:
                attr = bytearray(128)
                struct.pack_into("<IIII", attr, 0, dirfd, fd, BPF_CGROUP_DEVICE, 0)
                _bpf(BPF_PROG_DETACH, attr)
            except OSError as err:
                raise EngineError(
                    f"detach old device filter from {cgroup_dir}: {(err.strerror or str(err)).lower()}"
                ) from err
            finally:
                os.close(fd)
    except OSError as err:
        raise EngineError(f"device filter for {cgroup_dir}: {(err.strerror or str(err)).lower()}") from err
    finally:
        os.close(dirfd)
