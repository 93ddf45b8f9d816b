"""Build a busybox root filesystem offline, from Debian's busybox-static.

The binary is copied (never hard-linked: a test that chowns or chmods its rootfs must not
change the host's /bin/busybox) to ``<rootfs>/bin/busybox`` and every
applet from ``busybox --list`` becomes a symlink next to it. ``/etc/passwd`` and
``/etc/group`` hold root, nobody and a test user (uid/gid 1000), so ``id`` and user
lookups work inside containers. The applet list is read once per process.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
TEST_UID = 1000
TEST_GID = 1000

PASSWD = """\
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
tester:x:1000:1000:test user:/home/tester:/bin/sh
"""
GROUP = """\
root:x:0:
tty:x:5:
nogroup:x:65534:
tester:x:1000:
"""


@functools.cache
def applets() -> tuple[str, ...]:
    """The applet names the installed busybox provides (``busybox --list``)."""
    if not BUSYBOX.exists():
        raise FileNotFoundError(f"{BUSYBOX} is missing: install Debian's busybox-static")
    out = subprocess.run([str(BUSYBOX), "--list"], capture_output=True, text=True, check=True).stdout
    return tuple(name for name in out.split() if name and "/" not in name and name != "busybox")


def build_busybox_rootfs(rootfs: str | os.PathLike[str]) -> Path:
    """Create a minimal busybox root filesystem at ``rootfs`` and return its path."""
    root = Path(rootfs)
    bindir = root / "bin"
    bindir.mkdir(parents=True, exist_ok=True)
    target = bindir / "busybox"
    shutil.copy2(BUSYBOX, target)
    for name in applets():
        os.symlink("busybox", bindir / name)
    for d in ("etc", "proc", "sys", "dev", "tmp", "root", "home/tester", "usr", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    os.chown(root / "home/tester", TEST_UID, TEST_GID)
    (root / "usr/bin").symlink_to("../bin")
    (root / "sbin").symlink_to("bin")
    (root / "etc/passwd").write_text(PASSWD)
    (root / "etc/group").write_text(GROUP)
    (root / "etc/hostname").write_text("busybox\n")
    return root
