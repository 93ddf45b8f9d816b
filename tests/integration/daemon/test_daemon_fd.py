"""systemd socket activation: `-H fd://` serves the listening sockets passed from fd 3 on (LISTEN_PID,
LISTEN_FDS), as systemd's docker.socket does; here the test plays systemd with a pre-bound unix socket."""

from __future__ import annotations

import os
import socket
import subprocess
import urllib.request

import pytest
from daemon_util import make_certs, run_daemon

from tests.harness import ENGINE, EngineDaemon

pytestmark = pytest.mark.root


class ActivatedDaemon(EngineDaemon):
    """The daemon started the way systemd starts it: sh sets LISTEN_PID to its own pid and execs."""

    def __init__(self, host: str = "fd://", tcp: bool = False, extra: list[str] | None = None) -> None:
        super().__init__()
        self.host = host
        self.extra = extra or []
        self.exec_root.mkdir(parents=True)
        if tcp:  # what systemd binds for ListenStream=127.0.0.1:PORT
            self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.listener.bind(("127.0.0.1", 0))
            self.port = self.listener.getsockname()[1]
        else:  # ListenStream=/run/…/docker.sock
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.listener.bind(self.docker_sock)
        self.listener.listen(16)

    def cleanup(self) -> None:
        super().cleanup()
        self.listener.close()

    def start(self, wait: bool = True) -> EngineDaemon:
        fd = self.listener.fileno()
        cmd = (f"LISTEN_PID=$$ LISTEN_FDS=1 exec {ENGINE} daemon --root {self.root} --exec-root {self.exec_root} "
               f"--log-level debug -H {self.host} {' '.join(self.extra)} 3<&{fd} {fd}<&-")
        # bash (not dash) for a two-digit fd in the redirection
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(["bash", "-c", cmd], stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, pass_fds=(fd,))
        if wait:
            self.wait_ready()
        return self


@pytest.fixture
def activated():  # type: ignore[no-untyped-def]
    made: list[ActivatedDaemon] = []

    def make(host: str = "fd://", tcp: bool = False, extra: list[str] | None = None) -> ActivatedDaemon:
        made.append(ActivatedDaemon(host, tcp, extra))
        return made[-1]

    try:
        yield make
    finally:
        for d in made:
            d.cleanup()


def test_fd_socket_activation(activated) -> None:
    d = activated()
    # a client can connect before the daemon runs: the kernel queues it on the listening socket
    early = socket.socket(socket.AF_UNIX)
    early.connect(d.docker_sock)
    early.sendall(b"GET /_ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    d.start()
    early.settimeout(10)
    assert early.recv(4096).startswith(b"HTTP/1.1 200 OK")
    early.close()
    assert "Docker API listening on fd 3" in d.log()
    out = d.docker("version", "--format", "{{.Server.APIVersion}}").stdout
    assert out.strip() == "1.50"
    assert d.request("GET", "/info")[0] == 200
    d.ctr("version")  # the containerd socket is still made under the exec root
    assert d.stop() == 0


def test_fd_with_the_fd_number(activated) -> None:
    d = activated("fd://3")
    d.start()
    assert d.request("GET", "/_ping")[0] == 200
    assert d.stop() == 0


def test_fd_without_passed_sockets_is_refused(tmp_path) -> None:
    proc = run_daemon("--root", str(tmp_path / "root"), "--exec-root", str(tmp_path / "run"), "-H", "fd://")
    assert proc.returncode == 1
    # refused when the listeners start: start-up log lines may come first, the error is the last line
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("engine daemon: ") and "fd:// was given but no sockets were passed" in last, proc.stderr
    assert "Traceback" not in proc.stderr


def test_fd_with_listen_pid_of_another_process_is_ignored(tmp_path) -> None:
    # LISTEN_PID names the parent, not the daemon: the sockets are not for us (sd_listen_fds' rule)
    env = {**os.environ, "LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "1"}
    proc = subprocess.run([ENGINE, "daemon", "--root", str(tmp_path / "root"), "--exec-root", str(tmp_path / "run"),
                           "-H", "fd://"], env=env, capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert "no sockets were passed" in proc.stderr


def test_fd_with_a_number_that_was_not_passed_is_refused(activated) -> None:
    d = activated("fd://7")
    d.start(wait=False)
    rc = d.proc.wait(20)
    assert rc == 1, d.log()
    assert "fd 7 is not among the sockets systemd passed (3)" in d.log()


def test_fd_tcp_socket_without_a_tls_decision_is_refused(activated) -> None:
    """A TCP socket from systemd is the network like -H tcp://: no plain text unless --no-tls says so."""
    d = activated(tcp=True)
    d.start(wait=False)
    rc = d.proc.wait(20)
    assert rc == 1, d.log()
    assert "without TLS" in d.log() and "--no-tls" in d.log()


def test_fd_tcp_socket_with_no_tls_warns(activated) -> None:
    d = activated(tcp=True)
    d.extra = ["-H", f"unix://{d.exec_root}/api.sock", "--no-tls"]
    d.docker_sock = str(d.exec_root / "api.sock")  # wait on the unix listener
    d.start()
    with urllib.request.urlopen(f"http://127.0.0.1:{d.port}/_ping", timeout=10) as resp:
        assert resp.read() == b"OK"
    assert "WITHOUT TLS" in d.log()


def test_fd_tcp_socket_with_tls_verify(activated, tmp_path) -> None:
    certs = make_certs(tmp_path)
    d = activated(tcp=True)
    d.extra = ["-H", f"unix://{d.exec_root}/api.sock", "--tlsverify", "--tlscacert", str(certs / "ca.pem"),
               "--tlscert", str(certs / "server-cert.pem"), "--tlskey", str(certs / "server-key.pem")]
    d.docker_sock = str(d.exec_root / "api.sock")
    d.start()
    base = ["-H", f"tcp://127.0.0.1:{d.port}", "--tlsverify", "--tlscacert", str(certs / "ca.pem")]
    ok = d.docker(*base, "--tlscert", str(certs / "client-cert.pem"), "--tlskey", str(certs / "client-key.pem"),
                  "version", "--format", "{{.Server.APIVersion}}")
    assert ok.stdout.strip() == "1.50"
    refused = d.docker(*base, "version", check=False)
    assert refused.returncode != 0 and "Server:" not in refused.stdout
