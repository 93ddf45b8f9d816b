"""Small pure parts: mount options, state machine, signals, caps, ids, bundles, cgroup paths, CLI flags."""

from __future__ import annotations

import json
import os

import pytest

from engine.errors import AlreadyExists, InvalidArgument, NotFound
from engine.runtime import caps, cgpath, cli, signals, spec
from engine.runtime import mounts as m
from engine.runtime import state as st


@pytest.mark.parametrize(
    ("opts", "flags", "prop", "data"),
    [
        (["nosuid", "noexec", "nodev", "ro"], m.MS_NOSUID | m.MS_NOEXEC | m.MS_NODEV | m.MS_RDONLY, 0, ""),
        (["rbind", "rprivate"], m.MS_BIND | m.MS_REC, m.MS_PRIVATE | m.MS_REC, ""),
        (["ro", "rw", "suid", "nosuid"], m.MS_NOSUID, 0, ""),
        (["mode=755", "size=65536k", "strictatime"], m.MS_STRICTATIME, 0, "mode=755,size=65536k"),
        (["newinstance", "ptmxmode=0666", "shared"], 0, m.MS_SHARED, "newinstance,ptmxmode=0666"),
        (["tmpcopyup", "relatime"], m.MS_RELATIME, 0, ""),
        ([], 0, 0, ""),
    ],
)
def test_mount_options(opts, flags, prop, data):
    assert m.parse_options(opts) == (flags, prop, data)


def test_host_cgroup_mounts_from_mountinfo():
    text = (
        "30 25 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n"
        "31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n"
        "32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "33 25 0:29 / /proc rw - proc proc rw\n"
    )
    got = m.host_cgroup_mounts(text)
    assert [g[0] for g in got] == [
        "/sys/fs/cgroup/unified",
        "/sys/fs/cgroup/cpu,cpuacct",
        "/sys/fs/cgroup/systemd",
    ]
    assert got[1][2:] == ("cgroup", "cpu,cpuacct")


@pytest.mark.parametrize(
    ("status", "start", "kill", "delete", "pause", "resume", "exec_"),
    [
        (st.CREATED, True, True, True, True, False, True),
        (st.RUNNING, False, True, False, True, False, True),
        (st.PAUSED, False, True, False, False, True, False),
        (st.STOPPED, False, False, True, False, False, False),
        (st.CREATING, False, False, False, False, False, False),
    ],
)
def test_state_machine(status, start, kill, delete, pause, resume, exec_):
    assert st.can_start(status) is start
    assert st.can_kill(status) is kill
    assert st.can_delete(status) is delete
    assert st.can_pause(status) is pause
    assert st.can_resume(status) is resume
    assert st.can_exec(status) is exec_


def test_status_is_derived_from_the_world(tmp_path):
    me = os.getpid()
    c = st.Container("x", str(tmp_path), {"pid": me, "pid_start": st.proc_start_time(me)})
    os.mkfifo(tmp_path / st.FIFO)
    assert c.status() == st.CREATED
    os.unlink(tmp_path / st.FIFO)
    assert c.status() == st.RUNNING
    assert c.status(frozen=lambda: True) == st.PAUSED
    c.data["pid_start"] += 1  # same pid, another process: pid reuse
    assert c.status() == st.STOPPED
    assert c.oci_state(st.STOPPED)["pid"] == 0


def test_state_file_round_trip_and_atomic(tmp_path):
    d = tmp_path / "c1"
    d.mkdir()
    c = st.Container("c1", str(d), {"pid": 1, "bundle": "/b", "config": {"annotations": {"a": "b"}}})
    c.save()
    assert [p.name for p in d.iterdir()] == ["state.json"]  # the temp file was renamed away
    c2 = st.load(str(tmp_path), "c1")
    assert c2.bundle == "/b" and c2.oci_state(st.RUNNING)["annotations"] == {"a": "b"}
    assert st.list_ids(str(tmp_path)) == ["c1"]
    with pytest.raises(NotFound, match="container does not exist"):
        st.load(str(tmp_path), "nope")


@pytest.mark.parametrize(
    ("text", "num"),
    [
        ("KILL", 9),
        ("SIGKILL", 9),
        ("9", 9),
        ("term", 15),
        ("SIGRTMIN+2", 36),
        ("RTMAX-1", 63),
        ("sigusr1", 10),
    ],
)
def test_signals(text, num):
    assert signals.parse(text) == num


@pytest.mark.parametrize("bad", ["BOGUS", "0", "65", "RTMIN+40", ""])
def test_bad_signals(bad):
    with pytest.raises(InvalidArgument, match="unknown signal"):
        signals.parse(bad)


def test_caps():
    assert caps.mask(["CAP_KILL", "cap_chown", "NET_RAW", "CAP_NOPE"]) == (1 << 5) | (1 << 0) | (1 << 13)
    assert caps.unknown(["CAP_KILL", "CAP_NOPE"]) == ["CAP_NOPE"]
    assert caps.names(1 << 21) == ["CAP_SYS_ADMIN"]


@pytest.mark.parametrize("good", ["abc", "a.b-c_d+1", "X" * 100])
def test_good_ids(good):
    spec.check_id(good)


@pytest.mark.parametrize("bad", ["", "a/b", "..", "a b", "ü"])
def test_bad_ids(bad):
    with pytest.raises(InvalidArgument, match="invalid container id"):
        spec.check_id(bad)


def test_bundle_errors(tmp_path):
    with pytest.raises(NotFound, match="chdir .*: no such file or directory"):
        spec.load_bundle(str(tmp_path / "none"))
    with pytest.raises(NotFound, match="config.json not found"):
        spec.load_bundle(str(tmp_path))
    (tmp_path / "config.json").write_text("{bad")
    with pytest.raises(InvalidArgument, match="invalid config.json"):
        spec.load_bundle(str(tmp_path))
    cfg = {"ociVersion": "1.2.0", "root": {"path": "rootfs"}, "process": {"args": ["sh"], "cwd": "/"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(NotFound, match="invalid rootfs: stat .*rootfs: no such file"):
        spec.load_bundle(str(tmp_path))
    (tmp_path / "rootfs").mkdir()
    config, bundle, rootfs = spec.load_bundle(str(tmp_path))
    assert rootfs == str(tmp_path / "rootfs") and bundle == str(tmp_path)
    cfg["process"]["args"] = []
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidArgument, match="args must not be empty"):
        spec.load_bundle(str(tmp_path))
    cfg["process"]["args"] = ["sh"]
    cfg["hostname"] = "h"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(InvalidArgument, match="hostname without a new uts namespace"):
        spec.load_bundle(str(tmp_path))


def test_cgroup_paths(monkeypatch):
    assert cgpath.resolve("", "abc") == "/abc"
    assert cgpath.resolve("/a/b/../c", "abc") == "/a/c"
    assert cgpath.resolve("system.slice:docker:abc", "abc") == "/system.slice/docker-abc.scope"
    monkeypatch.setattr(cgpath, "_own_cgroup", lambda: "/user.slice/me")
    assert cgpath.resolve("sub/c1", "abc") == "/user.slice/me/sub/c1"


def test_cli_flag_parsing():
    spec_, aliases, _ = cli.COMMANDS["run"]
    opts, rest = cli.parse_flags(["-b", "/x", "--pid-file=/p", "-d", "--no-pivot", "id1"], spec_, aliases)
    assert opts == {"bundle": "/x", "pid-file": "/p", "detach": True, "no-pivot": True}
    assert rest == ["id1"]
    opts, rest = cli.parse_flags(["-bundle", "/y", "--", "-weird"], spec_, aliases)
    assert opts == {"bundle": "/y"} and rest == ["-weird"]
    spec_, aliases, _ = cli.COMMANDS["exec"]
    opts, rest = cli.parse_flags(["-e", "A=1", "--env", "B=2", "-t", "c1", "sh", "-c", "x"], spec_, aliases)
    assert opts == {"env": ["A=1", "B=2"], "tty": True} and rest == ["c1", "sh", "-c", "x"]
    with pytest.raises(cli.Usage, match="flag provided but not defined"):
        cli.parse_flags(["--nope", "x"], spec_, aliases)


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert cli.main(["--root", str(tmp_path), "state", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'level=error msg="container does not exist"' in err
    log = tmp_path / "log.json"
    assert cli.main(["--root", str(tmp_path), "--log", str(log), "--log-format", "json", "kill", "nope"]) == 1
    assert capsys.readouterr().err == "container does not exist\n"
    assert json.loads(log.read_text())["msg"] == "container does not exist"
    assert cli.main(["--root", str(tmp_path), "state"]) == 1
    assert "requires exactly 1 argument" in capsys.readouterr().err


def test_spec_command_writes_and_refuses_to_overwrite(tmp_path, capsys):
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 0
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["process"]["args"] == ["sh"] and cfg["root"]["path"] == "rootfs"
    assert cli.main(["spec", "--bundle", str(tmp_path)]) == 1
    assert "exists" in capsys.readouterr().err
    assert isinstance(AlreadyExists("x"), Exception)
