"""The parent<->child protocol and the C interpreter, exercised for real without root.

A child made with no new namespaces needs no privileges, so these tests run the actual C code
(engine/native/csrc/spawn.c) on small programs: encoding, the message sequence, error
reports, executable lookup, and exec.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from engine.runtime import protocol as p
from engine.runtime.process import ContainerError, Launch, launch

HEADER = Path(__file__).resolve().parents[3] / "engine/native/csrc/spawn.h"


def test_numbers_match_the_c_header():
    defines = dict(re.findall(r"#define (ENG_\w+) (\w+)", HEADER.read_text()))
    for name, value in defines.items():
        if not value.isdigit():
            continue
        py = name.removeprefix("ENG_")
        if py == "CHILD_FAILED":
            assert int(value) == p.CHILD_FAILED
        elif py.startswith(("MSG_", "OP_", "MNT_")) or py in ("MAX_INTS", "MAX_STRS"):
            assert getattr(p, py) == int(value), name
    # every op the header defines exists on the Python side, and no more
    c_ops = {k.removeprefix("ENG_") for k in defines if k.startswith("ENG_OP_")}
    assert c_ops == {k for k in vars(p) if k.startswith("OP_") and k != "OP_NAMES"}


def test_encoding_layout():
    prog = p.Program()
    prog.add(p.OP_RLIMIT, (7, 1024, (1 << 64) - 1))
    prog.add(p.OP_SYMLINK, (), ("pts/ptmx", b"/dev/ptmx"))
    raw = prog.encode()
    import struct

    assert struct.unpack_from("<III", raw, 0) == (p.OP_RLIMIT, 3, 0)
    assert struct.unpack_from("<3q", raw, 12) == (7, 1024, -1)  # RLIM_INFINITY travels as -1
    off = 12 + 24
    assert struct.unpack_from("<III", raw, off) == (p.OP_SYMLINK, 0, 2)
    off += 12
    assert struct.unpack_from("<I", raw, off) == (8,)
    assert raw[off + 4 : off + 13] == b"pts/ptmx\0"
    assert prog.names() == ["OP_RLIMIT", "OP_SYMLINK"]


def test_too_many_arguments_is_refused():
    from engine.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="too many values"):
        p.Program().add(p.OP_USER, tuple(range(p.MAX_INTS + 1)))


def _exec_program(args, env, cwd="/", umask=0o022):
    prog = p.Program()
    prog.add(p.OP_UMASK, (umask,))
    prog.add(p.OP_CHDIR, (0,), (cwd,))
    path = next((e[5:] for e in env if e.startswith("PATH=")), None)
    prog.add(p.OP_LOOKUP, (), (args[0],) if path is None else (args[0], path))
    prog.add(p.OP_READY)
    prog.add(p.OP_EXEC, (len(args), len(env)), (*args, *env))
    return prog


def _wait(pid):
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_child_runs_the_program_and_execs(tmp_path):
    out = tmp_path / "out"
    script = f"umask > {out}; pwd >> {out}; echo $FOO >> {out}"
    prog = _exec_program(
        ["sh", "-c", script], ["PATH=/usr/bin:/bin", "FOO=bar"], cwd=str(tmp_path), umask=0o027
    )
    pid = launch(Launch({}), lambda _pid: prog)
    assert _wait(pid) == 0
    assert out.read_text().split() == ["0027", str(tmp_path), "bar"]


def test_lookup_failure_is_reported_before_ready():
    prog = _exec_program(["no-such-binary-xyz"], ["PATH=/usr/bin:/bin"])
    with pytest.raises(
        ContainerError, match=r'exec: "no-such-binary-xyz": executable file not found in \$PATH'
    ):
        launch(Launch({}), lambda _pid: prog)


def test_setup_error_names_the_operation(tmp_path):
    prog = _exec_program(["true"], ["PATH=/bin"], cwd=str(tmp_path / "missing"))
    with pytest.raises(ContainerError, match="chdir to cwd .* set in config.json failed: No such file"):
        launch(Launch({}), lambda _pid: prog)


def test_go_carries_state_for_hooks(tmp_path):
    # an OP_HOOK runs in the child with the state JSON from GO on its stdin
    out = tmp_path / "hook-stdin"
    prog = p.Program()
    prog.add(p.OP_HOOK, (5, 3, 0), ("/bin/sh", "sh", "-c", f"cat > {out}"))
    prog.add(p.OP_LOOKUP, (), ("/bin/true",))
    prog.add(p.OP_READY)
    prog.add(p.OP_EXEC, (1, 0), ("/bin/true",))
    pid = launch(Launch({}), lambda _pid: prog, state_json=lambda pid: f'{{"pid":{pid}}}'.encode())
    assert _wait(pid) == 0
    assert out.read_text() == f'{{"pid":{pid}}}'


def test_failing_hook_fails_the_setup():
    prog = p.Program()
    prog.add(p.OP_HOOK, (5, 3, 0), ("/bin/sh", "sh", "-c", "exit 4"))
    prog.add(p.OP_READY)
    with pytest.raises(ContainerError, match="error running hook /bin/sh: exit status 4"):
        launch(Launch({}), lambda _pid: prog)


def test_hook_timeout():
    prog = p.Program()
    prog.add(p.OP_HOOK, (1, 3, 0), ("/bin/sh", "sh", "-c", "sleep 5"))
    prog.add(p.OP_READY)
    with pytest.raises(ContainerError, match="timeout after 1 seconds"):
        launch(Launch({}), lambda _pid: prog)


def test_unknown_op_is_an_error():
    prog = p.Program()
    prog.ops.append((999, (), ()))
    with pytest.raises(ContainerError, match="unknown op 999"):
        launch(Launch({}), lambda _pid: prog)


def test_exec_fifo_blocks_until_read(tmp_path):
    fifo = tmp_path / "exec.fifo"
    os.mkfifo(fifo)
    dirfd = os.open(tmp_path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    marker = tmp_path / "ran"
    prog = p.Program()
    prog.add(p.OP_LOOKUP, (), ("/bin/sh",))
    prog.add(p.OP_READY)
    prog.add(p.OP_WAIT_FIFO, (dirfd,), ("exec.fifo",))
    prog.add(p.OP_EXEC, (3, 0), ("/bin/sh", "-c", f"touch {marker}"))
    try:
        pid = launch(Launch({}), lambda _pid: prog)
    finally:
        os.close(dirfd)
    import time

    time.sleep(0.1)
    assert not marker.exists()  # still blocked on the FIFO
    fd = os.open(fifo, os.O_RDONLY)
    assert os.read(fd, 1) == b"0"
    os.close(fd)
    assert _wait(pid) == 0
    assert marker.exists()


def test_hooks_that_do_not_read_stdin_are_fine():
    # the state is written after the hook started; a hook that exits at once must not turn
    # into a SIGPIPE for the container process (run it many times: it is a race)
    for _ in range(30):
        prog = p.Program()
        prog.add(p.OP_HOOK, (5, 3, 0), ("/bin/sh", "sh", "-c", "exit 0"))
        prog.add(p.OP_LOOKUP, (), ("/bin/true",))
        prog.add(p.OP_READY)
        prog.add(p.OP_EXEC, (1, 0), ("/bin/true",))
        pid = launch(Launch({}), lambda _pid, prog=prog: prog, state_json=lambda _pid: b"x" * 200_000)
        assert _wait(pid) == 0
