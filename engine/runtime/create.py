"""``create``: make a container up to the point where only ``start`` is missing.

Steps: check the id and the bundle (no side effects yet) → claim the state directory (mkdir is
the duplicate-id check) → exec FIFO → cgroup (create, set resources) → spawn the process
(process.launch: maps, cgroup join, program, createRuntime hooks) → state.json (temp + rename)
→ pid file.  Any failure undoes everything in reverse (process, cgroup, state directory), so
a failed create leaves nothing behind.
"""

from __future__ import annotations

import _socket
import os
import time

from engine.errors import AlreadyExists, EngineError, InvalidArgument
from engine.runtime import cgpath, hooks, plan, spec
from engine.runtime import state as st
from engine.runtime.process import Launch, launch


def _now_rfc3339() -> str:
    ns = time.time_ns()
    sec, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)) + f".{frac:09d}Z"


def connect_console(path: str) -> _socket.socket:
    s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM, 0)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        raise InvalidArgument(f"connect to console socket {path}: {(e.strerror or str(e)).lower()}") from e
    return s


def oci_state_json(container_id: str, pid: int, status: str, bundle: str, config: dict) -> bytes:
    from engine.runtime import fastjson

    s = {
        "ociVersion": config.get("ociVersion", ""),
        "id": container_id,
        "status": status,
        "pid": pid,
        "bundle": bundle,
    }
    if config.get("annotations"):
        s["annotations"] = config["annotations"]
    return fastjson.dumps(s).encode()


def create(
    root: str,
    container_id: str,
    bundle: str,
    *,
    pid_file: str | None = None,
    console_socket: str | None = None,
    console_fd: int = -1,
    no_pivot: bool = False,
    preserve_fds: int = 0,
    subreaper: bool = False,
    loaded: tuple[dict, str, str] | None = None,
    stdio: tuple[int, int, int] | None = None,
    new_keyring: bool = True,
) -> st.Container:
    """Create the container; returns its state (status ``created``).

    ``loaded`` is ``spec.load_bundle(bundle)``'s result when the caller already has it;
    ``stdio`` are fds to become the process's stdin/stdout/stderr (default: inherit ours).
    """
    spec.check_id(container_id)
    config, bundle, rootfs = loaded or spec.load_bundle(bundle)
    proc = config["process"]
    if proc.get("terminal") and not console_socket and console_fd < 0:
        raise InvalidArgument("cannot allocate tty if runc will detach without setting console socket")
    if not proc.get("terminal") and (console_socket or console_fd >= 0):
        raise InvalidArgument("cannot use console socket if runc will not detach or allocate tty")
    linux = config.get("linux") or {}
    namespaces = spec.namespaces(config)
    if "mount" not in namespaces:
        raise InvalidArgument("a mount namespace is required")
    launch_spec = Launch(
        namespaces,
        uid_mappings=linux.get("uidMappings"),
        gid_mappings=linux.get("gidMappings"),
        time_offsets=linux.get("timeOffsets"),
    )

    os.makedirs(root, 0o711, exist_ok=True)
    cdir = st.container_dir(root, container_id)
    try:
        os.mkdir(cdir, 0o711)
    except FileExistsError:
        launch_spec.close()
        raise AlreadyExists("container with given ID already exists") from None
    mgr = None
    pid = -1
    idmap_trees: dict[int, int] = {}
    console = None
    dirfd = -1
    try:
        fifo = os.path.join(cdir, st.FIFO)
        os.mkfifo(fifo, 0o622)
        os.chmod(fifo, 0o622)  # past the umask: the init may write it as a non-root user
        dirfd = os.open(cdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        from engine.runtime import idmap

        if any(idmap.wants_idmap(mn) for mn in config.get("mounts") or ()):
            idmap_trees = idmap.prepare(config, bundle)
        if console_socket:
            console = connect_console(console_socket)
            console_fd = console.fileno()
        cgroup_path = cgpath.resolve(linux.get("cgroupsPath"), container_id)
        from engine.runtime.cgroups import DEFAULT_ALLOWED_DEVICES, open_manager

        mgr = open_manager(cgroup_path)
        mgr.create()
        resources = dict(linux.get("resources") or {})
        resources["devices"] = list(resources.get("devices") or ()) + DEFAULT_ALLOWED_DEVICES
        mgr.set(resources)
        h = config.get("hooks") or {}
        has_cgroup_mount = any(mn.get("type") in ("cgroup", "cgroup2") for mn in config.get("mounts") or ())

        # The process joins its cgroup by itself as it is born (see Launch.join_cgroup): a
        # cgroup.procs write from here would wait for an RCU grace period (~10 ms, the largest
        # single cost of a create).  Only when no cgroup directory exists to join do we add it.
        self_joined = launch_spec.join_cgroup(mgr.paths())

        def on_pid(p: int) -> None:
            if not self_joined:
                mgr.add(p)

        def build(p: int):
            ctx = plan.Context(
                rootfs,
                bundle,
                no_pivot=no_pivot,
                console_fd=console_fd,
                fifo_dirfd=dirfd,
                preserve_fds=preserve_fds,
                userns=launch_spec.userns,
                cgroup_mounts=cgpath.mount_entries(p, launch_spec.new_cgroupns, list(mgr.paths().values()))
                if has_cgroup_mount
                else None,
                joins=launch_spec.child_joins,
                new_cgroupns=launch_spec.new_cgroupns,
                stdio=stdio,
                keyring=f"_ses.{container_id}" if new_keyring else "",
                idmap_trees=idmap_trees,
            )
            return plan.build_create(config, ctx)

        def state_json(p: int) -> bytes:
            return oci_state_json(container_id, p, st.CREATING, bundle, config)

        def run_hooks(p: int) -> None:
            sj = state_json(p)
            hooks.run(h.get("prestart"), sj, "prestart")
            hooks.run(h.get("createRuntime"), sj, "createRuntime")

        if subreaper:
            from engine import native

            native.prctl(native.PR_SET_CHILD_SUBREAPER, 1)

        def on_seccomp_fd(p: int, fd: int) -> None:
            from engine.runtime import fastjson
            from engine.runtime.process import send_seccomp_fd

            sc = linux.get("seccomp") or {}
            st_obj = fastjson.loads(state_json(p))
            send_seccomp_fd(sc["listenerPath"], fd, p, st_obj, sc.get("listenerMetadata", ""))

        pid = launch(
            launch_spec,
            build,
            state_json=state_json,
            on_pid=on_pid,
            run_hooks=run_hooks,
            on_seccomp_fd=on_seccomp_fd,
        )
        data = {
            "ociVersion": config.get("ociVersion", spec.OCI_VERSION),
            "id": container_id,
            "pid": pid,
            "pid_start": st.proc_start_time(pid),
            "bundle": bundle,
            "rootfs": rootfs,
            "created": _now_rfc3339(),
            "cgroup_path": cgroup_path,
            "namespaces": sorted(namespaces),
            "config": config,
        }
        c = st.Container(container_id, cdir, data)
        c.save()
        if pid_file:
            st.write_atomic(os.path.abspath(pid_file), str(pid).encode())
        return c
    except BaseException as e:
        from engine.runtime.process import kill_and_reap

        kill_and_reap(pid)
        if mgr is not None:
            try:
                mgr.kill_all(9)
                mgr.destroy()
            except EngineError:
                pass
            except OSError:
                pass
        _rmtree(cdir)
        if isinstance(e, OSError) and not isinstance(e, EngineError):
            raise InvalidArgument(f"{(e.strerror or str(e)).lower()}: {e.filename or ''}".rstrip(": ")) from e
        raise
    finally:
        if console is not None:
            console.close()
        if dirfd >= 0:
            os.close(dirfd)
        for fd in idmap_trees.values():
            os.close(fd)


def _rmtree(d: str) -> None:
    try:
        for name in os.listdir(d):
            try:  # noqa: SIM105 (contextlib costs an import on the timed path)
                os.unlink(os.path.join(d, name))
            except OSError:
                pass
        os.rmdir(d)
    except OSError:
        pass
