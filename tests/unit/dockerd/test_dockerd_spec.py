"""Docker's Config/HostConfig → OCI spec: defaults, capabilities, privileged, resources, mounts, namespaces,
seccomp, sysctls and devices, with Docker's refusals."""

from __future__ import annotations

import os
from typing import Any

import pytest

from engine.errors import InvalidArgument
from engine.runtime import caps as capnames
from engine.services.dockerd import hostconfig, spec
from engine.services.dockerd.record import DockerContainer

CID = "a" * 64


def container(cfg: dict[str, Any] | None = None, hc: dict[str, Any] | None = None) -> DockerContainer:
    config = hostconfig.merge_image({"Image": "busybox", **(cfg or {})},
                                    {"Cmd": ["sh"], "Env": ["PATH=/bin", "A=image"]})
    host = hostconfig.normalise_host_config(hc or {}, log_driver="json-file", log_opts={},
                                            shm_default=64 << 20, runtime="engine")
    path, args = hostconfig.command(config)
    return DockerContainer(id=CID, name="/x", config=config, host_config=host, path=path, args=args,
                           hostname_path="/c/hostname", hosts_path="/c/hosts", resolv_path="/c/resolv.conf")


def build(cfg: dict[str, Any] | None = None, hc: dict[str, Any] | None = None, **ctx: Any) -> dict[str, Any]:
    return spec.build(container(cfg, hc), spec.Context(cgroup_parent="engine-unit", **ctx))


def dests(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["destination"]: m for m in s["mounts"]}


def test_defaults() -> None:
    s = build()
    p = s["process"]
    assert p["args"] == ["sh"]
    assert sorted(p["capabilities"]["effective"]) == sorted(spec.DEFAULT_CAPS)
    assert len(spec.DEFAULT_CAPS) == 14 and "ambient" not in p["capabilities"]
    assert p["env"][:2] == ["PATH=/bin", f"HOSTNAME={CID[:12]}"] and "A=image" in p["env"]
    assert not any(e.startswith("TERM=") for e in p["env"])
    assert p["cwd"] == "/" and p["user"] == {"uid": 0, "gid": 0} and p["noNewPrivileges"] is False
    assert s["hostname"] == CID[:12] and s["root"] == {"path": "rootfs", "readonly": False}
    m = dests(s)
    assert {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup", "/etc/hosts",
            "/etc/hostname", "/etc/resolv.conf"} <= set(m)
    assert "size=67108864" in m["/dev/shm"]["options"] and "ro" in m["/sys"]["options"]
    assert m["/etc/hosts"]["source"] == "/c/hosts" and "rbind" in m["/etc/hosts"]["options"]
    linux = s["linux"]
    assert linux["cgroupsPath"] == f"/engine-unit/{CID}"
    assert linux["maskedPaths"] == list(spec.MASKED_PATHS) and "/proc/sys" in linux["readonlyPaths"]
    assert {n["type"] for n in linux["namespaces"]} >= {"mount", "uts", "pid", "ipc", "network"}
    assert linux["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert linux["seccomp"]["defaultAction"] == "SCMP_ACT_ALLOW"
    denied = linux["seccomp"]["syscalls"][0]["names"]
    assert "mount" in denied and "kexec_load" in denied and "read" not in denied
    # bridge until engine/network: a private netns whose lo the hook brings up
    assert "link set lo up" in " ".join(s["hooks"]["createRuntime"][0]["args"])


def test_tty_env_user_workdir_readonly() -> None:
    s = build({"Tty": True, "Env": ["A=mine", "B"], "WorkingDir": "/w", "Hostname": "h1"},
              {"ReadonlyRootfs": True, "ShmSize": 1 << 20}, uid=5, gid=6, additional_gids=[7])
    p = s["process"]
    assert "TERM=xterm" in p["env"] and "A=mine" in p["env"] and "HOSTNAME=h1" in p["env"]
    assert p["terminal"] is True and p["cwd"] == "/w"
    assert p["user"] == {"uid": 5, "gid": 6, "additionalGids": [7]}
    assert s["root"]["readonly"] is True and "ro" in dests(s)["/etc/hosts"]["options"]
    assert "size=1048576" in dests(s)["/dev/shm"]["options"]


def test_capabilities_add_drop() -> None:
    got = spec.capabilities({"CapAdd": ["sys_admin", "CAP_NET_ADMIN"], "CapDrop": ["NET_RAW", "chown"]})
    assert "CAP_SYS_ADMIN" in got and "CAP_NET_ADMIN" in got and "CAP_NET_RAW" not in got and "CAP_CHOWN" not in got
    assert spec.capabilities({"CapDrop": ["ALL"], "CapAdd": ["KILL"]}) == ["CAP_KILL"]
    assert set(spec.capabilities({"CapAdd": ["ALL"]})) == set(spec.host_capabilities()) <= set(capnames.NAMES)
    with pytest.raises(InvalidArgument, match="unknown capability"):
        spec.capabilities({"CapAdd": ["NOPE"]})
    s = build(hc={"CapAdd": ["SYS_ADMIN"]})
    assert "mount" not in s["linux"]["seccomp"]["syscalls"][0]["names"]
    assert not any(r["names"] == ["clone"] for r in s["linux"]["seccomp"]["syscalls"])


def test_privileged() -> None:
    s = build(hc={"Privileged": True})
    assert set(s["process"]["capabilities"]["bounding"]) == set(spec.host_capabilities())
    linux = s["linux"]
    assert "seccomp" not in linux and "maskedPaths" not in linux and "readonlyPaths" not in linux
    assert linux["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "rw" in dests(s)["/sys"]["options"]
    assert any(d["path"].startswith("/dev/") for d in linux["devices"]) or not os.listdir("/dev")


def test_security_opts() -> None:
    s = build(hc={"SecurityOpt": ["no-new-privileges", "seccomp=unconfined"]})
    assert s["process"]["noNewPrivileges"] is True and "seccomp" not in s["linux"]
    with pytest.raises(InvalidArgument):
        build(hc={"SecurityOpt": ["bogus=1"]})


def test_resources() -> None:
    r = spec.resources({"Memory": 64 << 20, "NanoCpus": 500_000_000, "CpuShares": 512, "PidsLimit": 50,
                        "CpusetCpus": "0", "MemorySwappiness": -1, "OomKillDisable": True})
    assert r["memory"] == {"limit": 64 << 20, "swap": 128 << 20, "disableOOMKiller": True}
    assert r["cpu"] == {"shares": 512, "period": 100_000, "quota": 50_000, "cpus": "0"}
    assert r["pids"] == {"limit": 50}
    assert spec.resources({"Memory": 64 << 20, "MemorySwap": -1})["memory"]["swap"] == -1
    assert spec.resources({"PidsLimit": -1}) == {}


def test_network_modes() -> None:
    host = build(hc={"NetworkMode": "host"})
    assert "network" not in {n["type"] for n in host["linux"]["namespaces"]} and "hooks" not in host
    none = build(hc={"NetworkMode": "none"})
    assert {"type": "network"} in none["linux"]["namespaces"] and none["hooks"]["createRuntime"]
    uts = build(hc={"UTSMode": "host", "PidMode": "host", "IpcMode": "host"})
    assert {n["type"] for n in uts["linux"]["namespaces"]} == {"mount", "network"} and "hostname" not in uts
    joined = build(hc={"NetworkMode": "container:" + "b" * 64}, netns_path="/proc/9/ns/net")
    assert {"type": "network", "path": "/proc/9/ns/net"} in joined["linux"]["namespaces"]


def test_tmpfs_init_ulimits_sysctls() -> None:
    s = build(hc={"Tmpfs": {"/run": "size=1m", "/dev/shm": ""}, "Init": True,
                  "Ulimits": [{"Name": "nofile", "Soft": 100, "Hard": 200}],
                  "Sysctls": {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"}}, init_path="/usr/bin/tini-static")
    m = dests(s)
    assert m["/run"]["type"] == "tmpfs" and "size=1m" in m["/run"]["options"] and "noexec" in m["/run"]["options"]
    assert m["/dev/shm"]["source"] == "tmpfs"  # the user's tmpfs replaces the default one
    assert s["process"]["args"][:2] == ["/sbin/docker-init", "--"] and m["/sbin/docker-init"]["source"]
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    assert s["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1", "kernel.shmmax": "1000"}
    with pytest.raises(InvalidArgument, match="not allowed in host network namespace"):
        build(hc={"NetworkMode": "host", "Sysctls": {"net.ipv4.ip_forward": "1"}})
    with pytest.raises(InvalidArgument, match="not whitelisted"):
        build(hc={"Sysctls": {"kernel.panic": "1"}})


def test_devices() -> None:
    s = build(hc={"Devices": [{"PathOnHost": "/dev/zero", "PathInContainer": "/dev/z", "CgroupPermissions": "rw"}],
                  "DeviceCgroupRules": ["c 42:* rmw"]})
    dev = next(d for d in s["linux"]["devices"] if d["path"] == "/dev/z")
    assert (dev["type"], dev["major"], dev["minor"]) == ("c", 1, 5)
    rules = s["linux"]["resources"]["devices"]
    assert {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rw"} in rules
    assert {"allow": True, "type": "c", "major": 42, "access": "rmw"} in rules
    with pytest.raises(InvalidArgument, match="error gathering device information"):
        build(hc={"Devices": [{"PathOnHost": "/dev/nonexistent-h3"}]})
    with pytest.raises(InvalidArgument, match="invalid device cgroup rule"):
        build(hc={"DeviceCgroupRules": ["x"]})
