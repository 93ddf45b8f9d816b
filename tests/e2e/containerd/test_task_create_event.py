"""containerd's ``/tasks/create`` event over Events.Subscribe, served in-process over a real journal.

The event carries the bundle, rootfs mounts and IO of ``task.create_requested`` and the pid of
``task.created``. Three cases that ctr cannot set up on purpose: the subscription began between the
intent and the outcome (the intent is read back from the journal), both came while subscribed (the
subscription's memo), and an outcome with no intent in the journal at all (pid only). The intent itself is
never sent, and a unit check covers runc options decoding (request's options win when they carry bytes).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2
from grpclib.client import Channel

from engine.api.containerd import runc_options
from engine.api.containerd.gen.containerd.events import task_pb2 as epb
from engine.api.containerd.gen.containerd.services.events.v1 import events_grpc
from engine.api.containerd.gen.containerd.services.events.v1 import events_pb2 as pb
from engine.api.containerd.gen.containerd.types.runc.options import oci_pb2
from engine.api.containerd.server import serve_containerd
from engine.config import Config
from engine.errors import InvalidArgument
from engine.events.journal import Journal
from engine.services import Services, all_projections
from engine.services import task_events as te
from engine.services.namespaces import NamespaceService

pytestmark = pytest.mark.e2e


def _requested(cid: str) -> te.TaskCreateRequested:
    return te.TaskCreateRequested(container_id=cid, bundle=f"/b/{cid}", shim_socket=f"/s/{cid}.sock",
                                  state_dir=f"/st/{cid}", stdin="", stdout=f"/f/{cid}-stdout",
                                  stderr=f"/f/{cid}-stderr", terminal=True,
                                  mounts=(te.RootfsMount("overlay", "overlay", ("lowerdir=/l", "upperdir=/u")),))


async def test_tasks_create_carries_bundle_rootfs_and_io(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "engine.db", all_projections())
    await journal.open()
    services = Services(journal=journal, namespaces=NamespaceService(journal), daemon_uuid="u",
                        config=Config(root=str(tmp_path)), started_ns=time.time_ns())
    srv: Any = await serve_containerd(services, str(tmp_path / "c.sock"), "root")
    ch = Channel(path=str(tmp_path / "c.sock"))
    try:
        await journal.append([_requested("before")], namespace="n1", actor="t")
        stub = events_grpc.EventsStub(ch)
        async with stub.Subscribe.open() as stream:
            await stream.send_message(pb.SubscribeRequest(filters=['topic~="^/tasks/"']), end=True)
            await stream.recv_initial_metadata()  # sent once the subscription is on the journal's bus
            await journal.append([te.TaskCreated(container_id="before", pid=41)], namespace="n1", actor="t")
            await journal.append([_requested("during")], namespace="n1", actor="t")
            await journal.append([te.TaskCreated(container_id="during", pid=42)], namespace="n1", actor="t")
            await journal.append([te.TaskCreated(container_id="orphan", pid=43)], namespace="n1", actor="t")
            got: list[Any] = [await asyncio.wait_for(stream.recv_message(), 5) for _ in range(3)]
            await stream.cancel()  # Subscribe never ends by itself
        assert [(e.namespace, e.topic, e.event.type_url) for e in got] == [("n1", "/tasks/create",
                                                                           "containerd.events.TaskCreate")] * 3
        msgs = [epb.TaskCreate.FromString(e.event.value) for e in got]
        for msg, cid, pid in zip(msgs[:2], ("before", "during"), (41, 42), strict=True):
            assert (msg.container_id, msg.pid, msg.bundle) == (cid, pid, f"/b/{cid}")
            assert [(m.type, m.source, list(m.options)) for m in msg.rootfs] == [
                ("overlay", "overlay", ["lowerdir=/l", "upperdir=/u"])]
            assert (msg.io.stdout, msg.io.stderr, msg.io.terminal) == (f"/f/{cid}-stdout", f"/f/{cid}-stderr", True)
        assert msgs[2] == epb.TaskCreate(container_id="orphan", pid=43)
    finally:
        ch.close()
        srv.close()
        await asyncio.wait_for(srv.wait_closed(), 5)
        await journal.close()


def test_runc_options_decoding() -> None:
    opts = oci_pb2.Options(binary_name="/usr/bin/crun", root="/run/x", systemd_cgroup=True)
    container = ("containerd.runc.v1.Options", opts.SerializeToString())
    got = runc_options.effective(None, *container)
    assert got is not None and (got["binary_name"], got["root"], got["systemd_cgroup"]) == ("/usr/bin/crun", "/run/x",
                                                                                           True)
    assert set(got) >= {"no_pivot_root", "no_new_keyring", "shim_cgroup", "io_uid", "io_gid", "criu_image_path"}
    # ctr run sends the container an Any with a type and no bytes: every field at its default
    assert runc_options.effective(None, "containerd.runc.v1.Options", b"")["binary_name"] == ""  # type: ignore[index]
    assert runc_options.effective(None, "", b"") is None
    # the request's options win when they carry bytes; an empty request Any falls back to the container's
    req = any_pb2.Any(type_url="containerd.runc.v1.Options", value=oci_pb2.Options(root="/r2").SerializeToString())
    assert runc_options.effective(req, *container)["root"] == "/r2"  # type: ignore[index]
    assert runc_options.effective(any_pb2.Any(), *container)["root"] == "/run/x"  # type: ignore[index]
    with pytest.raises(InvalidArgument, match="unsupported type"):
        runc_options.effective(None, "containerd.linux.runc.RuncOptions", b"\x0a\x01x")
    with pytest.raises(InvalidArgument, match="does not decode"):
        runc_options.effective(None, "containerd.runc.v1.Options", b"\xff\xff")
