"""Mount table and /proc/<pid>/cgroup parsing, path cleaning, manager path mapping."""

import pytest

from engine.errors import InvalidArgument
from engine.runtime.cgroups import layout, open_manager
from engine.runtime.cgroups.v1 import V1Manager
from engine.runtime.cgroups.v2 import V2Manager

# the hybrid layout of the machines this engine is developed on
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""

COMOUNTED = """\
25 21 0:22 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid - cgroup cgroup rw,cpu,cpuacct
26 21 0:23 / /sys/fs/cgroup/devices rw,nosuid - cgroup cgroup rw,devices
27 21 0:23 /docker/abc /sys/fs/cgroup/devices2 rw,nosuid - cgroup cgroup rw,devices
28 21 0:24 / /mnt/my\\040cg rw - cgroup cgroup rw,freezer
"""


def test_parse_hybrid_mountinfo():
    mounts = layout.parse_mountinfo(HYBRID)
    assert [m.fstype for m in mounts].count("cgroup") == 9
    by_point = {m.mountpoint: m for m in mounts}
    assert by_point["/sys/fs/cgroup/cpu"].subsystems == ["cpu"]
    assert by_point["/sys/fs/cgroup/systemd"].subsystems == ["name=systemd"]
    assert by_point["/sys/fs/cgroup/unified"].fstype == "cgroup2"
    assert "/sys/fs/cgroup" not in by_point  # the tmpfs is not a cgroup mount


def test_parse_comounted_duplicate_and_escaped():
    mounts = layout.parse_mountinfo(COMOUNTED)
    assert mounts[0].subsystems == ["cpu", "cpuacct"]
    assert mounts[2].root == "/docker/abc"
    assert mounts[3].mountpoint == "/mnt/my cg"


def test_parse_proc_cgroup():
    text = "9:name=systemd:/\n4:memory:/process_api/x\n1:cpu,cpuacct:/a\n0::/u\n"
    got = layout.parse_proc_cgroup(text)
    assert got == {"name=systemd": "/", "memory": "/process_api/x", "cpu": "/a", "cpuacct": "/a", "": "/u"}


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("/engine/abc", "/engine/abc"),
        ("/engine/../x", "/x"),
        ("//a//b/", "/a/b"),
        ("/../../a", "/a"),
        ("rel/x", "rel/x"),
        ("../../rel", "rel"),
        ("a/../../b", "b"),
    ],
)
def test_clean_path(raw, clean):
    assert layout.clean_path(raw) == clean


def test_pagesize_names():
    assert layout.format_pagesize_kb(2048) == "2MB"
    assert layout.format_pagesize_kb(1048576) == "1GB"
    assert layout.format_pagesize_kb(64) == "64KB"


def test_v1_manager_maps_path_into_every_hierarchy():
    mounts = layout.parse_mountinfo(HYBRID)
    v1 = [m for m in mounts if m.fstype == "cgroup"]
    unified = next(m for m in mounts if m.fstype == "cgroup2")
    m = V1Manager("/engine/abc", mounts=v1, unified=unified)
    paths = m.paths()
    assert paths["memory"] == "/sys/fs/cgroup/memory/engine/abc"
    assert paths["name=systemd"] == "/sys/fs/cgroup/systemd/engine/abc"
    assert paths[""] == "/sys/fs/cgroup/unified/engine/abc"
    assert "hugetlb" not in paths


def test_v1_manager_comounted_share_a_dir_and_relative_paths_follow_own_cgroup():
    mounts = layout.parse_mountinfo(COMOUNTED)[:2]
    m = V1Manager("ctr1", mounts=mounts, own={"cpu": "/user/1", "cpuacct": "/user/1", "devices": "/"})
    paths = m.paths()
    assert paths["cpu"] == paths["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct/user/1/ctr1"
    assert paths["devices"] == "/sys/fs/cgroup/devices/ctr1"


def test_v2_manager_paths():
    assert V2Manager("/engine/abc").paths() == {"": "/sys/fs/cgroup/engine/abc"}
    assert V2Manager("x", root="/r", own="/user.slice").dir == "/r/user.slice/x"


@pytest.mark.parametrize("bad", ["", "/", "/..", "   ", "."])
def test_open_manager_refuses_root_and_empty(bad):
    with pytest.raises(InvalidArgument):
        open_manager(bad, version="v2")


def test_open_manager_unknown_version():
    with pytest.raises(InvalidArgument, match="unknown cgroup version"):
        open_manager("/x", version="v3")
