"""`docker commit` with the real docker CLI: the container's changes (a new file, a deleted one) become a
layer on top of its image, `--change` and `-m`/`-a` land in the config and history, and a container of the
new image sees the change; bad input is refused and creates nothing."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.docker.dockerapi_util import journal
from tests.harness import EngineDaemon


def test_commit_then_run_sees_the_change(d: EngineDaemon) -> None:
    d.docker("run", "--name", "c1", "busybox", "sh", "-c", "echo committed > /hello; rm /bin/vi")
    out = d.docker("commit", "-m", "add hello", "-a", "tester", "--change", "ENV GREETING=hi",
                   "--change", 'CMD ["cat", "/hello"]', "c1", "mine:1").stdout.strip()
    assert out.startswith("sha256:")
    assert d.docker("run", "--rm", "mine:1").stdout == "committed\n"
    assert d.docker("run", "--rm", "mine:1", "sh", "-c", "echo $GREETING; test -e /bin/vi || echo gone").stdout == \
        "hi\ngone\n"
    info = json.loads(d.docker("image", "inspect", "mine:1").stdout)[0]
    assert info["Id"] == out and len(info["RootFS"]["Layers"]) == 2 and info["Author"] == "tester"
    assert info["Config"]["Cmd"] == ["cat", "/hello"]
    hist = d.docker("history", "--no-trunc", "--format", "{{.Comment}}", "mine:1").stdout.splitlines()
    assert hist[0] == "add hello"
    ev = [e for e in journal(d, "type=docker_container.committed")]
    assert ev and ev[-1]["event"]["image_id"] == out and ev[-1]["event"]["ref"].endswith("mine:1")
    shown = d.docker("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "event=commit",
                     "--format", "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.imageRef}} "
                     "{{.Actor.Attributes.comment}}").stdout.splitlines()
    assert shown == ["commit c1 mine:1 add hello"]
    d.docker("rm", "c1")


def test_commit_of_a_running_container_and_untagged(d: EngineDaemon) -> None:
    d.docker("run", "-d", "--name", "c2", "busybox", "sh", "-c", "echo x > /run-file; sleep 60")
    try:
        image_id = d.docker("commit", "c2").stdout.strip()
        assert d.docker("inspect", "-f", "{{.State.Status}}", "c2").stdout.strip() == "running"  # resumed
        assert d.docker("run", "--rm", image_id, "cat", "/run-file").stdout == "x\n"
    finally:
        d.docker("rm", "-f", "c2")


@pytest.mark.parametrize(("args", "message"), [
    (["commit", "nope"], "No such container: nope"),
    (["commit", "--change", "FROB x", "c3"], "frob is not a valid change command"),
])
def test_bad_input(d: EngineDaemon, args: list[str], message: str) -> None:
    d.docker("create", "--name", "c3", "busybox", "true")
    try:
        before = d.docker("images", "-aq").stdout
        p = d.docker(*args, check=False)
        assert p.returncode != 0 and message in p.stderr, p.stderr
        assert d.docker("images", "-aq").stdout == before
    finally:
        d.docker("rm", "c3")
