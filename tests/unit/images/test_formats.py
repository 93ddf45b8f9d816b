"""Image formats and platforms: documents written here, and (to check the reader against a writer we did
not write) an OCI layout and a Docker schema2 ``dir:`` that Debian's skopeo builds from a busybox tarball."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from engine.errors import InvalidArgument, NotFound
from engine.images import formats as f
from engine.images.content import digests
from engine.images.platforms import Platform, host, matches, parse, rank

D1 = digests.of_bytes(b"1")
D2 = digests.of_bytes(b"2")


def desc(mt: str, d: str = D1, size: int = 1, **kw: object) -> dict[str, object]:
    return {"mediaType": mt, "digest": d, "size": size, **kw}


def manifest(mt: str = f.OCI_MANIFEST, config_mt: str = f.OCI_CONFIG, layer_mt: str = f.OCI_LAYER_GZIP) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": mt, "config": desc(config_mt),
                       "layers": [desc(layer_mt, D2, 10)]}).encode()


def index(*platforms: str, mt: str = f.OCI_INDEX) -> bytes:
    mans = []
    for i, p in enumerate(platforms):
        os, arch, *variant = p.split("/")
        plat = {"os": os, "architecture": arch, **({"variant": variant[0]} if variant else {})}
        mans.append(desc(f.OCI_MANIFEST, digests.of_bytes(p.encode()), 100 + i, platform=plat))
    return json.dumps({"schemaVersion": 2, "mediaType": mt, "manifests": mans}).encode()


@pytest.mark.parametrize(("spec", "want"), [
    ("linux/amd64", "linux/amd64"), ("linux/x86_64", "linux/amd64"), ("linux/amd64/v1", "linux/amd64"),
    ("linux/arm64/v8", "linux/arm64"), ("linux/aarch64", "linux/arm64"), ("linux/arm", "linux/arm/v7"),
    ("linux/armhf", "linux/arm/v7"), ("linux/armel", "linux/arm/v6"), ("linux/arm/6", "linux/arm/v6"),
    ("linux/i386", "linux/386"), ("arm64", "linux/arm64"), ("Linux/AMD64", "linux/amd64"),
    ("linux/arm64/v9.0", "linux/arm64/v9"), ("macos/arm64", "darwin/arm64"),
])
def test_platforms_normalise_as_containerd(spec: str, want: str) -> None:
    assert str(parse(spec)) == want


@pytest.mark.parametrize("bad", ["", "linux/", "a/b/c/d", "linux/amd 64", "/amd64"])
def test_bad_platforms_are_invalid(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid platform"):
        parse(bad)


def test_platform_matching_and_host() -> None:
    assert host().os == "linux" and host().architecture in ("amd64", "arm64", "arm", "386", "ppc64le", "s390x",
                                                            "riscv64")
    assert matches(parse("linux/arm64"), Platform(os="linux", architecture="arm64", variant="v8"))
    assert matches(parse("linux/arm/v7"), parse("linux/arm/v6"))
    assert not matches(parse("linux/arm/v6"), parse("linux/arm/v7"))
    assert not matches(parse("linux/amd64"), parse("windows/amd64"))
    assert not matches(parse("linux/amd64"), parse("linux/arm64"))
    assert rank(parse("linux/amd64"), parse("linux/amd64")) == 0
    assert rank(parse("linux/amd64"), parse("linux/386")) == 1


def test_choose_prefers_the_best_platform() -> None:
    idx = f.parse_index(index("linux/386", "linux/arm/v6", "linux/arm/v7", "linux/arm64", "linux/amd64",
                              "windows/amd64"))
    assert f.choose(idx, parse("linux/amd64")).platform == Platform(os="linux", architecture="amd64")
    assert f.choose(idx, parse("linux/arm/v7")).digest == digests.of_bytes(b"linux/arm/v7")
    assert f.choose(idx, parse("linux/arm64")).digest == digests.of_bytes(b"linux/arm64")
    assert f.choose(f.parse_index(index("linux/arm/v6")), parse("linux/arm64/v8")).size == 100
    assert f.choose(f.parse_index(index("linux/386")), parse("linux/amd64")).size == 100
    with pytest.raises(NotFound, match="no match for platform linux/s390x"):
        f.choose(idx, parse("linux/s390x"))
    assert f.choose(f.parse_index(index(str(host()))), None).size == 100  # the default is this host


def test_parse_both_families() -> None:
    oci = f.parse(manifest())
    assert isinstance(oci, f.Manifest) and oci.layers[0].media_type == f.OCI_LAYER_GZIP
    docker = f.parse_manifest(manifest(f.DOCKER_MANIFEST, f.DOCKER_CONFIG, f.DOCKER_LAYER_GZIP), f.DOCKER_MANIFEST)
    assert docker.config.media_type == f.DOCKER_CONFIG
    lst = f.parse(index("linux/amd64", mt=f.DOCKER_MANIFEST_LIST))
    assert isinstance(lst, f.Index) and lst.manifests[0].platform == parse("linux/amd64")
    # no mediaType in the document: the shape decides (older OCI writers leave it out)
    bare = json.dumps({"schemaVersion": 2, "manifests": []}).encode()
    assert isinstance(f.parse(bare), f.Index)
    assert [f.layer_compression(m) for m in (f.OCI_LAYER, f.DOCKER_LAYER_GZIP, f.OCI_LAYER_ZSTD,
                                             f.OCI_LAYER_ND_GZIP)] == ["none", "gzip", "zstd", "gzip"]
    with pytest.raises(InvalidArgument, match="not a layer media type"):
        f.layer_compression(f.OCI_CONFIG)


@pytest.mark.parametrize(("doc", "mt", "msg"), [
    (b"{not json", "", "not JSON"),
    (b"[]", f.OCI_MANIFEST, "invalid image manifest"),
    (json.dumps({"schemaVersion": 1, "config": desc(f.OCI_CONFIG)}).encode(), f.OCI_MANIFEST, "schemaVersion 1"),
    (manifest(), f.DOCKER_MANIFEST, "but the descriptor says"),
    (manifest(mt="application/x-nope"), "", "unsupported image document"),
    (manifest(), "text/plain", "unsupported manifest media type"),
    (manifest(f.DOCKER_MANIFEST, f.OCI_CONFIG), "", "docker config media type"),
    (json.dumps({"schemaVersion": 2, "config": desc(f.OCI_CONFIG, "sha256:abc")}).encode(), f.OCI_MANIFEST,
     "digest"),
    (json.dumps({"schemaVersion": 2, "config": desc(f.OCI_CONFIG, size=-1)}).encode(), f.OCI_MANIFEST,
     "negative size"),
    (json.dumps({"schemaVersion": 2, "config": {"digest": D1, "size": 1}}).encode(), f.OCI_MANIFEST, "mediaType"),
    (json.dumps({"schemaVersion": 2, "manifests": [desc("")]}).encode(), f.OCI_INDEX, "no media type"),
])
def test_bad_documents_are_invalid_argument(doc: bytes, mt: str, msg: str) -> None:
    with pytest.raises(InvalidArgument, match=msg):
        f.parse(doc, mt)


def test_config_to_container_defaults() -> None:
    cfg = f.parse_config(json.dumps({
        "architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [D1]},
        "config": {"Entrypoint": ["/entry"], "Cmd": ["run"], "Env": ["PATH=/bin", "A=1"], "WorkingDir": "/srv",
                   "User": "1000:1000", "ExposedPorts": {"80/tcp": {}, "53/udp": {}, "8080": {}},
                   "Volumes": {"/data": {}}, "Labels": {"k": "v"}, "StopSignal": "SIGQUIT",
                   "Healthcheck": {"Test": ["CMD", "true"], "Interval": 5_000_000_000, "Retries": 3}},
    }).encode())
    d = f.container_defaults(cfg)
    assert (d.entrypoint, d.cmd, d.env, d.working_dir, d.user) == (["/entry"], ["run"], ["PATH=/bin", "A=1"],
                                                                   "/srv", "1000:1000")
    assert d.exposed_ports == ["53/udp", "80/tcp", "8080/tcp"] and d.volumes == ["/data"]
    assert d.labels == {"k": "v"} and d.stop_signal == "SIGQUIT"
    assert d.healthcheck == f.Healthcheck(test=["CMD", "true"], interval=5_000_000_000, retries=3)
    assert cfg.platform == parse("linux/amd64")
    empty = f.container_defaults(f.parse_config(b'{"architecture":"arm64","os":"linux","rootfs":{"type":"layers"}}'))
    assert empty == f.ContainerDefaults()
    with pytest.raises(InvalidArgument, match="rootfs type"):
        f.parse_config(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"other"}}')
    with pytest.raises(InvalidArgument, match="diff id"):
        f.parse_config(b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["x"]}}')


@pytest.fixture
def rootfs_tar(tmp_path: Path) -> Path:
    if not Path("/bin/busybox").exists():
        pytest.skip("busybox-static is not installed")
    out = tmp_path / "rootfs.tar"
    with tarfile.open(out, "w") as tar:
        tar.add("/bin/busybox", arcname="bin/busybox")
    return out


def _blob(layout: Path, d: str) -> bytes:
    return (layout / "blobs" / d.replace(":", "/")).read_bytes()


@pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")
def test_reads_what_skopeo_writes(rootfs_tar: Path, tmp_path: Path) -> None:
    oci, docker = tmp_path / "oci", tmp_path / "docker"
    for dest, extra in ((f"oci:{oci}:tiny:latest", []), (f"dir:{docker}", ["--format", "v2s2"])):
        subprocess.run(["skopeo", "copy", *extra, f"tarball:{rootfs_tar}", dest],
                       check=True, capture_output=True, timeout=120)
    idx = f.parse_index((oci / "index.json").read_bytes())
    top = idx.manifests[0]
    assert top.annotations["org.opencontainers.image.ref.name"] == "tiny:latest"
    data = _blob(oci, top.digest)
    assert digests.of_bytes(data) == top.digest and len(data) == top.size
    m = f.parse_manifest(data, top.media_type)
    assert f.is_layer(m.layers[0].media_type) and f.layer_compression(m.layers[0].media_type) == "gzip"
    cfg = f.parse_config(_blob(oci, m.config.digest))
    # skopeo's tarball: source writes the platform it was built for (it ignores --override-arch)
    assert cfg.platform.os == "linux" and rank(host(), cfg.platform) == 0
    assert len(cfg.rootfs.diff_ids) == 1 and cfg.rootfs.diff_ids[0] == digests.of_bytes(rootfs_tar.read_bytes())
    dm = f.parse((docker / "manifest.json").read_bytes())
    assert isinstance(dm, f.Manifest) and dm.media_type == f.DOCKER_MANIFEST
    assert f.layer_compression(dm.layers[0].media_type) == "none"  # the dir: copy keeps the tarball as it was
    dcfg = f.parse_config((docker / dm.config.digest.split(":")[1]).read_bytes())
    assert dcfg.rootfs.diff_ids == cfg.rootfs.diff_ids
