"""engine.runtime.seccomp: compile OCI seccomp profiles, then load them for real in a child.

Each behaviour test forks, installs the compiled program with seccomp(2) and checks what
the syscalls return. Needs a kernel with seccomp filters (any Linux since 3.5); not root.
"""

from __future__ import annotations

import ast
import ctypes
import errno
import json
import os
import signal
import socket
import struct
from pathlib import Path

import pytest
from seccomp_loader import run_filtered, try_call

from engine.errors import InvalidArgument
from engine.runtime import seccomp
from engine.runtime.seccomp import compile_profile, filter_flags

DATA = Path(__file__).resolve().parents[2] / "support" / "data"
ALLOW = "SCMP_ACT_ALLOW"
_libc = ctypes.CDLL(None, use_errno=True)


def deny(names, action="SCMP_ACT_ERRNO", default=ALLOW, **extra):
    rule = {"names": names, "action": action, **extra}
    return {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"], "syscalls": [rule]}


def libc_call(name, *args):
    """Call a libc function through ctypes; raise OSError on -1 like os.* does."""

    def call():
        if getattr(_libc, name)(*args) == -1:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return call


def instructions(prog: bytes) -> list[tuple[int, int, int, int]]:
    return [struct.unpack("=HBBI", prog[i : i + 8]) for i in range(0, len(prog), 8)]


def test_program_is_whole_sock_filter_instructions():
    prog = compile_profile(deny(["mkdir"]))
    assert len(prog) % 8 == 0 and len(prog) >= 8 * 4
    codes = instructions(prog)
    # first load is the arch field of struct seccomp_data (offset 4), last is a return
    assert codes[0][0] == 0x20 and codes[0][3] == 4
    assert codes[-1][0] == 0x06


def test_denied_syscall_returns_configured_errno(tmp_path):
    prog = compile_profile(deny(["mkdir", "mkdirat"], errnoRet=errno.EACCES))
    result, status = run_filtered(
        prog, lambda: [try_call(lambda: os.mkdir(tmp_path / "d")), try_call(os.getcwd)]
    )
    assert result == [errno.EACCES, 0]
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    assert not (tmp_path / "d").exists()


def test_errno_without_errnoret_is_eperm():
    prog = compile_profile(deny(["getcwd"]))
    result, _ = run_filtered(prog, lambda: try_call(os.getcwd))
    assert result == errno.EPERM


def test_default_errno_ret_applies_to_default_action(tmp_path):
    profile = {
        "defaultAction": ALLOW,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}],
    }
    assert run_filtered(compile_profile(profile), lambda: try_call(lambda: os.mkdir(tmp_path / "x")))[0] == 30
    docker = json.loads((DATA / "seccomp_docker_like.json").read_text())
    docker["defaultErrnoRet"] = errno.ENOTSUP
    # mount is not in the allow list: it gets the default errno
    probe = libc_call("mount", b"none", str(tmp_path / "nope").encode(), b"tmpfs", 0, None)
    assert run_filtered(compile_profile(docker), lambda: try_call(probe))[0] == errno.ENOTSUP


def test_unknown_syscall_names_are_skipped():
    with_unknown = compile_profile(deny(["mkdir", "no_such_syscall", "another_fake_one"]))
    assert with_unknown == compile_profile(deny(["mkdir"]))


def test_rule_equal_to_default_action_is_skipped():
    profile = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "write", "exit_group"], "action": ALLOW},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"},
        ],
    }
    without = {"defaultAction": "SCMP_ACT_ERRNO", "syscalls": profile["syscalls"][:1]}
    assert compile_profile(profile) == compile_profile(without)


def test_arg_condition_and_across_indexes():
    rule = [
        {"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
        # Python adds SOCK_CLOEXEC to the type: compare the low bits only
        {"index": 1, "value": 0xF, "valueTwo": socket.SOCK_DGRAM, "op": "SCMP_CMP_MASKED_EQ"},
    ]
    prog = compile_profile(deny(["socket"], errnoRet=errno.EAFNOSUPPORT, args=rule))

    def probe():
        return [
            try_call(lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).close()),
            try_call(lambda: socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()),
            try_call(lambda: socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).close()),
        ]

    assert run_filtered(prog, probe)[0] == [errno.EAFNOSUPPORT, 0, 0]


def test_two_conditions_on_one_index_are_an_or():
    rule = [
        {"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": socket.AF_INET6, "op": "SCMP_CMP_EQ"},
    ]
    prog = compile_profile(deny(["socket"], errnoRet=errno.EACCES, args=rule))

    def probe():
        return [
            try_call(lambda: socket.socket(socket.AF_INET).close()),
            try_call(lambda: socket.socket(socket.AF_INET6).close()),
            try_call(lambda: socket.socket(socket.AF_UNIX).close()),
        ]

    assert run_filtered(prog, probe)[0] == [errno.EACCES, errno.EACCES, 0]


def test_masked_eq_uses_value_as_mask_and_value_two_as_expected(tmp_path):
    existing = tmp_path / "f"
    existing.write_text("x")
    # openat(dirfd, path, flags): deny when (flags & O_CREAT) == O_CREAT
    rule = [{"index": 2, "value": os.O_CREAT, "valueTwo": os.O_CREAT, "op": "SCMP_CMP_MASKED_EQ"}]
    prog = compile_profile(deny(["openat", "open", "creat"], errnoRet=errno.EDQUOT, args=rule))

    def probe():
        return [
            try_call(lambda: os.close(os.open(existing, os.O_RDONLY))),
            try_call(lambda: os.close(os.open(tmp_path / "new", os.O_WRONLY | os.O_CREAT))),
        ]

    assert run_filtered(prog, probe)[0] == [0, errno.EDQUOT]
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("op", "value", "denied_umasks"),
    [
        ("SCMP_CMP_NE", 0o22, [0o77, 0o7]),
        ("SCMP_CMP_LT", 0o22, [0o7]),
        ("SCMP_CMP_LE", 0o22, [0o7, 0o22]),
        ("SCMP_CMP_GE", 0o22, [0o22, 0o77]),
        ("SCMP_CMP_GT", 0o22, [0o77]),
    ],
)
def test_comparison_operators(op, value, denied_umasks):
    prog = compile_profile(deny(["umask"], args=[{"index": 0, "value": value, "op": op}]))
    # glibc's umask() cannot fail, so call the raw syscall (95 on x86_64) to see the errno
    result, _ = run_filtered(prog, lambda: [try_call(libc_call("syscall", 95, m)) for m in (0o7, 0o22, 0o77)])
    expect = [errno.EPERM if m in denied_umasks else 0 for m in (0o7, 0o22, 0o77)]
    assert result == expect


@pytest.mark.parametrize(
    "action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"]
)
def test_fatal_actions_deliver_sigsys(action):
    prog = compile_profile(deny(["getcwd"], action=action))
    result, status = run_filtered(prog, lambda: try_call(os.getcwd))
    assert result is None
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGSYS


def test_log_and_allow_let_the_syscall_run():
    for action in ("SCMP_ACT_LOG", ALLOW):
        profile = deny(
            ["getcwd"], action=action, default="SCMP_ACT_ALLOW" if action != ALLOW else "SCMP_ACT_LOG"
        )
        assert run_filtered(compile_profile(profile), lambda: try_call(os.getcwd))[0] == 0


def test_trace_without_tracer_returns_enosys():
    # with no ptrace tracer attached the kernel fails a SECCOMP_RET_TRACE syscall with ENOSYS
    prog = compile_profile(deny(["getcwd"], action="SCMP_ACT_TRACE", errnoRet=5))
    assert run_filtered(prog, lambda: try_call(os.getcwd))[0] == errno.ENOSYS


def test_notify_compiles_to_user_notif_and_asks_for_a_listener():
    profile = deny(["getcwd"], action="SCMP_ACT_NOTIFY")
    profile["listenerPath"] = "/run/agent.sock"
    prog = compile_profile(profile)
    rets = {k for code, _, _, k in instructions(prog) if code == 0x06}
    assert seccomp.ACT_NOTIFY in rets
    assert filter_flags(profile) & seccomp.FLAG_NEW_LISTENER


def test_filter_flags():
    assert filter_flags({"defaultAction": ALLOW}) == 0
    flags = ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]
    assert filter_flags({"defaultAction": ALLOW, "flags": flags}) == 1 | 2 | 4
    assert filter_flags({"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]}) == 32


def test_flags_are_accepted_by_the_kernel():
    profile = deny(["getcwd"])
    profile["flags"] = ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"]
    prog = compile_profile(profile)
    assert run_filtered(prog, lambda: try_call(os.getcwd), flags=filter_flags(profile))[0] == errno.EPERM


def test_docker_shaped_profile(tmp_path):
    profile = json.loads((DATA / "seccomp_docker_like.json").read_text())
    prog = compile_profile(profile)
    assert len(prog) // 8 > 100
    CLONE_NEWUSER, CLONE_NEWNS = 0x10000000, 0x00020000
    target = str(tmp_path / "m").encode()

    def probe():
        return {
            "mkdir": try_call(lambda: os.mkdir(tmp_path / "ok")),
            "getcwd": try_call(os.getcwd),
            "unshare_user": try_call(libc_call("unshare", CLONE_NEWUSER)),
            "unshare_ns": try_call(libc_call("unshare", CLONE_NEWNS)),
            "mount": try_call(libc_call("mount", b"none", target, b"tmpfs", 0, None)),
            "keyctl": try_call(libc_call("syscall", 250, 0, 0, 0, 0)),  # keyctl on x86_64
            "clone3": try_call(libc_call("syscall", 435, None, 0)),
            "personality_query": try_call(libc_call("personality", ctypes.c_ulong(0xFFFFFFFF))),
            "personality_other": try_call(libc_call("personality", ctypes.c_ulong(0x0040000))),
            "vsock": try_call(lambda: socket.socket(40, socket.SOCK_STREAM).close()),
            "unix": try_call(lambda: socket.socket(socket.AF_UNIX).close()),
            "fork": try_call(lambda: os.waitpid(_fork_exit(), 0)),
        }

    result, status = run_filtered(prog, probe)
    assert os.WIFEXITED(status)
    assert result == {
        "mkdir": 0,
        "getcwd": 0,
        "unshare_user": errno.EPERM,  # not in the allow list: the default errno
        "unshare_ns": errno.EPERM,
        "mount": errno.EPERM,
        "keyctl": errno.ENOSYS,
        "clone3": errno.ENOSYS,
        "personality_query": 0,
        "personality_other": errno.EPERM,
        "vsock": errno.EPERM,
        "unix": 0,
        "fork": 0,  # clone without namespace flags passes the MASKED_EQ rule
    }
    assert (tmp_path / "ok").is_dir()


def _fork_exit() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return pid


@pytest.mark.parametrize(
    ("profile", "message"),
    [
        ({"defaultAction": "SCMP_ACT_NOPE"}, "unknown action 'SCMP_ACT_NOPE'"),
        ({}, "defaultAction: action must be a string"),
        (deny(["mkdir"], action="SCMP_ACT_BOGUS"), "syscalls[0]: unknown action"),
        (
            deny(["mkdir"], args=[{"index": 0, "value": 1, "op": "SCMP_CMP_XX"}]),
            "unknown operator 'SCMP_CMP_XX'",
        ),
        (
            deny(["mkdir"], args=[{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]),
            "index must be an integer in 0..5",
        ),
        (deny(["mkdir"], args=[{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]), "value must be an unsigned"),
        (deny(["mkdir"], args={"index": 0}), "args must be a list"),
        (deny([]), "names must be a non-empty list"),
        ({"defaultAction": ALLOW, "syscalls": [{"action": "SCMP_ACT_ERRNO"}]}, "names must be a non-empty"),
        (deny(["mkdir"], action=ALLOW, default="SCMP_ACT_ERRNO", errnoRet=1), "errnoRet is only valid"),
        (deny(["mkdir"], errnoRet=70000), "errnoRet must be an integer in 0..65535"),
        (
            {"defaultAction": ALLOW, "architectures": ["SCMP_ARCH_PDP11"]},
            "unknown architecture 'SCMP_ARCH_PDP11'",
        ),
        ({"defaultAction": ALLOW, "flags": ["SECCOMP_FILTER_FLAG_FAST"]}, "unknown flag"),
        ({"defaultAction": "SCMP_ACT_NOTIFY"}, "cannot be the default action"),
        (deny(["getcwd"], action="SCMP_ACT_NOTIFY"), "listenerPath is not set"),
        ("not a dict", "seccomp: must be an object"),
    ],
)
def test_malformed_profiles_raise_invalid_argument(profile, message):
    with pytest.raises(InvalidArgument) as info:
        compile_profile(profile)
    assert message in str(info.value)


def test_import_is_cheap():
    import subprocess
    import sys

    code = "import sys, engine.runtime.seccomp; print('cffi' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def _ffi_tables(source: str) -> tuple[list, dict]:
    """The literal arguments of the ``FFI(...)`` call in a generated module (format-proof)."""
    call = next(n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Call))
    return [ast.literal_eval(a) for a in call.args], {k.arg: ast.literal_eval(k.value) for k in call.keywords}


def test_generated_ffi_module_matches_the_cdef(tmp_path):
    target = tmp_path / "_seccomp_ffi.py"
    seccomp.generate_ffi_module(str(target))
    committed = Path(seccomp.__file__).with_name("_seccomp_ffi.py").read_text()
    assert _ffi_tables(target.read_text()) == _ffi_tables(committed), "run seccomp.generate_ffi_module()"
    ffi, _ = seccomp._libseccomp()
    assert type(ffi).__module__ == "_cffi_backend"  # the pre-parsed tables are in use


# -- syscalls newer than the profile get ENOSYS (runc's behaviour) ---------------------------


def test_syscalls_above_the_profile_get_enosys_others_the_default():
    profile = json.loads((DATA / "seccomp_docker_like.json").read_text())
    prog = compile_profile(profile)

    def probe():
        return {
            "beyond": try_call(libc_call("syscall", 1000, 0, 0)),
            "next_after_largest": try_call(libc_call("syscall", 453, 0, 0)),  # largest named: fchmodat2=452
            "unlisted_below": try_call(libc_call("syscall", 165, 0, 0, 0, 0, 0)),  # mount
            "allowed": try_call(os.getcwd),
        }

    result, _ = run_filtered(prog, probe)
    assert result == {
        "beyond": errno.ENOSYS,
        "next_after_largest": errno.ENOSYS,
        "unlisted_below": errno.EPERM,
        "allowed": 0,
    }


def test_enosys_stub_covers_every_listed_architecture():
    profile = json.loads((DATA / "seccomp_docker_like.json").read_text())
    stub_archs = set()
    for code, _jt, _jf, k in instructions(compile_profile(profile)):
        if code == 0x06:  # the stub ends at its ENOSYS return
            assert k == 0x00050000 | errno.ENOSYS
            break
        if code == 0x15:
            stub_archs.add(k)
    assert stub_archs == {0xC000003E, 0x40000003}  # x86_64 (with its x32 half) and i386


def test_enosys_stub_with_a_kill_default():
    allow = [
        "read",
        "write",
        "exit_group",
        "exit",
        "rt_sigreturn",
        "getcwd",
        "mmap",
        "munmap",
        "brk",
        "close",
    ]
    allow += ["futex", "rt_sigprocmask", "rt_sigaction", "getpid", "newfstatat", "fstat", "lseek", "madvise"]
    profile = {
        "defaultAction": "SCMP_ACT_KILL_PROCESS",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": allow, "action": ALLOW}],
    }
    result, status = run_filtered(
        compile_profile(profile), lambda: try_call(libc_call("syscall", 1000, 0, 0))
    )
    assert result == errno.ENOSYS and os.WIFEXITED(status)


@pytest.mark.parametrize(
    ("default", "ret"), [("SCMP_ACT_ALLOW", None), ("SCMP_ACT_LOG", None), ("SCMP_ACT_ERRNO", errno.ENOSYS)]
)
def test_no_enosys_stub_for_permissive_or_enosys_defaults(default, ret):
    rules = [{"names": ["getcwd"], "action": "SCMP_ACT_KILL"}]
    profile = {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"], "syscalls": rules}
    if ret is not None:
        profile["defaultErrnoRet"] = ret
    # with a stub the x86_64 arch is compared twice (stub, then libseccomp's program)
    arch_checks = [i for i in instructions(compile_profile(profile)) if i[0] == 0x15 and i[3] == 0xC000003E]
    assert len(arch_checks) == 1
    profile["defaultAction"], profile["defaultErrnoRet"] = "SCMP_ACT_ERRNO", errno.EPERM
    arch_checks = [i for i in instructions(compile_profile(profile)) if i[0] == 0x15 and i[3] == 0xC000003E]
    assert len(arch_checks) == 2
