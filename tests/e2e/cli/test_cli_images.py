"""The `engine` CLI's image verbs against a real test daemon and a real registry (Debian's
docker-registry on 127.0.0.1): images/image ls/-q/--format, tag and rmi, save -o → rmi → load -i and
save | load through pipes, import of a rootfs tarball with --change and -m then run, history, image
inspect, image prune, pull with docker's progress lines (anonymous, and with credentials from a
DOCKER_CONFIG config.json), push read back by skopeo, and `run` pulling an image it does not have."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import ENGINE, EngineDaemon
from tests.support import images
from tests.support.registry import TestRegistry

pytestmark = pytest.mark.e2e

BB_ID = images.image_id()


@pytest.fixture(scope="module")
def env(shared_daemon: EngineDaemon) -> Iterator[tuple[EngineDaemon, TestRegistry, TestRegistry, Path]]:
    images.import_busybox(shared_daemon)
    reg = TestRegistry().start()
    auth = TestRegistry({"bob": "pa55"}).start()
    work = Path(tempfile.mkdtemp(prefix="cli-img-"))
    try:
        archive = images.busybox_oci_archive(work, "bb:1", gz=True)
        reg.skopeo_copy(f"oci-archive:{archive}", "bb:1")
        auth.skopeo_copy(f"oci-archive:{archive}", "bb:1")
        yield shared_daemon, reg, auth, work
    finally:
        reg.stop()
        auth.stop()
        shutil.rmtree(work, ignore_errors=True)


def engine(d: EngineDaemon, *args: str, check: bool = True, stdin: bytes | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    p = subprocess.run([ENGINE, *args], env={**d.env, **(env or {})}, capture_output=True, timeout=120,
                       input=stdin if stdin is not None else b"")
    if check:
        assert p.returncode == 0, f"engine {args}: {p.returncode}\n{p.stdout!r}\n{p.stderr!r}\n{d.log()[-2000:]}"
    return p


def out(d: EngineDaemon, *args: str) -> str:
    return engine(d, *args).stdout.decode()


def test_images_listing_tag_and_rmi(env) -> None:  # type: ignore[no-untyped-def]
    d = env[0]
    table = out(d, "images").splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    assert any(ln.startswith("busybox      latest    " + BB_ID[7:19] + "   ") for ln in table[1:])
    assert BB_ID[7:19] in out(d, "images", "-q").split()
    assert BB_ID in out(d, "image", "ls", "-q", "--no-trunc").split()
    engine(d, "tag", "busybox", "mine/tool:v1")
    assert "mine/tool:v1" in out(d, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert f"mine/tool v1 {BB_ID[7:19]}" in out(d, "images", "mine/tool", "--format", "{{.Repository}} {{.Tag}} {{.ID}}")
    assert out(d, "image", "inspect", "-f", "{{.Id}} {{json .RepoTags}}", "mine/tool:v1").startswith(BB_ID + " [")
    assert out(d, "rmi", "mine/tool:v1") == "Untagged: mine/tool:v1\n"
    p = engine(d, "rmi", "mine/tool:v1", check=False)
    assert p.returncode == 1 and p.stderr.decode().startswith("Error response from daemon: No such image: mine/tool:v1")
    p = engine(d, "image", "inspect", "nope:1", check=False)
    assert (p.returncode, p.stdout, p.stderr) == (1, b"[]\n", b"Error: No such image: nope:1\n")


def test_history(env) -> None:  # type: ignore[no-untyped-def]
    d = env[0]
    lines = out(d, "history", "busybox").splitlines()
    assert lines[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert lines[1].startswith(BB_ID[7:19] + "   ")
    assert out(d, "image", "history", "-q", "--no-trunc", "busybox").splitlines()[0] == BB_ID


def test_save_rmi_load_round_trip(env) -> None:  # type: ignore[no-untyped-def]
    d, _, _, work = env
    engine(d, "tag", "busybox", "roundtrip:1")
    tar = work / "rt.tar"
    engine(d, "save", "-o", str(tar), "roundtrip:1")
    assert tar.stat().st_size > 100_000
    engine(d, "rmi", "roundtrip:1")
    assert "roundtrip:1" not in out(d, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    assert out(d, "load", "-i", str(tar)) == "Loaded image: roundtrip:1\n"
    assert f"roundtrip:1 {BB_ID[7:19]}" in out(d, "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}")
    piped = engine(d, "save", "roundtrip:1").stdout
    engine(d, "rmi", "roundtrip:1")
    assert engine(d, "load", stdin=piped).stdout == b"Loaded image: roundtrip:1\n"
    assert engine(d, "run", "--rm", "roundtrip:1", "echo", "loaded-runs").stdout == b"loaded-runs\n"
    engine(d, "rmi", "roundtrip:1")


def test_import_with_changes_and_run(env) -> None:  # type: ignore[no-untyped-def]
    d, _, _, work = env
    (work / "layer").mkdir(exist_ok=True)
    rootfs = images.busybox_layer_tar(work / "layer")
    p = engine(d, "import", "-c", 'ENTRYPOINT ["/bin/echo"]', "-c", 'CMD ["from-import"]', "-c", "ENV IMP=1",
               "-m", "made by the cli", str(rootfs), "imported:v1")
    iid = p.stdout.decode().strip()
    assert iid.startswith("sha256:") and len(iid) == 71
    doc = json.loads(out(d, "image", "inspect", "imported:v1"))[0]
    assert doc["Id"] == iid and doc["Config"]["Cmd"] == ["from-import"] and "IMP=1" in doc["Config"]["Env"]
    assert doc["Comment"] == "made by the cli"
    assert engine(d, "run", "--rm", "imported:v1").stdout == b"from-import\n"
    assert engine(d, "import", "-", "imported:v2", stdin=rootfs.read_bytes()).stdout.decode().startswith("sha256:")
    engine(d, "rmi", "imported:v1", "imported:v2")


def test_image_prune(env) -> None:  # type: ignore[no-untyped-def]
    d, _, _, work = env
    (work / "layer2").mkdir(exist_ok=True)
    rootfs = images.busybox_layer_tar(work / "layer2")
    engine(d, "import", "-c", "ENV X=dangling", str(rootfs), "dangle:1")
    engine(d, "import", "-c", "ENV X=other", str(rootfs), "dangle:1")  # the first one loses its tag
    assert "<none>:<none>" in out(d, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    p = out(d, "image", "prune", "-f")
    assert p.startswith("Deleted Images:\n") and p.rstrip().splitlines()[-1].startswith("Total reclaimed space:")
    assert "<none>:<none>" not in out(d, "images", "--format", "{{.Repository}}:{{.Tag}}").split()
    engine(d, "rmi", "dangle:1")


def test_pull_push_and_run_pulls(env) -> None:  # type: ignore[no-untyped-def]
    d, reg, _, _ = env
    digest = reg.skopeo_inspect("bb:1")["Digest"]
    p = out(d, "pull", f"{reg.host}/bb:1")
    assert p.startswith("1: Pulling from bb\n") and f"Digest: {digest}\n" in p
    assert f"Status: Downloaded newer image for {reg.host}/bb:1\n" in p and p.endswith(f"{reg.host}/bb:1\n")
    assert out(d, "pull", "-q", f"{reg.host}/bb:1") == f"{reg.host}/bb:1\n"
    engine(d, "tag", f"{reg.host}/bb:1", f"{reg.host}/pushed:v2")
    p = out(d, "push", f"{reg.host}/pushed:v2")
    assert "v2: digest: sha256:" in p
    assert reg.skopeo_inspect("pushed:v2")["Digest"].startswith("sha256:")
    engine(d, "rmi", f"{reg.host}/pushed:v2", f"{reg.host}/bb:1")
    p = engine(d, "run", "--rm", f"{reg.host}/bb:1", "echo", "pulled-by-run")
    assert p.stdout == b"pulled-by-run\n"
    assert f"Unable to find image '{reg.host}/bb:1' locally" in p.stderr.decode()
    p = engine(d, "pull", f"{reg.host}/missing:1", check=False)
    assert p.returncode == 1 and p.stderr.decode().startswith("Error response from daemon: ")
    p = engine(d, "run", "--rm", f"{reg.host}/missing:1", check=False)
    assert p.returncode == 125 and p.stderr.decode().splitlines()[-1].startswith("engine: Error response from daemon: ")
    engine(d, "rmi", f"{reg.host}/bb:1")


def test_pull_with_credentials_from_docker_config(env) -> None:  # type: ignore[no-untyped-def]
    d, _, auth, work = env
    p = engine(d, "pull", f"{auth.host}/bb:1", check=False)
    assert p.returncode == 1
    cfg = work / "dockercfg"
    cfg.mkdir(exist_ok=True)
    (cfg / "config.json").write_text(json.dumps({"auths": {auth.host: {"auth": base64.b64encode(b"bob:pa55").decode()}}}))
    p = engine(d, "pull", f"{auth.host}/bb:1", env={"DOCKER_CONFIG": str(cfg)})
    assert p.stdout.decode().endswith(f"{auth.host}/bb:1\n")
    engine(d, "rmi", f"{auth.host}/bb:1")
