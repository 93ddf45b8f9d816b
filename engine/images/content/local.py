"""The content store on disk: blobs by digest, resumable ingests by ref. No journal knowledge.

Layout under the store's root (``<engine root>/content``), as containerd's local store::

    blobs/<alg>/<hex>                 committed content, read-only (0444), named by its digest
    ingest/<sha256(ref)>/data         bytes written so far (its size is the ingest's offset)
    ingest/<sha256(ref)>/ref          the ref, to check the hash and to list ingests by ref
    ingest/<sha256(ref)>/startedat    start time, decimal nanoseconds since the epoch
    ingest/<sha256(ref)>/updatedat    last time a writer opened or closed the ingest
    ingest/<sha256(ref)>/total        the expected size, when one was given

Design choices:

* Refs are hashed into directory names, so any string (``../../etc``) is a safe ref; an empty ref or
  one with a NUL byte is refused.
* One writer per ref, across processes too: the writer holds ``flock(LOCK_EX)`` on ``data``; a second
  writer (in this or another process) gets Unavailable ``ref <ref> locked``, as containerd answers. The
  kernel drops the lock when a writer dies, so a killed writer's ingest can be resumed or aborted.
* Resume re-reads ``data`` through the hasher, so the digest is right whatever was written before a crash
  (the offset is the file's size: what reached the page cache is what counts).
* Commit: fsync ``data``, check the size and the digest (FailedPrecondition naming both), then rename into
  ``blobs/`` and fsync the directory, then remove the ingest. A blob already present makes it
  AlreadyExists, and the ingest is removed (the content is there).
* A large write hashes on a helper thread while the caller's thread writes (hashlib and pwrite both
  release the GIL), so ingest runs at the slower of the two rather than their sum.
* Writes are only sequential: at the current offset, or at 0 to start over (containerd's Truncate(0)).
  Any other offset, a negative one, or a write past the expected total is an InvalidArgument that changes
  nothing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import shutil
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import AlreadyExists, DataLoss, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from engine.images.content import digests

MAX_REF = 4096
_CHUNK = 1 << 20
_PARALLEL_HASH = 256 * 1024  # writes at least this large hash and write on two threads at once
_pool: ThreadPoolExecutor | None = None


def _hash_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="content-hash")
    return _pool


@dataclass(frozen=True)
class BlobInfo:
    digest: str
    size: int
    created_ns: int


@dataclass(frozen=True)
class IngestStatus:
    ref: str
    offset: int
    total: int
    started_ns: int
    updated_ns: int
    expected: str = ""


def validate_ref(ref: str) -> str:
    if not isinstance(ref, str) or not ref:
        raise InvalidArgument("ingest ref must not be empty")
    if "\x00" in ref:
        raise InvalidArgument("ingest ref must not contain a NUL byte")
    if len(ref.encode()) > MAX_REF:
        raise InvalidArgument(f"ingest ref longer than {MAX_REF} bytes")
    return ref


def _write_small(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ReaderAt:
    """Random access to one committed blob (pread); the file stays readable even if it is removed meanwhile."""

    def __init__(self, path: Path, digest: str) -> None:
        try:
            self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as err:
            raise NotFound(f"content digest {digest}: not found") from err
        self.digest = digest
        self.size = os.fstat(self._fd).st_size

    def read_at(self, size: int, offset: int) -> bytes:
        if offset < 0 or size < 0:
            raise InvalidArgument(f"read of {size} bytes at offset {offset}: negative")
        if offset > self.size:
            raise InvalidArgument(f"read offset {offset} is past the end of {self.digest} ({self.size} bytes)")
        return os.pread(self._fd, min(size, self.size - offset), offset)

    def chunks(self, offset: int = 0, size: int = -1, chunk: int = _CHUNK) -> Iterator[bytes]:
        end = self.size if size < 0 else min(self.size, offset + size)
        while offset < end:
            data = self.read_at(min(chunk, end - offset), offset)
            if not data:
                return
            offset += len(data)
            yield data

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> ReaderAt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Writer:
    """An open ingest holding the ref's lock; write, then commit or close (the ingest stays to resume)."""

    def __init__(self, store: LocalStore, ref: str, path: Path, fd: int, total: int, expected: str) -> None:
        self.store = store
        self.ref = ref
        self.path = path
        self._fd = fd
        self.total = total
        self.expected = expected
        self._alg = digests.parse(expected)[0] if expected else digests.CANONICAL
        self._hash: Any = digests.hasher(self._alg)
        self.offset = 0
        self.started_ns = _read_int(path / "startedat")
        self._rehash()

    def _rehash(self) -> None:
        self._hash = digests.hasher(self._alg)
        self.offset = 0
        while True:
            data = os.pread(self._fd, _CHUNK, self.offset)
            if not data:
                break
            self._hash.update(data)
            self.offset += len(data)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def _check_open(self) -> None:
        if self._fd < 0:
            raise FailedPrecondition(f"ingest {self.ref}: writer is closed")

    def write(self, data: bytes, offset: int | None = None) -> int:
        """Append `data` at the current offset (or at `offset`, which must be it, or 0 to start over)."""
        self._check_open()
        if offset is not None and offset != self.offset:
            if offset != 0:
                raise InvalidArgument(
                    f"ingest {self.ref}: write at offset {offset} but the ingest is at offset {self.offset}")
            self.truncate(0)
        if self.total > 0 and self.offset + len(data) > self.total:
            raise InvalidArgument(f"ingest {self.ref}: write of {len(data)} bytes at offset {self.offset} "
                                  f"exceeds the expected size {self.total}")
        view = memoryview(data)
        if len(view) < _PARALLEL_HASH:
            while view:
                n = os.pwrite(self._fd, view, self.offset)
                self._hash.update(view[:n])
                self.offset += n
                view = view[n:]
            return len(data)
        # large writes: hash on a helper thread while this one writes (both release the GIL)
        hashing = _hash_pool().submit(self._hash.update, view)
        start, done = self.offset, 0
        try:
            while done < len(view):
                done += os.pwrite(self._fd, view[done:], start + done)
        except BaseException:
            hashing.result()
            os.ftruncate(self._fd, start + done)
            self._rehash()  # the hash took bytes that were not all written: recompute from the file
            raise
        hashing.result()
        self.offset = start + done
        return len(data)

    def truncate(self, size: int) -> None:
        self._check_open()
        if size != 0:
            raise InvalidArgument(f"ingest {self.ref}: truncate to {size} is not supported, only to 0")
        os.ftruncate(self._fd, 0)
        self._hash = digests.hasher(self._alg)
        self.offset = 0

    def digest(self) -> str:
        return f"{self._alg}:{self._hash.hexdigest()}"

    def status(self) -> IngestStatus:
        return IngestStatus(self.ref, self.offset, self.total, self.started_ns,
                            _read_int(self.path / "updatedat"), self.expected)

    def verify(self, size: int = 0, expected: str = "") -> str:
        """fsync the data and check its size and digest (FailedPrecondition naming both); the digest."""
        self._check_open()
        if size < 0:
            raise InvalidArgument(f"ingest {self.ref}: negative commit size {size}")
        expected = expected or self.expected
        if expected:
            alg = digests.parse(expected)[0]
            if alg != self._alg:
                self._alg = alg
                self._rehash()
        os.fsync(self._fd)
        want = size or self.total
        if want and want != self.offset:
            raise FailedPrecondition(f"unexpected commit size {self.offset}, expected {want}")
        got = self.digest()
        if expected and expected != got:
            raise FailedPrecondition(f"unexpected commit digest {got}, expected {expected}")
        return got

    def commit(self, size: int = 0, expected: str = "") -> BlobInfo:
        """Verify and move the data into blobs/; the writer is closed after success or AlreadyExists."""
        got = self.verify(size, expected)
        target = self.store.blob_path(got)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            self._remove()
            raise AlreadyExists(f"content {got}: already exists")
        data = self.path / "data"
        os.fchmod(self._fd, 0o444)
        os.rename(data, target)
        _fsync_dir(target.parent)
        info = BlobInfo(got, self.offset, time.time_ns())
        self._remove()
        return info

    def discard(self) -> None:
        """Remove the ingest and close (its content is not wanted: it is on disk already)."""
        self._check_open()
        self._remove()

    def _remove(self) -> None:
        fd, self._fd = self._fd, -1
        shutil.rmtree(self.path, ignore_errors=True)
        os.close(fd)

    def close(self) -> None:
        """Release the lock; the ingest stays on disk to be resumed."""
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            _write_small(self.path / "updatedat", str(time.time_ns()))
        fd, self._fd = self._fd, -1
        os.close(fd)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalStore:
    """containerd's local content store layout under `root`; safe for one writer per ref across processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        (self.root / "blobs").mkdir(parents=True, exist_ok=True)
        (self.root / "ingest").mkdir(parents=True, exist_ok=True)

    # ---- paths -------------------------------------------------------------------------------

    def blob_path(self, digest: str) -> Path:
        alg, hexpart = digests.parse(digest)
        return self.root / "blobs" / alg / hexpart

    def ingest_path(self, ref: str) -> Path:
        return self.root / "ingest" / hashlib.sha256(validate_ref(ref).encode()).hexdigest()

    # ---- blobs -------------------------------------------------------------------------------

    def info(self, digest: str) -> BlobInfo:
        try:
            st = self.blob_path(digest).stat()
        except FileNotFoundError as err:
            raise NotFound(f"content digest {digest}: not found") from err
        return BlobInfo(digest, st.st_size, st.st_mtime_ns)

    def exists(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def reader_at(self, digest: str) -> ReaderAt:
        return ReaderAt(self.blob_path(digest), digest)

    def read(self, digest: str) -> bytes:
        with self.reader_at(digest) as r:
            return b"".join(r.chunks())

    def delete(self, digest: str) -> None:
        path = self.blob_path(digest)
        try:
            path.unlink()
        except FileNotFoundError as err:
            raise NotFound(f"content digest {digest}: not found") from err
        _fsync_dir(path.parent)

    def walk(self) -> Iterator[BlobInfo]:
        """Every committed blob, in no particular order; stray files under blobs/ are skipped."""
        for alg in digests.ALGORITHMS:
            d = self.root / "blobs" / alg
            if not d.is_dir():
                continue
            for entry in os.scandir(d):
                dgst = f"{alg}:{entry.name}"
                try:
                    digests.parse(dgst)
                    st = entry.stat()
                except (InvalidArgument, FileNotFoundError):
                    continue
                yield BlobInfo(dgst, st.st_size, st.st_mtime_ns)

    # ---- ingests -----------------------------------------------------------------------------

    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> Writer:
        """Open (or resume) the ingest for `ref`, taking its lock: Unavailable if another writer has it."""
        path = self.ingest_path(ref)
        if total < 0:
            raise InvalidArgument(f"ingest {ref}: negative expected size {total}")
        if expected:
            digests.parse(expected)
        path.mkdir(exist_ok=True)
        try:
            fd = os.open(path / "data", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError as err:  # removed under us by an abort
            raise Unavailable(f"ref {ref} locked: being removed") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as err:
            os.close(fd)
            raise Unavailable(f"ref {ref} locked") from err
        try:
            recorded = (path / "ref").read_text() if (path / "ref").exists() else None
            if recorded is None:  # new (or its creator died before writing ref): record it
                now = str(time.time_ns())
                _write_small(path / "startedat", now)
                _write_small(path / "updatedat", now)
                if total:
                    _write_small(path / "total", str(total))
                _write_small(path / "ref", ref)
            elif recorded != ref:
                raise DataLoss(f"ingest directory {path.name} holds ref {recorded!r}, not {ref!r}")
            else:
                had = _read_int(path / "total")
                if total and had and had != total:
                    raise FailedPrecondition(f"ingest {ref}: provided total differs from status: {total} != {had}")
                if total and not had:
                    _write_small(path / "total", str(total))
                total = total or had
                _write_small(path / "updatedat", str(time.time_ns()))
            return Writer(self, ref, path, fd, total, expected)
        except BaseException:
            os.close(fd)
            raise

    def _status_of(self, path: Path) -> IngestStatus | None:
        try:
            ref = (path / "ref").read_text()
            offset = (path / "data").stat().st_size
        except FileNotFoundError:
            return None
        return IngestStatus(ref, offset, _read_int(path / "total"), _read_int(path / "startedat"),
                            _read_int(path / "updatedat"))

    def status(self, ref: str) -> IngestStatus:
        st = self._status_of(self.ingest_path(ref))
        if st is None or st.ref != ref:
            raise NotFound(f"ingest {ref}: not found")
        return st

    def list_statuses(self) -> list[IngestStatus]:
        out = []
        for entry in os.scandir(self.root / "ingest"):
            st = self._status_of(Path(entry.path))
            if st is not None:
                out.append(st)
        return out

    def ingest_dirs(self) -> list[Path]:
        """Every ingest directory, recorded or not (a creator may have died before writing `ref`)."""
        return [Path(e.path) for e in os.scandir(self.root / "ingest") if e.is_dir()]

    def locked(self, ref: str) -> bool:
        return self._dir_locked(self.ingest_path(ref))

    @staticmethod
    def _dir_locked(path: Path) -> bool:
        try:
            fd = os.open(path / "data", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return False
        except BlockingIOError:
            return True
        finally:
            os.close(fd)

    def abort(self, ref: str) -> None:
        """Remove the ingest; Unavailable while a writer holds it, NotFound if there is none."""
        path = self.ingest_path(ref)
        if not path.is_dir():
            raise NotFound(f"ingest {ref}: not found")
        self._remove_dir(path, ref)

    def remove_ingest_dir(self, path: Path) -> None:
        """Remove an ingest directory by path (GC of directories with no record); Unavailable if locked."""
        if path.parent != self.root / "ingest":
            raise InvalidArgument(f"{path} is not an ingest directory of this store")
        self._remove_dir(path, path.name)

    @staticmethod
    def _remove_dir(path: Path, what: str) -> None:
        try:
            fd = os.open(path / "data", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            shutil.rmtree(path, ignore_errors=True)
            return
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as err:
                raise Unavailable(f"ref {what} locked") from err
            shutil.rmtree(path, onerror=_ignore_enoent)
        finally:
            os.close(fd)


def _ignore_enoent(fn: object, path: str, exc: Any) -> None:
    err = exc[1] if isinstance(exc, tuple) else exc
    if not (isinstance(err, OSError) and err.errno == errno.ENOENT):
        raise err
