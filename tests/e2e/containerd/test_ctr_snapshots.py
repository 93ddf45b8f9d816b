"""Debian's real ``ctr`` (containerd 1.6) against engine's Snapshots and Diff services, on a real daemon.

``ctr snapshots prepare/view/mounts/commit/ls/info/usage/tree/label/rm/diff`` with both snapshotters
(overlayfs, native); the mounts ctr prints are performed for real to write and read files. Diff.Apply is
driven by a grpclib client from the generated stubs (ctr has no command for it): a layer is ingested with
``ctr content ingest``, applied onto a prepared snapshot's mounts, committed, and a view of it mounted and
read. Bad input gets containerd's codes (checked on the gRPC status) and changes nothing.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.api.containerd.gen.containerd.services.diff.v1 import diff_pb2 as dpb
from engine.api.containerd.gen.containerd.services.diff.v1.diff_grpc import DiffStub
from engine.api.containerd.gen.containerd.services.snapshots.v1 import snapshots_pb2 as spb
from engine.api.containerd.gen.containerd.services.snapshots.v1.snapshots_grpc import SnapshotsStub
from engine.api.containerd.gen.containerd.types import descriptor_pb2
from engine.api.containerd.snapshots import mount_pb
from engine.images.snapshots import Mount, mount_all, unmount_all
from tests.e2e.containerd.test_ctr import ctr_events, parse_event, wait_subscribed

pytestmark = pytest.mark.e2e

MD = {"containerd-namespace": "default"}
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = OCI_TAR + "+gzip"
SNAPSHOTTERS = ["overlayfs", "native"]


def ctr(d: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return d.ctr(*args, check=check)


def snap(d: Any, sn: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return d.ctr("snapshots", "--snapshotter", sn, *args, check=check)


def rows(out: str) -> list[list[str]]:
    return [line.split() for line in out.splitlines() if line.strip()]


def ls(d: Any, sn: str) -> list[list[str]]:
    return rows(snap(d, sn, "ls").stdout)[1:]


@contextmanager
def mounted(mounts: list[Mount]) -> Iterator[str]:
    """Perform the mounts on a temp dir for the block; always unmounted and removed after."""
    target = tempfile.mkdtemp(prefix="eng-snap-mnt-")
    try:
        mount_all(mounts, target)
        yield target
    finally:
        unmount_all(target)
        os.rmdir(target)


def printed_mounts(d: Any, sn: str, key: str) -> list[Mount]:
    """The mount ``ctr snapshots mounts`` prints (``mount -t T SRC TARGET -o OPTS``) as a Mount spec."""
    out = snap(d, sn, "mounts", "/TARGET", key).stdout.split()
    assert out[:2] == ["mount", "-t"] and out[4] == "/TARGET" and out[5] == "-o", out
    return [Mount(out[2], out[3], tuple(out[6].split(",")))]


def grpc(d: Any, fn: Any) -> Any:
    """Run `fn(snapshots_stub, diff_stub)` on a fresh channel to the daemon's containerd socket."""

    async def main() -> Any:
        ch = Channel(path=d.containerd_sock)
        try:
            return await fn(SnapshotsStub(ch), DiffStub(ch))
        finally:
            ch.close()

    return asyncio.run(main())


def grpc_code(d: Any, fn: Any) -> Status:
    with pytest.raises(GRPCError) as err:
        grpc(d, fn)
    return err.value.status


def layer(files: dict[str, bytes], whiteouts: tuple[str, ...] = (), dirs: tuple[str, ...] = ()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name in dirs:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.mtime = tarfile.DIRTYPE, 0o755, 1_600_000_000
            tf.addfile(ti)
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.mtime, ti.uid, ti.gid = len(data), 0o640, 1_600_000_000, 1234, 5678
            tf.addfile(ti, io.BytesIO(data))
        for name in whiteouts:
            head, base = os.path.split(name)
            tf.addfile(tarfile.TarInfo(os.path.join(head, ".wh." + base)))
    return buf.getvalue()


def ingest(d: Any, blob: bytes, ref: str) -> str:
    dgst = "sha256:" + hashlib.sha256(blob).hexdigest()
    proc = subprocess.run(["ctr", "--address", d.containerd_sock, "content", "ingest", "--expected-size",
                           str(len(blob)), "--expected-digest", dgst, ref], input=blob, capture_output=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dgst


def apply(d: Any, sn: str, key: str, dgst: str, media_type: str, size: int = 0) -> descriptor_pb2.Descriptor:
    async def fn(snaps: SnapshotsStub, diff: DiffStub) -> Any:
        mounts = (await snaps.Mounts(spb.MountsRequest(snapshotter=sn, key=key), metadata=MD)).mounts
        desc = descriptor_pb2.Descriptor(media_type=media_type, digest=dgst, size=size)
        return (await diff.Apply(dpb.ApplyRequest(diff=desc, mounts=mounts), metadata=MD)).applied

    return grpc(d, fn)


# --- ctr snapshots ------------------------------------------------------------------------------


@pytest.mark.parametrize("sn", SNAPSHOTTERS)
def test_ctr_snapshots_lifecycle(engine_daemon: Any, sn: str) -> None:
    d = engine_daemon
    snap(d, sn, "prepare", "work", "")
    with mounted(printed_mounts(d, sn, "work")) as root:
        with open(os.path.join(root, "hello"), "w") as f:
            f.write("hello from " + sn)
        os.mkdir(os.path.join(root, "dir"))
    snap(d, sn, "commit", "base", "work")
    snap(d, sn, "prepare", "child", "base")
    snap(d, sn, "view", "look", "base")
    assert sorted(ls(d, sn)) == [["base", "Committed"], ["child", "base", "Active"], ["look", "base", "View"]]
    # the child sees the parent's files and writes on top; the view is read-only
    with mounted(printed_mounts(d, sn, "child")) as root:
        assert open(os.path.join(root, "hello")).read() == "hello from " + sn
        with open(os.path.join(root, "dir", "more"), "w") as f:
            f.write("more")
    with mounted(printed_mounts(d, sn, "look")) as root:
        assert open(os.path.join(root, "hello")).read() == "hello from " + sn
        assert not os.path.exists(os.path.join(root, "dir", "more"))
        with pytest.raises(OSError) as err:
            open(os.path.join(root, "nope"), "w")
        assert err.value.errno == 30  # EROFS
    info = json.loads(snap(d, sn, "info", "child").stdout)
    assert (info["Kind"], info["Name"], info["Parent"]) == ("Active", "child", "base")
    assert json.loads(snap(d, sn, "info", "base").stdout)["Kind"] == "Committed"
    usage = {r[0]: r for r in rows(snap(d, sn, "usage").stdout)[1:]}
    assert set(usage) == {"base", "child", "look"}
    one = rows(snap(d, sn, "usage", "child").stdout)
    assert one[1][0] == "child" and int(one[1][-1]) >= 2  # its own files: at least dir/more and dir
    tree = snap(d, sn, "tree").stdout
    assert tree.splitlines()[0].strip() == "base" and "\\_ child" in tree and "\\_ look" in tree
    # labels: set one, then another, then clear the first
    assert "color=blue" in snap(d, sn, "label", "child", "color=blue").stdout
    snap(d, sn, "label", "child", "size=big")
    out = snap(d, sn, "label", "child", "color=").stdout
    assert "size=big" in out and "color" not in out
    assert json.loads(snap(d, sn, "info", "child").stdout)["Labels"]["size"] == "big"
    # List filters (ctr 1.6's ls sends none): containerd's syntax, alternatives or'ed
    async def listed(snaps: SnapshotsStub, _: DiffStub) -> list[list[tuple[str, Any]]]:
        out = []
        for flt in (["kind==active"], ["parent==base,labels.size==big"], ["name~=^b", "kind==view"]):
            msgs = await snaps.List(spb.ListSnapshotsRequest(snapshotter=sn, filters=flt), metadata=MD)
            out.append(sorted((i.name, i.kind) for m in msgs for i in m.info))
        return out

    assert grpc(d, listed) == [[("child", spb.ACTIVE)], [("child", spb.ACTIVE)],
                               [("base", spb.COMMITTED), ("look", spb.VIEW)]]
    snap(d, sn, "rm", "child", "look")
    snap(d, sn, "rm", "base")
    assert ls(d, sn) == []
    # nothing left on disk for this snapshotter
    assert os.listdir(d.root / "snapshots" / sn / "snapshots") == []


def test_snapshotters_are_separate(engine_daemon: Any) -> None:
    d = engine_daemon
    snap(d, "native", "prepare", "same", "")
    snap(d, "overlayfs", "prepare", "same", "")
    assert ls(d, "native") == [["same", "Active"]] and ls(d, "overlayfs") == [["same", "Active"]]
    snap(d, "native", "rm", "same")
    assert ls(d, "native") == [] and ls(d, "overlayfs") == [["same", "Active"]]
    # another containerd namespace sees none of them
    assert rows(d.ctr("--namespace", "other", "snapshots", "ls").stdout)[1:] == []


def test_events_for_prepare_commit_remove(engine_daemon: Any) -> None:
    d = engine_daemon
    with ctr_events(d) as events:
        wait_subscribed(d, events, "e2e-snap-ev")
        snap(d, "overlayfs", "prepare", "ev", "")
        snap(d, "overlayfs", "view", "ev-view", "")  # containerd publishes nothing for a view
        snap(d, "overlayfs", "commit", "ev-done", "ev")
        snap(d, "overlayfs", "rm", "ev-done")
        got = []
        while (line := events.line(5.0)) is not None:
            got.append(parse_event(line))
    snaps = [(ns, topic, json.loads(body)) for ns, topic, body in got if topic.startswith("/snapshot/")]
    # ctr 1.6's event messages predate the ``snapshotter`` field (5, added in 1.7): it skips it
    assert snaps == [
        ("default", "/snapshot/prepare", {"key": "ev"}),
        ("default", "/snapshot/commit", {"key": "ev", "name": "ev-done"}),
        ("default", "/snapshot/remove", {"key": "ev-done"}),
    ], got


def test_bad_input_gets_containerd_codes_and_changes_nothing(engine_daemon: Any) -> None:
    d = engine_daemon
    snap(d, "overlayfs", "prepare", "p", "")
    snap(d, "overlayfs", "commit", "parent", "p")
    snap(d, "overlayfs", "prepare", "kid", "parent")
    before = sorted(ls(d, "overlayfs"))
    on_disk = sorted(os.listdir(d.root / "snapshots" / "overlayfs" / "snapshots"))
    # ctr's view of it
    proc = snap(d, "overlayfs", "prepare", "kid", "parent", check=False)
    assert proc.returncode != 0 and "already exists" in proc.stderr
    proc = snap(d, "overlayfs", "rm", "parent", check=False)
    assert proc.returncode != 0 and "failed precondition" in proc.stderr
    for args in (("info", "nope"), ("mounts", "/x", "nope"), ("rm", "nope"), ("commit", "n", "nope"),
                 ("prepare", "x", "no-parent"), ("usage", "nope")):
        proc = snap(d, "overlayfs", *args, check=False)
        assert proc.returncode != 0 and "not found" in proc.stderr, (args, proc.stderr)
    proc = snap(d, "zfs", "ls", check=False)
    assert proc.returncode != 0 and "not found" in proc.stderr
    # the exact codes on the wire
    ov = "overlayfs"
    cases = [
        (lambda s, _: s.Prepare(spb.PrepareSnapshotRequest(snapshotter=ov, key="kid", parent="parent"),
                                metadata=MD), Status.ALREADY_EXISTS),
        (lambda s, _: s.Commit(spb.CommitSnapshotRequest(snapshotter=ov, name="parent", key="kid"), metadata=MD),
         Status.ALREADY_EXISTS),
        (lambda s, _: s.Remove(spb.RemoveSnapshotRequest(snapshotter=ov, key="parent"), metadata=MD),
         Status.FAILED_PRECONDITION),
        (lambda s, _: s.Stat(spb.StatSnapshotRequest(snapshotter=ov, key="nope"), metadata=MD), Status.NOT_FOUND),
        (lambda s, _: s.Remove(spb.RemoveSnapshotRequest(snapshotter=ov, key="nope"), metadata=MD),
         Status.NOT_FOUND),
        (lambda s, _: s.Stat(spb.StatSnapshotRequest(snapshotter="zfs", key="kid"), metadata=MD), Status.NOT_FOUND),
        (lambda s, _: s.Stat(spb.StatSnapshotRequest(snapshotter="", key="kid"), metadata=MD),
         Status.INVALID_ARGUMENT),
        (lambda s, _: s.Prepare(spb.PrepareSnapshotRequest(snapshotter=ov, key=""), metadata=MD),
         Status.INVALID_ARGUMENT),
        (lambda s, _: s.Update(spb.UpdateSnapshotRequest(snapshotter=ov, info=spb.Info(name="kid", parent="x"),
                                                         update_mask={"paths": ["parent"]}), metadata=MD),
         Status.INVALID_ARGUMENT),
        (lambda s, _: s.Mounts(spb.MountsRequest(snapshotter=ov, key="parent"), metadata=MD),
         Status.FAILED_PRECONDITION),
        (lambda s, _: s.Cleanup(spb.CleanupRequest(snapshotter=ov), metadata=MD), Status.UNIMPLEMENTED),
        (lambda s, _: s.Stat(spb.StatSnapshotRequest(snapshotter=ov, key="kid")), Status.FAILED_PRECONDITION),
    ]
    for i, (fn, code) in enumerate(cases):
        assert grpc_code(d, fn) == code, i
    assert sorted(ls(d, "overlayfs")) == before
    assert sorted(os.listdir(d.root / "snapshots" / "overlayfs" / "snapshots")) == on_disk
    assert json.loads(snap(d, "overlayfs", "info", "kid").stdout)["Labels"].keys() <= {"containerd.io/gc.root"}


# --- diff ---------------------------------------------------------------------------------------


def ctr_diff(d: Any, sn: str, *args: str, check: bool = True) -> Any:
    """``ctr snapshots diff`` (bytes out); ctr makes a lease with a random id for it (``<nanos>-<base64>``)."""
    proc = subprocess.run(["ctr", "--address", d.containerd_sock, "snapshots", "--snapshotter", sn, "diff",
                           *args], capture_output=True, timeout=30)
    if not check:
        return proc
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("sn", SNAPSHOTTERS)
def test_ctr_snapshots_diff(engine_daemon: Any, sn: str) -> None:
    d = engine_daemon
    snap(d, sn, "prepare", "a", "")
    with mounted(printed_mounts(d, sn, "a")) as root:
        with open(os.path.join(root, "gone"), "w") as f:
            f.write("x")
        with open(os.path.join(root, "kept"), "w") as f:
            f.write("k")
    snap(d, sn, "commit", "a-done", "a")
    snap(d, sn, "prepare", "b", "a-done")
    with mounted(printed_mounts(d, sn, "b")) as root:
        os.unlink(os.path.join(root, "gone"))
        with open(os.path.join(root, "new"), "w") as f:
            f.write("new file")

    def diff(*args: str) -> bytes:
        return ctr_diff(d, sn, *args)

    blob = diff("b")  # against its parent, gzip by default
    assert blob[:2] == b"\x1f\x8b"
    tar = gzip.decompress(blob)
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        names = tf.getnames()
        assert sorted(names) == [".wh.gone", "new"], names
        assert tf.extractfile("new").read() == b"new file"  # type: ignore[union-attr]
    # stored in the content store, with the uncompressed digest as a label
    dgst = "sha256:" + hashlib.sha256(blob).hexdigest()
    content = {r[0]: r for r in rows(d.ctr("content", "ls").stdout)[1:]}
    assert dgst in content
    assert f"containerd.io/uncompressed=sha256:{hashlib.sha256(tar).hexdigest()}" in content[dgst][-1]
    # two snapshots, uncompressed: from a-done's tree to b's
    plain = diff("--media-type", OCI_TAR, "a-done", "b")
    with tarfile.open(fileobj=io.BytesIO(plain)) as tf:
        assert sorted(tf.getnames()) == [".wh.gone", "new"]
    # a base layer (no parent): everything
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(diff("a-done")))) as tf:
        assert sorted(tf.getnames()) == ["gone", "kept"]
    proc = ctr_diff(d, sn, "--media-type", "application/x-nope", "b", check=False)
    assert proc.returncode != 0 and b"not implemented" in proc.stderr
    # the temporary views ctr made are gone again
    assert sorted(r[0] for r in ls(d, sn)) == ["a-done", "b"]


@pytest.mark.parametrize("sn", SNAPSHOTTERS)
def test_apply_layers_then_view(engine_daemon: Any, sn: str) -> None:
    d = engine_daemon
    base_tar = layer({"etc/motd": b"welcome\n", "etc/old": b"old\n"}, dirs=("etc",))
    base_gz = gzip.compress(base_tar)
    top_tar = layer({"etc/new": b"new\n"}, whiteouts=("etc/old",), dirs=("etc",))
    base_dgst = ingest(d, base_gz, "base-layer")
    top_dgst = ingest(d, top_tar, "top-layer")

    snap(d, sn, "prepare", "l1", "")
    got = apply(d, sn, "l1", base_dgst, OCI_GZIP, len(base_gz))
    assert (got.media_type, got.digest, got.size) == (OCI_TAR, "sha256:" + hashlib.sha256(base_tar).hexdigest(),
                                                      len(base_tar))
    snap(d, sn, "commit", "L1", "l1")
    snap(d, sn, "prepare", "l2", "L1")
    got = apply(d, sn, "l2", top_dgst, OCI_TAR)
    assert got.digest == "sha256:" + hashlib.sha256(top_tar).hexdigest() and got.size == len(top_tar)
    snap(d, sn, "commit", "L2", "l2")
    snap(d, sn, "view", "see", "L2")
    with mounted(printed_mounts(d, sn, "see")) as root:
        assert sorted(os.listdir(os.path.join(root, "etc"))) == ["motd", "new"]
        assert open(os.path.join(root, "etc", "motd"), "rb").read() == b"welcome\n"
        st = os.stat(os.path.join(root, "etc", "motd"))
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777, int(st.st_mtime)) == (1234, 5678, 0o640, 1_600_000_000)
    snap(d, sn, "rm", "see", "L2")
    snap(d, sn, "rm", "L1")


def test_apply_refuses_bad_input_and_writes_nothing(engine_daemon: Any) -> None:
    d = engine_daemon
    tar = layer({"file": b"data"})
    gz_dgst = ingest(d, gzip.compress(tar), "gz")
    tar_dgst = ingest(d, tar, "tar")
    snap(d, "overlayfs", "prepare", "target", "")
    snap(d, "overlayfs", "prepare", "src", "")
    snap(d, "overlayfs", "commit", "src-done", "src")
    snap(d, "overlayfs", "view", "ro", "src-done")
    upper = printed_mounts(d, "overlayfs", "target")[0].source

    def apply_code(key: str, dgst: str, media_type: str, size: int = 0) -> Status:
        with pytest.raises(GRPCError) as err:
            apply(d, "overlayfs", key, dgst, media_type, size)
        return err.value.status

    assert apply_code("target", gz_dgst, OCI_TAR) == Status.INVALID_ARGUMENT  # gzip blob, plain media type
    assert apply_code("target", tar_dgst, OCI_GZIP) == Status.INVALID_ARGUMENT  # plain blob, gzip media type
    assert apply_code("target", tar_dgst, OCI_TAR + "+zstd") == Status.INVALID_ARGUMENT
    assert apply_code("target", tar_dgst, OCI_TAR, len(tar) + 1) == Status.INVALID_ARGUMENT
    assert apply_code("target", tar_dgst, "application/vnd.oci.image.layer.v1.tar+encrypted") == \
        Status.UNIMPLEMENTED
    missing = "sha256:" + "0" * 64
    assert apply_code("target", missing, OCI_TAR) == Status.NOT_FOUND
    assert apply_code("ro", tar_dgst, OCI_TAR) == Status.INVALID_ARGUMENT  # a read-only view
    # another namespace does not see this namespace's content
    async def other_ns(snaps: SnapshotsStub, diff: DiffStub) -> Any:
        mounts = (await snaps.Mounts(spb.MountsRequest(snapshotter="overlayfs", key="target"), metadata=MD)).mounts
        desc = descriptor_pb2.Descriptor(media_type=OCI_TAR, digest=tar_dgst)
        return await diff.Apply(dpb.ApplyRequest(diff=desc, mounts=mounts),
                                metadata={"containerd-namespace": "elsewhere"})

    assert grpc_code(d, other_ns) == Status.NOT_FOUND
    assert os.listdir(upper) == []
    # the docker media type without compression in its name takes either
    got = apply(d, "overlayfs", "target", gz_dgst, "application/vnd.docker.image.rootfs.diff.tar")
    assert got.digest == "sha256:" + hashlib.sha256(tar).hexdigest()
    assert os.listdir(upper) == ["file"]


def test_diff_refuses_bad_input_and_leaves_no_ingest(engine_daemon: Any) -> None:
    d = engine_daemon
    snap(d, "overlayfs", "prepare", "x", "")
    good = printed_mounts(d, "overlayfs", "x")
    missing = tempfile.mkdtemp(prefix="eng-snap-gone-")
    os.rmdir(missing)

    def pbm(ms: list[Mount]) -> list[Any]:
        return [mount_pb(m) for m in ms]

    def diff_code(**kw: Any) -> Status:
        return grpc_code(d, lambda _, diff: diff.Diff(dpb.DiffRequest(**kw), metadata=MD))

    assert diff_code(right=pbm(good), media_type="application/x-nope") == Status.UNIMPLEMENTED
    assert diff_code(left=pbm(good)) == Status.INVALID_ARGUMENT  # no upper mounts
    assert diff_code(right=pbm([Mount("bind", missing, ("rbind", "ro"))]), ref="bad-diff") == Status.UNKNOWN
    assert rows(d.ctr("content", "active").stdout)[1:] == []
    assert rows(d.ctr("content", "ls").stdout)[1:] == []
    # and a good one through the same client: the empty base layer, committed under its ref's digest
    got = grpc(d, lambda _, diff: diff.Diff(dpb.DiffRequest(right=pbm(good), media_type=OCI_TAR,
                                                               labels={"k": "v"}), metadata=MD))
    assert got.diff.media_type == OCI_TAR
    blob = subprocess.run(["ctr", "--address", d.containerd_sock, "content", "get", got.diff.digest],
                          capture_output=True, timeout=30, check=True).stdout
    assert len(blob) == got.diff.size and "sha256:" + hashlib.sha256(blob).hexdigest() == got.diff.digest
    with tarfile.open(fileobj=io.BytesIO(blob)) as tf:
        assert tf.getnames() == []  # an empty snapshot: an empty layer
    labels = rows(d.ctr("content", "ls").stdout)[1][-1]
    assert "k=v" in labels and f"containerd.io/uncompressed={got.diff.digest}" in labels
    # nothing mounted is left behind
    with open("/proc/self/mountinfo") as f:
        assert "engine-diff-" not in f.read()


def test_plugins_report_snapshots_and_diff(engine_daemon: Any) -> None:
    d = engine_daemon
    status = {r[1]: r[3] for r in rows(d.ctr("plugins", "ls", "type==io.containerd.grpc.v1").stdout)[1:]}
    assert status["snapshots"] == "ok" and status["diff"] == "ok"
    detail = d.ctr("plugins", "ls", "-d", "id==snapshots").stdout
    assert rows(detail.split("Exports:", 1)[1]) == [["unimplemented", "Cleanup"]]


def _envelope(event: Any, cause: str = "api") -> Any:
    from engine.events.types import Envelope

    return Envelope(seq=1, time_ns=1, namespace="default", type=event.TYPE, subject="s", actor="t", cause=cause,
                    schema=1, event=event, prev_hash=b"", hash=b"")


def test_topics_carry_the_snapshotter_and_skip_recovery() -> None:
    """What ctr 1.6 cannot show: the 1.7 ``snapshotter`` field, and no events for what recovery or gc did."""
    # the snapshot rows of the topic table were registered by importing engine.api.containerd.snapshots above
    from engine.api.containerd import topics
    from engine.api.containerd.gen.containerd.events import snapshot_pb2
    from engine.services.snapshots import (
        SnapshotCommitted,
        SnapshotPrepared,
        SnapshotPrepareFailed,
        SnapshotPrepareRequested,
        SnapshotRemoved,
    )

    prep = SnapshotPrepareRequested(snapshotter="native", key="k", sid="1", kind="active", parent="p")
    topic, msg = topics.to_containerd(_envelope(prep))  # type: ignore[misc]
    assert topic == "/snapshot/prepare" and msg.type_url == "containerd.events.SnapshotPrepare"
    assert snapshot_pb2.SnapshotPrepare.FromString(msg.value) == snapshot_pb2.SnapshotPrepare(
        key="k", parent="p", snapshotter="native")
    commit = SnapshotCommitted(snapshotter="native", key="k", name="n", sid="1")
    topic, msg = topics.to_containerd(_envelope(commit))  # type: ignore[misc]
    assert snapshot_pb2.SnapshotCommit.FromString(msg.value).snapshotter == "native"
    removed = SnapshotRemoved(snapshotter="native", key="k", sid="1")
    assert topics.to_containerd(_envelope(removed))[0] == "/snapshot/remove"  # type: ignore[index]
    quiet = [
        _envelope(SnapshotPrepareRequested(snapshotter="native", key="v", sid="2", kind="view")),
        _envelope(SnapshotPrepared(snapshotter="native", key="k", sid="1")),
        _envelope(SnapshotPrepareFailed(snapshotter="native", key="k", sid="1")),
        _envelope(SnapshotRemoved(snapshotter="native", key="k", sid="1", reason="missing"), cause="recover"),
        _envelope(SnapshotRemoved(snapshotter="native", key="k", sid="1"), cause="recover"),
        _envelope(SnapshotRemoved(snapshotter="native", key="k", sid="1"), cause="gc"),
    ]
    assert [topics.to_containerd(env) for env in quiet] == [None] * len(quiet)
