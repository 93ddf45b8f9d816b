"""Debian's real ``ctr`` (containerd 1.6) against engine's Images service (with Content and Leases).

The daemon does not build the images service yet (the lead wires it into engine/daemon.py), so, as the
content tests do, each test serves the containerd API in-process on a temp socket with the same
``serve_containerd`` the daemon uses, over a real journal and content store: ``images import
--no-unpack`` of an OCI archive built here from busybox, then ls, check, tag, label, rm, and bad input.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import io
import json
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from engine.config import Config
from engine.images import formats
from engine.images.content import digests
from engine.services import Services
from engine.services.gc import LABEL_REF_CONTENT
from engine.services.images import ImageService, ImageSource
from engine.services.namespaces import NamespaceService
from tests.e2e.containerd.test_ctr_content import Server, rows
from tests.unit.content.conftest import Env, open_env

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("ctr") is None, reason="ctr is not installed"),
              pytest.mark.skipif(not Path("/bin/busybox").exists(), reason="busybox-static is not installed")]

NAME = "docker.io/library/tiny:latest"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


class ImagesServer(Server):
    def __init__(self, env: Env, sock: Path, images: ImageService) -> None:
        super().__init__(env, sock)
        self.images = images


@pytest.fixture
async def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    from engine.api.containerd.server import serve_containerd

    env = await open_env(tmp_path)
    env.gc.add_source(ImageSource())
    images = ImageService(env.journal, collect=env.gc.collect)
    services = Services(journal=env.journal, namespaces=NamespaceService(env.journal), daemon_uuid="test-uuid",
                        config=Config(root=str(tmp_path)), started_ns=time.time_ns(),
                        extra={"content": env.content, "leases": env.leases, "images": images})
    sock = tmp_path / "containerd.sock"
    srv: Any = await serve_containerd(services, str(sock), "root")
    try:
        yield ImagesServer(env, sock, images)
    finally:
        srv.close()
        await asyncio.wait_for(srv.wait_closed(), 5)
        await env.journal.close()


def _tar(files: dict[str, tuple[bytes, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, (data, mode) in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def oci_archive(name: str = NAME) -> tuple[bytes, dict[str, str]]:
    """An OCI layout tar: index.json → manifest → config + one gzip layer of a busybox rootfs."""
    layer_tar = _tar({"bin/busybox": (Path("/bin/busybox").read_bytes(), 0o755)})
    layer = gzip.compress(layer_tar, mtime=0)
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "config": {"Cmd": ["/bin/busybox", "sh"], "Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [digests.of_bytes(layer_tar)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": digests.of_bytes(config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": digests.of_bytes(layer), "size": len(layer)}]}).encode()
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": digests.of_bytes(manifest), "size": len(manifest),
         "platform": {"architecture": "amd64", "os": "linux"},
         "annotations": {"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}}]}).encode()
    files = {"oci-layout": (b'{"imageLayoutVersion":"1.0.0"}', 0o644), "index.json": (index, 0o644)}
    for blob in (layer, config, manifest):
        files["blobs/sha256/" + hashlib.sha256(blob).hexdigest()] = (blob, 0o644)
    return _tar(files), {"manifest": digests.of_bytes(manifest), "config": digests.of_bytes(config),
                         "layer": digests.of_bytes(layer)}


async def test_ls_empty_then_import_tag_label_rm(server: ImagesServer, tmp_path: Path) -> None:
    events = await asyncio.create_subprocess_exec("ctr", "--address", str(server.sock), "events",
                                                  stdout=asyncio.subprocess.PIPE)
    try:
        await server.ctr("version")  # let the subscription settle
        await _lifecycle(server, tmp_path)
    finally:
        await server.ctr("version")
        events.terminate()
        seen = (await asyncio.wait_for(events.communicate(), 10))[0].decode()
    for topic in ("/images/create", "/images/update", "/images/delete"):
        assert topic in seen, seen


async def _lifecycle(server: ImagesServer, tmp_path: Path) -> None:
    _, out, _ = await server.ctr("images", "ls")
    assert rows(out)[0][:3] == ["REF", "TYPE", "DIGEST"] and rows(out)[1:] == []
    archive, d = oci_archive()
    (tmp_path / "tiny.tar").write_bytes(archive)
    await server.ctr("images", "import", "--no-unpack", str(tmp_path / "tiny.tar"))
    _, out, _ = await server.ctr("images", "ls")
    table = rows(out)
    assert [r[:3] for r in table[1:]] == [[NAME, OCI_MANIFEST, d["manifest"]]], out.decode()
    assert "linux/amd64" in out.decode()
    # the content is all there, and the manifest's gc labels link config and layer
    info = await server.env.content.info("default", d["manifest"])
    assert set(info.labels.values()) >= {d["config"], d["layer"]}
    assert any(k.startswith(LABEL_REF_CONTENT) for k in info.labels)
    m = formats.parse_manifest(server.env.store.read(d["manifest"]), OCI_MANIFEST)
    cfg = formats.parse_config(server.env.store.read(m.config.digest))
    assert formats.container_defaults(cfg).cmd == ["/bin/busybox", "sh"]
    # tag, label, filter
    await server.ctr("images", "tag", NAME, "docker.io/library/tiny:v2")
    await server.ctr("images", "label", "docker.io/library/tiny:v2", "team=a")
    img = await server.env.content.info("default", d["manifest"])  # unchanged by labelling the image
    assert img.labels == info.labels
    _, out, _ = await server.ctr("images", "ls", "-q", "labels.team==a")
    assert out.decode().split() == ["docker.io/library/tiny:v2"]
    code, _, err = await server.ctr("images", "tag", NAME, "docker.io/library/tiny:v2", check=False)
    assert code != 0 and "already exists" in err, err
    # gc keeps an image's content; removing the last image (sync) lets it go
    await server.env.gc.collect()
    assert {i.digest for i in await server.env.content.list("default")} == set(d.values())
    await server.ctr("images", "rm", NAME)
    await server.env.gc.collect()
    assert {i.digest for i in await server.env.content.list("default")} == set(d.values())
    await server.ctr("images", "rm", "--sync", "docker.io/library/tiny:v2")
    assert await server.env.content.list("default") == []
    _, out, _ = await server.ctr("images", "ls", "-q")
    assert out.strip() == b""
    types = [e.type for e in await server.env.journal.read() if e.type.startswith("image.")]
    assert types.count("image.created") == 2 and types.count("image.deleted") == 2 and "image.updated" in types


async def test_bad_input_is_refused(server: ImagesServer) -> None:
    # ctr itself only warns when the image is not there (it reads NotFound from the service)
    code, _, err = await server.ctr("images", "rm", "docker.io/library/nope:latest", check=False)
    assert code == 0 and "image not found" in err, err
    code, _, err = await server.ctr("images", "ls", "name=x", check=False)
    assert code != 0 and "invalid argument" in err, err
    code, _, err = await server.ctr("images", "label", "docker.io/library/nope:latest", "a=b", check=False)
    assert code != 0 and "not found" in err, err


async def _skopeo(tmp_path: Path, dest: str) -> None:
    with tarfile.open(tmp_path / "rootfs.tar", "w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
    proc = await asyncio.create_subprocess_exec("skopeo", "copy", f"tarball:{tmp_path / 'rootfs.tar'}", dest,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
async def test_import_of_an_archive_skopeo_wrote(server: ImagesServer, tmp_path: Path) -> None:
    await _skopeo(tmp_path, f"oci-archive:{tmp_path / 'oci.tar'}:latest")
    await server.ctr("images", "import", "--no-unpack", "--base-name", "example.com/skopeo/tiny",
                     str(tmp_path / "oci.tar"))
    await _skopeo(tmp_path, f"docker-archive:{tmp_path / 'docker.tar'}:example.com/skopeo/docker:v1")
    await server.ctr("images", "import", "--no-unpack", str(tmp_path / "docker.tar"))
    _, out, _ = await server.ctr("images", "ls")
    table = rows(out)[1:]
    assert [r[:2] for r in table] == [["example.com/skopeo/docker:v1", formats.DOCKER_MANIFEST],
                                      ["example.com/skopeo/tiny:latest", OCI_MANIFEST]], out.decode()
    img = await server.images.get("default", "example.com/skopeo/docker:v1")
    m = formats.parse_manifest(server.env.store.read(img.target.digest), img.target.media_type)
    assert m.config.media_type == formats.DOCKER_CONFIG
