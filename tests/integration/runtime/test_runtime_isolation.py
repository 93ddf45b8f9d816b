"""Seccomp, sysctl, namespaces (new, user-mapped, joined by path) and cgroup limits."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

SUPPORT_DATA = Path(__file__).resolve().parents[2] / "support" / "data"


def test_seccomp_denies_with_configured_errno(rt):
    b = rt.bundle(["sh", "-c", "mkdir /dev/shm/a; echo mkdir=$?; touch /dev/shm/b; echo touch=$?"])
    b.linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat", "no_such_syscall"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
        ],
    }
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["mkdir=1", "touch=0"]
    assert "Permission denied" in r.stderr


def test_seccomp_docker_shaped_profile(rt):
    # deny by default (EPERM), a long allow list, argument conditions (clone without
    # namespace flags, socket families but AF_VSOCK, a few personalities)
    profile = json.loads((SUPPORT_DATA / "seccomp_docker_like.json").read_text())
    script = (
        "mkdir /dev/shm/d && echo mkdir-ok; unshare -U true; echo unshare=$?; "
        "echo $(uname -s); (sleep 0 &) && echo fork-ok; umount /proc 2>/dev/null; echo umount=$?"
    )
    b = rt.bundle(["sh", "-c", script])
    b.linux["seccomp"] = profile
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["mkdir-ok", "unshare=1", "Linux", "fork-ok", "umount=1"]
    assert "unshare: unshare(0x10000000): Operation not permitted" in r.stderr


def test_seccomp_kill_process(rt):
    b = rt.bundle(
        ["sh", "-c", "echo before; mkdir /dev/shm/x; echo rc=$?; test -e /dev/shm/x || echo absent"]
    )
    b.linux["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"}],
    }
    r = b.run()
    # mkdir is a forked busybox applet: it dies of SIGSYS (31), the shell goes on
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["before", "rc=159", "absent"]


def test_sysctl(rt):
    b = rt.bundle(["cat", "/proc/sys/kernel/shm_rmid_forced", "/proc/sys/net/ipv4/ip_forward"])
    b.linux["sysctl"] = {"kernel.shm_rmid_forced": "1", "net.ipv4.ip_forward": "1"}
    with open("/proc/sys/kernel/shm_rmid_forced") as f:
        host_before = f.read()
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["1", "1"]
    with open("/proc/sys/kernel/shm_rmid_forced") as f:
        assert f.read() == host_before  # set in the container's ipc namespace only


def test_new_namespaces_differ_from_the_host(rt):
    kinds = ["pid", "net", "ipc", "uts", "mnt"]
    b = rt.bundle(["sh", "-c", " ".join(f"readlink /proc/self/ns/{k};" for k in kinds) + " echo $$"])
    r = b.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    for k, link in zip(kinds, lines, strict=False):
        assert link != os.readlink(f"/proc/self/ns/{k}"), k
    assert lines[-1] == "1"  # the process is pid 1 of its own pid namespace


def test_user_namespace_with_mappings(rt):
    b = rt.bundle(
        [
            "sh",
            "-c",
            "id -u; cat /proc/self/uid_map /proc/self/gid_map; stat -c %u /bin/busybox; echo x > /tmp/f && echo wrote",
        ]
    )
    b.linux["namespaces"].append({"type": "user"})
    b.linux["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    b.linux["gidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    b.spec["root"]["readonly"] = False
    # the container's root is host uid 200000: give it the rootfs
    subprocess.run(["chown", "-R", "-h", "200000:200000", str(b.rootfs)], check=True)
    r = b.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "0"
    assert lines[1].split() == ["0", "200000", "65536"]
    assert lines[2].split() == ["0", "200000", "65536"]
    assert lines[3] == "0"
    assert lines[4] == "wrote"
    st = os.stat(b.rootfs / "tmp/f")
    assert (st.st_uid, st.st_gid) == (200000, 200000)


def test_user_namespace_maps_seen_from_the_host(rt):
    b = rt.bundle(["sleep", "60"])
    b.linux["namespaces"].append({"type": "user"})
    b.linux["uidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 1000}]
    b.linux["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 1000}]
    subprocess.run(["chown", "-R", "-h", "300000:300000", str(b.rootfs)], check=True)
    b.create().ok()
    pid = b.state()["pid"]
    assert pid > 0, "state of a created container has no pid"
    with open(f"/proc/{pid}/uid_map") as f:
        assert f.read().split() == ["0", "300000", "1000"]
    with open(f"/proc/{pid}/status") as f:
        uid_line = next(line for line in f if line.startswith("Uid:"))
    assert uid_line.split()[1:] == ["300000"] * 4


def test_join_namespaces_by_path(rt):
    a = rt.bundle(["sleep", "60"], tag="a")
    a.spec["hostname"] = "joined-host"
    a.create().ok()
    pid = a.state()["pid"]
    b = rt.bundle(["sh", "-c", "hostname; for k in uts net ipc; do readlink /proc/self/ns/$k; done"], tag="b")
    del b.spec["hostname"]  # a runtime refuses a hostname without its own uts namespace
    b.linux["namespaces"] = [
        {"type": "pid"},
        {"type": "mount"},
        {"type": "uts", "path": f"/proc/{pid}/ns/uts"},
        {"type": "network", "path": f"/proc/{pid}/ns/net"},
        {"type": "ipc", "path": f"/proc/{pid}/ns/ipc"},
    ]
    r = b.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "joined-host"
    assert lines[1:] == [os.readlink(f"/proc/{pid}/ns/{k}") for k in ("uts", "net", "ipc")]


def _cgroup_file(rt, cid: str, controller: str, name: str) -> str:
    with open(f"/sys/fs/cgroup/{controller}/{rt.cgroup_parent}/{cid}/{name}") as f:
        return f.read().strip()


def test_cgroup_limits_inside_and_on_the_host(rt):
    script = (
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
        "/sys/fs/cgroup/cpu/cpu.shares; grep -E ':(memory|pids):' /proc/self/cgroup; sleep 60"
    )
    b = rt.bundle(["sh", "-c", script])
    b.linux["resources"].update(
        {"memory": {"limit": 64 * 1024 * 1024}, "pids": {"limit": 50}, "cpu": {"shares": 512}}
    )
    b.create().ok()
    b.start().ok()
    out = b.wait_output(":pids:").splitlines()
    assert out[:3] == [str(64 * 1024 * 1024), "50", "512"]
    for line in out[3:5]:
        assert line.endswith(f":/{rt.cgroup_parent}/{b.id}")
    assert _cgroup_file(rt, b.id, "memory", "memory.limit_in_bytes") == str(64 * 1024 * 1024)
    assert _cgroup_file(rt, b.id, "pids", "pids.max") == "50"
    pid = b.state()["pid"]
    assert str(pid) in _cgroup_file(rt, b.id, "pids", "cgroup.procs").split()


def test_pids_limit_is_enforced(rt):
    b = rt.bundle(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait; echo done"])
    b.linux["resources"]["pids"] = {"limit": 4}
    r = b.run()
    assert "can't fork" in r.stderr or "Resource temporarily unavailable" in r.stderr


def test_container_cgroup_is_removed_after_delete(rt):
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    assert rt.cgroup_dirs(b.id), "no cgroup was made for the container"
    b.delete("--force").ok()
    deadline = time.monotonic() + 5
    while rt.cgroup_dirs(b.id) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rt.leftovers(b.id, b) == []


def test_cgroup_namespace(rt):
    b = rt.bundle(["sh", "-c", "readlink /proc/self/ns/cgroup; grep ':pids:' /proc/self/cgroup"])
    b.linux["namespaces"].append({"type": "cgroup"})
    r = b.run()
    assert r.returncode == 0, r.stderr
    link, line = r.stdout.split()
    assert link != os.readlink("/proc/self/ns/cgroup")
    assert line.endswith(":pids:/")  # the container's own cgroup is its root
