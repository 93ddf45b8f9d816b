"""Test harness: an isolated `engine daemon` in one line.

Each daemon gets its own temp root, exec root and sockets (short paths under /tmp: unix socket paths
are limited to 108 bytes), its own cgroup parent, and is stopped and removed afterwards even when the
test fails. Its log is kept on failure for the report.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ENGINE = str(Path(sys.prefix) / "bin" / "engine")


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 30) -> None:
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.path)
        self.sock = s


def pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


class EngineDaemon:
    def __init__(self, extra_args: list[str] | None = None, base: str | None = None) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="eng-", dir="/tmp"))
        self.root = self.base / "root"
        self.exec_root = self.base / "run"
        self.docker_sock = str(self.exec_root / "docker.sock")
        self.containerd_sock = str(self.exec_root / "containerd.sock")
        self.log_path = self.base / "daemon.log"
        tag = uuid.uuid4().hex[:6]
        self.cgroup_parent = f"engine-test-{tag}"
        self.network_prefix = f"t{tag}"  # nft tables, bridges and veths of this daemon carry it
        # and --offline: no registry off this machine is ever contacted (a test that names one gets a clear
        # error instead of a DNS query leaving the host); --dns 127.0.0.1: containers' names likewise
        self.extra_args = extra_args or []
        self.extra_env: dict[str, str] = {}  # e.g. ENGINE_FAULT_TASKS for crash tests (set before start())
        self.proc: subprocess.Popen | None = None

    @property
    def docker_host(self) -> str:
        return f"unix://{self.docker_sock}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for the docker CLI / engine CLI against this daemon."""
        return {**os.environ, "DOCKER_HOST": self.docker_host, "ENGINE_HOST": self.docker_host,
                "DOCKER_CONFIG": str(self.base / "docker-config")}

    def args(self) -> list[str]:
        own = ["--root", str(self.root), "--exec-root", str(self.exec_root), "--log-level", "debug"]
        isolation = {"cgroup-parent": self.cgroup_parent, "network-prefix": self.network_prefix, "offline": True,
                     "dns": ["127.0.0.1"]}
        config = self._config_path()
        if config is None:
            own += ["--cgroup-parent", self.cgroup_parent, "--network-prefix", self.network_prefix, "--offline",
                    "--dns", "127.0.0.1"]
        else:  # a flag and the same key in daemon.json conflict: put what the test did not set into the file
            try:
                data = json.loads(Path(config).read_text() or "{}")
            except (OSError, ValueError):
                data = None
            if isinstance(data, dict):
                flags = set(self.extra_args)
                missing = {k: v for k, v in isolation.items() if k not in data and f"--{k}" not in flags}
                if missing:
                    Path(config).write_text(json.dumps({**data, **missing}))
        return [ENGINE, "daemon", *own, *self.extra_args]

    def _config_path(self) -> str | None:
        for i, a in enumerate(self.extra_args):
            if a in ("--config", "--config-file") and i + 1 < len(self.extra_args):
                return self.extra_args[i + 1]
            if a.startswith("--config=") or a.startswith("--config-file="):
                return a.split("=", 1)[1]
        return None

    def start(self, wait: bool = True) -> EngineDaemon:
        log = open(self.log_path, "ab")
        env = {**os.environ, **self.extra_env} if self.extra_env else None
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     env=env)
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
            if os.path.exists(self.containerd_sock):
                try:
                    status, _ = self.request("GET", "/_ping", timeout=2)
                    if status == 200:
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        raise TimeoutError(f"daemon not ready after {timeout}s:\n{self.log()}")

    def request(self, method: str, path: str, body: Any = None, timeout: float = 30,
                headers: dict[str, str] | None = None) -> tuple[int, Any]:
        conn = UnixHTTPConnection(self.docker_sock, timeout)
        try:
            data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
            conn.request(method, path, body=data, headers=headers or {})
            resp = conn.getresponse()
            raw = resp.read()
            try:
                return resp.status, json.loads(raw) if raw else None
            except ValueError:
                return resp.status, raw
        finally:
            conn.close()

    def engine(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return _run([ENGINE, *args], self.env, timeout, check)

    def docker(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["docker", *args], self.env, timeout, check)

    def ctr(self, *args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        return _run(["ctr", "--address", self.containerd_sock, *args], self.env, timeout, check)

    def stop(self, timeout: float = 20) -> int | None:
        """SIGTERM and wait: the graceful path."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def kill(self) -> None:
        """SIGKILL, then wait until the process is really gone (reaped)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        pid = self.proc.pid
        self.proc.kill()
        self.proc.wait()
        deadline = time.monotonic() + 10
        while not pid_gone(pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def restart(self) -> EngineDaemon:
        self.stop()
        return self.start()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-20000:]
        except OSError:
            return ""

    def cleanup(self) -> None:
        """Remove everything this daemon may have left: its process, the shims and containers it started
        (they outlive it by design), mounts and network namespaces under its roots, its cgroups, its nft
        tables and links, and the directories."""
        with contextlib.suppress(Exception):
            self.kill()
        kill_processes_under(str(self.base))
        time.sleep(0.05)  # a shim whose spawn was in flight when the daemon died appears a moment later
        kill_processes_under(str(self.base))
        unmount_under(str(self.base))
        remove_cgroups(self.cgroup_parent)
        remove_network_objects(self.network_prefix)
        shutil.rmtree(self.base, ignore_errors=True)


def kill_processes_under(base: str) -> None:
    """SIGKILL every process whose command line or cwd mentions `base` (shims, container inits) and wait."""
    victims = []
    for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if base in cmd or cwd.startswith(base):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                victims.append(pid)
    deadline = time.monotonic() + 5
    for pid in victims:
        while not pid_gone(pid) and time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
            time.sleep(0.01)


def unmount_under(base: str) -> None:
    """Lazily unmount every mount point under `base`, deepest first."""
    try:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4].replace("\\040", " ") for line in f]
    except OSError:
        return
    for mp in sorted((p for p in points if p == base or p.startswith(base + "/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def remove_cgroups(parent: str) -> None:
    """Remove `parent` and its children from every cgroup hierarchy (v1 controllers and v2)."""
    roots = ["/sys/fs/cgroup"]
    with contextlib.suppress(OSError):
        roots += [os.path.join("/sys/fs/cgroup", d) for d in os.listdir("/sys/fs/cgroup")]
    for root in roots:
        top = os.path.join(root, parent)
        if not os.path.isdir(top):
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: len(t[0]), reverse=True):
            with contextlib.suppress(OSError):
                procs = open(os.path.join(dirpath, "cgroup.procs")).read().split()
                for pid in procs:
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
            for _ in range(50):
                try:
                    os.rmdir(dirpath)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def remove_network_objects(prefix: str) -> None:
    """Delete nft tables and network links whose names start with `prefix` (a test daemon's own)."""
    if shutil.which("nft"):
        out = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split()  # "table inet NAME"
            if len(parts) == 3 and parts[2].startswith(prefix):
                subprocess.run(["nft", "delete", "table", parts[1], parts[2]], capture_output=True)
    with contextlib.suppress(OSError):
        for name in os.listdir("/sys/class/net"):
            if name.startswith(prefix):
                subprocess.run(["ip", "link", "delete", name], capture_output=True)


def _run(cmd: list[str], env: dict[str, str], timeout: float, check: bool) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc
