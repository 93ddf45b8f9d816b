"""`docker volume create/ls/inspect/rm/prune` with the real docker CLI: Docker's output and errors, and the
journal records each change."""

from __future__ import annotations

import json
import time

import pytest

from tests.e2e.docker.dockerapi_util import journal
from tests.harness import EngineDaemon


@pytest.fixture(scope="module")
def d():  # type: ignore[no-untyped-def]
    daemon = EngineDaemon()
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


def test_create_ls_inspect_rm(d: EngineDaemon) -> None:
    assert d.docker("volume", "create", "--label", "team=a", "vol-a").stdout.strip() == "vol-a"
    assert d.docker("volume", "create", "vol-a").stdout.strip() == "vol-a"  # idempotent
    d.docker("volume", "create", "-d", "local", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "vol-t")
    ls = d.docker("volume", "ls", "--format", "{{.Driver}} {{.Name}}").stdout.split("\n")
    assert "local vol-a" in ls and "local vol-t" in ls
    assert d.docker("volume", "ls", "-q", "--filter", "label=team=a").stdout.split() == ["vol-a"]
    assert d.docker("volume", "ls", "-q", "--filter", "name=vol-t").stdout.split() == ["vol-t"]
    info = json.loads(d.docker("volume", "inspect", "vol-t").stdout)[0]
    assert info["Name"] == "vol-t" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Options"] == {"type": "tmpfs", "device": "tmpfs", "o": "size=1m"}
    assert info["Mountpoint"] == str(d.root / "volumes" / "vol-t" / "_data")
    assert d.docker("volume", "inspect", "-f", "{{.Labels.team}}", "vol-a").stdout.strip() == "a"
    assert d.docker("volume", "rm", "vol-a", "vol-t").stdout.split() == ["vol-a", "vol-t"]
    assert d.docker("volume", "ls", "-q").stdout.split() == []
    types = [e["type"] for e in journal(d, "type=volume.*")]
    assert types == ["volume.created", "volume.created", "volume.removed", "volume.removed"]


def test_prune_removes_anonymous_only_unless_all(d: EngineDaemon) -> None:
    status, anon = d.request("POST", "/volumes/create", {})
    assert status == 201 and len(anon["Name"]) == 64
    d.docker("volume", "create", "named-p")
    out = d.docker("volume", "prune", "-f").stdout
    assert anon["Name"] in out and "named-p" not in out
    out = d.docker("volume", "prune", "-f", "--all").stdout
    assert "named-p" in out
    assert d.docker("volume", "ls", "-q").stdout.split() == []


@pytest.mark.parametrize(("args", "message"), [
    (["volume", "inspect", "nope"], "get nope: no such volume"),
    (["volume", "rm", "nope"], "get nope: no such volume"),
    (["volume", "create", "x"], "includes invalid characters for a local volume name"),
    (["volume", "create", "-d", "nfsx", "vv"], 'plugin "nfsx" not found'),
    (["volume", "create", "-o", "bogus=1", "vv"], "invalid option"),
])
def test_errors(d: EngineDaemon, args: list[str], message: str) -> None:
    before = journal(d)[-1]["seq"]
    p = d.docker(*args, check=False)
    assert p.returncode != 0 and message in p.stderr, p.stderr
    assert journal(d)[-1]["seq"] == before


def test_bad_json_is_400(d: EngineDaemon) -> None:
    status, body = d.request("POST", "/volumes/create", b"{not json")
    assert status == 400 and "invalid JSON" in body["message"]
    status, body = d.request("POST", "/volumes/create", {"Name": 7})
    assert status == 400 and "Name must be a string" in body["message"]
    status, body = d.request("GET", '/volumes?filters={"bogus":{"x":true}}')
    assert status == 400 and "invalid filter 'bogus'" in body["message"]


def test_volume_events(d: EngineDaemon) -> None:
    since = str(int(time.time()) - 1)
    d.docker("volume", "create", "evv")
    d.docker("volume", "rm", "evv")
    out = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1),
                   "--filter", "type=volume", "--format", "{{.Type}} {{.Action}} {{.Actor.ID}} {{.Actor.Attributes.driver}}").stdout
    assert out.splitlines()[-2:] == ["volume create evv local", "volume destroy evv local"]
