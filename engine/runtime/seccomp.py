"""Compile an OCI ``linux.seccomp`` object into a classic BPF program.

The runtime loads the program itself with seccomp(2) (so it controls the flags and the
moment of loading, right before exec), therefore this module only *compiles*:

* ``compile_profile(seccomp)`` returns the raw ``struct sock_filter`` array (8 bytes per
  instruction) that libseccomp generates for the native architecture plus every
  architecture the profile lists.
* ``filter_flags(seccomp)`` returns the ``SECCOMP_FILTER_FLAG_*`` bits to pass to
  seccomp(2), from the profile's ``flags`` (and NEW_LISTENER when a rule uses
  SCMP_ACT_NOTIFY).

Design choices:

* libseccomp is reached through cffi in ABI mode (``ffi.dlopen("libseccomp.so.2")``): no C
  compile step, and the library is opened lazily on the first compile so that importing
  this module (the runtime CLI does) costs nothing but the stdlib. The declarations are
  pre-parsed into ``_seccomp_ffi.py`` (cffi's "out-of-line ABI mode", plain Python that
  ``generate_ffi_module()`` writes): parsing the cdef at run time costs ~23 ms of pycparser
  per process, the generated module ~1 ms. If it cannot be loaded the cdef is parsed.
* The program is exported with ``seccomp_export_bpf`` into a memfd and read back.
* Semantics follow runc, which is what users' profiles are written against: an unknown
  syscall name is skipped (the kernel or libseccomp does not know it, so nothing can call
  it by that name); a rule whose action equals the default action is redundant and skipped
  (libseccomp refuses it); SCMP_ACT_ERRNO and SCMP_ACT_TRACE without ``errnoRet`` return
  EPERM; when the same argument index appears twice in one rule the conditions are added
  as separate rules (an OR), otherwise they form one rule (an AND); MASKED_EQ takes
  ``value`` as the mask and ``valueTwo`` as the expected value.
* Malformed input (unknown action, operator, architecture or flag, an argument index
  outside 0..5, a missing ``names`` list, ``errnoRet`` on an action that has no return
  value) raises ``InvalidArgument`` naming the offending field.
* SCMP_ACT_NOTIFY compiles to SECCOMP_RET_USER_NOTIF and adds
  SECCOMP_FILTER_FLAG_NEW_LISTENER to ``filter_flags``; the profile must carry
  ``listenerPath`` and the caller must send the listener fd returned by seccomp(2) to that
  socket (runtime-spec "seccomp state"). Not allowed as the default action nor for
  ``write``, as in runc (the runtime needs write to report the listener fd).
* Syscalls newer than the profile fail with ENOSYS, not with the default action, as with
  runc: unless the default action is permissive (ALLOW, LOG, TRACE) or already ENOSYS, a
  stub is put in front of libseccomp's program that, per architecture, returns
  ERRNO(ENOSYS) for a syscall number above the largest one the profile names. A caller
  (glibc) then falls back to an older syscall instead of failing with EPERM. On x86_64
  the x32 half (bit 30 set) has its own bound when the profile lists SCMP_ARCH_X32 and is
  left to the filter otherwise. Unlike runc, a profile without ``architectures`` gets the
  stub for the native architecture (the only one its filter accepts).
"""

from __future__ import annotations

import errno
import os
import struct
import threading
from typing import Any

from engine.errors import EngineError, InvalidArgument

# SECCOMP_FILTER_FLAG_* from <linux/seccomp.h>
FLAG_TSYNC = 1 << 0
FLAG_LOG = 1 << 1
FLAG_SPEC_ALLOW = 1 << 2
FLAG_NEW_LISTENER = 1 << 3
FLAG_TSYNC_ESRCH = 1 << 4
FLAG_WAIT_KILLABLE_RECV = 1 << 5

_SPEC_FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": FLAG_TSYNC,
    "SECCOMP_FILTER_FLAG_LOG": FLAG_LOG,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": FLAG_SPEC_ALLOW,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": FLAG_WAIT_KILLABLE_RECV,
}

# libseccomp action values (seccomp.h)
ACT_KILL_PROCESS = 0x80000000
ACT_KILL_THREAD = 0x00000000
ACT_TRAP = 0x00030000
ACT_NOTIFY = 0x7FC00000
ACT_LOG = 0x7FFC0000
ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO_BASE = 0x00050000
_ACT_TRACE_BASE = 0x7FF00000

_FIXED_ACTIONS = {
    "SCMP_ACT_KILL": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_THREAD": ACT_KILL_THREAD,
    "SCMP_ACT_KILL_PROCESS": ACT_KILL_PROCESS,
    "SCMP_ACT_TRAP": ACT_TRAP,
    "SCMP_ACT_ALLOW": ACT_ALLOW,
    "SCMP_ACT_LOG": ACT_LOG,
    "SCMP_ACT_NOTIFY": ACT_NOTIFY,
}
_RET_ACTIONS = {"SCMP_ACT_ERRNO": _ACT_ERRNO_BASE, "SCMP_ACT_TRACE": _ACT_TRACE_BASE}

_OPS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# what this module accepts, for `features` (runtime-spec features.md: linux.seccomp)
SUPPORTED_ACTIONS: tuple[str, ...] = tuple(sorted({*_FIXED_ACTIONS, *_RET_ACTIONS}))
SUPPORTED_OPERATORS: tuple[str, ...] = tuple(sorted(_OPS))
SUPPORTED_FLAGS: tuple[str, ...] = tuple(sorted(_SPEC_FLAGS))

# enum scmp_filter_attr
_ATTR_CTL_NNP = 3
_ATTR_CTL_TSYNC = 4
_ATTR_CTL_LOG = 6
_ATTR_CTL_SSB = 7
_ATTR_CTL_OPTIMIZE = 8

_MAX_ARGS = 6
_ENOSYS_ACTION = _ACT_ERRNO_BASE | errno.ENOSYS
_PERMISSIVE_DEFAULTS = {ACT_ALLOW, ACT_LOG}
_ARCH_X86_64 = 0xC000003E  # AUDIT_ARCH_X86_64 (also libseccomp's token for it)
_ARCH_X32 = 0x4000003E  # libseccomp's made-up token for x32; the kernel reports x86_64
_X32_BIT = 0x40000000
# classic BPF opcodes
_LD_W_ABS = 0x20
_JMP_JA = 0x05
_JMP_JEQ_K = 0x15
_JMP_JGT_K = 0x25
_JMP_JSET_K = 0x45
_RET_K = 0x06
_NR_SCMP_ERROR = -1
_U64 = (1 << 64) - 1

_CDEF = """
typedef void *scmp_filter_ctx;
struct scmp_arg_cmp {
    unsigned int arg;
    int op;
    uint64_t datum_a;
    uint64_t datum_b;
};
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);
"""

_lib_lock = threading.Lock()
_lib: tuple[Any, Any] | None = None


def generate_ffi_module(path: str | None = None) -> str:
    """Write the pre-parsed cffi module for ``_CDEF`` (run after changing ``_CDEF``)."""
    from cffi import FFI

    target = path or os.path.join(os.path.dirname(os.path.abspath(__file__)), "_seccomp_ffi.py")
    builder = FFI()
    builder.cdef(_CDEF)
    builder.set_source("engine.runtime._seccomp_ffi", None)
    builder.emit_python_code(target)
    return target


def _new_ffi() -> Any:
    try:
        from engine.runtime._seccomp_ffi import ffi

        return ffi
    except Exception:  # a cffi backend that does not take the generated tables: parse
        from cffi import FFI

        ffi = FFI()
        ffi.cdef(_CDEF)
        return ffi


def _libseccomp() -> tuple[Any, Any]:
    """Open libseccomp once (cffi ABI mode) and return ``(ffi, lib)``."""
    global _lib
    with _lib_lock:
        if _lib is None:
            ffi = _new_ffi()
            try:
                lib = ffi.dlopen("libseccomp.so.2")
            except OSError as err:
                raise EngineError(f"cannot load libseccomp.so.2 (install libseccomp2): {err}") from err
            _lib = (ffi, lib)
        return _lib


def _errno_value(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0xFFFF:
        raise InvalidArgument(f"seccomp {where}: errnoRet must be an integer in 0..65535, got {value!r}")
    return value


def _action(name: Any, errno_ret: Any, where: str) -> int:
    """Resolve an OCI action name (and optional errnoRet) to a libseccomp action value."""
    if not isinstance(name, str):
        raise InvalidArgument(f"seccomp {where}: action must be a string, got {name!r}")
    if name in _RET_ACTIONS:
        ret = errno.EPERM if errno_ret is None else _errno_value(errno_ret, where)
        return _RET_ACTIONS[name] | ret
    if name in _FIXED_ACTIONS:
        if errno_ret is not None:
            raise InvalidArgument(
                f"seccomp {where}: errnoRet is only valid with SCMP_ACT_ERRNO or SCMP_ACT_TRACE, not {name}"
            )
        return _FIXED_ACTIONS[name]
    raise InvalidArgument(f"seccomp {where}: unknown action {name!r}")


def _conditions(args: Any, where: str) -> list[list[tuple[int, int, int, int]]]:
    """Turn a rule's ``args`` into groups of (index, op, datum_a, datum_b); one group per rule."""
    if args is None:
        return [[]]
    if not isinstance(args, list):
        raise InvalidArgument(f"seccomp {where}: args must be a list")
    conds: list[tuple[int, int, int, int]] = []
    for i, arg in enumerate(args):
        at = f"{where} args[{i}]"
        if not isinstance(arg, dict):
            raise InvalidArgument(f"seccomp {at}: must be an object")
        index = arg.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < _MAX_ARGS:
            raise InvalidArgument(f"seccomp {at}: index must be an integer in 0..5, got {index!r}")
        op = arg.get("op")
        if op not in _OPS:
            raise InvalidArgument(f"seccomp {at}: unknown operator {op!r}")
        values = []
        for key in ("value", "valueTwo"):
            v = arg.get(key, 0)
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _U64:
                raise InvalidArgument(f"seccomp {at}: {key} must be an unsigned 64-bit integer, got {v!r}")
            values.append(v)
        conds.append((index, _OPS[op], values[0], values[1]))
    indexes = [c[0] for c in conds]
    if len(set(indexes)) != len(indexes):
        # libseccomp cannot AND two conditions on one argument: one rule per condition
        return [[c] for c in conds]
    return [conds]


def _uses_notify(seccomp: dict) -> bool:
    return any(
        isinstance(s, dict) and s.get("action") == "SCMP_ACT_NOTIFY" for s in seccomp.get("syscalls") or []
    )


def filter_flags(seccomp: dict) -> int:
    """Return the SECCOMP_FILTER_FLAG_* bits that seccomp(2) must get for this profile."""
    if not isinstance(seccomp, dict):
        raise InvalidArgument("seccomp: must be an object")
    flags = seccomp.get("flags") or []
    if not isinstance(flags, list):
        raise InvalidArgument("seccomp flags: must be a list")
    bits = 0
    for flag in flags:
        if flag not in _SPEC_FLAGS:
            raise InvalidArgument(f"seccomp flags: unknown flag {flag!r}")
        bits |= _SPEC_FLAGS[flag]
    if _uses_notify(seccomp):
        bits |= FLAG_NEW_LISTENER
    return bits


def _check_notify(seccomp: dict, default: int) -> None:
    if default == ACT_NOTIFY:
        raise InvalidArgument("seccomp defaultAction: SCMP_ACT_NOTIFY cannot be the default action")
    if not _uses_notify(seccomp):
        return
    if not seccomp.get("listenerPath"):
        raise InvalidArgument("seccomp: SCMP_ACT_NOTIFY is used but listenerPath is not set")
    for s in seccomp.get("syscalls") or []:
        if s.get("action") == "SCMP_ACT_NOTIFY" and "write" in (s.get("names") or []):
            raise InvalidArgument("seccomp: SCMP_ACT_NOTIFY cannot be used for the write syscall")


def compile_profile(seccomp: dict) -> bytes:
    """Compile an OCI ``linux.seccomp`` object into raw ``struct sock_filter`` bytes."""
    if not isinstance(seccomp, dict):
        raise InvalidArgument("seccomp: must be an object")
    default = _action(seccomp.get("defaultAction"), seccomp.get("defaultErrnoRet"), "defaultAction")
    _check_notify(seccomp, default)
    flag_bits = filter_flags(seccomp)
    syscalls = seccomp.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidArgument("seccomp syscalls: must be a list")
    archs = seccomp.get("architectures") or []
    if not isinstance(archs, list):
        raise InvalidArgument("seccomp architectures: must be a list")

    # validate everything before touching libseccomp, so errors do not depend on it
    rules: list[tuple[str, int, list[list[tuple[int, int, int, int]]]]] = []
    for i, entry in enumerate(syscalls):
        where = f"syscalls[{i}]"
        if not isinstance(entry, dict):
            raise InvalidArgument(f"seccomp {where}: must be an object")
        names = entry.get("names")
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
            raise InvalidArgument(f"seccomp {where}: names must be a non-empty list of syscall names")
        action = _action(entry.get("action"), entry.get("errnoRet"), where)
        groups = _conditions(entry.get("args"), where)
        if action == default:
            continue  # redundant: the default already does this (runc skips it too)
        for name in names:
            rules.append((name, action, groups))

    ffi, lib = _libseccomp()
    arch_tokens = []
    for arch in archs:
        token = 0
        if isinstance(arch, str) and arch.startswith("SCMP_ARCH_"):
            token = lib.seccomp_arch_resolve_name(arch[len("SCMP_ARCH_") :].lower().encode())
        if not token:
            raise InvalidArgument(f"seccomp architectures: unknown architecture {arch!r}")
        arch_tokens.append(token)

    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise EngineError(f"seccomp_init failed for default action {seccomp.get('defaultAction')}")
    try:
        _set_attr(lib, ctx, _ATTR_CTL_NNP, 0, "no_new_privs")
        if flag_bits & FLAG_TSYNC:
            _set_attr(lib, ctx, _ATTR_CTL_TSYNC, 1, "tsync")
        if flag_bits & FLAG_LOG:
            _set_attr(lib, ctx, _ATTR_CTL_LOG, 1, "log")
        if flag_bits & FLAG_SPEC_ALLOW:
            _set_attr(lib, ctx, _ATTR_CTL_SSB, 1, "spec_allow")
        if len(syscalls) > 32:
            # binary tree of syscalls: shorter paths for long profiles (like runc does)
            lib.seccomp_attr_set(ctx, _ATTR_CTL_OPTIMIZE, 2)
        native = lib.seccomp_arch_native()
        for token in arch_tokens:
            if token == native:
                continue
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -errno.EEXIST:
                raise InvalidArgument(f"seccomp architectures: cannot add {token:#x}: {os.strerror(-rc)}")
        for name, action, groups in rules:
            nr = lib.seccomp_syscall_resolve_name(name.encode())
            if nr == _NR_SCMP_ERROR:
                continue  # unknown to libseccomp: skipped, as runc does
            for group in groups:
                arr = ffi.new("struct scmp_arg_cmp[]", max(len(group), 1))
                for j, (index, op, a, b) in enumerate(group):
                    arr[j].arg, arr[j].op, arr[j].datum_a, arr[j].datum_b = index, op, a, b
                rc = lib.seccomp_rule_add_array(ctx, action, nr, len(group), arr)
                if rc < 0:
                    raise InvalidArgument(f"seccomp: cannot add rule for syscall {name}: {os.strerror(-rc)}")
        prog = _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)
    if _wants_enosys_stub(default):
        names = {name for entry in syscalls for name in entry["names"]}
        prog = _enosys_stub(lib, arch_tokens or [lib.seccomp_arch_native()], names) + prog
    return prog


def _wants_enosys_stub(default: int) -> bool:
    if default in _PERMISSIVE_DEFAULTS or default & 0xFFFF0000 == _ACT_TRACE_BASE:
        return False
    return default != _ENOSYS_ACTION


def _enosys_stub(lib: Any, tokens: list[int], names: set[str]) -> bytes:
    """BPF to put before the filter: ERRNO(ENOSYS) for syscalls above the profile's largest.

    Layout: load the arch; per arch a block "jeq arch (else next block); load nr;
    [x86_64: jset x32 bit]; jgt largest → ENOSYS, else → filter"; after the blocks a jump
    to the filter, then the ENOSYS return. Jumps are forward and short (< 256).
    """
    largest: dict[int, int] = {}
    for token in dict.fromkeys(tokens):
        nrs = [lib.seccomp_syscall_resolve_name_arch(token, n.encode()) for n in names]
        valid = [nr for nr in nrs if nr >= 0]
        if valid:
            largest[token] = max(valid)
    x32 = largest.pop(_ARCH_X32, None)
    if x32 is not None and _ARCH_X86_64 not in largest:
        largest[_ARCH_X86_64] = -1  # only the x32 half has a bound
    if not largest:
        return b""

    # instructions as (code, jt, jf, k) with symbolic jump targets resolved below
    code: list[tuple[int, Any, Any, int]] = [(_LD_W_ABS, 0, 0, 4)]
    for i, (arch, top) in enumerate(largest.items()):
        nxt = f"arch{i + 1}"
        code.append((_JMP_JEQ_K, 0, nxt, arch))
        code.append((_LD_W_ABS, 0, 0, 0))
        if arch == _ARCH_X86_64:
            code.append((_JMP_JSET_K, f"x32_{i}", 0, _X32_BIT))
            code.append((_JMP_JGT_K, "enosys", "filter", top) if top >= 0 else (_JMP_JA, 0, 0, "filter"))
            code.append(("label", f"x32_{i}", 0, 0))
            if x32 is not None:
                code.append((_JMP_JGT_K, "enosys", "filter", x32))
            else:
                code.append((_JMP_JA, 0, 0, "filter"))
        else:
            code.append((_JMP_JGT_K, "enosys", "filter", top))
        code.append(("label", nxt, 0, 0))
    code.append((_JMP_JA, 0, 0, "filter"))
    code.append(("label", "enosys", 0, 0))
    code.append((_RET_K, 0, 0, _ENOSYS_ACTION))
    code.append(("label", "filter", 0, 0))
    return _assemble(code)


def _assemble(code: list[tuple[Any, Any, Any, Any]]) -> bytes:
    """Resolve label names to forward offsets and pack ``struct sock_filter`` entries."""
    labels: dict[str, int] = {}
    body = []
    for ins in code:
        if ins[0] == "label":
            labels[ins[1]] = len(body)
        else:
            body.append(ins)

    def rel(target: Any, pc: int, limit: int) -> int:
        off = labels[target] - pc - 1 if isinstance(target, str) else int(target)
        if not 0 <= off <= limit:
            raise EngineError(f"seccomp enosys stub: jump of {off} does not fit")
        return off

    out = bytearray()
    for pc, (op, jt, jf, k) in enumerate(body):
        if op == _JMP_JA:
            out += struct.pack("=HBBI", op, 0, 0, rel(k, pc, 0xFFFFFFFF))
        else:
            out += struct.pack("=HBBI", op, rel(jt, pc, 255), rel(jf, pc, 255), k)
    return bytes(out)


def _set_attr(lib: Any, ctx: Any, attr: int, value: int, what: str) -> None:
    rc = lib.seccomp_attr_set(ctx, attr, value)
    if rc < 0:
        raise InvalidArgument(f"seccomp: cannot set filter attribute {what}: {os.strerror(-rc)}")


def _export(lib: Any, ctx: Any) -> bytes:
    fd = os.memfd_create("seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise EngineError(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
        size = os.lseek(fd, 0, os.SEEK_END)
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while size > 0:
            chunk = os.read(fd, size)
            if not chunk:
                break
            chunks.append(chunk)
            size -= len(chunk)
        prog = b"".join(chunks)
    finally:
        os.close(fd)
    if not prog or len(prog) % 8:
        raise EngineError(f"seccomp_export_bpf produced {len(prog)} bytes, not whole instructions")
    return prog
