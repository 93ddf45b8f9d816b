"""How the shim drives an OCI runtime: in-process (engine.runtime) or an external binary by path.

Both backends offer the same small interface, which the server calls::

    create(id, bundle, stdio, console_fd, console_socket) -> pid
    start(id);  kill(id, sig, all);  delete(id, force);  pause(id);  resume(id)
    exec(id, exec_id, process, stdio, console_fd, console_socket) -> pid
    state(id) -> dict;  pids(id) -> [int];  update(id, resources);  stats(id) -> dict
    cgroup(id) -> a cgroup manager or None (for OOM watching)

``InProcess`` calls engine.runtime's public functions (no exec of a runtime binary).  Create and
exec run in a forked helper that exits when the runtime call returns: the container's process
is then reparented to the shim (a child subreaper), and the memory the runtime's work touched
(plan building, seccomp, hooks) is dirtied in the helper, not in the long-lived shim; that keeps
a forked shim's private memory close to what it had at fork (measured in bench/shim.py).  The
helper reports the result (or the engine.errors class and message) on a pipe.  A console for
create is passed as an fd (``console_fd``), so no socket path is needed.  ``External`` runs ``runc``/``crun`` the way
containerd's go-runc does (``create --bundle --pid-file --console-socket``, ``start``, ``kill``,
``delete``, ``exec --detach --process --pid-file``, ``state``, ``ps --format json``,
``pause``/``resume``, ``update --resources -``, ``events --stats``); its stdio fds are handed to
the container through the runtime's own inherited stdio.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess

from engine.errors import EngineError, FailedPrecondition, InvalidArgument, NotFound


class InProcess:
    name = "engine"

    def __init__(self, root: str) -> None:
        self.root = root

    def create(self, cid, bundle, stdio, console_fd=-1, console_socket=None) -> int:
        from engine.runtime import create

        def run() -> int:
            return create.create(self.root, cid, bundle, console_fd=console_fd, stdio=stdio).pid

        return in_helper(run)

    def start(self, cid) -> None:
        from engine.runtime import start

        start.start(self.root, cid)

    def kill(self, cid, sig, all_processes=False) -> None:
        from engine.runtime import kill

        kill.kill(self.root, cid, sig, all_processes=all_processes)

    def delete(self, cid, force=False) -> None:
        from engine.runtime import delete

        delete.delete(self.root, cid, force=force)

    def pause(self, cid) -> None:
        from engine.runtime import pause

        pause.pause(self.root, cid)

    def resume(self, cid) -> None:
        from engine.runtime import pause

        pause.resume(self.root, cid)

    def exec(self, cid, exec_id, process, stdio, console_fd=-1, console_socket=None, pid_file="") -> int:
        from engine.runtime import execute, spec

        spec.check_process(process)
        execute.execute(
            self.root,
            cid,
            process,
            detach=True,
            pid_file=pid_file,
            console_socket=console_socket,
            stdio=stdio,
        )
        with open(pid_file) as f:
            pid = int(f.read().strip())
        os.unlink(pid_file)
        return pid

    def state(self, cid) -> dict:
        from engine.runtime import query

        return query.state(self.root, cid)

    def pids(self, cid) -> list[int]:
        from engine.runtime import query

        return query.pids(self.root, cid)

    def update(self, cid, resources) -> None:
        from engine.runtime import update

        update.update(self.root, cid, resources)

    def cgroup(self, cid):
        from engine.runtime import state as st
        from engine.runtime.cgroups import open_manager

        path = st.load(self.root, cid).cgroup_path
        return open_manager(path) if path else None

    def stats(self, cid) -> dict:
        mgr = self.cgroup(cid)
        if mgr is None or not mgr.exists():
            raise FailedPrecondition("container has no cgroup")
        return mgr.stats()


class External:
    """An OCI runtime binary (runc, crun) driven by its runc-compatible command line."""

    def __init__(self, binary: str, root: str, log_path: str) -> None:
        if not os.access(binary, os.X_OK):
            raise InvalidArgument(f"runtime {binary} is not an executable")
        self.binary = binary
        self.name = os.path.basename(binary)
        self.root = root
        self.log_path = log_path  # the runtime's own messages (its stderr may be the container's)
        self.bundles: dict[str, str] = {}

    def _run(self, *args: str, stdin: bytes | None = None, stdio=None) -> bytes:
        cmd = [self.binary, "--root", self.root, "--log", self.log_path, *args]
        with open(self.log_path, "wb"):
            pass
        if stdio is not None:
            r = subprocess.run(cmd, stdin=stdio[0], stdout=stdio[1], stderr=stdio[2])
            stderr, out = b"", b""
        else:
            r = subprocess.run(cmd, input=stdin, capture_output=True)
            stderr, out = r.stderr, r.stdout
        if r.returncode != 0:
            msg = (
                _last_message(self.log_path)
                or (stderr.decode(errors="replace").strip().splitlines() or [""])[-1]
            )
            low = msg.lower()
            cls = NotFound if "does not exist" in low or "not exist" in low else FailedPrecondition
            raise cls(f"{self.name} {args[0]}: {msg or f'exit status {r.returncode}'}")
        return out

    def create(self, cid, bundle, stdio, console_fd=-1, console_socket=None) -> int:
        pid_file = os.path.join(bundle, f".{cid}.shim-pid")
        args = ["create", "--bundle", bundle, "--pid-file", pid_file]
        if console_socket:
            args += ["--console-socket", console_socket]
        self._run_create(args + [cid], stdio, console_socket)
        self.bundles[cid] = bundle
        return _read_pid(pid_file)

    def _run_create(self, args, stdio, console_socket) -> None:
        if console_socket:
            self._run(*args)
        else:
            self._run(*args, stdio=stdio)

    def start(self, cid) -> None:
        self._run("start", cid)

    def kill(self, cid, sig, all_processes=False) -> None:
        self._run("kill", *(["--all"] if all_processes else []), cid, str(sig))

    def delete(self, cid, force=False) -> None:
        self._run("delete", *(["--force"] if force else []), cid)

    def pause(self, cid) -> None:
        self._run("pause", cid)

    def resume(self, cid) -> None:
        self._run("resume", cid)

    def exec(self, cid, exec_id, process, stdio, console_fd=-1, console_socket=None, pid_file="") -> int:
        proc_file = pid_file + ".process.json"
        with open(proc_file, "w") as f:
            json.dump(process, f)
        try:
            args = ["exec", "--detach", "--process", proc_file, "--pid-file", pid_file]
            if console_socket:
                args += ["--console-socket", console_socket]
            self._run_create(args + [cid], stdio, console_socket)
        finally:
            os.unlink(proc_file)
        return _read_pid(pid_file)

    def state(self, cid) -> dict:
        return json.loads(self._run("state", cid))

    def pids(self, cid) -> list[int]:
        return json.loads(self._run("ps", "--format", "json", cid) or b"[]")

    def update(self, cid, resources) -> None:
        self._run("update", "--resources", "-", cid, stdin=json.dumps(resources).encode())

    def cgroup(self, cid):
        bundle = self.bundles.get(cid)
        if not bundle:
            return None
        try:
            with open(os.path.join(bundle, "config.json")) as f:
                path = (json.load(f).get("linux") or {}).get("cgroupsPath")
        except (OSError, ValueError):
            return None
        if not path or ":" in path:  # systemd-style paths are the runtime's business
            return None
        from engine.runtime.cgroups import open_manager

        try:
            return open_manager(path)
        except EngineError:
            return None

    def stats(self, cid) -> dict:
        out = self._run("events", "--stats", cid)
        return json.loads(out.splitlines()[0]).get("data", {})


def in_helper(fn) -> int:
    """Run ``fn() -> int`` in a forked child that exits afterwards; its result or error comes back."""
    from engine.runtime.shim import wire

    r, w = os.pipe2(os.O_CLOEXEC)
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            try:
                msg = {"result": fn()}
            except BaseException as e:  # noqa: BLE001 (reported to the parent)
                msg = {"error": wire.error_body(e)}
            os.write(w, json.dumps(msg).encode() + b"\n")
        finally:
            os._exit(0)
    os.close(w)
    # one line, not EOF: the container's process may hold a copy of the pipe until it execs
    with os.fdopen(r, "rb") as f:
        line = f.readline()
    os.waitpid(pid, 0)
    try:
        msg = json.loads(line or b"{}")
    except ValueError:
        msg = {}
    if "error" in msg:
        wire.raise_error(msg["error"])
    if "result" not in msg:
        raise EngineError("runtime helper died without an answer")
    return int(msg["result"])


def _last_message(path: str) -> str:
    """The last error line of a runtime's --log (runc writes logfmt or JSON, crun plain text)."""
    try:
        with open(path, "rb") as f:
            lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
    except OSError:
        return ""
    if not lines:
        return ""
    last = lines[-1]
    if last.startswith("{"):
        try:
            return str(json.loads(last).get("msg", last))
        except ValueError:
            return last
    if 'msg="' in last:
        return last.split('msg="', 1)[1].rsplit('"', 1)[0].replace('\\"', '"')
    return last


def _read_pid(path: str) -> int:
    try:
        with open(path) as f:
            pid = int(f.read().strip())
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    return pid
