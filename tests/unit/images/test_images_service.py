"""The images service over a real journal: containerd's create/get/list/update/delete semantics, the
events it journals, replay of the projection, and image targets as gc roots."""

from __future__ import annotations

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from engine.events.verify import verify_path
from engine.filters import parse_all
from engine.images.content import digests
from engine.services import all_projections
from engine.services.images import Descriptor, Image, ImageService, ImageSource
from engine.services.namespaces import NamespaceService
from tests.unit.content.conftest import Env

MT = "application/vnd.oci.image.manifest.v1+json"


def target(data: bytes = b"manifest", media_type: str = MT, annotations: dict[str, str] | None = None) -> Descriptor:
    return Descriptor(media_type=media_type, digest=digests.of_bytes(data), size=len(data),
                      annotations=annotations or {})


async def put(env: Env, ns: str, data: bytes, labels: dict[str, str] | None = None) -> str:
    w = await env.content.writer(ns, f"ref-{digests.of_bytes(data)}", expected=digests.of_bytes(data), actor="t")
    await w.write(data)
    await w.commit(labels=labels)
    return digests.of_bytes(data)


async def test_crud_with_containerd_semantics(env: Env) -> None:
    svc = ImageService(env.journal)
    img = await svc.create("ns", Image(name="docker.io/library/busybox:latest", labels={"a": "1"},
                                       target=target()), actor="t")
    assert img.created_ns > 0 and img.created_ns == img.updated_ns
    with pytest.raises(AlreadyExists, match="already exists"):
        await svc.create("ns", Image(name="docker.io/library/busybox:latest", target=target()), actor="t")
    assert (await svc.get("ns", "docker.io/library/busybox:latest")).labels == {"a": "1"}
    with pytest.raises(NotFound):
        await svc.get("other", "docker.io/library/busybox:latest")
    assert "ns" in [n.name for n in await NamespaceService(env.journal).list()]  # created on first use
    await svc.create("ns", Image(name="b", labels={"a": "2"}, target=target(b"other", media_type="x/y")), actor="t")
    assert [i.name for i in await svc.list("ns")] == ["b", "docker.io/library/busybox:latest"]
    assert [i.name for i in await svc.list("ns", parse_all(["labels.a==2"]))] == ["b"]
    assert [i.name for i in await svc.list("ns", parse_all([f"target.digest=={digests.of_bytes(b'manifest')}"]))] \
        == ["docker.io/library/busybox:latest"]
    assert [i.name for i in await svc.list("ns", parse_all(["target.mediatype==x/y", "name~=busybox"]))] \
        == ["b", "docker.io/library/busybox:latest"]
    # field masks
    up = await svc.update("ns", Image(name="b", labels={"c": "3"}), ["labels.c"], actor="t")
    assert up.labels == {"a": "2", "c": "3"} and up.updated_ns > up.created_ns
    up = await svc.update("ns", Image(name="b", labels={}), ["labels.a"], actor="t")
    assert up.labels == {"c": "3"}
    up = await svc.update("ns", Image(name="b", target=target(annotations={"k": "v"})), ["annotations"], actor="t")
    assert up.target.annotations == {"k": "v"} and up.target.media_type == "x/y"
    up = await svc.update("ns", Image(name="b", labels={"z": "9"}, target=target(b"new")), [], actor="t")
    assert up.labels == {"z": "9"} and up.target.digest == digests.of_bytes(b"new")
    with pytest.raises(InvalidArgument, match='cannot update "name"'):
        await svc.update("ns", Image(name="b"), ["name"], actor="t")
    with pytest.raises(NotFound):
        await svc.update("ns", Image(name="nope", target=target()), [], actor="t")
    # delete, with a target it must match
    with pytest.raises(FailedPrecondition):
        await svc.delete("ns", "b", target_digest=digests.of_bytes(b"manifest"), actor="t")
    await svc.delete("ns", "b", target_digest=digests.of_bytes(b"new"), actor="t")
    with pytest.raises(NotFound):
        await svc.delete("ns", "b", actor="t")
    types = [e.type for e in await env.journal.read() if e.type.startswith("image.")]
    assert types == ["image.created", "image.created", *["image.updated"] * 4, "image.deleted"]


@pytest.mark.parametrize(("img", "msg"), [
    (Image(name="", target=target()), "name must not be empty"),
    (Image(name="x", target=Descriptor(digest=digests.of_bytes(b"a"), size=1)), "media type"),
    (Image(name="x", target=Descriptor(media_type=MT, digest="sha256:zz", size=1)), "digest"),
    (Image(name="x", target=Descriptor(media_type=MT, size=1)), "digest"),
])
async def test_bad_images_are_refused_and_nothing_is_journaled(env: Env, img: Image, msg: str) -> None:
    svc = ImageService(env.journal)
    before = len(await env.journal.read())
    with pytest.raises(InvalidArgument, match=msg):
        await svc.create("ns", img, actor="t")
    assert len(await env.journal.read()) == before


async def test_projection_replays_to_the_same_rows(env: Env) -> None:
    svc = ImageService(env.journal)
    await svc.create("ns", Image(name="a", labels={"x": "1"}, target=target()), actor="t")
    await svc.update("ns", Image(name="a", labels={"y": "2"}), ["labels.y"], actor="t")
    await svc.create("ns", Image(name="b", target=target(b"b")), actor="t")
    await svc.delete("ns", "b", actor="t")

    report = verify_path(str(env.root / "engine.db"), all_projections())  # replays every projection
    assert report.ok, report.to_dict()
    assert report.tables["images"].rows == 1
    assert (await svc.get("ns", "a")).labels == {"x": "1", "y": "2"}


async def test_image_targets_are_gc_roots_and_refs_are_followed(env: Env) -> None:
    env.gc.add_source(ImageSource())
    svc = ImageService(env.journal, collect=env.gc.collect)
    layer = await put(env, "ns", b"layer bytes")
    config = await put(env, "ns", b"config bytes")
    manifest = await put(env, "ns", b"manifest bytes", {"containerd.io/gc.ref.content.config": config,
                                                        "containerd.io/gc.ref.content.l.0": layer})
    stray = await put(env, "ns", b"stray")
    await svc.create("ns", Image(name="img", target=Descriptor(media_type=MT, digest=manifest, size=14)), actor="t")
    await env.gc.collect()
    assert {i.digest for i in await env.content.list("ns")} == {layer, config, manifest}
    assert stray not in {i.digest for i in await env.content.list("ns")}
    await svc.delete("ns", "img", sync=True, actor="t")
    assert await env.content.list("ns") == []
