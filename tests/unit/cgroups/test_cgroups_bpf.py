"""The v2 device filter program, run in a tiny interpreter of the instructions it uses.

Loading needs root and a kernel (tests/integration/cgroups covers that); here every
(type, major, minor, access) combination of interest is run through the assembled
program and compared with the kernel's v1 semantics for the same rule model.
"""

import itertools
import struct

import pytest

from engine.runtime.cgroups import devices as d
from engine.runtime.cgroups.v2 import bpf

ACCESS = {"m": 1, "r": 2, "w": 4}


def run(code: bytes, dev_type: int, access: int, major: int, minor: int) -> int:
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    regs = [0] * 11
    pc = 0
    insns = [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]
    for _ in range(10000):
        op, regbyte, off, imm = insns[pc]
        dst, src = regbyte & 0xF, regbyte >> 4
        pc += 1
        if op == bpf.LDX_W:
            assert src == 1
            regs[dst] = struct.unpack_from("<I", ctx, off)[0]
        elif op == bpf.ALU32_AND_K:
            regs[dst] &= imm & 0xFFFFFFFF
        elif op == bpf.ALU32_RSH_K:
            regs[dst] = (regs[dst] & 0xFFFFFFFF) >> imm
        elif op == bpf.ALU32_MOV_K:
            regs[dst] = imm & 0xFFFFFFFF
        elif op == bpf.ALU32_MOV_X:
            regs[dst] = regs[src] & 0xFFFFFFFF
        elif op == bpf.JNE_K:
            pc += off if regs[dst] != imm else 0
        elif op == bpf.JEQ_K:
            pc += off if regs[dst] == imm else 0
        elif op == bpf.JNE_X:
            pc += off if regs[dst] != regs[src] else 0
        elif op == bpf.EXIT:
            return regs[0]
        else:
            raise AssertionError(f"unexpected opcode {op:#x}")
    raise AssertionError("program did not terminate")


def reference(model: d.DeviceModel, dtype: str, major: int, minor: int, access: str) -> int:
    """The v1 devices controller's decision for the same model."""
    matching = [
        perms
        for (t, ma, mi), perms in model.exceptions.items()
        if t == dtype and ma in (major, d.WILDCARD) and mi in (minor, d.WILDCARD)
    ]
    if model.default_allow:
        return 0 if any(set(access) & set(p) for p in matching) else 1
    return 1 if any(set(access) <= set(p) for p in matching) else 0


RULESETS = [
    [{"allow": False, "access": "rwm"}, *d.DEFAULT_ALLOWED_DEVICES],
    [{"allow": False, "access": "rwm"}],
    [
        {"allow": True, "access": "rwm"},
        {"allow": False, "type": "c", "major": 1, "minor": 5, "access": "w"},
        {"allow": False, "type": "b", "major": 8, "access": "rwm"},
    ],
    [
        {"allow": False, "access": "rwm"},
        {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"},
        {"allow": True, "type": "c", "minor": 3, "access": "w"},
    ],
]


@pytest.mark.parametrize("rules", RULESETS)
def test_program_matches_kernel_semantics(rules):
    model = d.build_model(d.parse_rules(rules))
    code = bpf.assemble(model)
    assert len(code) % 8 == 0
    accesses = ["".join(c) for n in (1, 2, 3) for c in itertools.combinations("rwm", n)]
    for dtype, major, minor, access in itertools.product("bc", (1, 5, 8, 10, 136), (0, 3, 5, 200), accesses):
        want = reference(model, dtype, major, minor, access)
        got = run(code, bpf._TYPE[dtype], sum(ACCESS[a] for a in access), major, minor)
        assert got == want, (dtype, major, minor, access)


def test_default_devices_program_decisions():
    model = d.build_model(d.parse_rules([{"allow": False, "access": "rwm"}, *d.DEFAULT_ALLOWED_DEVICES]))
    code = bpf.assemble(model)
    assert run(code, bpf.DEV_CHAR, 2 | 4, 1, 3) == 1  # /dev/null read+write
    assert run(code, bpf.DEV_CHAR, 2, 1, 1) == 0  # /dev/mem
    assert run(code, bpf.DEV_BLOCK, 1, 8, 0) == 1  # mknod of any block device
    assert run(code, bpf.DEV_BLOCK, 2, 8, 0) == 0  # but not reading it
    assert run(code, bpf.DEV_CHAR, 2 | 4, 136, 7) == 1  # /dev/pts/7
