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
        self.cgroup_parent = f"engine-test-{uuid.uuid4().hex[:8]}"
        self.extra_args = extra_args or []
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
        return [ENGINE, "daemon", "--root", str(self.root), "--exec-root", str(self.exec_root),
                "--log-level", "debug", *self.extra_args]

    def start(self, wait: bool = True) -> EngineDaemon:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
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
        with contextlib.suppress(Exception):
            self.kill()
        shutil.rmtree(self.base, ignore_errors=True)


def _run(cmd: list[str], env: dict[str, str], timeout: float, check: bool) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc
