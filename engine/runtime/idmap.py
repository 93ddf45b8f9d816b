"""Idmapped mounts: the user namespaces that carry a mount's id mapping.

A bind mount with ``uidMappings``/``gidMappings`` (or the ``idmap``/``ridmap`` option, which then
takes the container's own mappings, as runc 1.2) is made with MOUNT_ATTR_IDMAP, which needs a
file descriptor of a user namespace holding the mapping: a throwaway child unshares a user
namespace, we write its maps, open /proc/<pid>/ns/user, and let it go (the mount keeps the
namespace alive).  ``prepare`` makes the idmapped trees before the container process is cloned.
"""

from __future__ import annotations

import os

from engine.errors import InvalidArgument


def wants_idmap(mnt: dict) -> bool:
    opts = mnt.get("options") or ()
    return bool(mnt.get("uidMappings") or mnt.get("gidMappings") or "idmap" in opts or "ridmap" in opts)


def mappings(mnt: dict, linux: dict) -> tuple[str, str]:
    """(uid_map, gid_map) text for a mount: its own mappings, else the container's."""
    uids = mnt.get("uidMappings") or linux.get("uidMappings")
    gids = mnt.get("gidMappings") or linux.get("gidMappings")
    if not uids or not gids:
        raise InvalidArgument(f"mount {mnt.get('destination')}: an idmapped mount needs uid and gid mappings")

    def text(ms: list) -> str:
        return "".join(f"{int(m['containerID'])} {int(m['hostID'])} {int(m['size'])}\n" for m in ms)

    return text(uids), text(gids)


def userns_fd(uid_map: str, gid_map: str) -> int:
    """An fd of a new user namespace with these maps (O_CLOEXEC)."""
    from engine import native

    ready_r, ready_w = os.pipe()
    hold_r, hold_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only unshares, says so, and waits to be let go
        try:
            os.close(ready_r)
            os.close(hold_w)
            native.unshare(native.CLONE_NEWUSER)
            os.write(ready_w, b"1")
            os.read(hold_r, 1)
        finally:
            os._exit(0)
    os.close(ready_w)
    os.close(hold_r)
    try:
        if os.read(ready_r, 1) != b"1":
            raise InvalidArgument("idmapped mount: could not make a user namespace")
        for name, text in (("uid_map", uid_map), ("gid_map", gid_map)):
            fd = os.open(f"/proc/{pid}/{name}", os.O_WRONLY | os.O_CLOEXEC)
            try:
                os.write(fd, text.encode())
            except OSError as e:
                raise InvalidArgument(f"idmapped mount: write {name} {text.strip()!r}: {e.strerror}") from e
            finally:
                os.close(fd)
        return os.open(f"/proc/{pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(ready_r)
        os.close(hold_w)
        os.waitpid(pid, 0)


# MOUNT_ATTR_* for mount_setattr(2), from the MS_* flags an idmapped mount asks for
_MOUNT_ATTRS = ((1, 0x1), (2, 0x2), (4, 0x4), (8, 0x8))  # RDONLY, NOSUID, NODEV, NOEXEC


def prepare(config: dict, bundle: str) -> dict[int, int]:
    """Detached idmapped trees for the config's idmapped mounts: {mount index: tree fd}.

    Made here, in the runtime's namespaces: open_tree and mount_setattr need privilege over the
    source filesystem, which the container (in its own user namespace) does not have.  The
    container process inherits the fds and attaches each with move_mount (plan.py, rootfs.c).
    """
    from engine import native
    from engine.runtime import mounts as m

    linux = config.get("linux") or {}
    users: dict[tuple[str, str], int] = {}
    trees: dict[int, int] = {}
    try:
        for i, mnt in enumerate(config.get("mounts") or ()):
            if not wants_idmap(mnt):
                continue
            if not m.is_bind(mnt):
                raise InvalidArgument(f"mount {mnt.get('destination')}: only bind mounts can be idmapped")
            key = mappings(mnt, linux)
            if key not in users:
                users[key] = userns_fd(*key)
            src = mnt.get("source") or ""
            if not os.path.isabs(src):
                src = os.path.join(bundle, src)
            flags, _, _ = m.parse_options(mnt.get("options"))
            attrs = 0
            for ms, attr in _MOUNT_ATTRS:
                if flags & ms:
                    attrs |= attr
            recursive = bool(flags & m.MS_REC) or "ridmap" in (mnt.get("options") or ())
            try:
                trees[i] = native.idmapped_tree(src, users[key], recursive=recursive, attrs=attrs)
            except OSError as e:
                raise InvalidArgument(f"idmapped mount of {src}: {(e.strerror or str(e)).lower()}") from e
    except BaseException:
        for fd in trees.values():
            os.close(fd)
        raise
    finally:
        for fd in users.values():
            os.close(fd)
    return trees
