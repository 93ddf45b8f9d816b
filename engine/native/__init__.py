"""engine/native: syscalls Python 3.11 lacks, and the C part of container setup.

The compiled module ``engine.native._native`` (cffi, built at install by ``build.py``) exposes
raw C functions; this module wraps them so callers get ``OSError`` with errno and a message,
never a negative return code.  ``spawn`` is the one that makes containers: see csrc/spawn.c
for the child side and engine/runtime/protocol.py for the program it runs.

Kept import-light on purpose: ``engine-runtime`` imports this on every call.
"""

from __future__ import annotations

import os

from engine.native._native import ffi, lib

# clone(2)/setns(2) namespace flags
CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

MNT_FORCE = 1
MNT_DETACH = 2

PR_SET_NO_NEW_PRIVS = 38
PR_GET_NO_NEW_PRIVS = 39
PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1


def _check(rc: int, what: str) -> int:
    if rc < 0:
        err = ffi.errno if rc == -1 else -rc
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return rc


def unshare(flags: int) -> None:
    _check(lib.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    _check(lib.setns(fd, nstype), "setns")


def mount(
    source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None
) -> None:
    src = source.encode() if source is not None else ffi.NULL
    fs = fstype.encode() if fstype is not None else ffi.NULL
    dat = data.encode() if data is not None else ffi.NULL
    _check(lib.mount(src, target.encode(), fs, flags, dat), f"mount {source} to {target}")


def umount2(target: str, flags: int = 0) -> None:
    _check(lib.umount2(target.encode(), flags), f"umount {target}")


def pivot_root(new_root: str, put_old: str) -> None:
    _check(lib.eng_pivot_root(new_root.encode(), put_old.encode()), "pivot_root")


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(lib.prctl(option, a2, a3, a4, a5), "prctl")


def personality(persona: int) -> int:
    return _check(lib.personality(persona), "personality")


def capget(pid: int = 0) -> tuple[int, int, int]:
    """(effective, permitted, inheritable) capability masks of ``pid`` (0: this thread)."""
    out = ffi.new("uint64_t[3]")
    _check(lib.eng_capget(pid, out), "capget")
    return int(out[0]), int(out[1]), int(out[2])


def capset(effective: int, permitted: int, inheritable: int) -> None:
    _check(lib.eng_capset(effective, permitted, inheritable), "capset")


def seccomp_load(filter_bytes: bytes, flags: int = 0) -> int:
    """Install a seccomp BPF filter (an array of struct sock_filter) on this thread."""
    return _check(lib.eng_seccomp_load(flags, filter_bytes, len(filter_bytes)), "seccomp")


def set_winsize(fd: int, rows: int, cols: int) -> None:
    _check(lib.eng_set_winsize(fd, rows, cols), "ioctl TIOCSWINSZ")


def get_winsize(fd: int) -> tuple[int, int]:
    out = ffi.new("unsigned short[2]")
    _check(lib.eng_get_winsize(fd, out), "ioctl TIOCGWINSZ")
    return int(out[0]), int(out[1])


def set_ctty(fd: int) -> None:
    _check(lib.eng_set_ctty(fd), "ioctl TIOCSCTTY")


def pty_peer(master: int, flags: int = os.O_RDWR | os.O_NOCTTY) -> int:
    """Open the slave side of a pty master (TIOCGPTPEER)."""
    return _check(lib.eng_pty_peer(master, flags), "ioctl TIOCGPTPEER")


def idmapped_tree(src: str, userns_fd: int, *, recursive: bool = False, attrs: int = 0) -> int:
    """A detached, idmapped copy of the mount tree at ``src`` (fd, O_CLOEXEC), for move_mount."""
    return _check(
        lib.eng_idmapped_tree(src.encode(), userns_fd, 1 if recursive else 0, attrs), f"idmap {src}"
    )


def spawn(
    clone_flags: int,
    sync_fd: int,
    parent_fd: int,
    *,
    stage1: bool = False,
    fork_init: bool = False,
    joins: list[tuple[int, int, str]] | None = None,
    timens_offsets: str = "",
    cgroup_fd: int = -1,
    cgroup_tasks: list[str] | None = None,
) -> int:
    """Clone the container process; returns its pid (the stage-1 child's when ``stage1``).

    The child waits on ``sync_fd`` for the GO message that carries its setup program.
    ``joins`` is (fd, nstype, name) for namespaces to enter (stage 1 only), user namespace first.
    ``cgroup_fd`` (a cgroup2 directory) makes the child start in that cgroup (CLONE_INTO_CGROUP);
    the child writes "0" to each of ``cgroup_tasks`` (v1 "tasks" files) before anything else.
    """
    args = ffi.new("struct eng_spawn_args *")
    args.clone_flags = clone_flags
    args.stage1 = 1 if stage1 else 0
    args.fork_init = 1 if fork_init else 0
    args.sync_fd = sync_fd
    args.parent_fd = parent_fd
    args.cgroup_fd = cgroup_fd
    keep = []
    joins = joins or []
    args.njoin = len(joins)
    if joins:
        fds = ffi.new("int[]", [j[0] for j in joins])
        types = ffi.new("int[]", [j[1] for j in joins])
        names = [ffi.new("char[]", j[2].encode()) for j in joins]
        name_arr = ffi.new("char *[]", names)
        keep += [fds, types, names, name_arr]
        args.join_fds = fds
        args.join_types = types
        args.join_names = name_arr
    if timens_offsets:
        t = ffi.new("char[]", timens_offsets.encode())
        keep.append(t)
        args.timens_offsets = t
    if cgroup_tasks:
        tasks = [ffi.new("char[]", t.encode()) for t in cgroup_tasks]
        task_arr = ffi.new("char *[]", tasks)
        keep += [tasks, task_arr]
        args.ncgroup_tasks = len(cgroup_tasks)
        args.cgroup_tasks = task_arr
    pid = lib.eng_spawn(args)
    return _check(pid, "clone")
