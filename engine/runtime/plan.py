"""Resolve an OCI config into the flat setup program the C child runs (see protocol.py).

Everything that needs judgement happens here, in Python, before any syscall: mount options to
flags, relative bind sources to bundle paths, devices to mode/major/minor, capability names to
masks, rlimit names to numbers, the executable's PATH, the order of operations.  The C side
only executes.  Order follows runc's init: namespaces → hostname → mounts (rootfs bind, spec
mounts, devices, /dev symlinks) → createRuntime sync → createContainer hooks → pivot_root →
sysctl → readonly/masked paths → root read-only → rlimits, session, console → no_new_privs,
seccomp (before the user switch when no_new_privs is off, else last) → bounding set, user,
capabilities → lookup → READY → exec FIFO → startContainer hooks → execve.
"""

from __future__ import annotations

import os

from engine.errors import InvalidArgument
from engine.runtime import caps as capsmod
from engine.runtime import mounts as m
from engine.runtime import protocol as p

RLIMITS = {
    "RLIMIT_CPU": 0,
    "RLIMIT_FSIZE": 1,
    "RLIMIT_DATA": 2,
    "RLIMIT_STACK": 3,
    "RLIMIT_CORE": 4,
    "RLIMIT_RSS": 5,
    "RLIMIT_NPROC": 6,
    "RLIMIT_NOFILE": 7,
    "RLIMIT_MEMLOCK": 8,
    "RLIMIT_AS": 9,
    "RLIMIT_LOCKS": 10,
    "RLIMIT_SIGPENDING": 11,
    "RLIMIT_MSGQUEUE": 12,
    "RLIMIT_NICE": 13,
    "RLIMIT_RTPRIO": 14,
    "RLIMIT_RTTIME": 15,
}
PERSONALITY = {"LINUX": 0x0000, "LINUX32": 0x0008}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
SCHED_POLICIES = {
    "SCHED_OTHER": 0,
    "SCHED_FIFO": 1,
    "SCHED_RR": 2,
    "SCHED_BATCH": 3,
    "SCHED_ISO": 4,
    "SCHED_IDLE": 5,
    "SCHED_DEADLINE": 6,
}
SCHED_FLAGS = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01,
    "SCHED_FLAG_RECLAIM": 0x02,
    "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08,
    "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
    "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}


def cpu_set(cpus: str) -> bytes:
    """A cpu_set_t (1024 bits) from a list like "0-3,7"."""
    mask = 0
    try:
        for part in cpus.split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("-")
            for c in range(int(lo), int(hi or lo) + 1):
                mask |= 1 << c
    except ValueError as e:
        raise InvalidArgument(f"invalid cpu list {cpus!r}") from e
    if mask >> 1024:
        raise InvalidArgument(f"cpu list {cpus!r} is out of range")
    return mask.to_bytes(128, "little")


# setns(2) nstype and clone flag per OCI namespace type
NS_FLAGS = {
    "pid": 0x20000000,
    "network": 0x40000000,
    "mount": 0x00020000,
    "ipc": 0x08000000,
    "uts": 0x04000000,
    "user": 0x10000000,
    "cgroup": 0x02000000,
    "time": 0x00000080,
}
NS_PROC = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}


class Context:
    """What the program needs besides the config: fds and facts known only at create time."""

    __slots__ = (
        "rootfs",
        "bundle",
        "no_pivot",
        "console_fd",
        "fifo_dirfd",
        "preserve_fds",
        "userns",
        "cgroup_mounts",
        "joins",
        "new_cgroupns",
        "stdio",
        "keyring",
        "idmap_trees",
    )

    def __init__(
        self,
        rootfs: str = "/",
        bundle: str = "/",
        *,
        no_pivot: bool = False,
        console_fd: int = -1,
        fifo_dirfd: int = -1,
        preserve_fds: int = 0,
        userns: bool = False,
        cgroup_mounts: list | None = None,
        joins: list[tuple[int, int, str]] | None = None,
        new_cgroupns: bool = False,
        stdio: tuple[int, int, int] | None = None,
        keyring: str = "",
        idmap_trees: dict[int, int] | None = None,
    ) -> None:
        self.rootfs = rootfs
        self.bundle = bundle
        self.no_pivot = no_pivot
        self.console_fd = console_fd
        self.fifo_dirfd = fifo_dirfd
        self.preserve_fds = preserve_fds
        self.userns = userns
        # (dest in root, source, fstype, flags, data, is_bind, remount flags) per cgroup hierarchy
        self.cgroup_mounts = cgroup_mounts or []
        self.joins = joins or []  # (fd, nstype, name) entered by the child itself (fast path)
        self.new_cgroupns = new_cgroupns
        # fds that become the process's stdin/stdout/stderr (None: inherit ours), for the shim
        self.stdio = stdio
        # name of the session keyring the init joins ("" for none: --no-new-keyring, exec)
        self.keyring = keyring
        # detached idmapped mount trees by mount index (idmap.prepare)
        self.idmap_trees = idmap_trees or {}


def _clean(path: str) -> str:
    """An absolute, normalised path inside the container ("//x" and "x" both become "/x")."""
    return os.path.normpath("/" + path.lstrip("/"))


def build_create(config: dict, ctx: Context) -> p.Program:
    """The program for a container's init process."""
    prog = p.Program()
    proc = config["process"]
    _stdio_ops(prog, ctx)
    for fd, nstype, name in ctx.joins:
        prog.add(p.OP_SETNS, (fd, nstype), (name,))
    if ctx.userns:
        # become root inside the new user namespace so files we make are owned by a mapped id
        prog.add(p.OP_USER, (0, 0, -1))
    if ctx.new_cgroupns:
        prog.add(p.OP_UNSHARE, (NS_FLAGS["cgroup"],))
    if ctx.keyring:
        prog.add(p.OP_KEYRING, (), (ctx.keyring,))
    if config.get("hostname"):
        prog.add(p.OP_SETHOSTNAME, (), (config["hostname"],))
    if config.get("domainname"):
        prog.add(p.OP_SETDOMAINNAME, (), (config["domainname"],))
    oom = proc.get("oomScoreAdj")
    if oom is not None:
        prog.add(p.OP_WRITE, (), ("/proc/self/oom_score_adj", str(int(oom))))
    _rootfs_ops(prog, config, ctx)
    _process_ops(prog, proc, config, ctx, init=True)
    return prog


def build_exec(proc: dict, config: dict, ctx: Context) -> p.Program:
    """The program for a process joining a running container (``exec``)."""
    prog = p.Program()
    _stdio_ops(prog, ctx)
    for fd, nstype, name in ctx.joins:
        prog.add(p.OP_SETNS, (fd, nstype), (name,))
    oom = proc.get("oomScoreAdj")
    if oom is not None:
        prog.add(p.OP_WRITE, (), ("/proc/self/oom_score_adj", str(int(oom))))
    _process_ops(prog, proc, config, ctx, init=False)
    return prog


def _stdio_ops(prog: p.Program, ctx: Context) -> None:
    if ctx.stdio is None:
        return
    fds = list(ctx.stdio)
    if len(fds) != 3:
        raise InvalidArgument("stdio must be three file descriptors")
    for target, src in enumerate(fds):
        # dup2 runs 0, 1, 2 in turn: a source among 0-2 elsewhere would already be overwritten
        if src in (0, 1, 2) and src != target:
            raise InvalidArgument("stdio fds 0-2 may only be passed in their own place")
        prog.add(p.OP_DUP2, (src, target))


def _rootfs_ops(prog: p.Program, config: dict, ctx: Context) -> None:
    linux = config.get("linux") or {}
    hooks = config.get("hooks") or {}
    rootfs = ctx.rootfs
    prop_name = linux.get("rootfsPropagation") or ""
    if prop_name and prop_name not in m.PROPAGATION:
        raise InvalidArgument(f"invalid rootfsPropagation {prop_name!r}")
    # nothing we mount may leak back to the host: slave (or what the config asks) everywhere
    root_prop = m.PROPAGATION.get(prop_name, m.MS_SLAVE | m.MS_REC)
    if root_prop & m.MS_SHARED:
        root_prop = m.MS_PRIVATE | m.MS_REC  # pivot_root refuses shared parents; set after pivot
    prog.add(p.OP_ROOT_PROPAGATION, (root_prop | m.MS_REC,))
    # the rootfs must be a mount point for pivot_root
    prog.add(p.OP_MOUNT, (m.MS_BIND | m.MS_REC, 0, 0, 0), (rootfs, rootfs, "", ""))
    prog.add(p.OP_OPEN_ROOT, (), (rootfs,))
    dev_is_bind = False
    from engine.runtime.idmap import wants_idmap

    for index, mnt in enumerate(config.get("mounts") or ()):
        dest = _clean(mnt["destination"])
        if dest == "/dev" and m.is_bind(mnt):
            dev_is_bind = True
        if wants_idmap(mnt):
            _idmap_mount_op(prog, index, mnt, dest, ctx)
        else:
            _mount_ops(prog, mnt, dest, ctx)
    if not dev_is_bind:
        for path, typ, major, minor in m.DEFAULT_DEVICES:
            _device_op(prog, path, typ, major, minor, 0o666, 0, 0, ctx.userns)
    for dev in linux.get("devices") or ():
        path = dev.get("path")
        typ = dev.get("type")
        if not path or typ not in m.DEVICE_TYPES:
            raise InvalidArgument(f"invalid device {dev!r}")
        mode = dev.get("fileMode")
        _device_op(
            prog,
            _clean(path),
            typ,
            int(dev.get("major", 0)),
            int(dev.get("minor", 0)),
            0o666 if mode is None else int(mode),
            int(dev.get("uid", 0)),
            int(dev.get("gid", 0)),
            ctx.userns,
        )
    if not dev_is_bind:
        for target, link in m.DEFAULT_SYMLINKS:
            prog.add(p.OP_SYMLINK, (), (target, link))
        if os.path.exists("/proc/kcore"):
            prog.add(p.OP_SYMLINK, (), ("/proc/kcore", "/dev/core"))
        prog.add(p.OP_UNLINK, (), ("/dev/ptmx",))
        prog.add(p.OP_SYMLINK, (), ("pts/ptmx", "/dev/ptmx"))
    if hooks.get("prestart") or hooks.get("createRuntime"):
        prog.add(p.OP_SYNC_HOOKS)
    for hook in hooks.get("createContainer") or ():
        _hook_op(prog, hook)
    prog.add(p.OP_CHROOT if ctx.no_pivot else p.OP_PIVOT, (), (rootfs,))
    if prop_name and m.PROPAGATION[prop_name] & m.MS_SHARED:
        prog.add(p.OP_ROOT_PROPAGATION, (m.PROPAGATION[prop_name],))
    for key, value in (linux.get("sysctl") or {}).items():
        prog.add(p.OP_WRITE, (), ("/proc/sys/" + key.replace(".", "/"), str(value)))
    for path in linux.get("readonlyPaths") or ():
        prog.add(p.OP_READONLY, (), (path,))
    for path in linux.get("maskedPaths") or ():
        prog.add(p.OP_MASK, (), (path,))
    if (config.get("root") or {}).get("readonly"):
        prog.add(p.OP_REMOUNT_ROOT_RO)


def _mount_ops(prog: p.Program, mnt: dict, dest: str, ctx: Context) -> None:
    opts: list[str] = list(mnt.get("options") or ())
    flags, prop, data = m.parse_options(opts)
    typ = mnt.get("type") or ""
    src = mnt.get("source") or ""
    if typ == "cgroup" or (typ == "cgroup2" and ctx.cgroup_mounts):
        _cgroup_ops(prog, dest, flags, ctx)
        return
    if m.is_bind(mnt):
        flags |= m.MS_BIND
        if not os.path.isabs(src):
            src = os.path.join(ctx.bundle, src)
        try:
            is_dir = os.path.isdir(src)
            os.stat(src)
        except OSError as e:
            raise InvalidArgument(f"mount source {src} for {dest}: {(e.strerror or str(e)).lower()}") from e
        extra = flags & ~(m.MS_BIND | m.MS_REC | m.MS_REMOUNT)
        kind = p.MNT_IN_ROOT | (0 if is_dir else p.MNT_FILE)
        prog.add(p.OP_MOUNT, (flags & (m.MS_BIND | m.MS_REC), kind, extra, prop), (src, dest, "", ""))
        return
    if typ == "bind":
        typ = ""
    kind = p.MNT_IN_ROOT
    if typ == "tmpfs" and "tmpcopyup" in (mnt.get("options") or ()):
        kind |= p.MNT_COPYUP  # runc's extension: the tmpfs starts with what it covers
    prog.add(p.OP_MOUNT, (flags, kind, 0, prop), (src, dest, typ, data))


def _idmap_mount_op(prog: p.Program, index: int, mnt: dict, dest: str, ctx: Context) -> None:
    tree = ctx.idmap_trees.get(index)
    if tree is None:
        raise InvalidArgument(f"mount {dest}: its idmapped tree was not prepared")
    src = mnt.get("source") or ""
    src = src if os.path.isabs(src) else os.path.join(ctx.bundle, src)
    kind = p.MNT_IN_ROOT | (0 if os.path.isdir(src) else p.MNT_FILE)
    prog.add(p.OP_IDMAP_MOUNT, (tree, kind), (dest,))


def _cgroup_ops(prog: p.Program, dest: str, flags: int, ctx: Context) -> None:
    """A ``cgroup`` mount: on v2 one cgroup2 mount; on v1 a tmpfs with one entry per hierarchy."""
    base = flags & (m.MS_NOSUID | m.MS_NODEV | m.MS_NOEXEC | m.MS_RELATIME)
    if len(ctx.cgroup_mounts) == 1 and ctx.cgroup_mounts[0][0] == "":
        _, src, fstype, data, is_bind = ctx.cgroup_mounts[0]
        if is_bind:
            prog.add(
                p.OP_MOUNT, (m.MS_BIND | m.MS_REC, p.MNT_IN_ROOT, flags & ~m.MS_BIND, 0), (src, dest, "", "")
            )
        else:
            prog.add(p.OP_MOUNT, (flags, p.MNT_IN_ROOT, 0, 0), ("cgroup", dest, fstype, data))
        return
    prog.add(p.OP_MOUNT, (base, p.MNT_IN_ROOT, 0, 0), ("tmpfs", dest, "tmpfs", "mode=755"))
    for name, src, fstype, data, is_bind in ctx.cgroup_mounts:
        sub = dest.rstrip("/") + "/" + name
        if is_bind:
            prog.add(
                p.OP_MOUNT,
                (m.MS_BIND | m.MS_REC, p.MNT_IN_ROOT, (flags & ~m.MS_BIND) | base, 0),
                (src, sub, "", ""),
            )
        else:
            prog.add(p.OP_MOUNT, (flags, p.MNT_IN_ROOT, 0, 0), ("cgroup", sub, fstype, data))
        if "," in name:  # co-mounted controllers: cpu -> cpu,cpuacct
            for part in name.split(","):
                prog.add(p.OP_SYMLINK, (), (name, dest.rstrip("/") + "/" + part))


def _device_op(
    prog: p.Program, path: str, typ: str, major: int, minor: int, mode: int, uid: int, gid: int, userns: bool
) -> None:
    prog.add(
        p.OP_MKDEV,
        (m.DEVICE_TYPES[typ] | (mode & 0o7777), major, minor, uid, gid, 1 if userns else 0),
        (path,),
    )


def _hook_op(prog: p.Program, hook: dict) -> None:
    path = hook.get("path")
    if not path:
        raise InvalidArgument("invalid hook: path is required")
    args = list(hook.get("args") or ())
    env = list(hook.get("env") or ())
    prog.add(p.OP_HOOK, (int(hook.get("timeout") or 0), len(args), len(env)), (path, *args, *env))


def _env_value(env: list[str], key: str) -> str | None:
    pre = key + "="
    for e in env:
        if e.startswith(pre):
            return e[len(pre) :]
    return None


def _home(rootfs: str, uid: int) -> str:
    try:
        with open(os.path.join(rootfs, "etc/passwd")) as f:
            for line in f:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 6 and parts[2] == str(uid):
                    return parts[5] or "/"
    except OSError:
        pass
    return "/"


def _process_ops(prog: p.Program, proc: dict, config: dict, ctx: Context, *, init: bool) -> None:
    linux = config.get("linux") or {}
    user = proc.get("user") or {}
    uid = int(user.get("uid", 0))
    gid = int(user.get("gid", 0))
    env = list(proc.get("env") or ())
    if _env_value(env, "HOME") is None:
        env.append("HOME=" + _home(ctx.rootfs, uid))
    for rl in proc.get("rlimits") or ():
        num = RLIMITS.get(rl.get("type", ""))
        if num is None:
            raise InvalidArgument(f"invalid rlimit type {rl.get('type')!r}")
        prog.add(p.OP_RLIMIT, (num, int(rl.get("soft", 0)), int(rl.get("hard", 0))))
    pers = linux.get("personality")
    if init and pers:
        dom = PERSONALITY.get(pers.get("domain", ""))
        if dom is None:
            raise InvalidArgument(f"invalid personality domain {pers.get('domain')!r}")
        prog.add(p.OP_PERSONALITY, (dom,))
    io = proc.get("ioPriority")
    if io:
        cls = IOPRIO_CLASSES.get(io.get("class", ""))
        if cls is None:
            raise InvalidArgument(f"invalid ioPriority class {io.get('class')!r}")
        prog.add(p.OP_IOPRIO, ((cls << 13) | int(io.get("priority", 0)),))
    sched = proc.get("scheduler")
    if sched:
        pol = SCHED_POLICIES.get(sched.get("policy", ""))
        if pol is None:
            raise InvalidArgument(f"invalid scheduler policy {sched.get('policy')!r}")
        flags = 0
        for f in sched.get("flags") or ():
            if f not in SCHED_FLAGS:
                raise InvalidArgument(f"invalid scheduler flag {f!r}")
            flags |= SCHED_FLAGS[f]
        prog.add(
            p.OP_SCHED,
            (
                pol,
                int(sched.get("nice", 0)),
                int(sched.get("priority", 0)),
                flags,
                int(sched.get("runtime", 0)),
                int(sched.get("deadline", 0)),
                int(sched.get("period", 0)),
            ),
        )
    aff = proc.get("execCPUAffinity") or {}
    if aff.get("initial"):
        prog.add(p.OP_AFFINITY, (), (cpu_set(aff["initial"]),))
    prog.add(p.OP_SETSID)
    if proc.get("terminal") and ctx.console_fd >= 0:
        size = proc.get("consoleSize") or {}
        prog.add(p.OP_CONSOLE, (ctx.console_fd, int(size.get("height", 0)), int(size.get("width", 0))))
    seccomp_bpf = b""
    seccomp_flags = 0
    notify = False
    sc = linux.get("seccomp")
    if sc:
        from engine.runtime.seccomp import compile_profile, filter_flags

        notify = any(r.get("action") == "SCMP_ACT_NOTIFY" for r in sc.get("syscalls") or ())
        if notify and not sc.get("listenerPath"):
            raise InvalidArgument("seccomp SCMP_ACT_NOTIFY needs a listenerPath")
        seccomp_bpf = compile_profile(sc)
        seccomp_flags = filter_flags(sc)
    nnp = bool(proc.get("noNewPrivileges"))
    if nnp:
        prog.add(p.OP_NNP)
    elif seccomp_bpf:
        # without no_new_privs loading needs CAP_SYS_ADMIN: before the user switch drops it
        prog.add(p.OP_SECCOMP, (seccomp_flags, int(notify)), (seccomp_bpf,))
    prog.add(p.OP_CLOSE_FROM, (3 + ctx.preserve_fds,))
    c = proc.get("capabilities") or {}
    last = capsmod.last_cap()
    # no "capabilities" at all means none, the bounding set included (as runc)
    prog.add(p.OP_BOUNDING, (capsmod.mask(c.get("bounding")), last))
    cwd = proc.get("cwd") or "/"
    prog.add(p.OP_CHDIR, (1,), (cwd,))
    groups = [int(g) for g in user.get("additionalGids") or ()]
    if ctx.userns and not _setgroups_allowed(config):
        prog.add(p.OP_USER, (uid, gid, -1))
    else:
        prog.add(p.OP_USER, (uid, gid, len(groups), *groups))
    umask = user.get("umask")
    prog.add(p.OP_UMASK, (0o022 if umask is None else int(umask),))
    prog.add(p.OP_CHDIR, (2,), (cwd,))
    if "capabilities" in proc:
        prog.add(
            p.OP_CAPS,
            (
                capsmod.mask(c.get("effective")),
                capsmod.mask(c.get("permitted")),
                capsmod.mask(c.get("inheritable")),
                capsmod.mask(c.get("ambient")),
                last,
            ),
        )
    else:
        prog.add(p.OP_CAPS, (0, 0, 0, 0, last))
    args = proc["args"]
    path_env = _env_value(env, "PATH")
    prog.add(p.OP_LOOKUP, (), (args[0],) if path_env is None else (args[0], path_env))
    if nnp and notify:
        # the listener fd travels over the sync socket, which closes at READY: load it before
        prog.add(p.OP_SECCOMP, (seccomp_flags, 1), (seccomp_bpf,))
    prog.add(p.OP_READY)
    if init and ctx.fifo_dirfd >= 0:
        prog.add(p.OP_WAIT_FIFO, (ctx.fifo_dirfd,), ("exec.fifo",))
    if init:
        for hook in (config.get("hooks") or {}).get("startContainer") or ():
            _hook_op(prog, hook)
    if nnp and seccomp_bpf and not notify:
        # as close to execve as possible, as runc
        prog.add(p.OP_SECCOMP, (seccomp_flags, 0), (seccomp_bpf,))
    if aff.get("final"):
        prog.add(p.OP_AFFINITY, (), (cpu_set(aff["final"]),))
    prog.add(p.OP_EXEC, (len(args), len(env)), (*args, *env))


def _setgroups_allowed(config: dict) -> bool:
    # with a user namespace we write "deny" to setgroups only when there is no gid mapping for
    # root, as runc; otherwise setgroups works
    return True
