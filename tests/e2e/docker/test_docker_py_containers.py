"""Container lifecycle with docker-py against engine: containers.create/run(detach)/get/list(filters)/
start/stop/kill/restart/pause/unpause/wait/rename/update/remove/prune, attrs as docker-py reads them, the
low-level APIClient, and docker-py's exceptions for Docker's status codes."""

from __future__ import annotations

import time

import docker
import pytest

from tests.e2e.docker.dockerapi_util import wait_for
from tests.harness import EngineDaemon


@pytest.fixture(scope="module")
def client(d: EngineDaemon):  # type: ignore[no-untyped-def]
    c = docker.DockerClient(base_url=d.docker_host, version="1.50", timeout=60)
    try:
        yield c
    finally:
        c.close()


def test_create_start_inspect_stop_remove(client: docker.DockerClient) -> None:
    c = client.containers.create("busybox", ["sleep", "100"], name="py1", labels={"a": "b"},
                                 environment={"FOO": "bar"}, working_dir="/tmp", mem_limit="64m")
    assert c.status == "created" and c.name == "py1" and c.labels == {"a": "b"}
    assert "FOO=bar" in c.attrs["Config"]["Env"] and c.attrs["HostConfig"]["Memory"] == 64 << 20
    assert c.image.id.startswith("sha256:")
    c.start()
    c.reload()
    assert c.status == "running" and c.attrs["State"]["Pid"] > 0
    assert client.containers.get(c.id[:12]).id == c.id
    assert [x.name for x in client.containers.list(filters={"label": "a=b"})] == ["py1"]
    c.stop(timeout=1)
    c.reload()
    assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 137
    assert c.wait() == {"StatusCode": 137, "Error": None}
    c.remove()
    with pytest.raises(docker.errors.NotFound, match="No such container"):
        client.containers.get("py1")


def test_run_detach_wait_logs(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "echo out; echo err >&2; exit 7"], detach=True)
    assert c.wait(timeout=30)["StatusCode"] == 7
    assert c.logs(stdout=True, stderr=False).strip() == b"out"
    c.remove()


def test_kill_pause_restart_rename_update(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "trap 'exit 9' HUP; while true; do sleep 0.05; done"],
                              detach=True, name="py2")
    c.pause()
    c.reload()
    assert c.status == "paused"
    assert [x.name for x in client.containers.list(filters={"status": "paused"})] == ["py2"]
    c.unpause()
    c.kill(signal="SIGHUP")
    assert c.wait()["StatusCode"] == 9
    c.restart(timeout=1)
    c.reload()
    assert c.status == "running"
    c.rename("py3")
    c.reload()
    assert c.name == "py3"
    c.update(mem_limit="96m", memswap_limit="192m", restart_policy={"Name": "on-failure", "MaximumRetryCount": 1})
    c.reload()
    assert c.attrs["HostConfig"]["Memory"] == 96 << 20
    assert c.attrs["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 1}
    with pytest.raises(docker.errors.APIError) as err:
        c.remove()
    assert err.value.status_code == 409
    c.remove(force=True)


def test_errors_and_low_level(d: EngineDaemon, client: docker.DockerClient) -> None:
    api = client.api
    with pytest.raises(docker.errors.ImageNotFound):
        api.create_container("nosuchimage:1", "true")
    with pytest.raises(docker.errors.APIError) as err:
        api.create_container("busybox", "true", host_config=api.create_host_config(mem_limit="1m"))
    assert err.value.status_code == 400 and "Minimum memory limit allowed is 6MB" in str(err.value)
    first = api.create_container("busybox", "true", name="dup")
    with pytest.raises(docker.errors.APIError) as err:
        api.create_container("busybox", "true", name="dup")
    assert err.value.status_code == 409 and "is already in use by container" in str(err.value)
    with pytest.raises(docker.errors.NotFound):
        api.start("nosuch")
    api.start(first["Id"])
    assert api.wait(first["Id"])["StatusCode"] == 0
    listed = api.containers(all=True, filters={"name": "dup"})
    assert len(listed) == 1 and listed[0]["State"] == "exited" and listed[0]["Names"] == ["/dup"]
    assert listed[0]["Status"].startswith("Exited (0)")
    sized = api.containers(all=True, size=True, filters={"id": first["Id"]})
    assert "SizeRw" in sized[0] and "SizeRootFs" in sized[0]
    result = client.containers.prune(filters={"label": "nolabel-h3"})
    assert result["ContainersDeleted"] is None
    result = client.containers.prune()
    assert first["Id"] in result["ContainersDeleted"]


def test_wait_removed_with_auto_remove(client: docker.DockerClient) -> None:
    c = client.containers.run("busybox", ["sh", "-c", "sleep 0.3"], detach=True, auto_remove=True)
    t0 = time.monotonic()
    assert c.wait(condition="removed")["StatusCode"] == 0
    assert time.monotonic() - t0 < 20
    wait_for(lambda: not client.containers.list(all=True, filters={"id": c.id}), what="removed")
