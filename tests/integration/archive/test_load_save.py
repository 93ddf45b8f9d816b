"""docker load / save / import through engine/services/image_archive.py, in-process over a real journal,
content store and overlayfs snapshotter. Archives come from tests/support/images.py and from Debian's skopeo
(an independent writer and reader): what skopeo writes we load, what we save skopeo reads back."""

from __future__ import annotations

import gzip
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard

from engine.errors import InvalidArgument, NotFound
from engine.images.archive import layout
from engine.services import Services
from engine.services.image_archive import DANGLING, ImageArchiveService
from tests.integration.images.helpers import ACTOR, NS
from tests.support.images import busybox_docker_archive, busybox_layer_tar, busybox_oci_archive, image_id

BB = "docker.io/library/busybox:latest"
Env = tuple[Services, ImageArchiveService, Path]
needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


def skopeo(*args: str) -> None:
    r = subprocess.run(["skopeo", "copy", "--quiet", *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"skopeo copy {args}: {r.stderr}"


async def names(s: Services) -> list[str]:
    assert s.images is not None
    return [i.name for i in await s.images.list(NS)]


async def save_to(svc: ImageArchiveService, refs: list[str], path: Path) -> Path:
    with open(path, "wb") as f:
        for chunk in await svc.save(NS, refs, actor=ACTOR):
            f.write(chunk)
    return path


async def content_left(s: Services) -> list[str]:
    """Content rows once every lease is gone and gc ran (what a failure left outside a lease)."""
    assert s.gc is not None and s.content is not None
    await s.gc.collect(actor=ACTOR)
    return [i.digest for i in await s.content.list(NS)]


async def test_load_docker_archive_and_round_trip(env: Env) -> None:
    s, svc, root = env
    loaded = await svc.load(NS, busybox_docker_archive(root), actor=ACTOR)
    assert loaded == [BB]
    g, _ = await svc.lookup(NS, "busybox")
    assert g.id == image_id() and g.resolved is not None
    assert s.snapshots is not None
    await s.snapshots.stat("overlayfs", g.resolved.chain_id, namespace=NS)  # unpacked
    await svc.tag(NS, "busybox", "docker.io/foo/bar:1", actor=ACTOR)
    saved = await save_to(svc, ["busybox", "foo/bar:1"], root / "save.tar")
    with tarfile.open(saved) as tar:
        members = tar.getnames()
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
    assert {"oci-layout", "index.json", "manifest.json", "repositories"} <= set(members)
    assert len([m for m in members if m.startswith("blobs/sha256/")]) == 3  # layer, config, manifest: once
    assert manifest[0]["Config"] == "blobs/sha256/" + image_id().split(":")[1]
    assert sorted(manifest[0]["RepoTags"]) == ["busybox:latest", "foo/bar:1"]
    assert sorted(m["annotations"]["io.containerd.image.name"] for m in index["manifests"]) == [
        "docker.io/foo/bar:1", BB]
    # delete everything, then load our own save: same IDs and targets
    target = g.records[0].target.digest
    await svc.remove(NS, image_id(), force=True, actor=ACTOR)
    assert await names(s) == []
    assert sorted(await svc.load(NS, saved, actor=ACTOR)) == ["docker.io/foo/bar:1", BB]
    g2, _ = await svc.lookup(NS, "foo/bar:1")
    assert g2.id == image_id() and {r.target.digest for r in g2.records} == {target}


@needs_skopeo
async def test_load_what_skopeo_wrote_and_skopeo_reads_our_save(env: Env) -> None:
    s, svc, root = env
    oci = busybox_oci_archive(root)
    skopeo(f"oci-archive:{oci}", f"docker-archive:{root / 'sk.tar'}:busybox:sk")
    assert await svc.load(NS, root / "sk.tar", actor=ACTOR) == ["docker.io/library/busybox:sk"]
    skopeo(f"oci-archive:{oci}", f"oci:{root / 'ocidir'}:busybox:dir")
    assert await svc.load_dir(NS, root / "ocidir", actor=ACTOR) == ["docker.io/library/busybox:dir"]
    g, _ = await svc.lookup(NS, "busybox:sk")
    assert g.id == image_id() and len(g.records) == 2
    saved = await save_to(svc, ["busybox:sk"], root / "ours.tar")
    skopeo(f"docker-archive:{saved}", f"oci:{root / 'back1'}:x")
    # skopeo's OCI reader takes OCI manifests only (busybox:sk came as Docker schema2): save the OCI-typed one;
    # ref.name is the tag, as containerd's exporter writes it
    saved2 = await save_to(svc, ["busybox:dir"], root / "ours2.tar")
    skopeo(f"oci-archive:{saved2}:dir", f"oci:{root / 'back2'}:x")
    # docker-archive → oci makes skopeo convert the manifest (and rewrite the config): compare the content
    arc = layout.read(root / "back1")
    cfg = json.loads(arc.blobs[arc.images[0].config_digest].path.read_bytes())  # type: ignore[union-attr]
    assert cfg["rootfs"]["diff_ids"] == g.resolved.diff_ids and cfg["config"]["Cmd"] == ["sh"]  # type: ignore[union-attr]
    assert [i.config_digest for i in layout.read(root / "back2").images] == [image_id()]
    await svc.export_oci_dir(NS, ["busybox:dir"], root / "exported", actor=ACTOR)
    skopeo(f"oci:{root / 'exported'}:dir", f"oci:{root / 'back3'}:x")
    assert [i.config_digest for i in layout.read(root / "back3").images] == [image_id()]


async def test_retag_leaves_the_old_image_dangling(env: Env) -> None:
    s, svc, root = env
    await svc.load(NS, busybox_docker_archive(root, "app:1"), actor=ACTOR)
    old, _ = await svc.lookup(NS, "app:1")
    (root / "v2").mkdir()
    other = busybox_docker_archive(root / "v2", "app:1", config_extra={"Labels": {"v": "2"}})
    await svc.load(NS, other, actor=ACTOR)
    new, _ = await svc.lookup(NS, "app:1")
    assert new.id != old.id
    groups = {g.id: g for g in await svc.groups(NS)}
    assert groups[old.id].dangling and groups[old.id].records[0].name.startswith(DANGLING)
    assert not groups[new.id].dangling
    # tagging the dangling image again removes its dangling record
    await svc.tag(NS, old.id, "docker.io/library/app:old", actor=ACTOR)
    assert DANGLING + old.records[0].target.digest not in await names(s)
    await svc.remove(NS, "app:old", actor=ACTOR)
    assert (await svc.lookup(NS, "app:1"))[0].id == new.id
    with pytest.raises(NotFound, match="No such image: app:old"):
        await svc.lookup(NS, "app:old")
    deleted, _ = await svc.prune(NS, actor=ACTOR)
    assert deleted == []  # the old image was deleted with its last tag
    await svc.tag(NS, "app:1", "docker.io/library/app:2", actor=ACTOR)
    out = await svc.remove(NS, "app:1", actor=ACTOR)
    assert out == [{"Untagged": "app:1"}]  # another tag remains: untag only


async def test_remove_by_id_in_several_repositories_needs_force(env: Env) -> None:
    s, svc, root = env
    await svc.load(NS, busybox_docker_archive(root), actor=ACTOR)
    await svc.tag(NS, "busybox", "docker.io/other/bb:1", actor=ACTOR)
    from engine.errors import Conflict

    with pytest.raises(Conflict, match=r"conflict: unable to delete [0-9a-f]{12} \(must be forced\) - image is "
                                        "referenced in multiple repositories"):
        await svc.remove(NS, image_id()[7:19], actor=ACTOR)
    out = await svc.remove(NS, image_id()[7:19], force=True, actor=ACTOR)
    assert out == [{"Untagged": "busybox:latest"}, {"Untagged": "other/bb:1"}, {"Deleted": image_id()}]
    assert await names(s) == []


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
async def test_import_rootfs_with_changes(env: Env, compression: str) -> None:
    s, svc, root = env
    raw = busybox_layer_tar(root).read_bytes()
    data = {"none": raw, "gzip": gzip.compress(raw, 1), "zstd": zstandard.compress(raw)}[compression]
    changes = ['CMD ["sh"]', "ENV A=b", "ENTRYPOINT /bin/sh -c", "WORKDIR /w", "USER 1:1", "EXPOSE 80 53/udp",
               'LABEL a=b "c d"="e f"', "VOLUME /data", "STOPSIGNAL SIGINT"]
    iid = await svc.import_rootfs(NS, io.BytesIO(data), ref="myimg:1", changes=changes, message="hi", actor=ACTOR)
    g, _ = await svc.lookup(NS, "myimg:1")
    assert g.id == iid and g.resolved is not None
    c = g.resolved.config.config
    assert c.cmd == ["sh"] and c.env == ["A=b"] and c.entrypoint == ["/bin/sh", "-c", "/bin/sh -c"]
    assert c.working_dir == "/w" and c.user == "1:1" and c.stop_signal == "SIGINT"
    assert c.exposed_ports == {"80/tcp": {}, "53/udp": {}} and c.volumes == {"/data": {}}
    assert c.labels == {"a": "b", "c d": "e f"}
    assert g.resolved.config.history[0].comment == "hi"
    assert g.resolved.diff_ids == ["sha256:" + __import__("hashlib").sha256(raw).hexdigest()]
    assert s.snapshots is not None
    await s.snapshots.stat("overlayfs", g.resolved.chain_id, namespace=NS)
    assert len(await content_left(s)) == 3  # gc labels keep layer and config with the manifest


async def test_import_refusals_store_nothing(env: Env) -> None:
    s, svc, root = env
    raw = busybox_layer_tar(root).read_bytes()
    with pytest.raises(InvalidArgument, match="onbuild is not a valid change command"):
        await svc.import_rootfs(NS, io.BytesIO(raw), ref="x:1", changes=["ONBUILD RUN x"], actor=ACTOR)
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        await svc.import_rootfs(NS, io.BytesIO(b"not a tar at all" * 100), ref="x:1", actor=ACTOR)
    with pytest.raises(InvalidArgument, match="not a valid tar"):
        await svc.import_rootfs(NS, io.BytesIO(gzip.compress(raw)[:5000]), ref="x:1", actor=ACTOR)
    assert await names(s) == [] and await content_left(s) == []
    assert list((root / "state" / "tmp").iterdir()) == []


def _rewrite(src: Path, dst: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """Copy tar `src` to `dst`, passing each (TarInfo, bytes) through `edit` (None drops it)."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
            r = edit(m, data)
            if r is None:
                continue
            m, data = r
            m.size = len(data)
            tout.addfile(m, io.BytesIO(data) if m.isfile() else None)
    return dst


def _flip(data: bytes) -> bytes:
    return data[:-1024] + bytes([data[-1024] ^ 1]) + data[-1023:]


async def test_bad_archives_store_nothing(env: Env) -> None:
    s, svc, root = env
    dock = busybox_docker_archive(root)
    oci = busybox_oci_archive(root)
    cases = {
        "truncated": (root / "t.tar", "invalid tar archive"),
        "missing layer": (_rewrite(dock, root / "m.tar", lambda m, d: None if m.name.endswith("layer.tar")
                                   else (m, d)), "layer .* is missing"),
        "layer digest (docker)": (_rewrite(dock, root / "d.tar", lambda m, d: (m, _flip(d))
                                           if m.name.endswith("layer.tar") else (m, d)), "diff id"),
        "blob digest (oci)": (_rewrite(oci, root / "o.tar", lambda m, d: (m, _flip(d)) if len(d) > 100000
                                       else (m, d)), "does not match its digest"),
        "not an archive": (root / "n.tar", "neither manifest.json nor index.json"),
    }
    (root / "t.tar").write_bytes(dock.read_bytes()[:700_000])
    _rewrite(dock, root / "n.tar", lambda m, d: (m, d) if m.name.endswith(".json") and "manifest" not in m.name
             else None)
    for what, (path, message) in cases.items():
        with pytest.raises(InvalidArgument, match=message):
            await svc.load(NS, path, actor=ACTOR)
        assert await names(s) == [], what
        assert s.leases is not None and await s.leases.list(NS) == [], what
        assert await content_left(s) == [], what
    assert list((root / "state" / "tmp").iterdir()) == []


async def test_concurrent_loads_of_one_archive(env: Env) -> None:
    s, svc, root = env
    arc = busybox_docker_archive(root)
    (root / "b").mkdir()
    other = busybox_docker_archive(root / "b", "second:1")  # same blobs, another name
    import asyncio

    a, b, c = await asyncio.gather(svc.load(NS, arc, actor=ACTOR), svc.load(NS, arc, actor=ACTOR),
                                   svc.load(NS, other, actor=ACTOR))
    assert a == b == [BB] and c == ["docker.io/library/second:1"]
    assert sorted(await names(s)) == ["docker.io/library/busybox:latest", "docker.io/library/second:1"]
    assert s.leases is not None and await s.leases.list(NS) == []
    assert len(await content_left(s)) == 3  # layer, config, manifest: all kept by the records


async def test_a_crashed_load_leaves_its_scratch_to_the_next_start(env: Env) -> None:
    s, _, root = env
    stale = root / "state" / "tmp" / "load-0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / "archive.tar").write_bytes(b"x")
    ImageArchiveService(s)
    assert not stale.exists()


async def test_load_of_a_gzip_compressed_archive(env: Env) -> None:
    s, svc, root = env
    gz = root / "bb.tar.gz"
    gz.write_bytes(gzip.compress(busybox_docker_archive(root).read_bytes(), 1))
    assert await svc.load(NS, gz, actor=ACTOR) == [BB]
