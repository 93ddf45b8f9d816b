"""The real docker CLI (28.2.2) pulling from and pushing to a real registry (Debian's docker-registry on
127.0.0.1) through engine's Docker API: `docker pull` by tag and digest with Docker's progress output,
`docker login` against an htpasswd registry, `docker push` read back by skopeo, and Docker's messages for
a missing manifest and a missing local image. The pulled image is checked with ctr in the moby namespace."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import EngineDaemon
from tests.support import images
from tests.support.registry import TestRegistry, random_oci_layout

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[EngineDaemon, TestRegistry, TestRegistry]]:
    reg = TestRegistry().start()
    auth = TestRegistry({"bob": "pa55"}).start()
    d = EngineDaemon()
    work = Path(tempfile.mkdtemp(prefix="dpull-"))
    try:
        archive = images.busybox_oci_archive(work, "bb:1", gz=True)
        reg.skopeo_copy(f"oci-archive:{archive}", "bb:1")
        auth.skopeo_copy(f"oci-archive:{archive}", "bb:1")
        d.start()
        yield d, reg, auth
    finally:
        d.cleanup()
        reg.stop()
        auth.stop()
        shutil.rmtree(work, ignore_errors=True)


def docker(d: EngineDaemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], env=d.env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, f"docker {args}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{d.log()[-3000:]}"
    return proc


def moby_images(d: EngineDaemon) -> list[str]:
    return d.ctr("-n", "moby", "images", "ls", "-q").stdout.split()


def test_docker_pull_by_tag_and_digest(env: tuple[EngineDaemon, TestRegistry, TestRegistry]) -> None:
    d, reg, _ = env
    digest = reg.skopeo_inspect("bb:1")["Digest"]
    out = docker(d, "pull", f"{reg.host}/bb:1").stdout
    assert "1: Pulling from bb" in out
    assert f"Digest: {digest}" in out
    assert f"Status: Downloaded newer image for {reg.host}/bb:1" in out
    assert out.strip().endswith(f"{reg.host}/bb:1")
    assert f"{reg.host}/bb:1" in moby_images(d)
    again = docker(d, "pull", f"{reg.host}/bb:1").stdout
    assert f"Status: Image is up to date for {reg.host}/bb:1" in again
    by_digest = docker(d, "pull", f"{reg.host}/bb@{digest}").stdout
    assert f"Digest: {digest}" in by_digest
    assert f"{reg.host}/bb@{digest}" in moby_images(d)
    # the pulled image is the docker CLI's: listed and runnable
    assert f"{reg.host}/bb" in docker(d, "images", "--format", "{{.Repository}}:{{.Tag}}").stdout
    ran = docker(d, "run", "--rm", f"{reg.host}/bb:1", "sh", "-c", "test -x /bin/busybox && echo ran && exit 7",
                 check=False)
    assert (ran.returncode, ran.stdout) == (7, "ran\n"), ran.stderr


def test_a_pull_that_moves_a_tag_leaves_the_old_image_dangling(
        env: tuple[EngineDaemon, TestRegistry, TestRegistry], tmp_path: Path) -> None:
    d, reg, _ = env
    first = images.busybox_oci_archive(tmp_path, "mv:1", gz=True, config_extra={"Labels": {"v": "1"}})
    reg.skopeo_copy(f"oci-archive:{first}", "mv:1")
    docker(d, "pull", f"{reg.host}/mv:1")
    old_id = docker(d, "image", "inspect", "-f", "{{.Id}}", f"{reg.host}/mv:1").stdout.strip()
    (tmp_path / "b").mkdir()
    other = images.busybox_oci_archive(tmp_path / "b", "mv:1", gz=True, config_extra={"Labels": {"v": "2"}})
    reg.skopeo_copy(f"oci-archive:{other}", "mv:1")
    docker(d, "pull", f"{reg.host}/mv:1")
    new_id = docker(d, "image", "inspect", "-f", "{{.Id}}", f"{reg.host}/mv:1").stdout.strip()
    assert new_id != old_id
    dangling = docker(d, "images", "-q", "--no-trunc", "--filter", "dangling=true").stdout.split()
    assert old_id in dangling


def test_docker_pull_missing_tag_is_dockers_error(env: tuple[EngineDaemon, TestRegistry, TestRegistry]) -> None:
    d, reg, _ = env
    proc = docker(d, "pull", f"{reg.host}/bb:nope", check=False)
    assert proc.returncode == 1
    assert (f"Error response from daemon: manifest for {reg.host}/bb:nope not found: manifest unknown: "
            "manifest unknown") in proc.stderr


def test_docker_login_then_pull_and_push(env: tuple[EngineDaemon, TestRegistry, TestRegistry]) -> None:
    d, _, auth = env
    # (the CLI answers a 401 on pull with an interactive login prompt, so the refusal is checked on the API)
    status, body = d.request("POST", f"/images/create?fromImage={auth.host}/bb&tag=1",
                             headers={"X-Registry-Auth": "e30="})
    assert status == 401 and "no basic auth credentials" in body["message"]
    bad = docker(d, "login", "-u", "bob", "-p", "wrong", auth.host, check=False)
    assert bad.returncode == 1
    assert f"login attempt to http://{auth.host}/v2/ failed with status: 401 Unauthorized" in bad.stderr
    assert "Login Succeeded" in docker(d, "login", "-u", "bob", "-p", "pa55", auth.host).stdout
    docker(d, "pull", f"{auth.host}/bb:1")
    # push the pulled image under another name (tagged through ctr: `docker tag` is another endpoint)
    d.ctr("-n", "moby", "images", "tag", f"{auth.host}/bb:1", f"{auth.host}/pushed:2")
    out = docker(d, "push", f"{auth.host}/pushed:2").stdout
    assert f"The push refers to repository [{auth.host}/pushed]" in out
    assert "Mounted from bb" in out
    digest = auth.skopeo_inspect("pushed:2")["Digest"]
    assert f"2: digest: {digest} size:" in out


def test_docker_push_of_missing_image(env: tuple[EngineDaemon, TestRegistry, TestRegistry]) -> None:
    d, reg, _ = env
    proc = docker(d, "push", f"{reg.host}/absent:1", check=False)
    assert proc.returncode == 1
    assert f"An image does not exist locally with the tag: {reg.host}/absent" in proc.stderr


def test_docker_pull_bad_blob_fails_in_the_stream(env: tuple[EngineDaemon, TestRegistry, TestRegistry],
                                                  tmp_path: Path) -> None:
    d, reg, _ = env
    layout, _ = random_oci_layout(tmp_path / "c", [100_000], seed=9, with_busybox=False)
    reg.skopeo_copy(f"oci:{layout}", "corrupt:1")
    _status, body, _h = reg.get("/v2/corrupt/manifests/1", {"Accept": images.OCI_MANIFEST})
    hexd = json.loads(body)["layers"][0]["digest"].split(":")[1]
    blob = reg.dir / "data/docker/registry/v2/blobs/sha256" / hexd[:2] / hexd / "data"
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    proc = docker(d, "pull", f"{reg.host}/corrupt:1", check=False)
    assert proc.returncode == 1
    assert "Pulling from corrupt" in proc.stdout  # the stream had started: the error is its last line
    assert f"failed to verify sha256:{hexd}" in proc.stderr
    assert f"{reg.host}/corrupt:1" not in moby_images(d)


def test_daemon_killed_during_pull_resumes_after_restart(env: tuple[EngineDaemon, TestRegistry, TestRegistry],
                                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENGINE_FAULT_PULL=layer:partial SIGKILLs the daemon after the first MiB of a layer is written."""
    _, reg, _ = env
    layout, _ = random_oci_layout(tmp_path / "k", [3 << 20], seed=13)
    reg.skopeo_copy(f"oci:{layout}", "killed:1")
    d = EngineDaemon()
    try:
        monkeypatch.setenv("ENGINE_FAULT_PULL", "layer:partial")
        d.start()
        monkeypatch.delenv("ENGINE_FAULT_PULL")
        proc = docker(d, "pull", f"{reg.host}/killed:1", check=False)
        assert proc.returncode != 0
        assert d.proc is not None and d.proc.wait(10) == -9
        d.start()  # the environment no longer has the fault
        assert f"{reg.host}/killed:1" not in moby_images(d)  # no dangling record
        active = d.ctr("-n", "moby", "content", "active").stdout
        assert "pull-sha256:" in active  # the partial ingest survived, kept by the pull's lease
        out = docker(d, "pull", f"{reg.host}/killed:1").stdout
        assert f"Status: Downloaded newer image for {reg.host}/killed:1" in out
        assert "pull-sha256:" not in d.ctr("-n", "moby", "content", "active").stdout
        ran = docker(d, "run", "--rm", f"{reg.host}/killed:1", "sh", "-c", "test -d /data/s1300 && exit 7",
                     check=False)
        assert ran.returncode == 7, ran.stderr
        started = d.request("GET", "/engine/journal?type=content.ingest_started")[1]
        text = started.decode() if isinstance(started, bytes) else json.dumps(started)
        big = max(json.loads(reg.get("/v2/killed/manifests/1", {"Accept": images.OCI_MANIFEST})[1])["layers"],
                  key=lambda x: x["size"])["digest"]
        assert sum(f"pull-{big}" in line for line in text.splitlines()) == 1  # resumed, not started over
    finally:
        d.cleanup()


def test_docker_py_pull_push_and_registry_data(env: tuple[EngineDaemon, TestRegistry, TestRegistry]) -> None:
    import docker as dockerpy

    d, reg, _ = env
    client = dockerpy.DockerClient(base_url=d.docker_host)
    try:
        img = client.images.pull(f"{reg.host}/bb", tag="1")
        assert f"{reg.host}/bb:1" in img.tags
        assert img.tag(f"{reg.host}/pypushed", "1")
        lines = list(client.api.push(f"{reg.host}/pypushed", tag="1", stream=True, decode=True))
        assert "error" not in lines[-1] and lines[-1].get("aux", {}).get("Tag") == "1"
        digest = lines[-1]["aux"]["Digest"]
        assert reg.skopeo_inspect("pypushed:1")["Digest"] == digest
        data = client.images.get_registry_data(f"{reg.host}/pypushed:1")
        assert data.id == digest and data.has_platform("linux")
    finally:
        client.close()
