"""containerd's Containers service on engine, with the real ctr for what ctr can do on its own (ls, info,
label, rm) and a grpclib client for Create (ctr's own create needs an image). Also proves, for real, that a
namespace holding a container cannot be deleted (FAILED_PRECONDITION) and that nothing is written on bad
input."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from typing import Any

import pytest
from google.protobuf import any_pb2, field_mask_pb2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.api.containerd.gen.containerd.services.containers.v1 import containers_grpc
from engine.api.containerd.gen.containerd.services.containers.v1 import containers_pb2 as pb
from engine.services.containers import OCI_SPEC_TYPE_URL

SPEC = {"ociVersion": "1.2.0", "process": {"args": ["sh"], "cwd": "/"}, "root": {"path": "rootfs"}}


def container(id: str, **kw: Any) -> pb.Container:
    c = pb.Container(id=id, image=kw.pop("image", "docker.io/library/busybox:latest"),
                     labels=kw.pop("labels", {}), snapshotter=kw.pop("snapshotter", ""),
                     snapshot_key=kw.pop("snapshot_key", ""))
    c.runtime.name = kw.pop("runtime", "io.containerd.runc.v2")
    if kw.pop("spec", True):
        c.spec.CopyFrom(any_pb2.Any(type_url=OCI_SPEC_TYPE_URL, value=json.dumps(SPEC).encode()))
    return c


async def call(sock: str, ns: str, fn: str, req: Any) -> Any:
    ch = Channel(path=sock)
    try:
        return await getattr(containers_grpc.ContainersStub(ch), fn)(req, metadata={"containerd-namespace": ns})
    finally:
        ch.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def wait_subscribed(d: Any, timeout: float = 10) -> None:
    """Until `ctr events` holds its subscription (the daemon counts journal subscribers in /info)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if d.request("GET", "/info")[1]["NEventsListener"] >= 1:
            return
        time.sleep(0.02)
    raise AssertionError("ctr events never subscribed")


def journal_len(d: Any) -> int:
    return len(d.engine("journal", "tail", "-n", "0", "--format", "json").stdout.splitlines())


def test_create_then_ctr_sees_it(engine_daemon: Any) -> None:
    d = engine_daemon
    events = subprocess.Popen(["ctr", "--address", d.containerd_sock, "events"], stdout=subprocess.PIPE, text=True)
    try:
        wait_subscribed(d)
        got = run(call(d.containerd_sock, "team", "Create", pb.CreateContainerRequest(
            container=container("web", labels={"tier": "front"}, snapshotter="overlayfs", snapshot_key="web"))))
        assert got.container.id == "web" and got.container.created_at.seconds > 0
        ls = d.ctr("-n", "team", "containers", "ls").stdout
        assert "web" in ls and "docker.io/library/busybox:latest" in ls and "io.containerd.runc.v2" in ls
        info = json.loads(d.ctr("-n", "team", "containers", "info", "web").stdout)
        assert info["Labels"] == {"tier": "front"} and info["SnapshotKey"] == "web"
        assert info["Spec"]["process"]["args"] == ["sh"]  # the spec Any came back byte for byte
        d.ctr("-n", "team", "containers", "label", "web", "owner=me")
        info = json.loads(d.ctr("-n", "team", "containers", "info", "web").stdout)
        assert info["Labels"] == {"tier": "front", "owner": "me"}
        # the namespace was created on first use, and cannot go while it holds a container
        assert "team" in d.ctr("namespaces", "ls").stdout
        rm_ns = d.ctr("namespaces", "rm", "team", check=False)
        assert rm_ns.returncode != 0 and "must be empty" in rm_ns.stderr and "containers" in rm_ns.stderr
        d.ctr("-n", "team", "containers", "rm", "web")
        assert "web" not in d.ctr("-n", "team", "containers", "ls").stdout
        d.ctr("namespaces", "rm", "team")
    finally:
        events.terminate()
        out = events.communicate(timeout=10)[0]
    assert "/containers/create" in out and "/containers/update" in out and "/containers/delete" in out


@pytest.mark.parametrize(("req", "code", "text"), [
    (container("r", runtime=""), Status.INVALID_ARGUMENT, "runtime name"),
    (container("s", spec=False), Status.INVALID_ARGUMENT, "Spec must not be nil"),
    (container("k", snapshot_key="k"), Status.INVALID_ARGUMENT, "Snapshotter must be set"),
    (container("bad id"), Status.INVALID_ARGUMENT, "container.ID"),
    (container("l", labels={"k": "v" * 5000}), Status.INVALID_ARGUMENT, "label key and value"),
])
def test_bad_creates_write_nothing(shared_daemon: Any, req: pb.Container, code: Status, text: str) -> None:
    before = journal_len(shared_daemon)
    with pytest.raises(GRPCError) as exc:
        run(call(shared_daemon.containerd_sock, "bad", "Create", pb.CreateContainerRequest(container=req)))
    assert exc.value.status == code and text in (exc.value.message or "")
    assert journal_len(shared_daemon) == before


def test_duplicates_updates_and_missing(shared_daemon: Any) -> None:
    sock = shared_daemon.containerd_sock
    run(call(sock, "upd", "Create", pb.CreateContainerRequest(container=container("a", snapshotter="native"))))
    with pytest.raises(GRPCError) as exc:
        run(call(sock, "upd", "Create", pb.CreateContainerRequest(container=container("a"))))
    assert exc.value.status == Status.ALREADY_EXISTS
    with pytest.raises(GRPCError) as exc:  # no paths: snapshotter is immutable
        run(call(sock, "upd", "Update", pb.UpdateContainerRequest(container=container("a", snapshotter="overlayfs"))))
    assert exc.value.status == Status.INVALID_ARGUMENT and "immutable" in exc.value.message
    with pytest.raises(GRPCError) as exc:
        run(call(sock, "upd", "Update", pb.UpdateContainerRequest(
            container=container("a"), update_mask=field_mask_pb2.FieldMask(paths=["runtime"]))))
    assert exc.value.status == Status.INVALID_ARGUMENT and 'cannot update "runtime"' in exc.value.message
    got = run(call(sock, "upd", "Update", pb.UpdateContainerRequest(
        container=container("a", image="other:1", snapshotter="native"),
        update_mask=field_mask_pb2.FieldMask(paths=["image"]))))
    assert got.container.image == "other:1" and got.container.snapshotter == "native"
    for fn, req in (("Get", pb.GetContainerRequest(id="nope")), ("Delete", pb.DeleteContainerRequest(id="nope"))):
        with pytest.raises(GRPCError) as exc:
            run(call(sock, "upd", fn, req))
        assert exc.value.status == Status.NOT_FOUND
    listed = run(call(sock, "upd", "List", pb.ListContainersRequest(filters=['image=="other:1"'])))
    assert [c.id for c in listed.containers] == ["a"]
    assert run(call(sock, "upd", "List", pb.ListContainersRequest(filters=['image=="x"']))).containers == []
