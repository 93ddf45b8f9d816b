"""`docker network create/ls/inspect/rm/prune/connect` with the real docker CLI against a test daemon:
Docker's output and errors, the predefined networks, and the journal records each change."""

from __future__ import annotations

import ipaddress
import json
import random

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


def _subnet() -> str:
    from engine.network.links import host_routes

    routes = host_routes()
    while True:
        cand = ipaddress.IPv4Network(f"10.{random.randint(208, 215)}.{random.randint(0, 255)}.0/24")
        if not any(cand.overlaps(r) for r in routes):
            return str(cand)


def test_predefined_networks(d: EngineDaemon) -> None:
    ls = d.docker("network", "ls", "--format", "{{.Name}} {{.Driver}} {{.Scope}}").stdout.split("\n")
    assert {"bridge bridge local", "host host local", "none null local"} <= set(ls)
    info = json.loads(d.docker("network", "inspect", "bridge").stdout)[0]
    assert info["Options"]["com.docker.network.bridge.default_bridge"] == "true"
    assert info["IPAM"]["Config"][0]["Subnet"]
    r = d.docker("network", "rm", "bridge", check=False)
    assert r.returncode != 0 and "bridge is a pre-defined network and cannot be removed" in r.stderr
    assert d.docker("network", "ls", "-q", "--filter", "type=builtin").stdout.split().__len__() == 3


def test_create_inspect_ls_rm(d: EngineDaemon) -> None:
    subnet = _subnet()
    net = ipaddress.IPv4Network(subnet)
    gw = str(net[1])
    nid = d.docker("network", "create", "--subnet", subnet, "--ip-range", str(list(net.subnets(new_prefix=26))[1]),
                   "--label", "team=a", "-o", "com.example.x=1", "--internal", "n-one").stdout.strip()
    assert len(nid) == 64
    info = json.loads(d.docker("network", "inspect", "n-one").stdout)[0]
    assert info["Id"] == nid and info["Name"] == "n-one" and info["Driver"] == "bridge"
    assert info["Internal"] is True and info["Labels"] == {"team": "a"}
    assert info["IPAM"]["Config"] == [{"Subnet": subnet, "Gateway": gw,
                                       "IPRange": str(list(net.subnets(new_prefix=26))[1])}]
    assert info["Containers"] == {}
    assert d.docker("network", "inspect", "-f", "{{.Id}}", nid[:12]).stdout.strip() == nid
    assert d.docker("network", "ls", "-q", "--no-trunc", "--filter", "label=team=a").stdout.split() == [nid]
    assert d.docker("network", "ls", "--filter", "type=custom", "--format", "{{.Name}}").stdout.split() == ["n-one"]
    # errors, with Docker's words
    r = d.docker("network", "create", "--subnet", subnet, "n-one", check=False)
    assert r.returncode != 0 and "network with name n-one already exists" in r.stderr
    r = d.docker("network", "create", "--subnet", subnet, "n-two", check=False)
    assert r.returncode != 0 and "Pool overlaps with other one on this address space" in r.stderr
    r = d.docker("network", "create", "--subnet", "10.300.0.0/24", "n-three", check=False)
    assert r.returncode != 0 and "invalid CIDR address: 10.300.0.0/24" in r.stderr
    r = d.docker("network", "inspect", "n-nope", check=False)
    assert r.returncode != 0 and "network n-nope not found" in r.stderr
    assert d.docker("network", "rm", "n-one").stdout.strip() == "n-one"
    assert "n-one" not in d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
    types = [e["type"] for e in journal(d, "type=network.*") if e["subject"] == nid]
    assert types == ["network.created", "network.removed"]


def test_default_subnet_and_prune(d: EngineDaemon) -> None:
    d.docker("network", "create", "--label", "p=1", "n-auto")
    info = json.loads(d.docker("network", "inspect", "n-auto").stdout)[0]
    assert ipaddress.IPv4Network(info["IPAM"]["Config"][0]["Subnet"])
    out = d.docker("network", "prune", "-f", "--filter", "label=p=1").stdout
    assert "n-auto" in out
    assert "n-auto" not in d.docker("network", "ls", "--format", "{{.Name}}").stdout.split()
