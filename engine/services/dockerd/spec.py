"""Docker's Config/HostConfig → an OCI runtime spec, with Docker's defaults.

Defaults restated from dockerd's: the 14 default capabilities; /proc, /dev (tmpfs), /dev/pts, /dev/shm
(``ShmSize``, 64 MiB by default), /dev/mqueue, /sys (read-only) and the cgroup file system (read-only);
the masked and read-only /proc and /sys paths; the device cgroup (deny all, then mknod for all, and the
usual character devices); PATH when the image has none, HOSTNAME, and TERM=xterm with a TTY; the
container's /etc/hostname, /etc/hosts and /etc/resolv.conf bind-mounted from its directory; cgroupsPath
``/<cgroup parent>/<id>``; a default seccomp profile (``seccomp_profile``).

``--privileged`` gives every capability and every host device, and drops seccomp, the masked and read-only
paths and the read-only /sys. Network modes: ``none`` a new network namespace whose loopback is brought up
by a createRuntime hook (``ip link set lo up`` inside it, as Docker's ``none`` has lo up); ``host`` no
network namespace; ``bridge``/``default`` — until engine/network exists, a private network namespace with
only lo, like ``none``; ``container:<id>`` joins that container's namespace.

The default seccomp profile is our own statement of Docker's intent rather than its file: allow by
default, refuse (EPERM) the syscalls Docker's profile leaves out unless a capability grants them (module
and kexec loading, mount and namespace changes without CAP_SYS_ADMIN, clock setting, reboot, swap,
keyrings, bpf, perf, userfaultfd, …), refuse ``clone`` with namespace flags without CAP_SYS_ADMIN, and
make ``clone3`` ENOSYS so libc falls back to ``clone`` (as Docker does).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InvalidArgument
from engine.runtime import caps as capnames

OCI_VERSION = "1.1.0"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ("CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
                "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
                "CAP_KILL", "CAP_AUDIT_WRITE")
MASKED_PATHS = ("/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                "/sys/devices/virtual/powercap")
READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")
# (type, major, minor, access) allowed in the device cgroup besides the devices themselves
DEFAULT_DEVICE_RULES = (("c", None, None, "m"), ("b", None, None, "m"), ("c", 1, 3, "rwm"), ("c", 1, 8, "rwm"),
                        ("c", 1, 7, "rwm"), ("c", 5, 0, "rwm"), ("c", 1, 5, "rwm"), ("c", 1, 9, "rwm"),
                        ("c", 5, 1, "rwm"), ("c", 136, None, "rwm"), ("c", 5, 2, "rwm"), ("c", 10, 200, "rwm"))
TMPFS_DEFAULTS = ["noexec", "nosuid", "nodev"]
CLONE_NS_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x00000080)
# syscall groups that Docker's profile allows only with a capability (None: never)
_GATED: dict[str | None, tuple[str, ...]] = {
    "CAP_SYS_ADMIN": ("mount", "umount", "umount2", "unshare", "setns", "pivot_root", "move_mount", "open_tree",
                      "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr", "quotactl", "quotactl_fd",
                      "lookup_dcookie", "sethostname", "setdomainname", "fanotify_init", "name_to_handle_at",
                      "bpf", "perf_event_open", "syslog", "iopl", "ioperm", "acct", "nfsservctl"),
    "CAP_SYS_BOOT": ("reboot",),
    "CAP_SYS_MODULE": ("init_module", "finit_module", "delete_module", "create_module", "query_module",
                       "get_kernel_syms"),
    "CAP_SYS_TIME": ("settimeofday", "stime", "clock_settime", "clock_settime64", "adjtimex", "clock_adjtime",
                     "clock_adjtime64"),
    "CAP_SYS_PACCT": ("acct",),
    "CAP_SYSLOG": ("syslog",),
    "CAP_SYS_RAWIO": ("iopl", "ioperm"),
    "CAP_DAC_READ_SEARCH": ("open_by_handle_at",),
    "CAP_BPF": ("bpf",),
    "CAP_PERFMON": ("perf_event_open",),
    None: ("kexec_load", "kexec_file_load", "swapon", "swapoff", "uselib", "ustat", "sysfs", "_sysctl", "vm86",
           "vm86old", "add_key", "keyctl", "request_key", "userfaultfd"),
}


@dataclass
class Context:
    """What the spec needs beyond the container record (daemon settings, resolved names)."""

    cgroup_parent: str = "engine"
    uid: int = 0
    gid: int = 0
    additional_gids: list[int] = field(default_factory=list)
    mounts: list[dict[str, Any]] = field(default_factory=list)  # resolved user mounts (OCI mounts)
    init_path: str = ""
    netns_path: str = ""  # container:<id> network mode: that container's /proc/<pid>/ns/net
    ip_binary: str = "/usr/sbin/ip"
    nsenter_binary: str = "/usr/bin/nsenter"


def host_capabilities() -> list[str]:
    """Every capability this daemon can hand out: its own bounding set (all that the kernel knows, on a
    normal host; fewer when the daemon itself runs confined), as ``--privileged`` and ``ALL`` mean."""
    try:
        with open("/proc/self/status") as f:
            bnd = next(int(line.split()[1], 16) for line in f if line.startswith("CapBnd:"))
    except (OSError, StopIteration, ValueError):
        return list(capnames.NAMES)
    return [n for i, n in enumerate(capnames.NAMES) if bnd >> i & 1]


def capabilities(host_config: dict[str, Any]) -> list[str]:
    """The effective capability set: Docker's defaults, then drops, then adds (``ALL`` either way)."""
    if host_config.get("Privileged"):
        return host_capabilities()

    def norm(names: list[str] | None) -> list[str]:
        out = []
        for n in names or []:
            up = n.strip().upper()
            if up == "ALL":
                out.append("ALL")
                continue
            up = up if up.startswith("CAP_") else "CAP_" + up
            if up not in capnames.NAMES:
                raise InvalidArgument(f"unknown capability: \"{up}\"")
            out.append(up)
        return out

    adds, drops = norm(host_config.get("CapAdd")), norm(host_config.get("CapDrop"))
    base = host_capabilities() if "ALL" in adds else [] if "ALL" in drops else list(DEFAULT_CAPS)
    base = [c for c in base if c not in drops or c in adds]
    for c in adds:
        if c != "ALL" and c not in base:
            base.append(c)
    return base


def seccomp_profile(caps: list[str]) -> dict[str, Any]:
    """The default profile for a container with these capabilities (see the module docstring)."""
    allowed: set[str] = set()
    for cap, names in _GATED.items():
        if cap is not None and cap in caps:
            allowed.update(names)
    denied = sorted({n for names in _GATED.values() for n in names} - allowed)
    rules: list[dict[str, Any]] = [{"names": denied, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    if "CAP_SYS_ADMIN" not in caps:
        for flag in CLONE_NS_FLAGS:
            rules.append({"names": ["clone"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1,
                          "args": [{"index": 0, "value": flag, "valueTwo": flag, "op": "SCMP_CMP_MASKED_EQ"}]})
        rules.append({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38})
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], "syscalls": rules}


def _security_opts(hc: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for opt in hc.get("SecurityOpt") or []:
        key, sep, value = opt.partition("=")
        if not sep:
            key, sep, value = opt.partition(":")
        if key == "no-new-privileges":
            value = value or "true"
            if value not in ("true", "false"):
                raise InvalidArgument(f"invalid --security-opt 2: {opt!r}")
        elif key not in ("seccomp", "apparmor", "label", "systempaths", "mask", "unmask"):
            raise InvalidArgument(f"invalid --security-opt 1: {opt!r}")
        out[key] = value
    return out


def _devices(hc: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(linux.devices, device cgroup allow rules) for ``--device`` and ``--privileged``."""
    devs: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    wanted: list[tuple[str, str, str]] = []
    if hc.get("Privileged"):
        for dirpath, _dirs, files in os.walk("/dev"):
            if dirpath.startswith(("/dev/pts", "/dev/shm", "/dev/mqueue")):
                continue
            for f in files:
                p = os.path.join(dirpath, f)
                if p in ("/dev/console", "/dev/ptmx", "/dev/null", "/dev/zero", "/dev/full", "/dev/tty",
                         "/dev/urandom", "/dev/random"):
                    continue
                wanted.append((p, p, "rwm"))
    for d in hc.get("Devices") or []:
        if not isinstance(d, dict) or not d.get("PathOnHost"):
            raise InvalidArgument("invalid device mapping: PathOnHost is required")
        wanted.append((d["PathOnHost"], d.get("PathInContainer") or d["PathOnHost"], d.get("CgroupPermissions") or "rwm"))
    explicit = {d.get("PathOnHost") for d in hc.get("Devices") or [] if isinstance(d, dict)}
    for host, inside, perms in wanted:
        try:
            st = os.stat(host)
        except OSError as err:
            if host in explicit:
                raise InvalidArgument(f'error gathering device information while adding custom device "{host}": '
                                      f"{os.strerror(err.errno or 2).lower()}") from None
            continue
        if stat.S_ISDIR(st.st_mode) and host in explicit:
            raise InvalidArgument(f'error gathering device information while adding custom device "{host}": '
                                  "not a device node")
        if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
            continue
        if any(ch not in "rwm" for ch in perms):
            raise InvalidArgument(f"invalid device cgroup permissions: {perms}")
        typ = "c" if stat.S_ISCHR(st.st_mode) else "b"
        devs.append({"path": inside, "type": typ, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                     "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid, "gid": st.st_gid})
        rules.append({"allow": True, "type": typ, "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                      "access": perms})
    return devs, rules


def _cgroup_rule(rule: str) -> dict[str, Any]:
    parts = rule.split()
    if len(parts) != 3 or parts[0] not in ("a", "b", "c") or ":" not in parts[1]:
        raise InvalidArgument(f"invalid device cgroup rule format: '{rule}'")
    major, _, minor = parts[1].partition(":")
    out: dict[str, Any] = {"allow": True, "type": parts[0], "access": parts[2]}
    if major != "*":
        out["major"] = int(major)
    if minor != "*":
        out["minor"] = int(minor)
    return out


def resources(hc: dict[str, Any]) -> dict[str, Any]:
    """linux.resources from the HostConfig's limits (also what ``docker update`` sends to the task)."""
    res: dict[str, Any] = {}
    mem: dict[str, Any] = {}
    limit = hc.get("Memory") or 0
    if limit > 0:
        mem["limit"] = limit
        swap = hc.get("MemorySwap") or 0
        mem["swap"] = -1 if swap == -1 else (swap if swap > 0 else 2 * limit)
    if hc.get("MemoryReservation"):
        mem["reservation"] = hc["MemoryReservation"]
    sw = hc.get("MemorySwappiness")
    if sw is not None and sw >= 0:
        mem["swappiness"] = sw
    if hc.get("OomKillDisable"):
        mem["disableOOMKiller"] = True
    if mem:
        res["memory"] = mem
    cpu: dict[str, Any] = {}
    if hc.get("CpuShares"):
        cpu["shares"] = hc["CpuShares"]
    if hc.get("NanoCpus"):
        cpu["period"] = 100_000
        cpu["quota"] = hc["NanoCpus"] * 100_000 // 1_000_000_000
    if hc.get("CpuPeriod"):
        cpu["period"] = hc["CpuPeriod"]
    if hc.get("CpuQuota"):
        cpu["quota"] = hc["CpuQuota"]
    if hc.get("CpusetCpus"):
        cpu["cpus"] = hc["CpusetCpus"]
    if hc.get("CpusetMems"):
        cpu["mems"] = hc["CpusetMems"]
    if cpu:
        res["cpu"] = cpu
    pids = hc.get("PidsLimit")
    if pids is not None and pids > 0:
        res["pids"] = {"limit": pids}
    if hc.get("BlkioWeight"):
        res["blockIO"] = {"weight": hc["BlkioWeight"]}
    return res


def etc_mounts(paths: dict[str, str], readonly: bool) -> list[dict[str, Any]]:
    opts = ["rbind", "rprivate"] + (["ro"] if readonly else [])
    return [{"destination": dest, "type": "bind", "source": src, "options": list(opts)}
            for dest, src in paths.items() if src]


def _env(cfg: dict[str, Any], hostname: str) -> list[str]:
    env = [DEFAULT_PATH, f"HOSTNAME={hostname}"]  # dockerd's order; the config's values replace in place
    if cfg.get("Tty"):
        env.append("TERM=xterm")
    keys = {e.partition("=")[0]: i for i, e in enumerate(env)}
    for e in cfg.get("Env") or []:
        k = e.partition("=")[0]
        if "=" not in e:
            v = os.environ.get(k)
            if v is None:
                continue
            e = f"{k}={v}"
        if k in keys:
            env[keys[k]] = e
        else:
            keys[k] = len(env)
            env.append(e)
    return env


def _sysctls(hc: dict[str, Any], host_net: bool) -> dict[str, str]:
    out = dict(hc.get("Sysctls") or {})
    ipc_ok = ("kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall", "kernel.shmmax",
              "kernel.shmmni", "kernel.shm_rmid_forced")
    for k in out:
        if k in ipc_ok or k.startswith("fs.mqueue."):
            if (hc.get("IpcMode") or "") == "host":
                raise InvalidArgument(f"sysctl {k!r} is not allowed in host IPC namespace")
        elif k.startswith("net."):
            if host_net:
                raise InvalidArgument(f"sysctl {k!r} is not allowed in host network namespace")
        elif k == "kernel.domainname":
            continue
        else:
            raise InvalidArgument(f"sysctl {k!r} is not whitelisted")
    return out


def build(c: Any, ctx: Context) -> dict[str, Any]:  # noqa: C901 (Docker's settings, one after the other)
    """The OCI spec of Docker container `c` (a DockerContainer)."""
    cfg, hc = c.config, c.host_config
    sec = _security_opts(hc)
    privileged = bool(hc.get("Privileged"))
    cap_list = capabilities(hc)
    hostname = cfg.get("Hostname") or c.id[:12]
    args = [c.path, *c.args]
    mounts: list[dict[str, Any]] = []
    if ctx.init_path:
        args = ["/sbin/docker-init", "--", *args]
        mounts.append({"destination": "/sbin/docker-init", "type": "bind", "source": ctx.init_path,
                       "options": ["rbind", "ro", "rprivate"]})
    process: dict[str, Any] = {
        "terminal": bool(cfg.get("Tty")),
        "user": {"uid": ctx.uid, "gid": ctx.gid, **({"additionalGids": ctx.additional_gids}
                                                    if ctx.additional_gids else {})},
        "args": args,
        "env": _env(cfg, hostname),
        "cwd": cfg.get("WorkingDir") or "/",
        "capabilities": {k: list(cap_list) for k in ("bounding", "effective", "permitted")},
        "noNewPrivileges": sec.get("no-new-privileges") == "true",
    }
    if hc.get("OomScoreAdj"):
        process["oomScoreAdj"] = hc["OomScoreAdj"]
    rlimits = []
    for u in hc.get("Ulimits") or []:
        rlimits.append({"type": _ulimit(u["Name"]), "soft": u.get("Soft") or 0, "hard": u.get("Hard") or 0})
    if rlimits:
        process["rlimits"] = rlimits
    shm = hc.get("ShmSize") or 64 * 1024 * 1024
    mounts += [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
         "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs",
         "options": ["nosuid", "noexec", "nodev", "rw" if privileged else "ro"]},
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
         "options": ["nosuid", "noexec", "nodev", "relatime", "rw" if privileged else "ro"]},
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
         "options": ["nosuid", "noexec", "nodev", "mode=1777", f"size={shm}"]},
    ]
    taken = {m["destination"] for m in ctx.mounts} | set(hc.get("Tmpfs") or {})
    mounts = [m for m in mounts if m["destination"] not in taken or m["destination"] == "/sys/fs/cgroup"]
    for dest, opts in (hc.get("Tmpfs") or {}).items():
        options = list(TMPFS_DEFAULTS)
        for o in (opts.split(",") if opts else []):
            if o and o not in options:
                options.append(o)
        mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": options})
    etc = {"/etc/resolv.conf": c.resolv_path, "/etc/hostname": c.hostname_path, "/etc/hosts": c.hosts_path}
    mounts += etc_mounts({d: s for d, s in etc.items() if d not in taken}, bool(hc.get("ReadonlyRootfs")))
    mounts += ctx.mounts
    net = hc.get("NetworkMode") or "bridge"
    namespaces = [{"type": "mount"}, {"type": "uts"}]
    if (hc.get("PidMode") or "") != "host":
        namespaces.append({"type": "pid"})
    if (hc.get("IpcMode") or "") != "host":
        namespaces.append({"type": "ipc"})
    if (hc.get("CgroupnsMode") or "") == "private":
        namespaces.append({"type": "cgroup"})
    hooks: dict[str, Any] = {}
    if ctx.netns_path and net != "host":  # a sandbox made by the network service, or container:<id>'s
        namespaces.append({"type": "network", "path": ctx.netns_path})
    elif net != "host":
        namespaces.append({"type": "network"})
        # a new network namespace starts with lo down: bring it up as Docker does (runc's loopback)
        hooks["createRuntime"] = [{"path": "/bin/sh", "env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], "args": [
            "sh", "-c", 'pid=$(sed -n \'s/.*"pid": *\\([0-9]*\\).*/\\1/p\'); '
            f'exec {ctx.nsenter_binary} -t "$pid" -n {ctx.ip_binary} link set lo up']}]
    uts_host = (hc.get("UTSMode") or "") == "host"
    if uts_host:  # the host's hostname: no UTS namespace, and so no hostname to set
        namespaces = [n for n in namespaces if n["type"] != "uts"]
    devices, dev_rules = _devices(hc)
    if privileged:
        cgroup_devices = [{"allow": True, "access": "rwm"}]
    else:
        cgroup_devices = [{"allow": False, "access": "rwm"}]
        for typ, major, minor, access in DEFAULT_DEVICE_RULES:
            rule: dict[str, Any] = {"allow": True, "type": typ, "access": access}
            if major is not None:
                rule["major"] = major
            if minor is not None:
                rule["minor"] = minor
            cgroup_devices.append(rule)
        cgroup_devices += dev_rules
        cgroup_devices += [_cgroup_rule(r) for r in hc.get("DeviceCgroupRules") or []]
    res = resources(hc)
    res["devices"] = cgroup_devices
    parent = (hc.get("CgroupParent") or ctx.cgroup_parent or "engine").strip("/")
    linux: dict[str, Any] = {
        "cgroupsPath": f"/{parent}/{c.id}",
        "resources": res,
        "namespaces": namespaces,
        "devices": devices,
    }
    sysctl = _sysctls(hc, net == "host")
    if sysctl:
        linux["sysctl"] = sysctl
    systempaths_unconfined = sec.get("systempaths") == "unconfined"
    if not privileged and not systempaths_unconfined:
        linux["maskedPaths"] = list(hc.get("MaskedPaths") or MASKED_PATHS)
        linux["readonlyPaths"] = list(hc.get("ReadonlyPaths") or READONLY_PATHS)
    if not privileged and sec.get("seccomp", "") not in ("unconfined",):
        linux["seccomp"] = seccomp_profile(cap_list)
    spec: dict[str, Any] = {
        "ociVersion": OCI_VERSION,
        "process": process,
        "root": {"path": "rootfs", "readonly": bool(hc.get("ReadonlyRootfs"))},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    }
    if cfg.get("Domainname"):
        spec["domainname"] = cfg["Domainname"]
    if uts_host:
        spec.pop("hostname", None)
        spec.pop("domainname", None)
    if hooks:
        spec["hooks"] = hooks
    return spec


def _ulimit(name: str) -> str:
    from engine.services.dockerd.hostconfig import ULIMITS

    if name not in ULIMITS:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    return ULIMITS[name]
