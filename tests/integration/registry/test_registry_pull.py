"""Pulls from a real registry (Debian's docker-registry, filled by skopeo) into in-process services: by tag,
by digest, from a multi-platform index, concurrently with shared blobs, resumed after a cut connection,
refused on a bad digest; and the client's auth against an htpasswd registry."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

import pytest

from engine.errors import DataLoss, NotFound, Unavailable
from engine.events.types import Envelope
from engine.images import platforms
from engine.images.registry import Credentials, Unauthorized, from_header
from engine.services.image_unpack import LABEL_SNAPSHOT_REF, resolve
from engine.services.pull import LABEL_SOURCE, ImagePulled
from tests.integration.images.helpers import ACTOR, NS
from tests.integration.registry.conftest import Filled, pulling
from tests.support import images
from tests.support.registry import TestRegistry, random_oci_layout


async def _events(s, type_: str) -> list[Envelope]:  # type: ignore[no-untyped-def]
    return await s.journal.read(after_seq=0, limit=100000, where="type = ?", params=(type_,))


async def _no_leases_or_ingests(s) -> None:  # type: ignore[no-untyped-def]
    assert await s.leases.list(NS) == []
    assert await s.content.list_statuses(NS) == []


async def test_pull_by_tag_records_unpacks_labels_and_journals(filled: Filled) -> None:
    reg = filled.reg
    async with pulling() as (s, p, _root):
        msgs: list[dict] = []
        img = await p.pull(NS, f"{reg.host}/bb:1", progress=msgs.append, actor=ACTOR)
        digest = reg.skopeo_inspect("bb:1")["Digest"]
        assert img.name == f"{reg.host}/bb:1" and img.target.digest == digest
        r = await resolve(s, NS, img.name)
        assert r.config_digest == images.image_id()
        await s.snapshots.stat("overlayfs", r.chain_id, namespace=NS)  # unpacked
        manifest = await s.content.info(NS, digest)
        assert manifest.labels["containerd.io/gc.ref.content.config"] == r.config_digest
        assert manifest.labels["containerd.io/gc.ref.content.l.0"] == r.manifest.layers[0].digest
        layer = await s.content.info(NS, r.manifest.layers[0].digest)
        assert layer.labels[LABEL_SOURCE + reg.host] == "bb"
        cfg = await s.content.info(NS, r.config_digest)
        assert cfg.labels[LABEL_SNAPSHOT_REF + "overlayfs"] == r.chain_id
        statuses = [m["status"] for m in msgs]
        assert statuses[0] == "Pulling from bb" and "Pulling fs layer" in statuses and "Pull complete" in statuses
        assert statuses[-2:] == [f"Digest: {digest}", f"Status: Downloaded newer image for {reg.host}/bb:1"]
        pulled = await _events(s, "image.pulled")
        assert len(pulled) == 1
        ev = pulled[0].event
        assert isinstance(ev, ImagePulled) and ev.digest == digest and ev.registry == reg.host
        assert ev.size == r.size and ev.config == r.config_digest
        await _no_leases_or_ingests(s)
        msgs.clear()
        await p.pull(NS, f"{reg.host}/bb:1", progress=msgs.append, actor=ACTOR)
        assert msgs[-1]["status"] == f"Status: Image is up to date for {reg.host}/bb:1"
        assert "Already exists" in [m["status"] for m in msgs]


async def test_pull_by_digest_names_the_record_by_digest(filled: Filled) -> None:
    reg = filled.reg
    digest = reg.skopeo_inspect("bb:1")["Digest"]
    async with pulling() as (s, p, _root):
        img = await p.pull(NS, f"{reg.host}/bb@{digest}", actor=ACTOR)
        assert img.name == f"{reg.host}/bb@{digest}" and img.target.digest == digest
        assert [i.name for i in await s.images.list(NS)] == [img.name]


async def test_missing_tag_is_dockers_manifest_unknown(filled: Filled) -> None:
    async with pulling() as (s, p, _root):
        with pytest.raises(NotFound) as err:
            await p.pull(NS, f"{filled.reg.host}/bb:nope", actor=ACTOR)
        assert str(err.value) == (f"manifest for {filled.reg.host}/bb:nope not found: manifest unknown: "
                                  "manifest unknown")
        assert await s.images.list(NS) == []
        assert await s.leases.list(NS) == []


async def test_index_pull_takes_the_host_platform_only(filled: Filled) -> None:
    reg, d = filled.reg, filled.digests
    host = str(platforms.host())
    other = "linux/arm64" if host != "linux/arm64" else "linux/amd64"
    async with pulling() as (s, p, _root):
        img = await p.pull(NS, f"{reg.host}/multi:1", actor=ACTOR)
        assert img.target.digest == d["multi/index"] and img.target.media_type.endswith("index.v1+json")
        r = await resolve(s, NS, img.name)
        assert r.manifest_desc.digest == d[f"multi/{host}"]
        assert r.config_digest == d[f"multi/config:{host}"]
        with pytest.raises(NotFound):
            await s.content.info(NS, d[f"multi/{other}"])  # the other platform was not fetched
        index = await s.content.info(NS, d["multi/index"])
        refs = {v for k, v in index.labels.items() if k.startswith("containerd.io/gc.ref.content.m.")}
        assert refs == {d[f"multi/{host}"], d[f"multi/{other}"]}
        # another platform on request
        await p.pull(NS, f"{reg.host}/multi:1", platform=platforms.parse(other), actor=ACTOR)
        await s.content.info(NS, d[f"multi/{other}"])


async def test_concurrent_overlapping_pulls_fetch_each_blob_once(filled: Filled) -> None:
    reg = filled.reg
    a = json.loads(reg.get("/v2/a/manifests/1", {"Accept": images.OCI_MANIFEST})[1])
    b = json.loads(reg.get("/v2/b/manifests/1", {"Accept": images.OCI_MANIFEST})[1])
    shared = {x["digest"] for x in a["layers"]} & {x["digest"] for x in b["layers"]}
    assert len(shared) == 2  # busybox and the 1 MiB random layer
    before = {dg: reg.blob_gets(dg) for dg in shared}
    async with pulling() as (s, p, _root):
        await asyncio.gather(p.pull(NS, f"{reg.host}/a:1", actor=ACTOR), p.pull(NS, f"{reg.host}/b:1", actor=ACTOR),
                             p.pull(NS, f"{reg.host}/a:1", actor=ACTOR))
        for dg in shared:
            assert reg.blob_gets(dg) - before[dg] == 1, dg
        assert {i.name for i in await s.images.list(NS)} == {f"{reg.host}/a:1", f"{reg.host}/b:1"}
        await _no_leases_or_ingests(s)


class CuttingProxy:
    """A TCP proxy to the registry that cuts the first response to a GET of `digest` after `keep` bytes,
    and records the Range headers of later GETs of it."""

    def __init__(self, upstream_port: int, digest: str, keep: int) -> None:
        self.upstream_port, self.digest, self.keep = upstream_port, digest, keep
        self.cut = False
        self.ranges: list[str] = []
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        cutting = asyncio.Event()

        async def up() -> None:
            while data := await cr.read(65536):
                text = data.decode("latin-1")
                if f"/blobs/{self.digest} " in text and text.startswith("GET"):
                    rng = [ln for ln in text.split("\r\n") if ln.lower().startswith("range:")]
                    if not self.cut:
                        self.cut = True
                        cutting.set()
                    else:
                        self.ranges += rng
                uw.write(data)
                await uw.drain()

        async def down() -> None:
            sent = 0
            while data := await ur.read(65536):
                if cutting.is_set():
                    room = self.keep - sent
                    cw.write(data[:room])
                    sent += min(room, len(data))
                    if sent >= self.keep:
                        await cw.drain()
                        return
                else:
                    cw.write(data)
                await cw.drain()

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        cw.close()
        uw.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def test_cut_download_resumes_with_range(filled: Filled) -> None:
    reg = filled.reg
    b = json.loads(reg.get("/v2/b/manifests/1", {"Accept": images.OCI_MANIFEST})[1])
    big = max(b["layers"], key=lambda x: x["size"])
    proxy = CuttingProxy(reg.port, big["digest"], keep=300_000)
    port = await proxy.start()
    try:
        async with pulling() as (s, p, _root):
            img = await p.pull(NS, f"127.0.0.1:{port}/b:1", actor=ACTOR)
            assert proxy.cut
            assert len(proxy.ranges) == 1
            start = int(proxy.ranges[0].split("=")[1].rstrip("-"))
            assert 0 < start < big["size"]  # resumed where the cut left it, not from the start
            info = await s.content.info(NS, big["digest"])
            assert info.size == big["size"]
            await resolve(s, NS, img.name)
            await _no_leases_or_ingests(s)
    finally:
        await proxy.stop()


async def test_bad_digest_is_refused_and_nothing_half_stored(filled: Filled, tmp_path: Path) -> None:
    reg = filled.reg
    layout, _ = random_oci_layout(tmp_path / "c", [200_000], seed=5, with_busybox=False)
    reg.skopeo_copy(f"oci:{layout}", "corrupt:1")
    m = json.loads(reg.get("/v2/corrupt/manifests/1", {"Accept": images.OCI_MANIFEST})[1])
    layer = m["layers"][0]["digest"]
    hexd = layer.split(":")[1]
    blob = reg.dir / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, other bytes
    blob.write_bytes(bytes(data))
    async with pulling() as (s, p, _root):
        with pytest.raises(DataLoss) as err:
            await p.pull(NS, f"{reg.host}/corrupt:1", actor=ACTOR)
        assert layer in str(err.value)
        assert await s.images.list(NS) == []
        with pytest.raises(NotFound):
            await s.content.info(NS, layer)
        assert not s.content.store.exists(layer)
        await _no_leases_or_ingests(s)
        assert await _events(s, "image.pulled") == []


async def test_basic_auth_from_header_and_docker_config(auth_registry: TestRegistry, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    reg = auth_registry
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    async with pulling() as (s, p, _root):
        with pytest.raises(Unauthorized, match="no basic auth credentials"):
            await p.pull(NS, f"{reg.host}/bb:1", actor=ACTOR)
        with pytest.raises(Unauthorized):
            await p.pull(NS, f"{reg.host}/bb:1", auth=Credentials("alice", "wrong"), actor=ACTOR)
        with pytest.raises(Unauthorized, match="401 Unauthorized"):
            await p.login(reg.host, Credentials("alice", "wrong"))
        await p.login(reg.host, Credentials("alice", "s3cret"))
        header = base64.urlsafe_b64encode(json.dumps({"username": "alice", "password": "s3cret",
                                                      "serveraddress": reg.host}).encode()).decode()
        img = await p.pull(NS, f"{reg.host}/bb:1", auth=from_header(header), actor=ACTOR)
        assert img.target.digest == reg.skopeo_inspect("bb:1")["Digest"]
        await s.images.delete(NS, img.name, actor=ACTOR)
        # the daemon user's docker config (base64 user:password under the host key)
        token = base64.b64encode(b"alice:s3cret").decode()
        (tmp_path / "config.json").write_text(json.dumps({"auths": {f"http://{reg.host}": {"auth": token}}}))
        img = await p.pull(NS, f"{reg.host}/bb:1", actor=ACTOR)
        assert img.name == f"{reg.host}/bb:1"
    assert from_header("e30=") is None


def _own_address() -> str | None:
    """A non-loopback IPv4 address of this host (traffic to it stays on the machine)."""
    import subprocess

    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                         text=True).stdout
    for line in out.splitlines():
        return line.split()[3].split("/")[0]
    return None


async def test_insecure_registry_falls_back_from_https_to_http(tmp_path: Path) -> None:
    addr = _own_address()
    if addr is None:
        pytest.skip("this host has no non-loopback IPv4 address")
    reg = TestRegistry(address=addr).start()
    try:
        reg.skopeo_copy(f"oci-archive:{images.busybox_oci_archive(tmp_path, 'bb:1', gz=True)}", "bb:1")
        async with pulling() as (s, p, _root):
            with pytest.raises(Unavailable):  # not insecure: HTTPS only, and the registry speaks HTTP
                await p.pull(NS, f"{reg.host}/bb:1", actor=ACTOR)
            s.config.insecure_registries = [f"{addr}/32"]
            img = await p.pull(NS, f"{reg.host}/bb:1", actor=ACTOR)
            assert img.target.digest == reg.skopeo_inspect("bb:1")["Digest"]
    finally:
        reg.stop()
