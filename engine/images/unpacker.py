"""An image's layers onto a snapshotter, as a chain of committed snapshots (containerd's unpacker).

Each layer's snapshot is named by its ChainID, so a chain that another image shares is unpacked once: a
layer whose snapshot exists is skipped. A missing one is prepared under a unique ``extract-`` key on its
parent, filled, checked against its diff ID and committed; on any failure the half-made snapshot is
removed, and losing a commit race to a concurrent unpack of the same layer is fine.

**In parallel where the snapshotter allows.** An overlayfs layer's files do not depend on the layers
below it. The lower layers decide only two things:

* the owner and mode of a directory the layer makes without an entry of its own (an *implied* parent,
  which copy-up would give the lower directory's);
* whether such a path is a symlink or a file below, in which case the layer is refused, as the one-by-one
  apply refuses it.

So when the snapshotter has a staging directory (``staging_dir``: overlayfs does), each layer is extracted
into a private directory there as soon as its blob can be opened (``Layer.ready``, a download in flight),
up to `parallel` at once and without lower dirs. Then, in chain order, its snapshot is prepared on its
parent, the implied directories are settled against the parent's lower dirs (``settle``), and the staged
tree is renamed onto the empty upper dir before the commit. The rename is cheap: both directories are on
the snapshotter's file system. The first layer is staged in ``delete`` mode, as it is applied onto a plain
directory (a bind mount) when staged or not.

A snapshotter that copies its parent (``native``) has no staging directory: its layers are applied one
after another onto the prepared snapshot's mounts.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import os
import shutil
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO, Protocol

from engine.errors import AlreadyExists, InvalidArgument, NotFound
from engine.images.snapshots.base import Mount
from engine.images.unpack import ApplyResult, _Aborted, _apply, apply_layer, target_of
from engine.images.unpack_tree import Tree, _lstat, _opaque, check_lower_dir

PARALLEL = max(1, min(4, int(os.environ.get("ENGINE_UNPACK_PARALLEL", "0")) or (os.cpu_count() or 1)))
LABEL_SNAPSHOT_REF = "containerd.io/snapshot.ref"

Progress = Callable[[int, str], None]  # (layer index, "extracting" | "staged" | "done"), in the event loop


def chain_id(parent: str, diff_id: str) -> str:
    """OCI image spec ChainID: the first layer's is its diff ID, then sha256(parent + " " + diff_id)."""
    if not parent:
        return diff_id
    return "sha256:" + hashlib.sha256(f"{parent} {diff_id}".encode()).hexdigest()


@dataclass
class Layer:
    diff_id: str  # expected: the unpack refuses a layer whose tar hashes differently
    open: Callable[[], BinaryIO]  # a fresh stream of the (possibly compressed) blob
    ready: asyncio.Future[object] | None = None  # done when the blob can be opened (a download in flight)


class Snapshots(Protocol):
    """The part of the Snapshots service (engine/services/snapshots.py) the unpacker uses."""

    async def stat(self, snapshotter: str, key: str, *, namespace: str) -> object: ...
    async def prepare(self, snapshotter: str, key: str, parent: str = "", labels: dict[str, str] | None = None,
                      *, namespace: str, actor: str) -> list[Mount]: ...
    async def commit(self, snapshotter: str, name: str, key: str, labels: dict[str, str] | None = None, *,
                     namespace: str, actor: str) -> None: ...
    async def remove(self, snapshotter: str, key: str, *, namespace: str, actor: str) -> None: ...
    def staging_dir(self, snapshotter: str) -> str | None: ...


@dataclass
class Staged:
    """A layer extracted on its own, waiting for its snapshot."""

    path: str
    mode: str  # "delete" (the chain's first layer) or "overlay"
    result: ApplyResult
    implied: set[tuple[str, ...]] = field(default_factory=set)
    root_set: bool = False


async def unpack_layers(snaps: Snapshots, snapshotter: str, layers: Sequence[Layer], *, namespace: str,
                        actor: str, labels: dict[str, str] | None = None, progress: Progress | None = None,
                        parallel: int = 0) -> list[str]:
    """Make the committed snapshot chain of `layers`; returns the ChainIDs (see the module doc)."""
    chains: list[str] = []
    for layer in layers:
        chains.append(chain_id(chains[-1] if chains else "", layer.diff_id))
    job = _Job(snaps, snapshotter, list(layers), chains, namespace, actor, labels, progress or _quiet)
    staging = snaps.staging_dir(snapshotter)
    if staging is None:
        await job.one_by_one()
    else:
        await job.staged(staging, parallel or PARALLEL)
    return chains


def _quiet(_index: int, _event: str) -> None:
    pass


@dataclass
class _Job:
    snaps: Snapshots
    snapshotter: str
    layers: list[Layer]
    chains: list[str]
    namespace: str
    actor: str
    labels: dict[str, str] | None
    note: Progress

    async def _exists(self, i: int) -> bool:
        try:
            await self.snaps.stat(self.snapshotter, self.chains[i], namespace=self.namespace)
            return True
        except NotFound:
            return False

    async def _make(self, i: int, fill: Callable[[Sequence[Mount]], None]) -> None:
        """Prepare layer `i`'s snapshot on its parent, `fill` its mounts (in a worker thread), commit it."""
        chain, parent = self.chains[i], self.chains[i - 1] if i else ""
        sn, ns, actor = self.snapshotter, self.namespace, self.actor
        key = f"extract-{uuid.uuid4().hex[:12]} {chain}"
        mounts = await self.snaps.prepare(sn, key, parent, labels={LABEL_SNAPSHOT_REF: chain}, namespace=ns,
                                          actor=actor)
        try:
            await asyncio.to_thread(fill, mounts)
            try:
                await self.snaps.commit(sn, chain, key, self.labels, namespace=ns, actor=actor)
            except AlreadyExists:
                await self.snaps.remove(sn, key, namespace=ns, actor=actor)
        except BaseException:
            await asyncio.shield(self.snaps.remove(sn, key, namespace=ns, actor=actor))
            raise

    def _check(self, i: int, res: ApplyResult) -> None:
        if res.diff_id != self.layers[i].diff_id:
            raise InvalidArgument(f"layer unpacked to {res.diff_id}, expected diff id {self.layers[i].diff_id}")

    async def one_by_one(self) -> None:
        for i, layer in enumerate(self.layers):
            if layer.ready is not None:
                await layer.ready
            if not await self._exists(i):
                self.note(i, "extracting")

                def fill(mounts: Sequence[Mount], i: int = i, layer: Layer = layer) -> None:
                    with layer.open() as f:
                        self._check(i, apply_layer(f, mounts))

                await self._make(i, fill)
                self.note(i, "staged")
            self.note(i, "done")

    async def staged(self, staging: str, parallel: int) -> None:
        abort = threading.Event()
        sem = asyncio.Semaphore(parallel)
        running: list[concurrent.futures.Future[Staged]] = []
        made: list[str] = []

        async def stage(i: int) -> Staged | None:
            layer = self.layers[i]
            if layer.ready is not None:
                await layer.ready
            if await self._exists(i):
                return None
            async with sem:
                if abort.is_set():
                    raise _Aborted
                self.note(i, "extracting")
                path = tempfile.mkdtemp(prefix="layer-", dir=staging)
                made.append(path)
                work = _pool().submit(_stage, layer.open, path, "delete" if i == 0 else "overlay", abort)
                running.append(work)
                st = await asyncio.wrap_future(work)
                self.note(i, "staged")
                return st

        def stop_all(t: asyncio.Task[Staged | None]) -> None:
            if not t.cancelled() and t.exception() is not None:
                abort.set()

        tasks = [asyncio.ensure_future(stage(i)) for i in range(len(self.layers))]
        for t in tasks:
            t.add_done_callback(stop_all)
        try:
            for i, task in enumerate(tasks):
                try:
                    st = await task
                except _Aborted:
                    raise _first_failure(tasks) from None
                if st is not None:
                    self._check(i, st.result)
                    await self._make(i, lambda mounts, st=st: settle(st, mounts))  # type: ignore[misc]
                self.note(i, "done")
        finally:
            abort.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            left = [w for w in running if not w.done()]
            if left or any(os.path.lexists(p) for p in made):
                await asyncio.shield(asyncio.to_thread(_clean, left, made))


def _first_failure(tasks: Sequence[asyncio.Task[Staged | None]]) -> BaseException:
    """The failure that made the others stop."""
    for t in tasks:
        if t.done() and not t.cancelled():
            err = t.exception()
            if err is not None and not isinstance(err, _Aborted):
                return err
    return InvalidArgument("unpack stopped")


def _clean(running: list[concurrent.futures.Future[Staged]], paths: list[str]) -> None:
    concurrent.futures.wait(running)
    for p in paths:
        shutil.rmtree(p, ignore_errors=True)


_POOL: concurrent.futures.ThreadPoolExecutor | None = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="unpack")
    return _POOL


def _stage(opener: Callable[[], BinaryIO], path: str, mode: str, abort: threading.Event) -> Staged:
    with opener() as f:
        # the blob comes from the content store, verified when it was committed: only the tar is hashed
        res, implied, root_set = _apply(f, path, mode=mode, hash_raw=False, abort=abort)
    return Staged(path, mode, res, implied, root_set)


def settle(st: Staged, mounts: Sequence[Mount]) -> None:
    """Give a staged layer its place on the prepared snapshot `mounts`: the implied directories take the
    lower layers' owner and mode (or the layer is refused), then the tree replaces the empty upper dir."""
    root, mode, lowers = target_of(mounts)
    if mode != st.mode:
        raise InvalidArgument(f"layer staged for {st.mode!r} whiteouts cannot go onto a {mode!r} snapshot")
    settle_implied(st.path, st.implied, lowers)
    if not st.root_set:  # the snapshot's root keeps what the snapshotter gave it (its parent's)
        top = os.stat(root)
        os.chown(st.path, top.st_uid, top.st_gid)
        os.chmod(st.path, stat.S_IMODE(top.st_mode))
    os.rename(st.path, root)  # onto the prepared (still empty) upper dir


def settle_implied(root: str, implied: set[tuple[str, ...]], lowers: Sequence[str]) -> None:
    """For each directory in `implied` (made under `root` only as a parent of an entry): refuse the layer
    when the merged `lowers` have a symlink or a file there, else copy the lower directory's owner and mode
    onto it, as the apply onto an overlay does when it makes the directory (engine/images/unpack_tree.py)."""
    if not implied or not lowers:
        return
    merged: dict[tuple[str, ...], list[str]] = {(): list(lowers)}

    def below(parts: tuple[str, ...]) -> list[str]:
        hit = merged.get(parts)
        if hit is not None:
            return hit
        above = below(parts[:-1])
        path = os.path.join(root, *parts)
        st = _lstat(path)
        out: list[str] = []
        if st is not None and stat.S_ISDIR(st.st_mode) and above:
            lst, out = Tree._lower_child(above, parts[-1])
            if parts in implied and lst is not None:
                check_lower_dir(lst, "/".join(parts))
                os.chown(path, lst.st_uid, lst.st_gid, follow_symlinks=False)
                os.chmod(path, stat.S_IMODE(lst.st_mode))
            if _opaque(path):
                out = []
        merged[parts] = out
        return out

    for parts in sorted(implied, key=len):
        below(parts)

