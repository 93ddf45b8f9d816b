"""Reading and writing cgroup control files, and undoing a partial ``set()``.

Every control-file access goes through here so that kernel errors become the engine's
error classes in one place: EINVAL/ERANGE -> InvalidArgument (the kernel refused the
value), EBUSY -> FailedPrecondition (e.g. a memory limit below current usage),
ENOENT on a control file -> Unimplemented (this kernel or hierarchy lacks the knob).

``Writer`` records each write with the value it replaced. When one controller fails
half-way through ``set()``, the manager replays the recorded old values in reverse
order; every intermediate state on the way back existed before, so the kernel accepts
them. Files that hold a list of entries (``devices.allow``, ``io.max``,
``blkio.throttle.*``) cannot be restored from one read; they are reported by name in
the error so the caller knows the cgroup is partially configured.
"""

from __future__ import annotations

import errno
import os
import time

from engine.errors import (
    EngineError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unimplemented,
)

# Sentinel: read the current value before writing and restore it on rollback.
AUTO = object()


def _error(op: str, path: str, err: OSError, value: str | None = None) -> EngineError:
    what = f"{op} {path}" + (f" = {value!r}" if value is not None else "")
    code = err.errno
    if code in (errno.EINVAL, errno.ERANGE, errno.EOVERFLOW):
        return InvalidArgument(f"{what}: the kernel rejected the value ({os.strerror(code).lower()})")
    if code == errno.EBUSY:
        return FailedPrecondition(f"{what}: {os.strerror(code).lower()}")
    if code == errno.ENOENT:
        if os.path.isdir(os.path.dirname(path)):
            return Unimplemented(f"{what}: control file not supported by this kernel or hierarchy")
        return NotFound(f"{what}: cgroup does not exist")
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        return PermissionDenied(f"{what}: {os.strerror(code).lower()}")
    return EngineError(f"{what}: {os.strerror(code or 0).lower()}")


def read(dirpath: str, name: str) -> str:
    """Whole contents of a control file (trailing newline kept)."""
    path = os.path.join(dirpath, name)
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except OSError as err:
        raise _error("read", path, err) from err


def read_opt(dirpath: str, name: str) -> str | None:
    """Contents of a control file, or None when it does not exist."""
    try:
        with open(os.path.join(dirpath, name), encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as err:
        if err.errno == errno.ENODEV:
            return None
        raise _error("read", os.path.join(dirpath, name), err) from err


def read_uint(dirpath: str, name: str) -> int:
    """A single unsigned number; ``max`` reads as 2**64-1 like runc does."""
    return parse_uint(read(dirpath, name))


def parse_uint(text: str) -> int:
    text = text.strip()
    if text == "max":
        return (1 << 64) - 1
    try:
        return int(text)
    except ValueError as err:
        raise EngineError(f"unexpected cgroup value {text!r}") from err


def parse_flat_keyed(text: str) -> dict[str, int]:
    """``key value`` lines (memory.stat, cpu.stat, memory.events) into a dict."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                continue
    return out


def write(dirpath: str, name: str, value: str) -> None:
    """Write one value with a single write(2), as the kernel expects."""
    path = os.path.join(dirpath, name)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except OSError as err:
        raise _error("write", path, err, value) from err
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise _error("write", path, err, value) from err
    finally:
        os.close(fd)


def exists(dirpath: str, name: str) -> bool:
    return os.path.exists(os.path.join(dirpath, name))


def write_pid(dirpath: str, pid: int) -> None:
    """Move ``pid`` into the cgroup; EINVAL can mean the task is still being born, so retry."""
    for attempt in range(5):
        try:
            write(dirpath, "cgroup.procs", str(pid))
            return
        except InvalidArgument:
            if attempt == 4:
                raise
            time.sleep(0.03)


def read_pids(dirpath: str) -> list[int]:
    text = read_opt(dirpath, "cgroup.procs")
    if text is None:
        return []
    return [int(x) for x in text.split()]


def walk_pids(dirpath: str) -> list[int]:
    """Processes in the cgroup and every descendant, deduplicated, in discovery order."""
    seen: dict[int, None] = {}
    for top, dirs, _files in os.walk(dirpath):
        dirs.sort()
        for pid in read_pids(top):
            seen.setdefault(pid, None)
    return list(seen)


def rmdir_tree(dirpath: str, retries: int = 10) -> None:
    """Remove a cgroup and its sub-cgroups; retry EBUSY while exiting tasks leave."""
    try:
        os.rmdir(dirpath)
        return
    except FileNotFoundError:
        return
    except OSError:
        pass
    try:
        entries = list(os.scandir(dirpath))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.is_dir(follow_symlinks=False):
            rmdir_tree(entry.path, retries)
    delay = 0.001
    for attempt in range(retries + 1):
        try:
            os.rmdir(dirpath)
            return
        except FileNotFoundError:
            return
        except OSError as err:
            if err.errno == errno.EBUSY and attempt < retries:
                time.sleep(delay)
                delay = min(delay * 2, 0.2)
                continue
            raise _error("rmdir", dirpath, err) from err


class Writer:
    """Writes control files and remembers how to put them back."""

    def __init__(self) -> None:
        # (dirpath, name, old value or None when not restorable)
        self._done: list[tuple[str, str, str | None]] = []
        self.warnings: list[str] = []

    def write(self, dirpath: str, name: str, value: str, old: object = AUTO) -> None:
        previous: str | None
        if old is AUTO:
            raw = read_opt(dirpath, name)
            previous = raw.strip() if raw is not None and raw.count("\n") <= 1 else None
        else:
            previous = old if isinstance(old, str) else None
        write(dirpath, name, value)
        self._done.append((dirpath, name, previous))

    def mark(self, dirpath: str, what: str) -> None:
        """Record a change made outside control files (e.g. a BPF program) that cannot be undone."""
        self._done.append((dirpath, what, None))

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    @property
    def written(self) -> list[str]:
        return [os.path.join(d, n) for d, n, _ in self._done]

    def rollback(self) -> list[str]:
        """Undo in reverse order; return the files that could not be restored."""
        failed: list[str] = []
        for dirpath, name, old in reversed(self._done):
            if old is None:
                failed.append(os.path.join(dirpath, name))
                continue
            try:
                write(dirpath, name, old)
            except EngineError:
                failed.append(os.path.join(dirpath, name))
        self._done.clear()
        return failed


def fail_with_rollback(writer: Writer, err: EngineError) -> EngineError:
    """Roll back ``writer`` and return an error of the same class saying what state is left."""
    count = len(writer.written)
    failed = writer.rollback()
    if not count:
        note = "nothing had been written"
    elif not failed:
        note = f"rolled back {count} earlier write(s)"
    else:
        names = ", ".join(sorted({os.path.basename(f) for f in failed}))
        note = f"cgroup left partially configured, could not restore: {names}"
    new = type(err)(f"{err}; {note}")
    new.__cause__ = err
    return new
