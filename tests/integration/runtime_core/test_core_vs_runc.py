"""Differential tests: the same config through runc and engine-runtime must give the same
exit status and output.  Each case prints what a config option changes inside the container.

Intended differences are not cases here: ``linux.personality`` and ``domainname`` (runc 1.1
ignores both; we apply them, as the spec says) and a tmpfs's root mode (runc 1.1 resets it to
the mount point's earlier mode; we keep the ``mode=`` option).  runc 1.1 also refuses a rootfs
that is a symlink; we resolve it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid

import pytest

from tests.support.rootfs import build_busybox_rootfs
from tests.support.spec import default_spec

RUNC = "/usr/sbin/runc"


def _set(*path_value):
    def f(spec):
        *path, value = path_value
        obj = spec
        for k in path[:-1]:
            obj = obj[k]
        obj[path[-1]] = value

    return f


def _append(path, value):
    def f(spec):
        obj = spec
        for k in path:
            obj = obj[k]
        obj.append(value)

    return f


def _all(*fs):
    def f(spec):
        for g in fs:
            g(spec)

    return f


MNTINFO = "/proc/self/mountinfo"
CASES = {
    "rootfs-propagation-shared": (
        "grep ' / / ' " + MNTINFO + " | awk '{print $7}'",
        _set("linux", "rootfsPropagation", "shared"),
    ),
    "rootfs-propagation-default": ("grep ' / / ' " + MNTINFO + " | awk '{print $7}'", None),
    "oom-score-adj": ("cat /proc/self/oom_score_adj", _set("process", "oomScoreAdj", 123)),
    "rlimits": (
        "ulimit -n; ulimit -c; ulimit -u",
        _set(
            "process",
            "rlimits",
            [
                {"type": "RLIMIT_NOFILE", "soft": 77, "hard": 88},
                {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
                {"type": "RLIMIT_NPROC", "soft": 500, "hard": 600},
            ],
        ),
    ),
    "tmpfs-options": (
        "grep ' /t ' " + MNTINFO + " | cut -d' ' -f6-",
        _append(
            ["mounts"],
            {
                "destination": "/t",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["mode=1770", "size=1m", "nosuid", "noexec"],
            },
        ),
    ),
    "devices": (
        "ls -l /dev/fuse /dev/loopx | awk '{print $1, $3, $4, $5, $6}'",
        _set(
            "linux",
            "devices",
            [
                {
                    "path": "/dev/fuse",
                    "type": "c",
                    "major": 10,
                    "minor": 229,
                    "fileMode": 0o640,
                    "uid": 5,
                    "gid": 6,
                },
                {"path": "/dev/loopx", "type": "b", "major": 7, "minor": 0},
            ],
        ),
    ),
    "ro-file-bind": (
        "cat /etc/hostsx; echo x > /etc/hostsx; echo $?; grep hostsx " + MNTINFO + " | cut -d' ' -f6",
        _append(
            ["mounts"],
            {
                "destination": "/etc/hostsx",
                "type": "bind",
                "source": "/etc/hostname",
                "options": ["rbind", "ro"],
            },
        ),
    ),
    "bind-nosuid-nodev": (
        "grep ' /mnt ' " + MNTINFO + " | cut -d' ' -f6",
        _append(
            ["mounts"],
            {"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["bind", "nosuid", "nodev"]},
        ),
    ),
    "bind-propagation": (
        "grep ' /mnt ' " + MNTINFO + " | cut -d' ' -f6",
        _append(
            ["mounts"],
            {"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["rbind", "rslave"]},
        ),
    ),
    "cwd-user-groups": (
        "pwd; id",
        _all(
            _set("process", "cwd", "/tmp"),
            _set("process", "user", {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}),
        ),
    ),
    "env-home": ("env | sort | grep -v -e PWD -e SHLVL", None),
    "caps-all-sets": (
        "grep Cap /proc/self/status",
        _set(
            "process",
            "capabilities",
            {
                k: ["CAP_NET_ADMIN", "CAP_SYS_ADMIN"]
                for k in ("bounding", "effective", "permitted", "inheritable", "ambient")
            },
        ),
    ),
    "no-capabilities": ("grep Cap /proc/self/status", lambda s: s["process"].pop("capabilities")),
    "no-new-privs-off": ("grep NoNewPrivs /proc/self/status", _set("process", "noNewPrivileges", False)),
    "sysctl-net": (
        "cat /proc/sys/net/ipv4/ip_unprivileged_port_start",
        _set("linux", "sysctl", {"net.ipv4.ip_unprivileged_port_start": "80"}),
    ),
    "masked-paths": ("ls /proc/acpi | wc -l; cat /proc/kcore 2>&1 | wc -c", None),
    "shm-mqueue": ("grep -E ' /dev/(mqueue|shm) ' " + MNTINFO + " | cut -d' ' -f5,6,9-", None),
    "tmpcopyup": (
        "ls -l /etc | awk '{print $1, $3, $4, $9}'; grep ' /etc ' " + MNTINFO + " | cut -d' ' -f6",
        _append(
            ["mounts"],
            {
                "destination": "/etc",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["tmpcopyup", "ro", "mode=755"],
            },
        ),
    ),
    "cgroup-mount": ("ls /sys/fs/cgroup; grep -c ' /sys/fs/cgroup/' " + MNTINFO, None),
    "cgroup-namespace": (
        "cat /proc/self/cgroup | head -3",
        _append(["linux", "namespaces"], {"type": "cgroup"}),
    ),
    "exit-status": ("exit 42", None),
    "missing-executable": ("true", _set("process", "args", ["/nonexistent"])),
    "umask": ("umask", _set("process", "user", {"uid": 0, "gid": 0, "umask": 0o077})),
    "readonly-root": ("touch /x 2>&1; echo $?", None),
    "host-pid-namespace": (
        "echo $$ | grep -c '^1$'",
        lambda s: s["linux"].__setitem__(
            "namespaces", [n for n in s["linux"]["namespaces"] if n["type"] != "pid"]
        ),
    ),
    "dev-symlinks": ("ls -l /dev | awk '{print $1, $9, $10, $11}' | grep -v -e '^total' -e '^c'", None),
    "relative-destination": (
        "grep -c ' /reltmp ' " + MNTINFO,
        _append(["mounts"], {"destination": "reltmp", "type": "tmpfs", "source": "tmpfs"}),
    ),
    "nested-new-dirs": (
        "ls -d /a/b/c",
        _append(["mounts"], {"destination": "/a/b/c", "type": "tmpfs", "source": "tmpfs"}),
    ),
    "dev-bind": (
        "ls /dev | grep -c -x null; grep ' /dev ' " + MNTINFO + " | cut -d' ' -f4,5",
        lambda s: s["mounts"].__setitem__(
            1, {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind", "rslave"]}
        ),
    ),
    "args-and-env": (
        'echo "$0|$1|$FOO"',
        _all(
            _set("process", "args", ["sh", "-c", 'echo "$0|$1|$FOO"', "zero", "one"]),
            _append(["process", "env"], "FOO=bar baz"),
        ),
    ),
    "user-namespace": (
        "id -u; cat /proc/self/uid_map",
        _all(
            _append(["linux", "namespaces"], {"type": "user"}),
            _set("linux", "uidMappings", [{"containerID": 0, "hostID": 0, "size": 65536}]),
            _set("linux", "gidMappings", [{"containerID": 0, "hostID": 0, "size": 65536}]),
        ),
    ),
}


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory):
    d = tmp_path_factory.mktemp("vsrunc")
    os.chmod(d, 0o755)
    build_busybox_rootfs(d / "rootfs")
    return d / "rootfs"


def _run(cmd, root, bundle, spec):
    bundle.mkdir(exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(spec))
    cid = f"v-{uuid.uuid4().hex[:10]}"
    try:
        r = subprocess.run(
            [*cmd, "--root", str(root), "run", "-b", str(bundle), cid],
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
    finally:
        subprocess.run([*cmd, "--root", str(root), "delete", "-f", cid], capture_output=True, timeout=30)
    return r.returncode, r.stdout


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_as_runc(name, rootfs, tmp_path):
    if os.geteuid() != 0 or not os.path.exists(RUNC):
        pytest.skip("needs root and runc")
    from tests.support.ociruntime import engine_runtime_path

    script, mutate = CASES[name]
    spec = default_spec(["sh", "-c", script])
    spec["root"]["path"] = str(rootfs)
    if mutate:
        mutate(spec)
    try:
        got = {}
        for label, cmd in (("runc", [RUNC]), ("engine", [engine_runtime_path()])):
            s = json.loads(json.dumps(spec))
            s["linux"]["cgroupsPath"] = f"/engine-vsrunc-{uuid.uuid4().hex[:8]}"
            got[label] = _run(cmd, tmp_path / f"state-{label}", tmp_path / f"bundle-{label}", s)
        assert got["engine"] == got["runc"]
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)
