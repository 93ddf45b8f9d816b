"""Mount options (runc's vocabulary) to mount(2) flags, propagation and data; default devices.

``parse_options`` splits an OCI mount's ``options`` into:
* ``flags``: MS_* bits for the first mount(2) call,
* ``propagation``: MS_SHARED/SLAVE/PRIVATE/UNBINDABLE (+MS_REC), applied in a separate call,
* ``data``: everything mount(2) does not know, joined with commas (``size=64k,mode=755``).
A bind mount that asks for more than MS_BIND|MS_REC gets a second, remount call with those
flags (the kernel ignores them on the first bind), as runc does.
"""

from __future__ import annotations

MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_SYNCHRONOUS = 16
MS_REMOUNT = 32
MS_MANDLOCK = 64
MS_DIRSYNC = 128
MS_NOSYMFOLLOW = 256
MS_NOATIME = 1024
MS_NODIRATIME = 2048
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_SILENT = 32768
MS_UNBINDABLE = 1 << 17
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_SHARED = 1 << 20
MS_RELATIME = 1 << 21
MS_I_VERSION = 1 << 23
MS_STRICTATIME = 1 << 24
MS_LAZYTIME = 1 << 25

# name -> (clear?, flag)
FLAGS: dict[str, tuple[bool, int]] = {
    "async": (True, MS_SYNCHRONOUS),
    "atime": (True, MS_NOATIME),
    "bind": (False, MS_BIND),
    "defaults": (False, 0),
    "dev": (True, MS_NODEV),
    "diratime": (True, MS_NODIRATIME),
    "dirsync": (False, MS_DIRSYNC),
    "exec": (True, MS_NOEXEC),
    "iversion": (False, MS_I_VERSION),
    "lazytime": (False, MS_LAZYTIME),
    "loud": (True, MS_SILENT),
    "mand": (False, MS_MANDLOCK),
    "noatime": (False, MS_NOATIME),
    "nodev": (False, MS_NODEV),
    "nodiratime": (False, MS_NODIRATIME),
    "noexec": (False, MS_NOEXEC),
    "noiversion": (True, MS_I_VERSION),
    "nolazytime": (True, MS_LAZYTIME),
    "nomand": (True, MS_MANDLOCK),
    "norelatime": (True, MS_RELATIME),
    "nostrictatime": (True, MS_STRICTATIME),
    "nosuid": (False, MS_NOSUID),
    "nosymfollow": (False, MS_NOSYMFOLLOW),
    "rbind": (False, MS_BIND | MS_REC),
    "relatime": (False, MS_RELATIME),
    "remount": (False, MS_REMOUNT),
    "ro": (False, MS_RDONLY),
    "rw": (True, MS_RDONLY),
    "silent": (False, MS_SILENT),
    "strictatime": (False, MS_STRICTATIME),
    "suid": (True, MS_NOSUID),
    "sync": (False, MS_SYNCHRONOUS),
}

PROPAGATION = {
    "private": MS_PRIVATE,
    "rprivate": MS_PRIVATE | MS_REC,
    "shared": MS_SHARED,
    "rshared": MS_SHARED | MS_REC,
    "slave": MS_SLAVE,
    "rslave": MS_SLAVE | MS_REC,
    "unbindable": MS_UNBINDABLE,
    "runbindable": MS_UNBINDABLE | MS_REC,
}

# options that change what the runtime does, not the mount(2) call: tmpcopyup is handled in
# plan.py (the C side copies what the tmpfs covers into it); idmap/ridmap are not supported
_RUNTIME_ONLY = {"tmpcopyup", "idmap", "ridmap"}


def parse_options(options: list[str] | None) -> tuple[int, int, str]:
    """(flags, propagation, data) for an OCI mount's options."""
    flags = 0
    prop = 0
    data = []
    for o in options or ():
        f = FLAGS.get(o)
        if f is not None:
            clear, bit = f
            if clear:
                flags &= ~bit
            else:
                flags |= bit
            continue
        p = PROPAGATION.get(o)
        if p is not None:
            prop |= p
            continue
        if o in _RUNTIME_ONLY:
            continue
        data.append(o)
    return flags, prop, ",".join(data)


def is_bind(mount: dict) -> bool:
    return mount.get("type") == "bind" or any(o in ("bind", "rbind") for o in mount.get("options") or ())


# (path, type, major, minor) of the devices every container gets, as runc; mode 0666, root-owned
DEFAULT_DEVICES = (
    ("/dev/null", "c", 1, 3),
    ("/dev/zero", "c", 1, 5),
    ("/dev/full", "c", 1, 7),
    ("/dev/tty", "c", 5, 0),
    ("/dev/urandom", "c", 1, 9),
    ("/dev/random", "c", 1, 8),
)

DEFAULT_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)

S_IFIFO = 0o010000
S_IFCHR = 0o020000
S_IFBLK = 0o060000
DEVICE_TYPES = {"c": S_IFCHR, "u": S_IFCHR, "b": S_IFBLK, "p": S_IFIFO}


def host_cgroup_mounts(mountinfo: str | None = None) -> list[tuple[str, str, str, str]]:
    """Cgroup hierarchies mounted on the host: (mount point, root, fstype, super options).

    Read from /proc/self/mountinfo; used to expand an OCI ``cgroup`` mount.
    """
    if mountinfo is None:
        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
    out = []
    seen = set()
    for line in mountinfo.splitlines():
        left, _, right = line.partition(" - ")
        fields = left.split()
        rfields = right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        fstype = rfields[0]
        if fstype not in ("cgroup", "cgroup2"):
            continue
        mp = fields[4]
        if mp in seen:
            continue
        seen.add(mp)
        superopts = ",".join(
            o for o in rfields[2].split(",") if o not in ("rw", "ro") and not o.startswith("release_agent")
        )
        out.append((mp, fields[3], fstype, superopts))
    return out
