"""Detach keys, ps parsing, container path resolution, docker cp extraction and overlay changes."""

from __future__ import annotations

import asyncio
import io
import os
import stat
import tarfile

import pytest

from engine.api.docker import archive
from engine.api.docker.attach import DetachScanner, parse_detach_keys
from engine.api.docker.streams import overlay_changes, parse_ps
from engine.errors import InvalidArgument, NotFound
from engine.services.dockerd import rootfs
from engine.services.dockerd.exec import ExecIO, normalise_config


def test_detach_keys_parse() -> None:
    assert parse_detach_keys("ctrl-p,ctrl-q") == b"\x10\x11"
    assert parse_detach_keys("ctrl-a,x,ctrl-@,ctrl-_") == b"\x01x\x00\x1f"
    for bad in ("ctrl-", "ctrl-1", "abc", "", "ctrl-p,,"):
        with pytest.raises(InvalidArgument, match="Invalid detach keys"):
            parse_detach_keys(bad)


def test_detach_scanner_holds_partial_matches() -> None:
    s = DetachScanner(b"\x10\x11")
    assert s.feed(b"echo hi\r") == (b"echo hi\r", False)
    assert s.feed(b"a\x10") == (b"a", False)  # held: it may be the start of the sequence
    assert s.feed(b"b") == (b"\x10b", False)  # it was not: passed on
    assert s.feed(b"\x10") == (b"", False)
    assert s.feed(b"\x11rest") == (b"", True)
    s2 = DetachScanner(b"\x10\x11")
    assert s2.feed(b"x\x10\x10\x11") == (b"x\x10", True)


def test_parse_ps_keeps_container_pids_and_joins_the_command() -> None:
    out = ("UID          PID    PPID  C STIME TTY          TIME CMD\n"
           "root           1       0  0 10:00 ?        00:00:01 /sbin/init splash\n"
           "root        4242       1  0 10:01 ?        00:00:00 sleep 100 --x y\n")
    res = parse_ps(out, {4242})
    assert res["Titles"] == ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"]
    assert res["Processes"] == [["root", "4242", "1", "0", "10:01", "?", "00:00:00", "sleep 100 --x y"]]
    with pytest.raises(InvalidArgument, match="PID field"):
        parse_ps("USER CMD\n", {1})


@pytest.fixture
def root(tmp_path):  # type: ignore[no-untyped-def]
    r = tmp_path / "rootfs"
    (r / "etc").mkdir(parents=True)
    (r / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n"
                                      "app:x:1000:1000::/home/app:/bin/sh\n")
    (r / "etc" / "group").write_text("root:x:0:\nwheel:x:10:app\napp:x:1000:\n")
    (r / "tmp").mkdir()
    os.symlink("/etc", r / "tmp" / "abs")
    os.symlink("../../../../../../../../etc", r / "tmp" / "rel")
    os.symlink("/tmp/loop", r / "tmp" / "loop")
    return str(r)


def test_resolve_stays_in_root(root: str) -> None:
    assert rootfs.resolve(root, "/tmp/abs/passwd") == os.path.join(root, "etc/passwd")
    assert rootfs.resolve(root, "/tmp/rel/passwd") == os.path.join(root, "etc/passwd")
    assert rootfs.resolve(root, "/../../../etc") == os.path.join(root, "etc")
    assert rootfs.resolve(root, "/tmp/abs", follow_last=False) == os.path.join(root, "tmp/abs")
    assert rootfs.resolve(root, "/") == root
    with pytest.raises(InvalidArgument, match="too many levels"):
        rootfs.resolve(root, "/tmp/loop/x")


def test_lookup_user(root: str) -> None:
    assert rootfs.lookup_user(root, "app") == (1000, 1000, [10])
    assert rootfs.lookup_user(root, "65534") == (65534, 65534, [])
    assert rootfs.lookup_user(root, "app:wheel") == (1000, 10, [])
    assert rootfs.lookup_user(root, "4000:4001") == (4000, 4001, [])
    with pytest.raises(NotFound, match="unable to find user ghost"):
        rootfs.lookup_user(root, "ghost")


def test_stat_path_reports_link_target_inside(root: str) -> None:
    host, st = archive.stat_path(root, "/tmp/rel")
    assert host == os.path.join(root, "tmp/rel")
    assert st["name"] == "rel" and st["linkTarget"] == "/etc"
    assert st["mode"] & (1 << 27)
    _, st = archive.stat_path(root, "/etc")
    assert st["mode"] & (1 << 31)
    with pytest.raises(FileNotFoundError):
        archive.stat_path(root, "/nope")


def _tar(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for ti, data in members:
            ti.size = len(data) if ti.isreg() else 0
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def _file(name: str, mode: int = 0o644, uid: int = 1234) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.mode, ti.uid, ti.gid, ti.mtime = mode, uid, uid, 1_700_000_000
    return ti


def test_extract_through_symlinks_stays_inside(root: str, tmp_path) -> None:
    outside = tmp_path / "host-etc"
    outside.mkdir()
    os.symlink(str(outside), os.path.join(root, "tmp", "hostlink"))  # a host path: inside, it means /<that path>
    t = tmp_path / "in.tar"
    t.write_bytes(_tar([(_file("f.txt"), b"data")]))
    archive.extract(root, "/tmp/abs", str(t), no_overwrite_dir_non_dir=False, copy_uid_gid=False)
    assert open(os.path.join(root, "etc", "f.txt"), "rb").read() == b"data"
    archive.extract(root, "/tmp/rel", str(t), no_overwrite_dir_non_dir=False, copy_uid_gid=True)
    assert os.stat(os.path.join(root, "etc", "f.txt")).st_uid == 1234
    archive.extract(root, "/tmp/hostlink", str(t), no_overwrite_dir_non_dir=False, copy_uid_gid=False)
    assert os.listdir(outside) == []
    assert os.path.exists(os.path.join(root, str(outside).lstrip("/"), "f.txt"))


def test_extract_replaces_a_symlink_rather_than_writing_through_it(root: str, tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("keep")
    os.symlink(str(victim), os.path.join(root, "tmp", "x"))
    t = tmp_path / "in.tar"
    t.write_bytes(_tar([(_file("x"), b"new")]))
    archive.extract(root, "/tmp", str(t), no_overwrite_dir_non_dir=False, copy_uid_gid=False)
    assert victim.read_text() == "keep"
    st = os.lstat(os.path.join(root, "tmp", "x"))
    assert stat.S_ISREG(st.st_mode) and st.st_uid == 0


def test_extract_refuses_dotdot_and_dir_nondir(root: str, tmp_path) -> None:
    t = tmp_path / "in.tar"
    t.write_bytes(_tar([(_file("../../escape"), b"x")]))
    with pytest.raises(InvalidArgument, match="'..'"):
        archive.extract(root, "/tmp", str(t), no_overwrite_dir_non_dir=False, copy_uid_gid=False)
    t.write_bytes(_tar([(_file("etc"), b"x")]))
    with pytest.raises(InvalidArgument, match="cannot overwrite directory"):
        archive.extract(root, "/", str(t), no_overwrite_dir_non_dir=True, copy_uid_gid=False)


def test_overlay_changes(tmp_path) -> None:
    lower, upper = tmp_path / "lower", tmp_path / "upper"
    for d in (lower / "tmp", lower / "bin", lower / "etc", upper / "tmp", upper / "bin", upper / "etc"):
        d.mkdir(parents=True)
    (lower / "bin" / "true").write_text("x")
    (lower / "etc" / "motd").write_text("x")
    (upper / "tmp" / "new").write_text("y")
    (upper / "etc" / "hosts").write_text("mounted")
    os.mknod(upper / "bin" / "true", stat.S_IFCHR | 0o000, 0)
    got = overlay_changes(str(upper), [str(lower)], {"/etc/hosts"})
    assert got == [{"Path": "/bin", "Kind": 0}, {"Path": "/bin/true", "Kind": 2},
                   {"Path": "/tmp", "Kind": 0}, {"Path": "/tmp/new", "Kind": 1}]


def test_exec_config_checks() -> None:
    with pytest.raises(InvalidArgument, match="No exec command specified"):
        normalise_config({"Cmd": []})
    with pytest.raises(InvalidArgument, match="absolute path"):
        normalise_config({"Cmd": ["sh"], "WorkingDir": "rel"})
    cfg = normalise_config({"Cmd": "sh", "Tty": 1, "ConsoleSize": [24, 80]})
    assert cfg["Cmd"] == ["sh"] and cfg["Tty"] is True and cfg["ConsoleSize"] == [24, 80]


def test_exec_io_fifos(tmp_path) -> None:
    async def main() -> list[tuple[int, bytes]]:
        eio = ExecIO(str(tmp_path / "x"), stdin=True, stderr=True)
        # stand in for the shim: open the FIFOs as it does
        w_out = os.open(eio.paths["stdout"], os.O_RDWR | os.O_NONBLOCK)
        w_err = os.open(eio.paths["stderr"], os.O_RDWR | os.O_NONBLOCK)
        r_in = os.open(eio.paths["stdin"], os.O_RDONLY | os.O_NONBLOCK)
        os.write(w_out, b"early\n")  # before anyone reads: held by the FIFO
        got: list[tuple[int, bytes]] = []

        async def read() -> None:
            async for item in eio.output():
                got.append(item)

        t = asyncio.create_task(read())
        await asyncio.sleep(0.05)
        os.write(w_err, b"err\n")
        eio.write_stdin(b"input")
        eio.close_stdin()
        await asyncio.sleep(0.05)
        assert os.read(r_in, 100) == b"input"
        assert os.read(r_in, 100) == b""  # EOF: our write end is closed
        os.close(w_out)
        os.close(w_err)
        os.close(r_in)
        await asyncio.wait_for(t, 5)
        eio.close()
        assert not os.path.exists(tmp_path / "x")
        return got

    assert asyncio.run(main()) == [(1, b"early\n"), (2, b"err\n")]
