"""Tasks after a daemon restart (DESIGN §2.5), and the clean-up shared with the tasks service.

``recover(service)`` runs in the background when the daemon starts. It first reads every task row
and registers it as "recovering" (so a command on it waits, while everything else is answered at
once), then resolves each task against the real world, concurrently:

* ``creating`` (a create intent without outcome): the shim answers and has a process → record
  ``task.created``; otherwise end the shim, clean up, ``task.create_failed``.
* ``deleting``: finish the delete (``task.deleted``).
* shim alive: a ``start`` intent without outcome is resolved from the shim's State (``task.started``
  or ``task.start_failed``), a pause the journal missed is recorded, and the shim's event stream is
  re-attached after the last shim event the journal holds (``Subscribe{after}``), so exits that
  happened while the daemon was down are journaled with their real status and time (cause
  ``recover``).
* shim gone: ``exit.json`` in its state dir gives the real exit (``task.exited``), else
  ``task.vanished`` (exit 255); then the container is force-deleted through the runtime (its processes
  and cgroup), the rootfs unmounted and the bundle, state dir and socket removed. The row stays
  ``stopped`` until the client deletes the task, as containerd keeps a stopped task.

Then orphans: shim sockets, state dirs and bundles under the roots that no row knows are ended and
removed, one ``task.orphan_cleaned`` per container. Every recovery event has actor ``daemon`` and
cause ``recover``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from engine.errors import EngineError, FailedPrecondition, Unavailable
from engine.runtime.shim.client import ShimClient
from engine.services import task_events as te
from engine.services.tasks import fault

if TYPE_CHECKING:
    from engine.services.tasks import Key, Task, TaskService

log = logging.getLogger(__name__)
ACTOR = "daemon"


# ---- the world: processes, mounts, files ------------------------------------------------------------
def _remove_world(runtime: str, cid: str, bundle: str, state_dir: str, socket: str, mounted: bool) -> None:
    """Force-delete the container (processes, cgroup) and remove its bundle, state dir and socket."""
    rt_root = os.path.join(state_dir, "runtime")
    if os.path.isdir(rt_root):
        if runtime:
            subprocess.run([runtime, "--root", rt_root, "delete", "--force", cid], capture_output=True, timeout=30)
        else:
            from engine.runtime import delete

            try:
                delete.delete(rt_root, cid, force=True)
            except EngineError as err:
                log.info("runtime delete of %s: %s", cid, err)
    rootfs = os.path.join(bundle, "rootfs")
    if (mounted and os.path.isdir(rootfs)) or is_mount(rootfs):  # a create cut before the bundle has none
        from engine.images.snapshots import unmount_all

        unmount_all(rootfs)
    if is_mount(rootfs):  # never remove through a mount
        raise Unavailable(f"rootfs {rootfs} is still mounted")
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.rmtree(state_dir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket)


def is_mount(path: str) -> bool:
    """Whether anything is mounted on `path` (mountinfo: os.path.ismount misses a bind on the same fs)."""
    real = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4].replace("\\040", " ") == real for line in f)


async def _end_shim(client: ShimClient | None) -> None:
    if client is None:
        return
    with contextlib.suppress(EngineError):
        await client.kill(9, "", True)
    with contextlib.suppress(EngineError, TimeoutError):  # the runtime state goes with the shim: delete first
        await asyncio.wait_for(client.wait(), 10)
    with contextlib.suppress(EngineError):
        await client.delete()
    with contextlib.suppress(EngineError):
        await client.shutdown(now=True)
    await client.close()


async def teardown(svc: TaskService, key: Key, client: ShimClient | None, bundle: str, state_dir: str, socket: str,
                   mounts: Sequence[te.RootfsMount]) -> None:
    """Undo a create that did not finish: end the shim (if any), then remove what it and the create made."""
    if client is None and os.path.exists(socket):
        with contextlib.suppress(EngineError):
            client = await ShimClient.connect(socket, timeout=2)
    await _end_shim(client)
    await asyncio.get_running_loop().run_in_executor(None, _remove_world, svc.runtime, key[1], bundle, state_dir,
                                                     socket, bool(mounts))


async def _clean(svc: TaskService, t: Task) -> None:
    await asyncio.get_running_loop().run_in_executor(None, _remove_world, svc.runtime, t.id, t.bundle, t.state_dir,
                                                     t.shim_socket, bool(t.mounts))


def _read_exit(state_dir: str) -> dict | None:
    try:
        with open(os.path.join(state_dir, "exit.json")) as f:
            info = json.load(f)
        return info if isinstance(info, dict) and "exit_status" in info else None
    except (OSError, ValueError):
        return None


# ---- shared with the service --------------------------------------------------------------------
async def shim_gone(svc: TaskService, key: Key, *, cause: str) -> None:
    """The shim is not there: record the exit it kept (exit.json) or the loss, then clean up."""
    client = svc._clients.pop(key, None)
    if client is not None:
        await client.close()
    try:
        t = await svc.get(*key)
    except EngineError:
        return
    if t.status == te.DELETING:
        await finish_delete(svc, key, actor=ACTOR, cause=cause)
        return
    if t.status == te.CREATING:
        await _clean(svc, t)
        await svc._append(key, [te.TaskCreateFailed(container_id=t.id, error="the shim was gone before the create "
                                                    "finished")], actor=ACTOR, cause=cause)
        return
    if t.status != te.STOPPED:
        info = _read_exit(t.state_dir)
        if info is not None:
            ev: te.Event = te.TaskExited(container_id=t.id, pid=int(info.get("pid", t.pid)),
                                         exit_status=int(info["exit_status"]), exited_at=int(info.get("exited_at", 0)))
        else:
            ev = te.TaskLost(container_id=t.id, pid=t.pid, reason="the shim is gone and kept no exit status")
        await svc._append(key, [ev], actor=ACTOR, cause=cause)
    await _clean(svc, t)


async def finish_delete(svc: TaskService, key: Key, *, actor: str, cause: str) -> Task:
    """After ``task.delete_requested``: delete in the shim (or without it when it is gone), clean up."""
    t = await svc.get(*key)
    svc._deleting.add(key)
    try:
        info: dict = {"pid": t.pid, "exit_status": t.exit_status, "exited_at": t.exited_at}
        client: ShimClient | None
        try:
            client = await svc._client(key, t)
        except Unavailable:
            client = None
        if client is not None:
            try:
                info = await client.delete()
                fault("delete:deleted")
            except Unavailable:
                pass  # the shim went while deleting: its state dir is removed below
            except EngineError as err:
                await svc._append(key, [te.TaskDeleteFailed(container_id=t.id, error=str(err))], actor=actor,
                                  cause=cause)
                raise
            await svc._stop_pump(key)
            svc._clients.pop(key, None)
            await client.close()
        else:
            await svc._stop_pump(key)
        await _clean(svc, t)
        status = int(info.get("exit_status", 0))
        if t.pending == te.STOPPED or t.status == te.STOPPED:
            status, info = t.exit_status, {"pid": t.pid, "exited_at": t.exited_at}
        await svc._append(key, [te.TaskDeleted(container_id=t.id, pid=int(info.get("pid", 0)),
                                               exit_status=status if status >= 0 else te.LOST_EXIT_STATUS,
                                               exited_at=int(info.get("exited_at", 0)))], actor=actor, cause=cause)
        return _deleted_view(t, status)
    finally:
        svc._deleting.discard(key)


def _deleted_view(t: Task, status: int) -> Task:
    import msgspec

    return msgspec.structs.replace(t, status=te.STOPPED, exit_status=status if status >= 0 else te.LOST_EXIT_STATUS)


# ---- recovery ---------------------------------------------------------------------------------------------
async def recover(svc: TaskService) -> None:
    from engine.services.tasks import read_all

    assert svc._listed is not None
    try:
        rows: list[Task] = await svc.journal.run_read(read_all)  # type: ignore[assignment,arg-type]
        for t in rows:
            svc._recovering[(t.namespace, t.id)] = asyncio.Event()
    finally:
        svc._listed.set()
    results = await asyncio.gather(*(_recover_one(svc, t) for t in rows), return_exceptions=True)
    for t, res in zip(rows, results, strict=True):
        if isinstance(res, BaseException):
            log.error("recovery of task %s/%s failed: %s", t.namespace, t.id, res)
    try:
        await clean_orphans(svc)
    except Exception:
        log.exception("cleaning orphaned shims failed")


async def _recover_one(svc: TaskService, t: Task) -> None:
    key = (t.namespace, t.id)
    try:
        async with svc._lock(key):
            await _resolve(svc, key, t)
    finally:
        ev = svc._recovering.pop(key, None)
        if ev is not None:
            ev.set()


async def _resolve(svc: TaskService, key: Key, t: Task) -> None:
    try:
        client = await ShimClient.connect(t.shim_socket, timeout=5)
        info = await client.connect_info()
    except EngineError:
        if t.status == te.STOPPED:
            await _clean(svc, t)  # idempotent: finishes a clean-up a crash interrupted
            return
        await shim_gone(svc, key, cause="recover")
        return
    svc._clients[key] = client
    if t.status == te.CREATING:
        if info.get("task_pid"):
            await svc._append(key, [te.TaskCreated(container_id=t.id, pid=info["task_pid"],
                                                   shim_pid=info.get("shim_pid", 0))], actor=ACTOR, cause="recover")
        else:
            svc._clients.pop(key, None)
            await teardown(svc, key, client, t.bundle, t.state_dir, t.shim_socket, t.mounts)
            await svc._append(key, [te.TaskCreateFailed(container_id=t.id, error="the daemon stopped before the "
                                                        "task was created")], actor=ACTOR, cause="recover")
            return
    if t.status == te.DELETING:
        await finish_delete(svc, key, actor=ACTOR, cause="recover")
        return
    if t.pending.startswith("start"):
        exec_id = t.pending.partition(":")[2]
        try:
            st = await client.state(exec_id)
        except EngineError as err:
            st = {"status": "unknown", "error": str(err)}
        if st.get("status") in (te.RUNNING, te.PAUSED, te.STOPPED):
            ev: te.Event = (te.TaskExecStarted(container_id=t.id, exec_id=exec_id, pid=st["pid"]) if exec_id
                            else te.TaskStarted(container_id=t.id, pid=st["pid"]))
        else:
            ev = te.TaskStartFailed(container_id=t.id, exec_id=exec_id,
                                    error="the daemon stopped before the start was confirmed")
        await svc._append(key, [ev], actor=ACTOR, cause="recover")
    with contextlib.suppress(EngineError):
        st = await client.state()
        now = await svc.get(*key)
        if st.get("status") == te.PAUSED and now.status == te.RUNNING:
            await svc._append(key, [te.TaskPaused(container_id=t.id)], actor=ACTOR, cause="recover")
        elif st.get("status") == te.RUNNING and now.status == te.PAUSED:
            await svc._append(key, [te.TaskResumed(container_id=t.id)], actor=ACTOR, cause="recover")
    now = await svc.get(*key)
    caught_up = svc.start_pump(key, client, now.shim_seq, backlog_until=int(info.get("last_seq", 0)))
    # what happened while the daemon was down is journaled before a command on the task may run
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(caught_up.wait(), 30)


async def clean_orphans(svc: TaskService) -> list[tuple[str, str]]:
    """End and remove shims, state dirs and bundles that no task row knows; journal each."""
    from engine.services.tasks import read_task

    found: dict[tuple[str, str], set[str]] = {}
    roots = {"socket": Path(svc.config.exec_root) / "shims", "state": Path(svc.config.root) / "shims",
             "bundle": Path(svc.config.exec_root) / "bundles"}
    for kind, root in roots.items():
        if not root.is_dir():
            continue
        for nsdir in root.iterdir():
            if not nsdir.is_dir():
                continue
            for entry in nsdir.iterdir():
                cid = entry.name[:-5] if kind == "socket" and entry.name.endswith(".sock") else entry.name
                found.setdefault((nsdir.name, cid), set()).add(kind)
    cleaned = []
    for key, kinds in sorted(found.items()):
        async with svc._lock(key):
            known = await svc.journal.run_read(functools.partial(read_task, ns=key[0], cid=key[1]))
            if known is not None:
                continue
            sock = str(svc.shim_socket(*key))
            client = None
            if os.path.exists(sock):
                with contextlib.suppress(EngineError):
                    client = await ShimClient.connect(sock, timeout=2)
            await _end_shim(client)
            await asyncio.get_running_loop().run_in_executor(
                None, _remove_world, svc.runtime, key[1], str(svc.bundle_dir(*key)), str(svc.state_dir(*key)), sock,
                False)
            removed = tuple(sorted(kinds | ({"shim"} if client is not None else set())))
            await svc._append(key, [te.TaskOrphanCleaned(container_id=key[1], removed=removed)], actor=ACTOR,
                              cause="recover")
            cleaned.append(key)
    return cleaned


def write_bundle(bundle: Path, spec: bytes, mounts: Sequence[te.RootfsMount]) -> None:
    if bundle.exists():  # left by a crash: never remove through a mount
        from engine.images.snapshots import unmount_all

        if is_mount(str(bundle / "rootfs")):
            unmount_all(str(bundle / "rootfs"))
        if is_mount(str(bundle / "rootfs")):
            raise FailedPrecondition(f"{bundle}/rootfs is still mounted")
        shutil.rmtree(bundle)
    bundle.mkdir(parents=True, mode=0o711)
    tmp = bundle / "config.json.tmp"
    tmp.write_bytes(spec)
    os.rename(tmp, bundle / "config.json")
    (bundle / "rootfs").mkdir(mode=0o755)
    if mounts:
        from engine.images.snapshots import mount_all
        from engine.images.snapshots.base import Mount

        mount_all([Mount(m.type, m.source, tuple(m.options)) for m in mounts], str(bundle / "rootfs"))
