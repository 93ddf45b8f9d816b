"""plan.py: the flat program built from a config (the recording of what the child will do)."""

from __future__ import annotations

import copy
import os

import pytest

from engine.errors import InvalidArgument
from engine.runtime import caps, plan
from engine.runtime import mounts as m
from engine.runtime import protocol as p

BASE = {
    "ociVersion": "1.2.0",
    "process": {
        "args": ["sh", "-c", "true"],
        "env": ["PATH=/usr/bin:/bin"],
        "cwd": "/work",
        "user": {"uid": 1000, "gid": 1000, "additionalGids": [5, 7], "umask": 0o077},
        "capabilities": {
            "bounding": ["CAP_KILL", "CAP_CHOWN"],
            "effective": ["CAP_KILL"],
            "permitted": ["CAP_KILL"],
            "inheritable": [],
            "ambient": [],
        },
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}],
        "noNewPrivileges": True,
        "oomScoreAdj": 100,
    },
    "root": {"path": "rootfs", "readonly": True},
    "hostname": "box",
    "mounts": [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=755"]},
        {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro", "rprivate"]},
    ],
    "linux": {
        "namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "uts"}],
        "maskedPaths": ["/proc/kcore"],
        "readonlyPaths": ["/proc/sys"],
        "sysctl": {"kernel.shm_rmid_forced": "1"},
    },
}


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "rootfs/etc").mkdir(parents=True)
    (tmp_path / "rootfs/etc/passwd").write_text("root:x:0:0::/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "file").write_text("x")
    return tmp_path


def build(bundle, config=None, **kw):
    ctx = plan.Context(str(bundle / "rootfs"), str(bundle), fifo_dirfd=9, **kw)
    return plan.build_create(copy.deepcopy(config or BASE), ctx)


def test_order_follows_runc_init(bundle):
    names = build(bundle).names()
    order = [
        "OP_SETHOSTNAME",
        "OP_WRITE",
        "OP_ROOT_PROPAGATION",
        "OP_MOUNT",
        "OP_OPEN_ROOT",
        "OP_MKDEV",
        "OP_SYMLINK",
        "OP_PIVOT",
        "OP_READONLY",
        "OP_MASK",
        "OP_REMOUNT_ROOT_RO",
        "OP_RLIMIT",
        "OP_SETSID",
        "OP_NNP",
        "OP_CLOSE_FROM",
        "OP_BOUNDING",
        "OP_USER",
        "OP_UMASK",
        "OP_CAPS",
        "OP_LOOKUP",
        "OP_READY",
        "OP_WAIT_FIFO",
        "OP_EXEC",
    ]
    idx = [names.index(n) for n in order]
    assert idx == sorted(idx), names
    assert names[-1] == "OP_EXEC"


def test_bind_mount_is_resolved_against_the_bundle_and_remounted(bundle):
    prog = build(bundle)
    mounts = prog.find(p.OP_MOUNT)
    rootfs_bind, proc, dev, data = mounts
    assert rootfs_bind[1][:2] == (str(bundle / "rootfs"), str(bundle / "rootfs"))
    assert proc[1] == ("proc", "/proc", "proc", "")
    assert dev[0][0] == m.MS_NOSUID and dev[1][3] == "mode=755"
    flags, kind, remount, prop = data[0]
    assert flags == m.MS_BIND | m.MS_REC
    assert kind == p.MNT_IN_ROOT  # a directory
    assert remount == m.MS_RDONLY
    assert prop == m.MS_PRIVATE | m.MS_REC
    assert data[1][0] == str(bundle / "data")


def test_file_bind_creates_a_file(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["mounts"].append(
        {"destination": "/etc/x", "type": "bind", "source": str(bundle / "file"), "options": ["bind"]}
    )
    kind = build(bundle, cfg).find(p.OP_MOUNT)[-1][0][1]
    assert kind == p.MNT_IN_ROOT | p.MNT_FILE


def test_missing_bind_source_is_an_error_before_anything_runs(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["mounts"].append({"destination": "/x", "type": "bind", "source": "/no/such/dir"})
    with pytest.raises(InvalidArgument, match="mount source /no/such/dir"):
        build(bundle, cfg)


def test_default_devices_and_user_namespace_binds(bundle):
    devs = build(bundle).find(p.OP_MKDEV)
    assert [s[0] for _, s in devs] == [d[0] for d in m.DEFAULT_DEVICES]
    null = devs[0][0]
    assert null[:3] == (m.S_IFCHR | 0o666, 1, 3) and null[5] == 0
    assert all(ints[5] == 1 for ints, _ in build(bundle, userns=True).find(p.OP_MKDEV))


def test_dev_bind_skips_default_devices(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["mounts"][1] = {"destination": "/dev", "type": "bind", "source": "/dev", "options": ["rbind"]}
    prog = build(bundle, cfg)
    assert prog.find(p.OP_MKDEV) == []
    assert ("pts/ptmx", "/dev/ptmx") not in [s for _, s in prog.find(p.OP_SYMLINK)]


def test_no_pivot_chroots(bundle):
    names = build(bundle, no_pivot=True).names()
    assert "OP_CHROOT" in names and "OP_PIVOT" not in names


def test_user_caps_rlimits_and_env(bundle):
    prog = build(bundle)
    assert prog.find(p.OP_USER)[-1][0] == (1000, 1000, 2, 5, 7)
    assert prog.find(p.OP_UMASK)[0][0] == (0o077,)
    eff, perm, inh, amb, last = prog.find(p.OP_CAPS)[0][0]
    assert eff == perm == 1 << caps.NUMBERS["CAP_KILL"] and inh == amb == 0
    assert last == caps.last_cap()
    bnd = prog.find(p.OP_BOUNDING)[0][0][0]
    assert bnd == (1 << caps.NUMBERS["CAP_KILL"]) | (1 << caps.NUMBERS["CAP_CHOWN"])
    assert prog.find(p.OP_RLIMIT)[0][0] == (7, 100, 200)
    exec_ints, exec_strs = prog.find(p.OP_EXEC)[0]
    assert exec_ints == (3, 2)
    assert exec_strs[3:] == ("PATH=/usr/bin:/bin", "HOME=/home/u")  # HOME from the rootfs passwd
    assert prog.find(p.OP_LOOKUP)[0][1] == ("sh", "/usr/bin:/bin")
    assert ("/proc/self/oom_score_adj", "100") in [s for _, s in prog.find(p.OP_WRITE)]
    assert ("/proc/sys/kernel/shm_rmid_forced", "1") in [s for _, s in prog.find(p.OP_WRITE)]


def test_seccomp_is_last_with_no_new_privs_and_early_without(bundle, monkeypatch):
    import engine.runtime.seccomp as sc

    monkeypatch.setattr(sc, "compile_profile", lambda prof: b"\x06\x00\x00\x00\x00\x00\xff\x7f")
    monkeypatch.setattr(sc, "filter_flags", lambda prof: 0)
    cfg = copy.deepcopy(BASE)
    cfg["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW"}
    names = build(bundle, cfg).names()
    assert names.index("OP_SECCOMP") > names.index("OP_WAIT_FIFO")
    cfg["process"]["noNewPrivileges"] = False
    names = build(bundle, cfg).names()
    assert names.index("OP_SECCOMP") < names.index("OP_USER") < names.index("OP_CAPS")
    assert "OP_NNP" not in names


def test_hooks(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["hooks"] = {
        "createRuntime": [{"path": "/bin/true"}],
        "createContainer": [{"path": "/bin/echo", "args": ["echo", "cc"], "env": ["A=1"], "timeout": 3}],
        "startContainer": [{"path": "/bin/true"}],
    }
    prog = build(bundle, cfg)
    names = prog.names()
    assert names.index("OP_SYNC_HOOKS") < names.index("OP_HOOK") < names.index("OP_PIVOT")
    hooks = prog.find(p.OP_HOOK)
    assert hooks[0] == ((3, 2, 1), ("/bin/echo", "echo", "cc", "A=1"))
    assert (
        names.index("OP_WAIT_FIFO") < len(names) - 1 - names[::-1].index("OP_HOOK") < names.index("OP_EXEC")
    )


def test_cgroup_mount_on_v1_and_v2(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["mounts"].append(
        {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "ro"]}
    )
    v1 = [
        ("cpu,cpuacct", "/sys/fs/cgroup/cpu,cpuacct/c1", "cgroup", "", True),
        ("memory", "/sys/fs/cgroup/memory/c1", "cgroup", "", True),
    ]
    prog = build(bundle, cfg, cgroup_mounts=v1)
    mounts = prog.find(p.OP_MOUNT)[-3:]
    assert mounts[0][1][:3] == ("tmpfs", "/sys/fs/cgroup", "tmpfs")
    assert mounts[1][1][:2] == ("/sys/fs/cgroup/cpu,cpuacct/c1", "/sys/fs/cgroup/cpu,cpuacct")
    assert mounts[1][0][2] & m.MS_RDONLY
    links = [s for _, s in prog.find(p.OP_SYMLINK)]
    assert ("cpu,cpuacct", "/sys/fs/cgroup/cpu") in links and (
        "cpu,cpuacct",
        "/sys/fs/cgroup/cpuacct",
    ) in links
    v2 = [("", "cgroup", "cgroup2", "", False)]
    last = build(bundle, cfg, cgroup_mounts=v2).find(p.OP_MOUNT)[-1]
    assert last[1][:3] == ("cgroup", "/sys/fs/cgroup", "cgroup2")


def test_exec_program_joins_and_has_no_rootfs_work(bundle):
    cfg = copy.deepcopy(BASE)
    ctx = plan.Context(str(bundle / "rootfs"), str(bundle), joins=[(5, 0x40000000, "/proc/1/ns/net")])
    names = plan.build_exec(cfg["process"], cfg, ctx).names()
    assert names[0] == "OP_SETNS"
    assert not {"OP_MOUNT", "OP_PIVOT", "OP_WAIT_FIFO", "OP_MKDEV"} & set(names)


def test_bad_values_are_refused(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]
    with pytest.raises(InvalidArgument, match="rlimit"):
        build(bundle, cfg)
    cfg = copy.deepcopy(BASE)
    cfg["linux"]["rootfsPropagation"] = "sideways"
    with pytest.raises(InvalidArgument, match="rootfsPropagation"):
        build(bundle, cfg)


def test_program_encodes(bundle):
    raw = build(bundle).encode()
    assert isinstance(raw, bytes) and len(raw) > 100
    assert os.path.isabs(str(bundle))


def test_seccomp_notify_needs_a_listener_and_loads_before_ready(bundle, monkeypatch):
    import engine.runtime.seccomp as sc

    monkeypatch.setattr(sc, "compile_profile", lambda prof: b"\x06\x00\x00\x00\x00\x00\xff\x7f")
    monkeypatch.setattr(sc, "filter_flags", lambda prof: 8)
    cfg = copy.deepcopy(BASE)
    cfg["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
    }
    with pytest.raises(InvalidArgument, match="needs a listenerPath"):
        build(bundle, cfg)
    cfg["linux"]["seccomp"]["listenerPath"] = "/run/x.sock"
    prog = build(bundle, cfg)
    names = prog.names()
    assert names.index("OP_SECCOMP") < names.index("OP_READY")  # the fd goes over the sync socket
    assert prog.find(p.OP_SECCOMP)[0][0] == (8, 1)


def test_idmapped_mount_attaches_a_prepared_tree(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["mounts"].append(
        {"destination": "/x", "type": "bind", "source": "data", "options": ["rbind", "idmap"]}
    )
    index = len(cfg["mounts"]) - 1
    with pytest.raises(InvalidArgument, match="idmapped tree was not prepared"):
        build(bundle, cfg)
    prog = build(bundle, cfg, idmap_trees={index: 42})
    assert prog.find(p.OP_IDMAP_MOUNT) == [((42, p.MNT_IN_ROOT), ("/x",))]


def test_idmap_needs_mappings_and_a_bind():
    from engine.runtime import idmap

    mnt = {"destination": "/x", "type": "bind", "source": "/tmp", "options": ["idmap"]}
    assert idmap.wants_idmap(mnt)
    with pytest.raises(InvalidArgument, match="needs uid and gid mappings"):
        idmap.mappings(mnt, {})
    linux = {
        "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 10}],
        "gidMappings": [{"containerID": 0, "hostID": 2000, "size": 10}],
    }
    assert idmap.mappings(mnt, linux) == ("0 1000 10\n", "0 2000 10\n")
    with pytest.raises(InvalidArgument, match="only bind mounts"):
        idmap.prepare(
            {
                "mounts": [
                    {
                        "destination": "/t",
                        "type": "tmpfs",
                        "uidMappings": linux["uidMappings"],
                        "gidMappings": linux["gidMappings"],
                    }
                ]
            },
            "/",
        )


def test_tmpcopyup_marks_the_mount(bundle):
    cfg = copy.deepcopy(BASE)
    cfg["mounts"].append(
        {"destination": "/etc", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]}
    )
    ints, strs = build(bundle, cfg).find(p.OP_MOUNT)[-1]
    assert ints[1] == p.MNT_IN_ROOT | p.MNT_COPYUP and strs[3] == ""  # not passed to mount(2)
