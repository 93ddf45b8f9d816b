"""Docker's image commands with the real docker CLI and docker-py against one engine daemon per module:
load (skopeo's docker-archive, our own save), save | load round trips with the same IDs, import with
--change, images/ls filters, inspect, history, tag, rmi (shared tags, several repositories, a container
using the image), prune; skopeo reads our save back; bad archives are refused and store nothing."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from tests.e2e.docker.dockerapi_util import journal
from tests.harness import EngineDaemon
from tests.support.images import busybox_docker_archive, busybox_layer_tar, busybox_oci_archive, image_id

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed")


@pytest.fixture(scope="module")
def d() -> Iterator[EngineDaemon]:
    daemon = EngineDaemon()
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


@pytest.fixture
def tmp() -> Iterator[Path]:
    p = Path(tempfile.mkdtemp(prefix="dimg-"))
    try:
        yield p
    finally:
        shutil.rmtree(p, ignore_errors=True)


def ids(d: EngineDaemon, *args: str) -> dict[str, str]:
    out = d.docker("images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", *args).stdout
    return dict(line.split(" ", 1) for line in out.splitlines() if line)  # type: ignore[misc]


def wipe(d: EngineDaemon) -> None:
    for iid in set(d.docker("images", "-aq", "--no-trunc").stdout.split()):
        d.docker("rmi", "-f", iid, check=False)
    assert d.docker("images", "-aq").stdout.split() == []


def collect(d: EngineDaemon) -> None:
    """A synchronous garbage collection (a throwaway lease deleted with --sync), so tests do not wait on gc's
    scheduler."""
    lease = d.ctr("-n", "moby", "leases", "create").stdout.split()[0]
    d.ctr("-n", "moby", "leases", "delete", "--sync", lease)


def wait_no_content(d: EngineDaemon) -> None:
    """Collect, then check that namespace moby holds no content and no lease."""
    collect(d)
    assert d.ctr("-n", "moby", "content", "ls", "-q").stdout.split() == []
    assert d.ctr("-n", "moby", "leases", "ls", "-q").stdout.split() == []


@needs_skopeo
def test_load_skopeo_archive_then_save_load_round_trip(d: EngineDaemon, tmp: Path) -> None:
    wipe(d)
    subprocess.run(["skopeo", "copy", "--quiet", f"oci-archive:{busybox_oci_archive(tmp)}",
                    f"docker-archive:{tmp / 'sk.tar'}:busybox:latest"], check=True, capture_output=True)
    r = d.docker("load", "-i", str(tmp / "sk.tar"))
    assert r.stdout == "Loaded image: busybox:latest\n"
    assert ids(d) == {"busybox:latest": image_id()}
    d.docker("tag", "busybox", "mine/bb:2")
    d.docker("save", "-o", str(tmp / "ours.tar"), "busybox", "mine/bb:2")
    wipe(d)
    out = d.docker("load", "-i", str(tmp / "ours.tar")).stdout.splitlines()
    assert sorted(out) == ["Loaded image: busybox:latest", "Loaded image: mine/bb:2"]
    assert ids(d) == {"busybox:latest": image_id(), "mine/bb:2": image_id()}
    # through a pipe, as `docker save | docker load` (the image is there: loaded again, same ID, nothing new)
    before = len(journal(d, "type=image.loaded"))
    piped = subprocess.run("docker save mine/bb:2 | docker load", shell=True, env=d.env, capture_output=True,
                           text=True, timeout=60)
    assert piped.returncode == 0, piped.stderr
    assert piped.stdout == "Loaded image: mine/bb:2\n"
    assert ids(d) == {"busybox:latest": image_id(), "mine/bb:2": image_id()}
    assert len(journal(d, "type=image.loaded")) == before + 1
    # skopeo reads our save as a docker-archive
    r2 = subprocess.run(["skopeo", "inspect", f"docker-archive:{tmp / 'ours.tar'}:busybox:latest"],
                        capture_output=True, text=True, check=True)
    assert json.loads(r2.stdout)["Layers"]


def test_import_with_changes_inspect_history(d: EngineDaemon, tmp: Path) -> None:
    layer = busybox_layer_tar(tmp)
    r = d.docker("import", str(layer), "--change", 'CMD ["sh"]', "--change", "ENV A=b", "--change",
                 "EXPOSE 8080", "-m", "from the test", "myimg:1")
    iid = r.stdout.strip()
    assert iid.startswith("sha256:") and len(iid) == 71
    info = json.loads(d.docker("image", "inspect", "myimg:1").stdout)[0]
    assert info["Id"] == iid and info["RepoTags"] == ["myimg:1"]
    assert info["Config"]["Cmd"] == ["sh"] and info["Config"]["Env"] == ["A=b"]
    assert info["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert info["Comment"] == "from the test" and info["Os"] == "linux"
    assert info["RootFS"]["Type"] == "layers" and len(info["RootFS"]["Layers"]) == 1
    assert info["GraphDriver"]["Name"] == "overlayfs"
    hist = d.docker("history", "--no-trunc", "--format", "{{.ID}}|{{.Comment}}", "myimg:1").stdout.splitlines()
    assert hist == [f"{iid}|from the test"]
    # the imported image runs, with its ENV
    assert d.docker("run", "--rm", "--network", "none", "myimg:1", "sh", "-c", "echo $A").stdout == "b\n"
    # stdin import without a name: an untagged (dangling) image
    with open(layer, "rb") as f:
        r = subprocess.run(["docker", "import", "-"], stdin=f, env=d.env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in d.docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout
    bad = d.docker("import", "--change", "ONBUILD RUN true", str(layer), "x:1", check=False)
    assert bad.returncode == 1 and "onbuild is not a valid change command" in bad.stderr
    events = {e["type"] for e in journal(d, "type=image.imported")}
    assert events == {"image.imported"}


def test_tag_rmi_dangling_prune(d: EngineDaemon, tmp: Path) -> None:
    wipe(d)
    d.docker("load", "-i", str(busybox_docker_archive(tmp)))
    d.docker("tag", "busybox", "busybox:two")
    d.docker("tag", busybox_id := image_id()[7:19], "other/repo:1")
    assert set(ids(d)) == {"busybox:latest", "busybox:two", "other/repo:1"}
    r = d.docker("rmi", busybox_id, check=False)
    assert r.returncode == 1
    assert (f"conflict: unable to delete {busybox_id} (must be forced) - image is referenced in multiple "
            "repositories") in r.stderr
    assert d.docker("rmi", "busybox:two").stdout == "Untagged: busybox:two\n"
    assert d.docker("rmi", "other/repo:1").stdout == "Untagged: other/repo:1\n"
    # re-loading a different image under the same name leaves the old one dangling
    (tmp / "v2").mkdir()
    d.docker("load", "-i", str(busybox_docker_archive(tmp / "v2", config_extra={"Labels": {"v": "2"}})))
    dangling = d.docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()
    assert dangling == [image_id()]
    assert d.docker("images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", "dangling=true").stdout == \
        "<none>:<none>\n"
    assert d.docker("images", "-q", "--filter", "label=v=2").stdout.strip() != ""
    assert d.docker("images", "-q", "--filter", "reference=busy*").stdout.strip() != ""
    out = d.docker("image", "prune", "-f").stdout
    assert f"deleted: {image_id()}" in out
    assert d.docker("images", "-q", "--filter", "dangling=true").stdout == ""
    r = d.docker("rmi", "busybox:nope", check=False)
    assert r.returncode == 1 and "Error response from daemon: No such image: busybox:nope" in r.stderr
    r = d.docker("image", "inspect", "nope", check=False)
    assert r.returncode == 1 and "No such image: nope" in r.stderr
    types = [e["type"] for e in journal(d, "type=image.*")]
    for t in ("image.tagged", "image.untagged", "image.removed", "image.pruned", "image.loaded"):
        assert t in types, t


def test_rmi_of_an_image_a_container_uses(d: EngineDaemon, tmp: Path) -> None:
    wipe(d)
    d.docker("load", "-i", str(busybox_docker_archive(tmp)))
    cid = d.docker("create", "--network", "none", "busybox", "true").stdout.strip()
    try:
        r = d.docker("rmi", "busybox", check=False)
        assert r.returncode == 1
        assert (f"conflict: unable to delete busybox:latest (must be forced) - container {cid[:12]} is using its "
                f"referenced image {image_id()[7:19]}") in r.stderr
        r = d.docker("rmi", image_id()[7:19], check=False)
        assert f"image is being used by stopped container {cid[:12]}" in r.stderr
        assert d.docker("rmi", "-f", "busybox").stdout == "Untagged: busybox:latest\n"
        assert d.docker("images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split() == [image_id()]
    finally:
        d.docker("rm", "-f", cid, check=False)
    d.docker("image", "prune", "-f")
    assert d.docker("images", "-aq").stdout == ""


def test_bad_archives_are_refused_and_store_nothing(d: EngineDaemon, tmp: Path) -> None:
    wipe(d)
    arc = busybox_docker_archive(tmp)
    (tmp / "trunc.tar").write_bytes(arc.read_bytes()[:600_000])
    r = d.docker("load", "-i", str(tmp / "trunc.tar"), check=False)
    assert r.returncode == 1 and "invalid tar archive" in r.stderr
    (tmp / "junk.tar").write_bytes(b"\0" * 4096)
    r = d.docker("load", "-i", str(tmp / "junk.tar"), check=False)
    assert r.returncode == 1 and "neither manifest.json nor index.json" in r.stderr
    assert d.docker("images", "-aq").stdout == ""
    status, body = d.request("POST", "/images/create?fromSrc=http://example.invalid/x.tar")
    assert status == 400 and "only fromSrc=-" in body["message"]
    # a blob whose bytes do not match its digest: refused at commit, and the blobs already in go with the lease
    oci = busybox_oci_archive(tmp)
    with tarfile.open(oci) as tin, tarfile.open(tmp / "flip.tar", "w") as tout:
        for m in tin.getmembers():
            data = tin.extractfile(m).read()  # type: ignore[union-attr]
            if len(data) > 100_000:
                data = data[:-1024] + bytes([data[-1024] ^ 1]) + data[-1023:]
            tout.addfile(m, io.BytesIO(data))
    wait_no_content(d)  # else the good blob is still on disk and the archive's copy is never read
    r = d.docker("load", "-i", str(tmp / "flip.tar"), check=False)
    assert r.returncode == 1 and "does not match its digest" in r.stderr
    assert d.docker("images", "-aq").stdout == ""
    wait_no_content(d)


def test_docker_py(d: EngineDaemon, tmp: Path) -> None:
    wipe(d)
    client = docker.DockerClient(base_url=d.docker_host, version="1.47")
    try:
        loaded = client.images.load(busybox_docker_archive(tmp).read_bytes())
        assert [i.id for i in loaded] == [image_id()]
        img = client.images.get("busybox")
        assert img.tags == ["busybox:latest"] and img.attrs["Config"]["Cmd"] == ["sh"]
        assert img.tag("pyrepo/x", "7")
        assert {t for i in client.images.list() for t in i.tags} == {"busybox:latest", "pyrepo/x:7"}
        data = b"".join(client.images.get("pyrepo/x:7").save(named="pyrepo/x:7"))
        client.images.remove(image_id(), force=True)
        assert client.images.list() == []
        again = client.images.load(data)
        assert [i.id for i in again] == [image_id()] and again[0].tags == ["pyrepo/x:7"]
        hist = client.images.get("pyrepo/x:7").history()
        assert hist[0]["Id"] == image_id()
        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get("nope:nope")
        pruned = client.images.prune(filters={"dangling": False})
        assert pruned["ImagesDeleted"] and client.images.list() == []
    finally:
        client.close()


def test_journal_replays_after_the_image_commands(d: EngineDaemon) -> None:
    """Every projection rebuilt from the module's journal (loads, imports, tags, removals, prunes) matches."""
    status, report = d.request("POST", "/engine/journal/verify")
    assert status == 200 and report["ok"], report
    assert report["tables"]["images"]["ok"] and report["tables"]["content"]["ok"]
