"""Mounts, the root filesystem, masked and read-only paths, and devices, seen from inside."""

from __future__ import annotations

import os


def mount_table(stdout: str) -> dict[str, tuple[str, set[str]]]:
    """/proc/self/mounts text -> {mount point: (fstype, options)}; the last mount wins."""
    table = {}
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1].startswith("/"):
            table[parts[1]] = (parts[2], set(parts[3].split(",")))
    return table


def test_default_mounts_and_options(rt):
    b = rt.bundle(["cat", "/proc/self/mounts"])
    r = b.run()
    assert r.returncode == 0, r.stderr
    m = mount_table(r.stdout)
    assert m["/proc"][0] == "proc"
    assert m["/dev"][0] == "tmpfs" and {"nosuid", "mode=755"} <= m["/dev"][1]
    assert (
        m["/dev/pts"][0] == "devpts"
        and {"nosuid", "noexec", "gid=5", "mode=620", "ptmxmode=666"} <= m["/dev/pts"][1]
    )
    assert m["/dev/shm"][0] == "tmpfs" and {"nosuid", "nodev", "noexec"} <= m["/dev/shm"][1]
    assert m["/dev/mqueue"][0] == "mqueue"
    assert m["/sys"][0] == "sysfs" and {"ro", "nosuid", "nodev", "noexec"} <= m["/sys"][1]
    assert "ro" in m["/"][1]


def test_tmpfs_size_and_mode(rt):
    b = rt.bundle(["sh", "-c", "stat -c %a /scratch; grep ' /scratch ' /proc/self/mounts"])
    b.spec["mounts"].append(
        {
            "destination": "/scratch",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nodev", "size=1m", "mode=1750"],
        }
    )
    r = b.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "1750"
    opts = set(lines[1].split()[3].split(","))
    assert {"nodev", "size=1024k", "mode=1750"} <= opts


def test_bind_mounts_read_only_and_read_write(rt):
    host = rt.workdir / "shared"
    host.mkdir()
    (host / "hello").write_text("from host\n")
    b = rt.bundle(
        [
            "sh",
            "-c",
            "cat /ro/hello; echo x > /ro/new 2>/dev/null && echo ro-writable; "
            "echo from-container > /rw/new && echo rw-ok; grep -E ' /(ro|rw) ' /proc/self/mounts",
        ]
    )
    b.spec["mounts"] += [
        {"destination": "/ro", "type": "bind", "source": str(host), "options": ["bind", "ro", "nosuid"]},
        {"destination": "/rw", "type": "bind", "source": str(host), "options": ["rbind", "rw"]},
    ]
    r = b.run()
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[:2] == ["from host", "rw-ok"]
    assert (host / "new").read_text() == "from-container\n"
    m = mount_table("\n".join(out[2:]))
    assert {"ro", "nosuid"} <= m["/ro"][1]
    assert "rw" in m["/rw"][1]


def test_bind_mount_of_a_file(rt):
    src = rt.workdir / "file.txt"
    src.write_text("single file\n")
    b = rt.bundle(["cat", "/etc/injected"])
    b.spec["mounts"].append(
        {"destination": "/etc/injected", "type": "bind", "source": str(src), "options": ["bind", "ro"]}
    )
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "single file\n"


def test_readonly_rootfs(rt):
    b = rt.bundle(["sh", "-c", "touch /newfile; echo rc=$?"])
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "rc=1"
    assert "Read-only file system" in r.stderr
    assert not (b.rootfs / "newfile").exists()


def test_writable_rootfs(rt):
    b = rt.bundle(["sh", "-c", "echo data > /newfile && echo ok"])
    b.spec["root"]["readonly"] = False
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"
    assert (b.rootfs / "newfile").read_text() == "data\n"


def test_masked_paths(rt):
    b = rt.bundle(
        ["sh", "-c", "cat /etc/secret; echo [; ls -A /etc/secretdir; echo ]; cat /proc/kcore | wc -c"]
    )
    (b.rootfs / "etc/secret").write_text("password\n")
    (b.rootfs / "etc/secretdir").mkdir()
    (b.rootfs / "etc/secretdir/key").write_text("k\n")
    b.linux["maskedPaths"] += ["/etc/secret", "/etc/secretdir", "/does/not/exist"]
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["[", "]", "0"]


def test_readonly_paths(rt):
    b = rt.bundle(
        [
            "sh",
            "-c",
            "echo 1 > /proc/sys/kernel/shm_rmid_forced; echo sys=$?; "
            "touch /etc/new; echo etc=$?; touch /var/new; echo var=$?",
        ]
    )
    b.spec["root"]["readonly"] = False
    b.linux["readonlyPaths"] += ["/etc", "/does/not/exist"]
    r = b.run()
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["sys=1", "etc=1", "var=0"]
    assert "Read-only file system" in r.stderr


def test_default_devices_and_dev_symlinks(rt):
    script = (
        "for d in null zero full random urandom tty; do stat -c '%n %F %t:%T' /dev/$d; done; "
        "for l in fd stdin stdout stderr ptmx; do echo /dev/$l $(readlink /dev/$l); done; "
        "echo hi > /dev/null && head -c 4 /dev/zero | wc -c"
    )
    b = rt.bundle(["sh", "-c", script])
    r = b.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:6] == [
        "/dev/null character special file 1:3",
        "/dev/zero character special file 1:5",
        "/dev/full character special file 1:7",
        "/dev/random character special file 1:8",
        "/dev/urandom character special file 1:9",
        "/dev/tty character special file 5:0",
    ]
    assert lines[6:11] == [
        "/dev/fd /proc/self/fd",
        "/dev/stdin /proc/self/fd/0",
        "/dev/stdout /proc/self/fd/1",
        "/dev/stderr /proc/self/fd/2",
        "/dev/ptmx pts/ptmx",
    ]
    assert lines[11] == "4"


def test_extra_device_node_and_cgroup_permission(rt):
    # opening is enough: the device cgroup decides at open time
    script = "stat -c '%F %t:%T %a %u:%g' /dev/mytun; : < /dev/mytun && echo tun-ok; ( : < /dev/mykmsg ); echo kmsg=$?"
    b = rt.bundle(["sh", "-c", script])
    b.linux["devices"] = [
        {"path": "/dev/mytun", "type": "c", "major": 10, "minor": 200, "fileMode": 0o620, "uid": 0, "gid": 5},
        {"path": "/dev/mykmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644, "uid": 0, "gid": 0},
    ]
    # the device cgroup allows 10:200 but not 1:11 (which no runtime allows by default)
    b.linux["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": 10, "minor": 200, "access": "rwm"}
    )
    r = b.run()
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "character special file a:c8 620 0:5"
    assert lines[1:] == ["tun-ok", "kmsg=1"]
    assert "Operation not permitted" in r.stderr


def test_no_mounts_leak_to_the_host(rt):
    b = rt.bundle(["true"])
    b.spec["mounts"].append({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs"})
    r = b.run()
    assert r.returncode == 0, r.stderr
    with open("/proc/self/mountinfo") as f:
        assert str(b.path) not in f.read()
    assert not os.path.ismount(b.rootfs / "proc")
