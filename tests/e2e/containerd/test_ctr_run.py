"""Debian's real ``ctr`` running containers from images on engine: images import (docker-archive written
by skopeo, OCI archive), images ls/check/tag/rm/export, content ls/get, images push and content fetch
through a local docker-registry, ``run --rm`` with output through ctr's FIFOs, ``run -d`` with the tasks
commands (ps, exec --exec-id, pause, resume, metrics, kill, delete), ``run -t`` under a pty (the console
size reaches the container and follows a resize), snapshots ls/info/usage/tree of a running container,
containers ls/info/rm, ``ctr events`` (/tasks/create with bundle, rootfs and IO; /tasks/exit with the
status), runc options, filters on every List, and the errors for bad input and unsupported calls.

One daemon per module; every test works in its own namespace and removes what it made (tasks,
containers, the cgroups ctr's spec puts under /<namespace>/<id>, ctr's FIFO directories), even on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import termios
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2
from grpclib.client import Channel
from grpclib.exceptions import GRPCError

from engine.api.containerd.gen.containerd.services.namespaces.v1 import namespace_grpc
from engine.api.containerd.gen.containerd.services.namespaces.v1 import namespace_pb2 as npb
from engine.api.containerd.gen.containerd.services.sandbox.v1 import sandbox_grpc
from engine.api.containerd.gen.containerd.services.sandbox.v1 import sandbox_pb2 as sbpb
from engine.api.containerd.gen.containerd.services.snapshots.v1 import snapshots_grpc
from engine.api.containerd.gen.containerd.services.snapshots.v1 import snapshots_pb2 as spb
from engine.api.containerd.gen.containerd.services.tasks.v1 import tasks_grpc
from engine.api.containerd.gen.containerd.services.tasks.v1 import tasks_pb2 as tpb
from tests.e2e.containerd.test_ctr import LineReader, parse_event, table
from tests.support.images import busybox_layer_tar, busybox_oci_archive

pytestmark = pytest.mark.e2e

IMG = "docker.io/library/busybox:latest"
CHAIN_ID = "sha256:2dc22066f0cf55fece41fa0e904334dfdd9f0560fe2fc72f2537336fdbaced08"  # the one-layer busybox


class NS:
    """A namespace on the shared daemon with busybox imported; everything in it goes afterwards."""

    def __init__(self, d: Any, work: Path) -> None:
        self.d, self.work = d, work
        self.name = "e2e-run-" + uuid.uuid4().hex[:8]
        self.fifo_dir = work / "fifo"

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        if args and args[0] == "run" or args[:2] in (("tasks", "start"), ("tasks", "exec")):
            n = 1 if args[0] == "run" else 2
            args = (*args[:n], "--fifo-dir", str(self.fifo_dir), *args[n:])
        return self.d.ctr("-n", self.name, *args, check=check, timeout=timeout)

    def lines(self, *args: str) -> list[list[str]]:
        return table(self.ctr(*args).stdout)

    def import_busybox(self) -> None:
        self.ctr("images", "import", str(busybox_oci_archive(self.work)))

    def cleanup(self) -> None:
        for row in self.lines("tasks", "ls")[1:]:
            self.ctr("tasks", "kill", "-a", "-s", "KILL", row[0], check=False)
        for row in self.lines("containers", "ls")[1:]:
            deadline = time.monotonic() + 20
            while task_row(self, row[0]) is not None and time.monotonic() < deadline:
                self.ctr("tasks", "rm", "-f", row[0], check=False)
                time.sleep(0.05)
            self.ctr("containers", "rm", row[0], check=False)
        for ctl in Path("/sys/fs/cgroup").iterdir():
            cg = ctl / self.name
            if cg.is_dir():
                for sub in sorted(cg.glob("*"), reverse=True):
                    if sub.is_dir():
                        with contextlib.suppress(OSError):
                            sub.rmdir()
                with contextlib.suppress(OSError):
                    cg.rmdir()
        shutil.rmtree(self.fifo_dir, ignore_errors=True)


@pytest.fixture
def ns(shared_daemon: Any, tmp_path: Path) -> Iterator[NS]:
    n = NS(shared_daemon, tmp_path)
    try:
        yield n
    finally:
        n.cleanup()


@contextlib.contextmanager
def events(n: NS) -> Iterator[list[tuple[str, dict]]]:
    """(topic, event) pairs ``ctr events`` printed for the namespace while the block ran (subscribed first;
    busybox must be imported: the probe tags it)."""
    proc = subprocess.Popen(["ctr", "--address", n.d.containerd_sock, "events", f"namespace=={n.name}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    got: list[tuple[str, dict]] = []
    reader = LineReader(proc)
    try:
        for _ in range(40):  # ctr says nothing once subscribed: tag an image of the namespace until it prints
            n.ctr("images", "tag", "--force", IMG, "example.com/probe:1")
            line = reader.line(0.5)
            if line is not None:
                break
        else:
            raise AssertionError("ctr events printed nothing")
        while reader.line(0.2) is not None:
            pass
        yield got
        while (line := reader.line(1.0)) is not None:
            _, topic, body = parse_event(line)
            got.append((topic, json.loads(body)))
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def wait_for(what: str, fn: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def task_row(n: NS, cid: str) -> list[str] | None:
    return next((r for r in n.lines("tasks", "ls")[1:] if r[0] == cid), None)


# --- images and content --------------------------------------------------------------------------


def test_import_both_archive_kinds_then_images_and_content_commands(ns: NS, tmp_path: Path) -> None:
    layer = busybox_layer_tar(tmp_path)
    docker_tar = tmp_path / "skopeo.tar"
    subprocess.run(["skopeo", "--insecure-policy", "copy", f"tarball:{layer}",
                    f"docker-archive:{docker_tar}:example.com/skopeo/bb:v1"], check=True, capture_output=True)
    out = ns.ctr("images", "import", str(docker_tar)).stdout
    assert "unpacking example.com/skopeo/bb:v1" in out and "done" in out
    ns.import_busybox()

    rows = ns.lines("images", "ls")
    assert rows[0][:5] == ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS"]
    by_ref = {r[0]: r for r in rows[1:]}
    assert set(by_ref) == {IMG, "example.com/skopeo/bb:v1"}
    assert by_ref[IMG][1] == "application/vnd.oci.image.manifest.v1+json"
    assert by_ref["example.com/skopeo/bb:v1"][1] == "application/vnd.docker.distribution.manifest.v2+json"
    assert by_ref[IMG][5] == "linux/amd64"
    oci_digest = by_ref[IMG][2]
    # both images share the layer: one committed snapshot, the chain id of that layer
    snaps = ns.lines("snapshots", "ls")
    assert [r[0] for r in snaps[1:]] == [CHAIN_ID] and snaps[1][-1] == "Committed"

    check = {r[0]: r for r in ns.lines("images", "check")[1:]}
    assert check[IMG][3:6] == ["complete", "(2/2)", "2.0"] and check[IMG][-1] == "true"
    assert check["example.com/skopeo/bb:v1"][3] == "complete" and check["example.com/skopeo/bb:v1"][-1] == "true"

    # content ls lists the blobs with their gc labels; content get returns the manifest byte for byte
    content = {r[0]: r for r in ns.lines("content", "ls")[1:]}
    assert oci_digest in content and CHAIN_ID in content
    assert any("containerd.io/gc.ref.content.config=" in " ".join(r) for r in content.values())
    manifest = subprocess.run(["ctr", "--address", ns.d.containerd_sock, "-n", ns.name, "content", "get",
                               oci_digest], check=True, capture_output=True).stdout
    assert "sha256:" + hashlib.sha256(manifest).hexdigest() == oci_digest
    assert json.loads(manifest)["layers"][0]["digest"] == CHAIN_ID

    # tag, export the tag, import the export into a fresh namespace: same digest
    assert ns.ctr("images", "tag", IMG, "example.com/copy:1").stdout.strip() == "example.com/copy:1"
    assert ns.ctr("images", "tag", IMG, "example.com/copy:1", check=False).returncode != 0  # exists
    export = tmp_path / "export.tar"
    ns.ctr("images", "export", str(export), "example.com/copy:1")
    with tarfile.open(export) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        assert index["manifests"][0]["digest"] == oci_digest
        assert f"blobs/sha256/{CHAIN_ID.split(':')[1]}" in tar.getnames()
    other = NS(ns.d, tmp_path / "other")
    try:
        other.ctr("images", "import", "--no-unpack", str(export))
        assert [r[:3] for r in other.lines("images", "ls")[1:]] == [
            ["example.com/copy:1", "application/vnd.oci.image.manifest.v1+json", oci_digest]]
        for ref in ("example.com/copy:1",):
            other.ctr("images", "rm", "--sync", ref)
    finally:
        other.cleanup()
        ns.d.ctr("namespaces", "rm", other.name, check=False)
    assert ns.ctr("images", "rm", "example.com/copy:1").stdout.strip() == "example.com/copy:1"
    assert "example.com/copy:1" not in ns.ctr("images", "ls", "-q").stdout
    missing = ns.ctr("images", "rm", "example.com/nope:1")  # ctr warns about a NOT_FOUND and goes on
    assert "example.com/nope:1: image not found" in missing.stderr


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 and a free port, storage under tmp_path; its host:port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tmp_path / "registry.yml"
    cfg.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp_path / 'registry'}\n"
                   f"http:\n  addr: 127.0.0.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(cfg)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        def up() -> bool:
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", port)) == 0
        wait_for("the registry", up)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.skipif(shutil.which("docker-registry") is None, reason="Debian's docker-registry is not installed")
def test_push_then_content_fetch_from_a_local_registry(ns: NS, registry: str) -> None:
    """ctr images push reads the blobs from engine (Content/Read); ctr content fetch writes them back
    into another namespace (Content/Write, the blob already shared, so only the namespace's rows are
    added) and records the image; content get returns the same bytes."""
    ns.import_busybox()
    ref = f"{registry}/e2e/bb:1"
    ns.ctr("images", "tag", IMG, ref)
    ns.ctr("images", "push", "--plain-http", ref)
    other = NS(ns.d, ns.work / "fetch")
    try:
        out = other.ctr("content", "fetch", "--plain-http", ref).stdout
        assert "manifest-sha256:" in out and "layer-" + CHAIN_ID in out and "config-sha256:" in out
        rows = {r[0]: r for r in other.lines("content", "ls")[1:]}
        digest = next(r[2] for r in ns.lines("images", "ls")[1:] if r[0] == ref)
        assert set(rows) >= {digest, CHAIN_ID}
        assert all("containerd.io/distribution.source.127.0.0.1=e2e/bb" in " ".join(r) for r in rows.values())
        assert [r[:3] for r in other.lines("images", "ls")[1:]] == [
            [ref, "application/vnd.oci.image.manifest.v1+json", digest]]
        got = subprocess.run(["ctr", "--address", ns.d.containerd_sock, "-n", other.name, "content", "get", digest],
                             check=True, capture_output=True).stdout
        assert "sha256:" + hashlib.sha256(got).hexdigest() == digest
    finally:
        other.ctr("images", "rm", "--sync", ref, check=False)
        other.cleanup()


# --- run --rm ----------------------------------------------------------------------------------


def test_run_rm_prints_through_the_fifos_and_leaves_nothing(ns: NS) -> None:
    ns.import_busybox()
    with events(ns) as got:
        r = ns.ctr("run", "--rm", IMG, "r1", "echo", "hi")
        assert (r.returncode, r.stdout) == (0, "hi\n")
        err = ns.ctr("run", "--rm", IMG, "r2", "sh", "-c", "echo out; echo err >&2; exit 3", check=False)
        assert (err.returncode, err.stdout, err.stderr.strip()) == (3, "out\n", "err")
    topics = [t for t, _ in got]
    assert topics.count("/tasks/create") == 2 and topics.count("/tasks/exit") == 2
    create = next(e for t, e in got if t == "/tasks/create" and e["container_id"] == "r1")
    assert create["pid"] > 0 and create["bundle"].endswith("/r1")
    assert create["io"]["stdout"].endswith("r1-stdout") and create["io"]["stdout"].startswith(str(ns.fifo_dir))
    assert create["rootfs"][0]["type"] == "overlay" and any(o.startswith("lowerdir=") for o in create["rootfs"][0]["options"])
    exits = {e["container_id"]: e for t, e in got if t == "/tasks/exit"}
    assert exits["r1"].get("exit_status", 0) == 0 and exits["r2"]["exit_status"] == 3
    assert topics.index("/tasks/create") < topics.index("/tasks/start") < topics.index("/tasks/exit") \
        < topics.index("/tasks/delete") < topics.index("/containers/delete")
    # --rm removed the task, the container and its snapshot; no lease is left behind
    assert ns.lines("tasks", "ls")[1:] == [] and ns.lines("containers", "ls")[1:] == []
    assert [r[0] for r in ns.lines("snapshots", "ls")[1:]] == [CHAIN_ID]
    assert ns.lines("leases", "ls")[1:] == []


def test_run_with_runc_options_reaches_the_tasks_service(ns: NS, tmp_path: Path) -> None:
    """ctr run --runc-binary/--runc-root put containerd.runc.v1.Options on the container; the task is
    created with them: runc itself runs the container, its state under <root>/<namespace> as containerd's
    runc shim puts it (checked against containerd 1.6.20)."""
    ns.import_busybox()
    root = tmp_path / "runc-root"
    try:
        ns.ctr("run", "-d", "--runc-binary", "/usr/bin/runc", "--runc-root", str(root), IMG, "ro", "sleep", "1000")
        listed = subprocess.run(["runc", "--root", str(root / ns.name), "list", "-q"], capture_output=True,
                                text=True)
        assert listed.stdout.split() == ["ro"], (listed.stdout, listed.stderr)
    finally:
        ns.cleanup()
        shutil.rmtree(root, ignore_errors=True)


# --- run -d and the tasks commands ----------------------------------------------------------------


def test_run_detached_then_every_tasks_command(ns: NS) -> None:
    ns.import_busybox()
    with events(ns) as got:
        assert ns.ctr("run", "-d", IMG, "d1", "sleep", "1000").stdout == ""
        row = wait_for("d1 running", lambda: (r := task_row(ns, "d1")) and r[2] == "RUNNING" and r)
        pid = int(row[1])
        # running means started: the exec of the process itself may still be a moment away (as with runc)
        wait_for("sleep exec'd", lambda: Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[:2] == [b"sleep",
                                                                                                   b"1000"])
        # containers and snapshots of a running container
        assert ns.lines("containers", "ls")[1:] == [["d1", IMG, "io.containerd.runc.v2"]]
        info = json.loads(ns.ctr("containers", "info", "d1").stdout)
        assert info["Spec"]["process"]["args"] == ["sleep", "1000"] and info["SnapshotKey"] == "d1"
        assert info["Runtime"]["Name"] == "io.containerd.runc.v2"
        snap = json.loads(ns.ctr("snapshots", "info", "d1").stdout)
        assert (snap["Kind"], snap["Parent"]) == ("Active", CHAIN_ID)
        assert ns.ctr("snapshots", "tree").stdout.split() == [CHAIN_ID, "\\_", "d1"]
        usage = {r[0]: r for r in ns.lines("snapshots", "usage")[1:]}
        assert set(usage) == {CHAIN_ID, "d1"} and usage[CHAIN_ID][1:3] == ["1.9", "MiB"]
        # ps, exec (exit status, output), pause/resume, metrics
        ps = ns.lines("tasks", "ps", "d1")
        assert ps[0] == ["PID", "INFO"] and str(pid) in [r[0] for r in ps[1:]]
        ex = ns.ctr("tasks", "exec", "--exec-id", "e1", "d1", "sh", "-c", "echo in; exit 4", check=False)
        assert (ex.returncode, ex.stdout) == (4, "in\n")
        dup = ns.ctr("tasks", "exec", "--exec-id", "e2", "-d", "d1", "sleep", "1000")
        assert dup.returncode == 0
        again = ns.ctr("tasks", "exec", "--exec-id", "e2", "d1", "true", check=False)
        assert again.returncode != 0 and "already exists" in again.stderr
        ns.ctr("tasks", "pause", "d1")
        assert task_row(ns, "d1")[2] == "PAUSED"  # type: ignore[index]
        freezer = Path(f"/sys/fs/cgroup/freezer/{ns.name}/d1/freezer.state")
        wait_for("frozen", lambda: freezer.read_text().strip() == "FROZEN", timeout=5)
        ns.ctr("tasks", "resume", "d1")
        assert task_row(ns, "d1")[2] == "RUNNING" and freezer.read_text().strip() == "THAWED"  # type: ignore[index]
        metrics = ns.lines("tasks", "metrics", "d1")
        assert metrics[0][:2] == ["ID", "TIMESTAMP"] and metrics[1][0] == "d1"
        mem = [r for r in metrics if r and r[0] == "memory.usage_in_bytes"]
        assert mem and int(mem[0][1]) > 0
        assert ns.ctr("tasks", "metrics", "--format", "json", "d1").stdout.strip().startswith("{")
        # delete refuses a running task; kill, then delete
        busy = ns.ctr("tasks", "delete", "d1", check=False)
        assert busy.returncode != 0 and "must be stopped" in busy.stderr
        in_use = ns.ctr("containers", "rm", "d1", check=False)
        assert in_use.returncode != 0 and "running" in in_use.stderr
        ns.ctr("tasks", "kill", "-s", "KILL", "d1")
        wait_for("d1 stopped", lambda: task_row(ns, "d1")[2] == "STOPPED")  # type: ignore[index]
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
        ns.ctr("tasks", "delete", "d1")
        assert task_row(ns, "d1") is None
        ns.ctr("containers", "rm", "d1")
        assert ns.lines("containers", "ls")[1:] == []
        assert [r[0] for r in ns.lines("snapshots", "ls")[1:]] == [CHAIN_ID]
    exits = [e for t, e in got if t == "/tasks/exit"]
    assert {e["id"] for e in exits} >= {"d1", "e1"}
    assert next(e for e in exits if e["id"] == "e1")["exit_status"] == 4
    assert next(e for e in exits if e["id"] == "d1")["exit_status"] == 137
    assert ("/tasks/paused", {"container_id": "d1"}) in got and ("/tasks/resumed", {"container_id": "d1"}) in got


# --- run -t under a pty ------------------------------------------------------------------------------


def _read_until(fd: int, pattern: bytes, timeout: float = 20) -> bytes:
    buf = b""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, buf):
        left = deadline - time.monotonic()
        assert left > 0, f"no {pattern!r} in {buf!r}"
        if select.select([fd], [], [], left)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:  # EIO: the child closed the pty
                break
            if not chunk:
                break
            buf += chunk
    return buf


def _set_size(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def _wait_size(master: int, want: bytes) -> None:
    deadline = time.monotonic() + 10
    while True:
        os.write(master, b"stty size\n")
        got = _read_until(master, rb"\n\d+ \d+\r?\r?\n")
        if want in got:
            return
        assert time.monotonic() < deadline, got
        time.sleep(0.2)


def test_run_tty_under_a_pty_with_resize(ns: NS) -> None:
    ns.import_busybox()
    argv = ["ctr", "--address", ns.d.containerd_sock, "-n", ns.name, "run", "--fifo-dir", str(ns.fifo_dir),
            "-t", "--rm", IMG, "tty1", "sh"]
    pid, master = pty.fork()
    if pid == 0:  # child: ctr on the pty's slave side
        try:
            _set_size(0, 33, 101)
            os.execvp(argv[0], argv)
        finally:
            os._exit(127)
    try:
        _read_until(master, rb"/ # ")  # the shell is up (ctr sends the console size right after Start)
        os.write(master, b"tty; echo $((6*7))x\n")
        out = _read_until(master, rb"42x")
        assert b"/dev/pts/" in out
        _wait_size(master, b"33 101")
        # the container's terminal follows the outer one: resize, SIGWINCH to ctr, ResizePty
        _set_size(master, 40, 120)
        os.kill(pid, signal.SIGWINCH)
        _wait_size(master, b"40 120")
        os.write(master, b"exit 5\n")
        _, status = os.waitpid(pid, 0)
        pid = 0
        assert os.WEXITSTATUS(status) == 5
    finally:
        if pid:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(master)
    assert ns.lines("containers", "ls")[1:] == []


# --- bad input -------------------------------------------------------------------------------------


def test_bad_input_gets_containerd_errors_and_changes_nothing(ns: NS) -> None:
    ns.import_busybox()
    nope = ns.ctr("run", "--rm", "example.com/nope:1", "x1", "true", check=False)
    assert nope.returncode != 0 and "not found" in nope.stderr
    ns.ctr("run", "-d", IMG, "b1", "sleep", "1000")
    dup = ns.ctr("run", "-d", IMG, "b1", "true", check=False)
    assert dup.returncode != 0 and "already exists" in dup.stderr
    other = ns.ctr("run", "--rm", "--runtime", "io.containerd.kata.v2", IMG, "b2", "true", check=False)
    assert other.returncode != 0 and "io.containerd.kata.v2" in other.stderr
    for args in (("tasks", "kill", "ghost"), ("tasks", "pause", "ghost"), ("tasks", "delete", "ghost"),
                 ("containers", "info", "ghost"), ("snapshots", "info", "ghost"), ("tasks", "ps", "ghost")):
        r = ns.ctr(*args, check=False)
        assert r.returncode != 0 and "not found" in r.stderr, (args, r.stderr)
    ckpt = ns.ctr("tasks", "checkpoint", "b1", check=False)
    assert ckpt.returncode != 0 and "not implemented" in ckpt.stderr and "CRIU" in ckpt.stderr
    paused_twice = [ns.ctr("tasks", "resume", "b1", check=False)]
    assert paused_twice[0].returncode != 0
    ns_busy = ns.d.ctr("namespaces", "rm", ns.name, check=False)
    assert ns_busy.returncode != 0 and "must be empty" in ns_busy.stderr and "failed precondition" in ns_busy.stderr
    # still exactly one container and one running task
    assert [r[0] for r in ns.lines("containers", "ls")[1:]] == ["b1"]
    assert [r[0] for r in ns.lines("tasks", "ls")[1:]] == ["b1"]


# --- filters on every List ---------------------------------------------------------------------------


async def _grpc_lists(sock: str, ns: str) -> dict[str, Any]:
    """Each List that ctr 1.6 sends no filters for, called with filters over gRPC."""
    md = {"containerd-namespace": ns}
    ch = Channel(path=sock)
    out: dict[str, Any] = {}
    try:
        tasks, snaps = tasks_grpc.TasksStub(ch), snapshots_grpc.SnapshotsStub(ch)
        nss = namespace_grpc.NamespacesStub(ch)
        out["tasks running"] = [t.id for t in (await tasks.List(tpb.ListTasksRequest(filter="status==running"),
                                                                metadata=md)).tasks]
        out["tasks f2"] = [t.id for t in (await tasks.List(tpb.ListTasksRequest(filter="id==f2"), metadata=md)).tasks]
        out["namespaces"] = [n.name for n in (await nss.List(npb.ListNamespacesRequest(
            filter=f"labels.purpose==filters,name=={ns}"))).namespaces]
        out["active snapshots"] = sorted(i.name for i in await _collect(snaps, md))
        for name, call in (("bad tasks", tasks.List(tpb.ListTasksRequest(filter="id=="), metadata=md)),
                           ("bad namespaces", nss.List(npb.ListNamespacesRequest(filter="labels.\"x"))),
                           ("bad metrics", tasks.Metrics(tpb.MetricsRequest(filters=["id~=("]), metadata=md))):
            try:
                await call
                out[name] = "accepted"
            except GRPCError as err:
                out[name] = (err.status.name, err.message)
    finally:
        ch.close()
    return out


async def _collect(snaps: Any, md: dict[str, str]) -> list[Any]:
    got: list[Any] = []
    async with snaps.List.open(metadata=md) as stream:
        await stream.send_message(spb.ListSnapshotsRequest(snapshotter="overlayfs", filters=["kind==active"]),
                                  end=True)
        async for msg in stream:
            got.extend(msg.info)
    return got


def test_filters_on_every_list(ns: NS) -> None:
    ns.import_busybox()
    ns.ctr("images", "tag", IMG, "example.com/other:2")
    ns.ctr("run", "-d", "--label", "team=a", IMG, "f1", "sleep", "1000")
    ns.ctr("containers", "create", "--label", "team=b", "example.com/other:2", "f2", "true")
    ns.ctr("tasks", "start", "-d", "f2")
    ns.d.ctr("namespaces", "label", ns.name, "purpose=filters")
    lease = ns.ctr("leases", "create", "--id", "lf", "x=1").stdout.strip()
    try:
        assert lease == "lf"
        cols = lambda *a: [r[0] for r in ns.lines(*a)[1:]]  # noqa: E731
        assert cols("containers", "ls", "labels.team==a") == ["f1"]
        assert cols("containers", "ls", "image==example.com/other:2") == ["f2"]
        assert cols("containers", "ls", "id~=^f[12]$") == ["f1", "f2"]
        assert cols("containers", "ls", "labels.team==a", "labels.team==b") == ["f1", "f2"]  # alternatives or'ed
        assert cols("images", "ls", "name==example.com/other:2") == ["example.com/other:2"]
        assert cols("images", "ls", "name~=busybox") == [IMG]
        assert cols("content", "ls", 'labels."containerd.io/uncompressed"') == [CHAIN_ID]
        assert cols("leases", "ls", "id==lf") == ["lf"] and cols("leases", "ls", "labels.x==2") == []
        wait_for("f2 stopped", lambda: task_row(ns, "f2")[2] == "STOPPED")  # type: ignore[index]
        got = asyncio.run(_grpc_lists(ns.d.containerd_sock, ns.name))
        assert got["tasks running"] == ["f1"] and got["tasks f2"] == ["f2"]
        assert got["namespaces"] == [ns.name]
        assert got["active snapshots"] == ["f1", "f2"]
        for name in ("bad tasks", "bad namespaces", "bad metrics"):
            assert got[name][0] == "INVALID_ARGUMENT", (name, got[name])
        for args in (("containers", "ls", "id=="), ("images", "ls", "==x"), ("content", "ls", "digest=="),
                     ("leases", "ls", "id~=(")):
            r = ns.ctr(*args, check=False)
            assert r.returncode != 0 and "invalid argument" in r.stderr, (args, r.stderr)
    finally:
        ns.ctr("leases", "rm", "lf", check=False)


# --- unsupported calls and bad task options -----------------------------------------------------------


async def _unsupported(sock: str, ns: str) -> dict[str, tuple[str, str]]:
    md = {"containerd-namespace": ns}
    ch = Channel(path=sock)
    out: dict[str, tuple[str, str]] = {}
    tasks = tasks_grpc.TasksStub(ch)
    opts_any = any_pb2.Any(type_url="containerd.linux.runc.RuncOptions", value=b"\x0a\x01x")
    calls = {
        "runtime_path": tasks.Create(tpb.CreateTaskRequest(container_id="u1", runtime_path="/opt/shim"), metadata=md),
        "options type": tasks.Create(tpb.CreateTaskRequest(container_id="u1", options=opts_any), metadata=md),
        "checkpoint": tasks.Checkpoint(tpb.CheckpointTaskRequest(container_id="u1"), metadata=md),
        "snapshots cleanup": snapshots_grpc.SnapshotsStub(ch).Cleanup(spb.CleanupRequest(snapshotter="overlayfs"),
                                                                       metadata=md),
        "sandbox list": sandbox_grpc.StoreStub(ch).List(sbpb.StoreListRequest(), metadata=md),
        "sandbox create": sandbox_grpc.ControllerStub(ch).Create(sbpb.ControllerCreateRequest(sandbox_id="s"),
                                                                  metadata=md),
    }
    try:
        for name, call in calls.items():
            try:
                await call
                out[name] = ("OK", "")
            except GRPCError as err:
                out[name] = (err.status.name, str(err.message))
    finally:
        ch.close()
    return out


def test_unsupported_calls_and_bad_task_options_change_nothing(ns: NS) -> None:
    ns.import_busybox()
    ns.ctr("containers", "create", IMG, "u1", "true")
    got = asyncio.run(_unsupported(ns.d.containerd_sock, ns.name))
    assert got["runtime_path"][0] == "INVALID_ARGUMENT" and "runtime_path" in got["runtime_path"][1]
    assert got["options type"][0] == "INVALID_ARGUMENT" and "containerd.linux.runc.RuncOptions" in got["options type"][1]
    assert got["checkpoint"] == ("UNIMPLEMENTED", "checkpoint is not supported: engine has no CRIU")
    assert got["snapshots cleanup"] == ("UNIMPLEMENTED",
                                        "containerd.services.snapshots.v1.Snapshots/Cleanup is not implemented yet")
    assert got["sandbox list"] == ("UNIMPLEMENTED", "containerd.services.sandbox.v1.Store/List is not implemented yet")
    assert got["sandbox create"][0] == "UNIMPLEMENTED" and "Controller/Create" in got["sandbox create"][1]
    assert ns.lines("tasks", "ls")[1:] == []  # no task was created by the refused requests
    # and the container still runs when asked properly
    ns.ctr("tasks", "start", "u1")
