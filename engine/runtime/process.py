"""The parent side of making a container process: spawn, then drive the typed protocol.

``Launch`` decides, from the namespace list, how the C side makes the process (see
engine/native/csrc/spawn.c): one clone3() with every new namespace (fast path), or a stage-1
child that enters namespaces by path, unshares, has its id maps written, and forks the init
when the pid or time namespace changed.  ``launch()`` then runs the parent half of the
sequence in protocol.py: id maps, cgroup join (callback), GO with the program, createRuntime
hooks on HOOKS, until READY.  On any failure the process is killed and reaped before the
error propagates, so the caller only has to undo its own work (cgroup, state dir).
"""

from __future__ import annotations

import _socket
import os

from engine import native
from engine.errors import EngineError, FailedPrecondition, InvalidArgument
from engine.runtime import protocol as p
from engine.runtime.plan import NS_FLAGS, NS_PROC

TYPE_CHECKING = False  # no typing import on the timed path; mypy still reads this
if TYPE_CHECKING:
    from collections.abc import Callable

# the order namespaces are entered: user first (it owns the others), mount last but one
_JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


# set by the CLI's --debug: called with one line per setup operation
debug: Callable[[str], None] | None = None


class ContainerError(EngineError):
    """The container process reported a setup failure (message from the C side)."""


def _open_ns(path: str, kind: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise InvalidArgument(f"open {kind} namespace path {path}: {(e.strerror or str(e)).lower()}") from e


class Launch:
    """How to make the process: clone flags, namespaces to join, fast path or stage 1."""

    __slots__ = (
        "clone_flags",
        "new_cgroupns",
        "stage1",
        "fork_init",
        "stage1_joins",
        "child_joins",
        "new_userns",
        "userns",
        "uid_map",
        "gid_map",
        "timens_offsets",
        "cgroup_fd",
        "cgroup_tasks",
        "_fds",
        "_ns",
    )

    def __init__(
        self,
        namespaces: dict[str, str],
        *,
        uid_mappings: list | None = None,
        gid_mappings: list | None = None,
        time_offsets: dict | None = None,
    ) -> None:
        self._ns = dict(namespaces)
        new = [t for t, path in namespaces.items() if not path]
        joined = {t: path for t, path in namespaces.items() if path}
        self.clone_flags = 0
        for t in new:
            if t != "cgroup":
                self.clone_flags |= NS_FLAGS[t]
        self.new_cgroupns = "cgroup" in new
        self.new_userns = "user" in new
        self.userns = "user" in namespaces
        self.stage1 = bool(
            "pid" in joined or "user" in joined or "time" in namespaces or (joined and self.new_userns)
        )
        self.fork_init = self.stage1 and ("pid" in namespaces or "time" in namespaces)
        self._fds: list[int] = []
        joins = []
        for t in _JOIN_ORDER:
            if t in joined:
                fd = _open_ns(joined[t], t)
                self._fds.append(fd)
                joins.append((fd, NS_FLAGS[t], joined[t]))
        self.stage1_joins = joins if self.stage1 else []
        self.child_joins = [] if self.stage1 else joins
        self.uid_map = _map_text(uid_mappings)
        self.gid_map = _map_text(gid_mappings)
        if self.new_userns and not (self.uid_map and self.gid_map):
            raise InvalidArgument("user namespaces need uidMappings and gidMappings")
        self.timens_offsets = _timens_text(time_offsets)
        self.cgroup_fd = -1  # a cgroup2 directory to clone into (see join_cgroup)
        self.cgroup_tasks: list[str] = []

    def join_cgroup(self, dirs: dict[str, str]) -> bool:
        """Have the new process start in the cgroup ``dirs`` (a manager's paths()) by itself.

        cgroup2: clone3(CLONE_INTO_CGROUP); v1: the first child writes "0" to "tasks" before it
        changes any namespace.  Neither waits for the RCU grace period that a cgroup.procs
        write from here costs (~10 ms).  A new user namespace then comes from unshare in the
        stage-1 child, after the writes (made by clone, it would take our privilege first).
        Returns False (nothing to join) when no directory exists.
        """
        seen = set()
        for key, d in dirs.items():
            if not os.path.isdir(d):
                continue
            if key == "":
                if self.cgroup_fd < 0:
                    self.cgroup_fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            elif d not in seen:
                seen.add(d)
                self.cgroup_tasks.append(d + "/tasks")
        if self.cgroup_tasks and self.new_userns and not self.stage1:
            self.stage1 = True
            self.fork_init = "pid" in self._ns or "time" in self._ns
            self.stage1_joins, self.child_joins = self.child_joins, []
        return bool(self.cgroup_tasks) or self.cgroup_fd >= 0

    def close(self) -> None:
        if self.cgroup_fd >= 0:
            self._fds.append(self.cgroup_fd)
            self.cgroup_fd = -1
        for fd in self._fds:
            try:  # noqa: SIM105 (contextlib costs an import on the timed path)
                os.close(fd)
            except OSError:
                pass
        self._fds = []


def _map_text(mappings: list | None) -> str:
    return "".join(f"{int(m['containerID'])} {int(m['hostID'])} {int(m['size'])}\n" for m in mappings or ())


def _timens_text(offsets: dict | None) -> str:
    lines = []
    for clock, off in (offsets or {}).items():
        name = {"monotonic": "monotonic", "boottime": "boottime"}.get(clock)
        if name is None:
            raise InvalidArgument(f"invalid time namespace clock {clock!r}")
        lines.append(f"{name} {int(off.get('secs', 0))} {int(off.get('nanosecs', 0))}\n")
    return "".join(lines)


def write_id_maps(pid: int, uid_map: str, gid_map: str) -> None:
    for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
        if not text:
            continue
        try:
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError as e:
            raise InvalidArgument(f"write {name} {text.strip()!r}: {(e.strerror or str(e)).lower()}") from e


def kill_and_reap(pid: int) -> None:
    if pid <= 0:
        return
    try:  # noqa: SIM105 (contextlib costs an import on the timed path)
        os.kill(pid, 9)
    except OSError:
        pass
    try:  # noqa: SIM105 (contextlib costs an import on the timed path)
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def launch(
    launch_spec: Launch, build_program, *, state_json=None, on_pid=None, run_hooks=None, on_seccomp_fd=None
) -> int:
    """Make the process and take it to READY; returns its pid (as seen from here).

    ``build_program(pid) -> Program`` is called once the process exists and is in its cgroup
    (``on_pid(pid)`` does that); ``state_json(pid) -> bytes`` is what hooks read on stdin;
    ``run_hooks(pid)`` runs prestart/createRuntime hooks when the child asks;
    ``on_seccomp_fd(pid, fd)`` hands a seccomp user-notification listener fd on.
    """
    parent, child = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0)
    try:  # noqa: SIM105 (contextlib costs an import on the timed path)
        # the GO datagram carries the whole program (a large env or seccomp filter can pass the
        # default 208 KiB socket buffer); the child accepts up to its 1 MiB program buffer
        parent.setsockopt(_socket.SOL_SOCKET, 32, 1 << 21)  # SO_SNDBUFFORCE (root)
    except OSError:
        pass
    pid = stage1_pid = -1
    try:
        try:
            pid = native.spawn(
                launch_spec.clone_flags,
                child.fileno(),
                parent.fileno(),
                stage1=launch_spec.stage1,
                fork_init=launch_spec.fork_init,
                joins=launch_spec.stage1_joins,
                timens_offsets=launch_spec.timens_offsets,
                cgroup_fd=launch_spec.cgroup_fd,
                cgroup_tasks=launch_spec.cgroup_tasks,
            )
        except OSError as e:
            raise FailedPrecondition(f"clone: {(e.strerror or str(e)).lower()}") from e
        child.close()
        launch_spec.close()
        if launch_spec.stage1:
            stage1_pid = pid
            pid = -1
            while pid < 0:
                mtype, value, payload, _ = _recv(parent)
                if mtype == p.MSG_USERNS:
                    write_id_maps(value, launch_spec.uid_map, launch_spec.gid_map)
                    parent.send(p.pack_msg(p.MSG_USERNS_DONE))
                elif mtype == p.MSG_PID:
                    pid = value
                else:
                    _unexpected(mtype, value, payload)
            if pid != stage1_pid:
                os.waitpid(stage1_pid, 0)
                stage1_pid = -1
        elif launch_spec.new_userns:
            write_id_maps(pid, launch_spec.uid_map, launch_spec.gid_map)
        if on_pid is not None:
            on_pid(pid)
        program = build_program(pid)
        if debug is not None:
            debug(
                f"container process {pid}: clone flags {launch_spec.clone_flags:#x}, stage1 {launch_spec.stage1}"
            )
            for op, ints, strs in program.ops:
                shown = [s if isinstance(s, str) else f"<{len(s)} bytes>" for s in strs]
                debug(f"  {p.OP_NAMES[op]} {list(ints)} {shown}")
        state = state_json(pid) if state_json is not None else b"{}"
        payload = p.go_payload(state, program)
        try:
            parent.send(p.pack_msg(p.MSG_GO, 0, payload))
        except OSError as e:
            raise ContainerError(f"send setup program ({len(payload)} bytes): {e.strerror}") from e
        while True:
            mtype, value, payload, fds = _recv(parent)
            if mtype == p.MSG_READY:
                return pid
            if mtype == p.MSG_SECCOMP_FD:
                try:
                    if not fds:
                        raise ContainerError("seccomp listener fd missing from the container's message")
                    if on_seccomp_fd is None:
                        raise ContainerError("seccomp listener fd received, but nobody to give it to")
                    on_seccomp_fd(pid, fds[0])
                finally:
                    for fd in fds:
                        os.close(fd)
                parent.send(p.pack_msg(p.MSG_SECCOMP_DONE))
                continue
            if mtype == p.MSG_HOOKS:
                if run_hooks is not None:
                    run_hooks(pid)
                parent.send(p.pack_msg(p.MSG_HOOKS_DONE))
            else:
                _unexpected(mtype, value, payload)
    except BaseException:
        kill_and_reap(pid)
        kill_and_reap(stage1_pid)
        raise
    finally:
        launch_spec.close()
        parent.close()
        try:  # noqa: SIM105 (contextlib costs an import on the timed path)
            child.close()
        except OSError:
            pass


def _recv(sock) -> tuple[int, int, bytes, list[int]]:
    """One message and the fds attached to it (only MSG_SECCOMP_FD carries one)."""
    try:
        data, anc, _flags, _addr = sock.recvmsg(65536, _socket.CMSG_SPACE(4))
    except OSError as e:
        raise ContainerError(f"read from container process: {e.strerror}") from e
    fds = [
        int.from_bytes(d[i : i + 4], "little", signed=True)
        for lvl, typ, d in anc
        if lvl == _socket.SOL_SOCKET and typ == _socket.SCM_RIGHTS
        for i in range(0, len(d) - 3, 4)
    ]
    if not data:
        raise ContainerError("container process exited before it was set up")
    mtype, value, payload = p.unpack_msg(data)
    return mtype, value, payload, fds


def _unexpected(mtype: int, value: int, payload: bytes) -> None:
    if mtype == p.MSG_ERROR:
        raise ContainerError(payload.decode(errors="replace"))
    raise ContainerError(f"unexpected message {mtype} from container process")


def send_seccomp_fd(listener_path: str, fd: int, pid: int, state: dict, metadata: str = "") -> None:
    """Give a seccomp notify fd to ``linux.seccomp.listenerPath`` with the spec's
    containerProcessState as the message (SCM_RIGHTS over a unix stream socket)."""
    from engine.runtime import fastjson

    msg = {
        "ociVersion": state.get("ociVersion", ""),
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata,
        "state": state,
    }
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    try:
        s.connect(listener_path)
        s.sendmsg(
            [fastjson.dumps(msg).encode()],
            [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fd.to_bytes(4, "little", signed=True))],
        )
    except OSError as e:
        raise ContainerError(f"send seccomp fd to {listener_path}: {(e.strerror or str(e)).lower()}") from e
    finally:
        s.close()


def ns_path(pid: int, kind: str) -> str:
    return f"/proc/{pid}/ns/{NS_PROC[kind]}"
