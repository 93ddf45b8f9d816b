"""Debian's real containerd daemon, started on its own temporary root, state, sockets and opt dir, for the
differential test and bench/ctr_run.py.

The config (version 2) disables the CRI plugin and the snapshotters and tracing plugins that need more
than this machine has; the runc shim (containerd-shim-runc-v2) drives /usr/bin/runc. Containers it runs get
the cgroups ctr's spec names (/<namespace>/<id>), so callers use namespaces of their own and
`cleanup` removes those cgroup directories, kills anything left under the temporary dir (shims are
started with their bundle there) and unmounts what is mounted under it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"

_CONFIG = """version = 2
root = "{base}/root"
state = "{base}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{base}/containerd.sock"
[ttrpc]
  address = "{base}/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "{base}/opt"
"""


def available() -> bool:
    return all(os.access(p, os.X_OK) for p in (CONTAINERD, CTR, "/usr/bin/containerd-shim-runc-v2"))


class RealContainerd:
    """containerd on a temp dir; `sock` is its gRPC socket. Use as a context manager or call cleanup()."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="ctd-", dir="/tmp"))
        self.sock = str(self.base / "containerd.sock")
        self.namespaces: set[str] = set()
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 20) -> RealContainerd:
        cfg = self.base / "config.toml"
        cfg.write_text(_CONFIG.format(base=self.base))
        log = open(self.base / "containerd.log", "ab")
        self.proc = subprocess.Popen([CONTAINERD, "--config", str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.sock) and subprocess.run([CTR, "-a", self.sock, "version"],
                                                            capture_output=True).returncode == 0:
                return self
            time.sleep(0.02)
        raise TimeoutError(f"containerd not ready after {timeout}s:\n{self.log()}")

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        for i, a in enumerate(args[:-1]):
            if a in ("-n", "--namespace"):
                self.namespaces.add(args[i + 1])
        r = subprocess.run([CTR, "--address", self.sock, *args], capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"ctr {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def log(self) -> str:
        try:
            return (self.base / "containerd.log").read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def __enter__(self) -> RealContainerd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        """Stop every task (through ctr while the daemon runs), stop containerd, kill what is left under the
        temp dir (shims), unmount, remove the namespaces' cgroups and the directory."""
        if self.proc is not None and self.proc.poll() is None:
            for ns in self.namespaces:
                with contextlib.suppress(Exception):
                    for line in self.ctr("-n", ns, "tasks", "ls", "-q", check=False, timeout=10).stdout.split():
                        self.ctr("-n", ns, "tasks", "rm", "-f", line, check=False, timeout=20)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _kill_under(str(self.base))
        _unmount_under(str(self.base))
        for ns in self.namespaces:
            remove_cgroups(ns)
        shutil.rmtree(self.base, ignore_errors=True)


def _kill_under(base: str) -> None:
    """SIGKILL processes whose command line or cwd mentions `base` (containerd's shims run in the bundle)."""
    me = os.getpid()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        if int(pid) == me:
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if base in cmd or cwd.startswith(base):
            with contextlib.suppress(OSError):
                os.kill(int(pid), signal.SIGKILL)


def _unmount_under(base: str) -> None:
    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for p in sorted((p for p in points if p.startswith(base)), key=len, reverse=True):
        subprocess.run(["umount", "-l", p], capture_output=True)


def remove_cgroups(name: str) -> None:
    """Remove /sys/fs/cgroup/<controller>/<name> and everything below it (empty cgroups only)."""
    for ctl in Path("/sys/fs/cgroup").iterdir():
        top = ctl / name
        if not top.is_dir():
            continue
        for sub in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                sub.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()
