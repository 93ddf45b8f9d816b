"""Writing tar entries under a root directory without ever leaving it (the file-system half of unpack).

Every path is resolved component by component from an ``O_PATH`` descriptor of the root with
``O_NOFOLLOW``: a component that is a symlink is refused (InvalidArgument), never followed, so a layer that
plants ``a -> /etc`` and then writes ``a/passwd`` is refused at the second entry with nothing written
outside. Names are checked before anything is touched: absolute paths and ``..`` components are refused.

Two whiteout modes, as containerd's apply:

* ``overlay`` — the root is an overlayfs upper dir and ``lowers`` are the parents' dirs (nearest first).
  ``.wh.<name>`` becomes a 0:0 character device, ``.wh..wh..opq`` sets ``trusted.overlay.opaque=y`` on its
  directory. A directory that exists only in a lower layer is created in the upper dir with the lower's
  owner and mode (what the kernel's copy-up would do). Lower layers are looked at with the kernel's
  merge rules (whiteouts hide, opaque dirs stop the search, a non-directory ends it) and only ever lstat'ed.
* ``delete`` — the root holds the whole tree (native): a whiteout deletes, an opaque marker deletes every
  child of its directory not written by this layer.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Sequence

from engine.errors import InvalidArgument

WHITEOUT_PREFIX = ".wh."
OPAQUE = ".wh..wh..opq"
OPAQUE_XATTR = "trusted.overlay.opaque"
_DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC


def split_name(name: str) -> list[str]:
    """The components of a tar member name; absolute names and ``..`` are hostile and refused."""
    if "\x00" in name:
        raise InvalidArgument(f"layer entry {name!r}: name contains a NUL byte")
    if name.startswith("/"):
        raise InvalidArgument(f"layer entry {name!r}: absolute paths are not allowed in a layer")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise InvalidArgument(f"layer entry {name!r}: '..' is not allowed in a layer path")
    return parts


def symlink_escapes(parts: Sequence[str], target: str) -> bool:
    """True when a relative symlink target climbs above the root from the link's directory."""
    if target.startswith("/"):
        return False  # absolute targets are relative to the container's root; never followed here
    depth = len(parts) - 1
    for comp in target.split("/"):
        if comp == "..":
            depth -= 1
            if depth < 0:
                return True
        elif comp not in ("", "."):
            depth += 1
    return False


def _is_whiteout(st: os.stat_result) -> bool:
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        return None


def check_lower_dir(lower: os.stat_result | None, shown: str) -> None:
    """A directory the layer makes implicitly at `shown` is refused when the lower layers have a symlink
    (writing through it could leave the root) or a non-directory there; `lower` is their merged lstat."""
    if lower is not None and stat.S_ISLNK(lower.st_mode):
        raise InvalidArgument(f"layer path {shown!r} is a symlink in a lower layer: refusing to write through it")
    if lower is not None and not stat.S_ISDIR(lower.st_mode):
        raise InvalidArgument(f"layer path {shown!r} is not a directory in a lower layer")


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


class Tree:
    """A root directory opened for writing one layer; use as a context manager."""

    def __init__(self, root: str, *, mode: str, lowers: Sequence[str] = ()) -> None:
        if mode not in ("overlay", "delete"):
            raise InvalidArgument(f"unknown whiteout mode {mode!r}")
        self.root = root
        self.mode = mode
        self.lowers = list(lowers) if mode == "overlay" else []
        self.fd = os.open(root, _DIR_FLAGS)
        self.written: set[tuple[str, ...]] = set()
        # directories this layer made only because an entry below them needed them (no entry of their own);
        # a staged unpack settles their owner and mode against the lower layers afterwards (``settle``)
        self.implied: set[tuple[str, ...]] = set()
        self.root_set = False  # the layer has an entry for its root ("./")
        self._dir_cache: dict[tuple[str, ...], tuple[int, list[str]]] = {(): (self.fd, self.lowers)}

    def __enter__(self) -> Tree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for fd, _ in self._dir_cache.values():
            os.close(fd)
        self._dir_cache.clear()

    def _forget(self, prefix: tuple[str, ...]) -> None:
        """Drop cached descriptors at or under `prefix` (the directory there is being replaced)."""
        for key in [k for k in self._dir_cache if k[:len(prefix)] == prefix and k]:
            os.close(self._dir_cache.pop(key)[0])

    # ---- lower layers (overlay mode) -----------------------------------------------------------------

    @staticmethod
    def _lower_child(lowers: Sequence[str], name: str) -> tuple[os.stat_result | None, list[str]]:
        """Merged lookup of `name` in directories `lowers` (top first): its lstat and, for a directory,
        the lower directories that merge into it."""
        first: os.stat_result | None = None
        merged: list[str] = []
        for d in lowers:
            path = os.path.join(d, name)
            st = _lstat(path)
            if st is None:
                continue
            if first is None:
                if _is_whiteout(st):
                    return None, []
                first = st
                if not stat.S_ISDIR(st.st_mode):
                    return first, []
            elif not stat.S_ISDIR(st.st_mode):
                break
            merged.append(path)
            if _opaque(path):
                break
        return first, merged

    # ---- resolving ----------------------------------------------------------------------------------

    def parent(self, parts: Sequence[str], *, create: bool = True) -> tuple[int, list[str]]:
        """An O_PATH descriptor of the directory holding parts[-1] (and its merged lower dirs), made as
        needed; refuses when any component is a symlink or not a directory."""
        key = tuple(parts[:-1])
        hit = self._dir_cache.get(key)
        if hit is not None:
            return hit
        fd, lowers = self.parent(parts[:-1], create=create) if key else (self.fd, self.lowers)
        name = key[-1]
        shown = "/".join(key)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is not None and self.mode == "overlay" and _is_whiteout(st):
            os.unlink(name, dir_fd=fd)  # re-created after a whiteout in this layer: opaque over lowers
            os.mkdir(name, 0o755, dir_fd=fd)
            self._set_opaque(fd, name)
            self.written.add(key)
            sub_lowers: list[str] = []
        elif st is not None:
            if stat.S_ISLNK(st.st_mode):
                raise InvalidArgument(f"layer path {shown!r} is a symlink: refusing to write through it")
            if not stat.S_ISDIR(st.st_mode):
                raise InvalidArgument(f"layer path {shown!r} is not a directory")
            sub_lowers = [] if (self.mode != "overlay" or self._fd_opaque(fd, name)) else \
                self._lower_child(lowers, name)[1]
        else:
            lst, sub_lowers = self._lower_child(lowers, name) if lowers else (None, [])
            check_lower_dir(lst, shown)
            if not create and lst is None:
                raise InvalidArgument(f"layer path {shown!r} does not exist")
            os.mkdir(name, 0o755, dir_fd=fd)
            self.written.add(key)  # made by this layer (an opaque marker later must not delete it)
            self.implied.add(key)
            if lst is not None:  # copy-up of a lower directory's owner and mode
                os.chown(name, lst.st_uid, lst.st_gid, dir_fd=fd, follow_symlinks=False)
                self.chmod(fd, name, stat.S_IMODE(lst.st_mode))
        try:
            sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as err:
            if err.errno in (errno.ELOOP, errno.ENOTDIR):
                raise InvalidArgument(f"layer path {shown!r} changed under the unpack") from err
            raise
        self._dir_cache[key] = (sub, sub_lowers)
        return sub, sub_lowers

    @staticmethod
    def _fd_opaque(fd: int, name: str) -> bool:
        sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
        try:
            return _opaque(f"/proc/self/fd/{sub}")
        finally:
            os.close(sub)

    @staticmethod
    def chmod(dirfd: int, name: str, mode: int) -> None:
        """chmod without following a symlink: through an O_PATH descriptor's /proc link."""
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return
            os.chmod(f"/proc/self/fd/{fd}", mode)
        finally:
            os.close(fd)

    @staticmethod
    def setxattrs(dirfd: int, name: str, xattrs: dict[str, bytes]) -> None:
        if not xattrs:
            return
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dirfd)
        try:
            if stat.S_ISLNK(os.fstat(fd).st_mode):
                return
            for k, v in xattrs.items():
                os.setxattr(f"/proc/self/fd/{fd}", k, v)
        finally:
            os.close(fd)

    def _set_opaque(self, dirfd: int, name: str) -> None:
        self.setxattrs(dirfd, name, {OPAQUE_XATTR: b"y"})

    # ---- changing -----------------------------------------------------------------------------------

    def clear(self, dirfd: int, name: str, *, keep_dir: bool, parts: tuple[str, ...]) -> str:
        """Remove whatever is at `name` in the upper tree so a new entry can take its place.

        Returns "dir" when an existing directory was kept (a directory entry over a directory merges),
        "whiteout" when an overlay whiteout was removed, "" otherwise."""
        try:
            st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            return ""
        if stat.S_ISDIR(st.st_mode):
            if keep_dir:
                return "dir"
            self._forget(parts)
            shutil.rmtree(name, dir_fd=dirfd)
            return ""
        os.unlink(name, dir_fd=dirfd)
        return "whiteout" if self.mode == "overlay" and _is_whiteout(st) else ""

    def whiteout(self, parts: list[str]) -> None:
        """``.wh.<name>`` at parts: hide/delete `name` in the same directory."""
        target = parts[-1][len(WHITEOUT_PREFIX):]
        if target in ("", ".", "..") or "/" in target:
            raise InvalidArgument(f"layer whiteout {'/'.join(parts)!r} names no valid entry")
        dirfd, _ = self.parent(parts)
        tparts = (*parts[:-1], target)
        self.clear(dirfd, target, keep_dir=False, parts=tparts)
        if self.mode == "overlay":
            os.mknod(target, stat.S_IFCHR | 0o000, os.makedev(0, 0), dir_fd=dirfd)

    def opaque(self, parts: list[str]) -> None:
        """``.wh..wh..opq`` at parts: the directory hides everything below it from earlier layers."""
        dir_parts = tuple(parts[:-1])
        if not dir_parts:
            if self.mode == "overlay":
                os.setxattr(f"/proc/self/fd/{self.fd}", OPAQUE_XATTR, b"y")
                return
            dirfd = self.fd
        else:
            pfd, _ = self.parent(parts[:-1])
            if self.mode == "overlay":
                self.parent([*parts[:-1], "x"])  # make sure the directory itself is in the upper dir
                self._set_opaque(pfd, dir_parts[-1])
                return
            dirfd, _ = self.parent([*parts[:-1], "x"])
        self._prune(dirfd, dir_parts)

    def _prune(self, dirfd: int, dir_parts: tuple[str, ...]) -> None:
        """Delete what earlier layers left under a directory, keeping what this layer wrote."""
        for child in os.listdir(f"/proc/self/fd/{dirfd}"):
            cparts = (*dir_parts, child)
            if cparts in self.written:
                st = os.stat(child, dir_fd=dirfd, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):  # a directory this layer made merges: prune below it too
                    self._prune(self.parent([*cparts, "x"])[0], cparts)
                continue
            n = len(cparts)
            if any(w[:n] == cparts for w in self.written if len(w) > n):
                self._prune(self.parent([*cparts, "x"])[0], cparts)  # keep the path to what this layer wrote
            else:
                self.clear(dirfd, child, keep_dir=False, parts=cparts)
