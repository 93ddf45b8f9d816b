"""`docker network create/ls/inspect/rm/prune/connect` with the real docker CLI against a test daemon:
Docker's output and errors, the predefined networks, and the journal records each change."""

from __future__ import annotations

import ipaddress
import json
import random
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


@pytest.fixture(scope="module")
def busybox(d: EngineDaemon) -> str:
    from tests.support.images import import_busybox

    return import_busybox(d)


def _exec(d: EngineDaemon, name: str, script: str):  # type: ignore[no-untyped-def]
    """A probe inside a running container (exec, not a short `docker run --rm`: that one sometimes returns
    before its output arrived — a dockerd-role attach race, reported — which is not what these tests are
    about)."""
    return d.docker("exec", name, "sh", "-c", script, check=False, timeout=30)


def test_containers_reach_each_other_by_name_and_alias_not_across_networks(d: EngineDaemon, busybox: str) -> None:
    d.docker("network", "create", "--subnet", _subnet(), "n-app")
    d.docker("network", "create", "--subnet", _subnet(), "n-other")
    try:
        d.docker("run", "-d", "--name", "web", "--network", "n-app", "--network-alias", "www", "busybox",
                 "sh", "-c", "mkdir -p /w && echo hi-there > /w/index.html && exec httpd -f -p 80 -h /w")
        d.docker("run", "-d", "--name", "probe-app", "--network", "n-app", "busybox", "sleep", "300")
        d.docker("run", "-d", "--name", "probe-other", "--network", "n-other", "busybox", "sleep", "300")
        info = json.loads(d.docker("network", "inspect", "n-app").stdout)[0]
        eps = {c["Name"]: c for c in info["Containers"].values()}
        ep = eps["web"]
        assert ep["IPv4Address"].endswith("/24") and ep["MacAddress"].startswith("02:42:")
        ip = ep["IPv4Address"].split("/")[0]
        assert ip in _exec(d, "probe-app", "nslookup www").stdout
        out, errs = "", []
        deadline = time.monotonic() + 20  # httpd in "web" may still be starting
        while time.monotonic() < deadline:
            r = _exec(d, "probe-app", "wget -q -O - http://web/")
            out = r.stdout
            if r.returncode == 0:
                break
            errs.append(r.stderr.strip()[-200:])
            time.sleep(0.2)
        assert out.strip() == "hi-there", errs
        assert _exec(d, "probe-app", "wget -q -O - http://www/").stdout.strip() == "hi-there"
        # another network: neither the name nor the address
        r = _exec(d, "probe-other", "wget -q -O - http://web/")
        assert r.returncode != 0 and "hi-there" not in r.stdout
        probe = f"echo GET / | nc -w 2 {ip} 80 && echo connected"
        assert "connected" not in _exec(d, "probe-other", probe).stdout
        assert "connected" in _exec(d, "probe-app", probe).stdout  # the same probe on the right network does
        r = d.docker("network", "rm", "n-app", check=False)
        assert r.returncode != 0 and "has active endpoints" in r.stderr
    finally:
        d.docker("rm", "-f", "web", "probe-app", "probe-other", check=False)
        d.docker("network", "rm", "n-app", "n-other", check=False)


def test_published_port_from_localhost(d: EngineDaemon, busybox: str) -> None:
    name = "pub-" + secrets_hex()
    d.docker("run", "-d", "--name", name, "-p", "127.0.0.1::80", "busybox", "sh", "-c",
             "mkdir -p /w && echo pub > /w/index.html && exec httpd -f -p 80 -h /w")
    try:
        port = d.docker("port", name, "80/tcp").stdout.strip().rsplit(":", 1)[1]
        import subprocess
        import time

        for _ in range(30):
            r = subprocess.run(["/bin/busybox", "wget", "-q", "-O", "-", f"http://127.0.0.1:{port}/"],
                               capture_output=True, text=True, timeout=10)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        assert r.stdout.strip() == "pub"
    finally:
        d.docker("rm", "-f", name, check=False)


def secrets_hex() -> str:
    import secrets

    return secrets.token_hex(3)


def test_connect_disconnect_a_running_container(d: EngineDaemon, busybox: str) -> None:
    sub = _subnet()
    d.docker("network", "create", "--subnet", sub, "n-late")
    name = "late-" + secrets_hex()
    try:
        d.docker("run", "-d", "--name", name, "busybox", "sleep", "300")
        ip = str(ipaddress.IPv4Network(sub)[77])
        d.docker("network", "connect", "--alias", "latecomer", "--ip", ip, "n-late", name)
        info = json.loads(d.docker("network", "inspect", "n-late").stdout)[0]
        assert [c["IPv4Address"] for c in info["Containers"].values()] == [f"{ip}/24"]
        r = d.docker("exec", name, "ip", "-4", "addr")
        assert ip in r.stdout
        r = d.docker("network", "connect", "n-late", name, check=False)
        assert r.returncode != 0 and "already exists in network n-late" in r.stderr
        # the container started on the default bridge: its resolv.conf is the host's, so ask 127.0.0.11
        r = d.docker("exec", name, "nslookup", "latecomer", "127.0.0.11", timeout=30)
        assert ip in r.stdout
        d.docker("network", "disconnect", "n-late", name)
        assert json.loads(d.docker("network", "inspect", "n-late").stdout)[0]["Containers"] == {}
        assert ip not in d.docker("exec", name, "ip", "-4", "addr").stdout
        r = d.docker("network", "disconnect", "n-late", name, check=False)
        assert r.returncode != 0 and "is not connected to network n-late" in r.stderr
    finally:
        d.docker("rm", "-f", name, check=False)
        d.docker("network", "rm", "n-late", check=False)
    shown = d.docker("events", "--since", "0", "--until", str(int(time.time()) + 1), "--filter", "type=network",
                     "--filter", "network=n-late", "--format",
                     "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.type}}").stdout.splitlines()
    assert shown[0] == "create n-late bridge" and shown[-1] == "destroy n-late bridge"
    assert "connect n-late bridge" in shown and "disconnect n-late bridge" in shown


def test_published_port_survives_a_daemon_sigkill(busybox: str) -> None:
    """A daemon of its own (it is killed): a connection through the published port opened before the
    SIGKILL still carries data after it, and new connections work once the daemon is back."""
    import socket

    from tests.support.images import import_busybox

    d2 = EngineDaemon()
    try:
        d2.start()
        import_busybox(d2)
        d2.docker("run", "-d", "--name", "echo", "-p", "127.0.0.1::7", "busybox", "nc", "-ll", "-p", "7", "-e", "cat")
        port = int(d2.docker("port", "echo", "7/tcp").stdout.strip().rsplit(":", 1)[1])
        s = None
        for _ in range(50):
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"one\n")
                if s.recv(16) == b"one\n":
                    break
            except OSError:
                pass
            import time

            time.sleep(0.1)
        assert s is not None
        d2.kill()
        s.sendall(b"two\n")
        assert s.recv(16) == b"two\n"  # the kernel path needs no daemon
        d2.start()
        s.sendall(b"three\n")
        assert s.recv(16) == b"three\n"  # recovery replaced the table without breaking the connection
        s.close()
        assert d2.docker("port", "echo", "7/tcp").stdout.strip().endswith(f":{port}")
    finally:
        d2.cleanup()


def test_journal_replays_after_the_network_commands(d: EngineDaemon) -> None:
    """Every network table rebuilt from the module's journal (creates, attaches, ports, removals) matches."""
    status, report = d.request("POST", "/engine/journal/verify")
    assert status == 200 and report["ok"], report
    for table in ("networks", "net_addresses", "net_endpoints", "net_ports", "net_sandboxes"):
        assert report["tables"][table]["ok"], table


def _veths(d: EngineDaemon) -> list[str]:
    from engine.network.links import list_links

    return [n for n in list_links(d.network_prefix) if n.startswith(d.network_prefix + "v")]


def _nft(d: EngineDaemon) -> str:
    import subprocess

    return subprocess.run(["nft", "list", "table", "inet", d.network_prefix], capture_output=True, text=True).stdout


def test_publish_all_taken_port_and_nothing_left_after_rm(d: EngineDaemon, busybox: str) -> None:
    import socket

    name = "all-" + secrets_hex()
    d.docker("run", "-d", "--name", name, "--expose", "80", "--expose", "53/udp", "-P", "busybox", "sleep", "300")
    try:
        ports = json.loads(d.docker("inspect", name).stdout)[0]["NetworkSettings"]["Ports"]
        assert set(ports) == {"80/tcp", "53/udp"}
        hp = int(ports["80/tcp"][0]["HostPort"])
        assert hp > 0 and f"dport {hp} dnat ip to" in _nft(d)
        assert _veths(d)
    finally:
        d.docker("rm", "-f", name)
    assert _veths(d) == [] and " dnat " not in _nft(d)  # no veth, no rule left
    # a host port some other process holds: Docker's message naming it, and nothing half set up
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        taken = s.getsockname()[1]
        r = d.docker("run", "-d", "--name", name, "-p", f"{taken}:80", "busybox", "sleep", "300", check=False)
        assert r.returncode != 0 and f"0.0.0.0:{taken} failed: port is already allocated" in r.stderr, r.stderr
        assert _veths(d) == [] and " dnat " not in _nft(d)
        assert json.loads(d.docker("inspect", name).stdout)[0]["State"]["Running"] is False
    d.docker("rm", "-f", name)


def test_mac_address(d: EngineDaemon, busybox: str) -> None:
    out = d.docker("run", "--rm", "--mac-address", "02:42:de:ad:be:ef", "busybox", "cat",
                   "/sys/class/net/eth0/address").stdout
    assert out.strip() == "02:42:de:ad:be:ef"
    # the CLI refuses a bad address itself; the daemon does too
    status, body = d.request("POST", "/containers/create", {"Image": "busybox", "MacAddress": "nope"})
    assert status == 400 and body["message"] == "invalid MAC address: nope"
