"""Drive an OCI runtime binary (runc, crun, engine-runtime) from tests, and clean up after it.

The shape follows crun's own tests: a test writes a bundle (busybox rootfs plus a
config.json from ``spec.default_spec`` with its changes), runs the runtime *binary* with
its own ``--root`` state directory, and checks the effects from inside the container.

Design choices:

* Every call has a timeout; a runtime that hangs fails the test instead of the suite.
* Detached containers (``create``) inherit the runtime's stdio, so their stdout/stderr go to
  files in the bundle, never to pipes that would keep ``subprocess`` waiting for EOF.
* crun 1.8 refuses a cgroup v1/v2 "hybrid" layout (this machine's). When a crun call fails
  with exactly that message the test is skipped with that reason, at that call, so every
  other crun failure still shows.
* Each container gets a unique id, a cgroupsPath under a unique per-test parent and an
  environment marker; ``Runtime.cleanup`` force-deletes, kills what is left in the test's
  cgroups, removes them, and unmounts whatever is left under the test's directory.
  ``Runtime.leftovers`` lists what a container left behind (state dir, cgroups, mounts,
  processes) for the error-path tests.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .rootfs import build_busybox_rootfs
from .spec import default_spec

RUNC = "/usr/sbin/runc"
CRUN = "/usr/bin/crun"
CRUN_HYBRID_MESSAGE = "cgroups in hybrid mode not supported"
CRUN_HYBRID_REASON = "crun refuses this machine's hybrid cgroup layout (cgroups in hybrid mode not supported)"
MARK_ENV = "ENGINE_TEST_MARK"
DEFAULT_TIMEOUT = 20.0


def engine_runtime_path() -> str:
    """The engine-runtime console script of the running virtual environment."""
    venv_bin = str(Path(sys.prefix) / "bin")
    return shutil.which("engine-runtime", path=venv_bin) or os.path.join(venv_bin, "engine-runtime")


def runtime_paths() -> dict[str, str]:
    return {"runc": RUNC, "crun": CRUN, "engine": engine_runtime_path()}


def cgroup_mounts() -> list[str]:
    """Mount points of every cgroup v1 hierarchy and of cgroup2, from mountinfo."""
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fstype = right.split()[0]
            if fstype in ("cgroup", "cgroup2"):
                points.append(_unescape(left.split()[4]))
    return points


def mounts_under(path: str | os.PathLike[str]) -> list[str]:
    """Mount points at or below ``path`` (in mount order)."""
    prefix = os.path.realpath(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape(line.split()[4])
            if point == prefix or point.startswith(prefix + "/"):
                found.append(point)
    return found


def _unescape(field: str) -> str:
    return field.encode().decode("unicode_escape") if "\\" in field else field


@functools.cache
def crun_hybrid_refusal() -> str | None:
    """Run one trivial container with crun; return its error line if it refuses hybrid cgroups."""
    if not os.path.exists(CRUN):
        return None
    with tempfile.TemporaryDirectory(prefix="crun-probe-") as tmp:
        cid = f"probe-{uuid.uuid4().hex[:8]}"
        bundle = Path(tmp) / "bundle"
        build_busybox_rootfs(bundle / "rootfs")
        (bundle / "config.json").write_text(json.dumps(default_spec(["true"])))
        root = Path(tmp) / "state"
        cmd = [CRUN, "--root", str(root), "run", "--bundle", str(bundle), cid]
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=DEFAULT_TIMEOUT, stdin=subprocess.DEVNULL
        )
        subprocess.run([CRUN, "--root", str(root), "delete", "--force", cid], capture_output=True, timeout=10)
        if out.returncode != 0 and CRUN_HYBRID_MESSAGE in out.stderr:
            return out.stderr.strip()
    return None


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Make this process the child subreaper while the block runs.

    A detached process that a runtime starts (``exec --detach``) is orphaned when the
    runtime exits; inside this block it becomes our child instead of pid 1's, so the test
    can reap it with ``reap`` (as a shim would). This machine's pid 1 reaps lazily, and a
    runtime's ``delete`` waits for the container's zombies to go away.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def reap(pid: int, timeout: float = 10.0, kill: bool = False) -> int | None:
    """Wait for our (adopted) child ``pid``; SIGKILL it first if ``kill``. Returns its status."""
    if kill:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return status
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit in {timeout}s")


class Result(subprocess.CompletedProcess):
    """A finished runtime call, with helpers for the usual assertions."""

    def ok(self) -> Result:
        assert self.returncode == 0, f"{self.args} exited {self.returncode}: {self.stderr.strip()}"
        return self

    def json(self) -> Any:
        return json.loads(self.stdout)


def one_line_error(rt: Runtime, r: Result) -> str:
    """Assert a failed call: exit status 1, one line on stderr, nothing on stdout; return it."""
    assert r.returncode == 1, f"exit {r.returncode}, stderr {r.stderr!r}"
    lines = r.stderr.strip().splitlines()
    assert lines, "no error message on stderr"
    if rt.name != "crun":  # crun appends the JSON parser's context lines to some errors
        assert len(lines) == 1, f"the error takes {len(lines)} lines: {r.stderr!r}"
    assert r.stdout == ""
    return lines[0]


class Runtime:
    """One runtime binary, with a private state root and a private cgroup parent."""

    def __init__(self, name: str, path: str, workdir: Path) -> None:
        self.name = name
        self.path = path
        self.workdir = workdir
        self.root = workdir / "state"
        self.cgroup_parent = f"engine-rt-test-{uuid.uuid4().hex[:12]}"
        self.ids: list[str] = []
        self.bundles: list[Bundle] = []

    def __repr__(self) -> str:
        return f"Runtime({self.name})"

    # -- calls ------------------------------------------------------------------------------

    def __call__(
        self,
        *args: str,
        timeout: float = DEFAULT_TIMEOUT,
        input: str | None = None,
        stdout: Any = subprocess.PIPE,
        stderr: Any = subprocess.PIPE,
        cwd: str | None = None,
        skip_on_hybrid: bool = True,
        global_args: tuple[str, ...] = (),
        pass_fds: tuple[int, ...] = (),
    ) -> Result:
        cmd = [self.path, "--root", str(self.root), *global_args, *args]
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=stdout,
            stderr=stderr,
            text=True,
            cwd=cwd,
            start_new_session=True,
            pass_fds=pass_fds,
        )
        try:
            out, err = proc.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise AssertionError(f"{self.name}: {' '.join(args)} did not finish in {timeout}s") from None
        result = Result(cmd, proc.returncode, out or "", err or "")
        if skip_on_hybrid and self.name == "crun" and result.returncode != 0:
            self.skip_if_hybrid_refusal(result.stderr)
        return result

    def skip_if_hybrid_refusal(self, stderr: str) -> None:
        """Skip the test if crun failed *this* call because it refuses hybrid cgroups.

        Both must hold: the one-time probe (a trivial ``crun run``) saw the refusal, and this
        call's error is that refusal. Any other crun failure stays a failure.
        """
        if self.name == "crun" and CRUN_HYBRID_MESSAGE in stderr and crun_hybrid_refusal():
            pytest.skip(CRUN_HYBRID_REASON)

    def new_id(self, tag: str = "c") -> str:
        cid = f"{tag}-{uuid.uuid4().hex[:12]}"
        self.ids.append(cid)
        return cid

    def bundle(self, args: list[str] | None = None, *, tag: str = "c", **spec_args: Any) -> Bundle:
        """A new bundle with a fresh container id, a busybox rootfs and the default config."""
        cid = self.new_id(tag)
        b = Bundle(self, cid, args, **spec_args)
        self.bundles.append(b)
        return b

    def state(self, cid: str) -> dict[str, Any]:
        return self("state", cid).ok().json()

    def status(self, cid: str) -> str:
        return self.state(cid)["status"]

    def wait_status(self, cid: str, want: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        status = ""
        while time.monotonic() < deadline:
            r = self("state", cid)
            status = r.json()["status"] if r.returncode == 0 else f"error: {r.stderr.strip()}"
            if status == want:
                return status
            time.sleep(0.02)
        raise AssertionError(f"{self.name}: {cid} is {status!r}, waited {timeout}s for {want!r}")

    # -- what is left -------------------------------------------------------------------------

    def cgroup_dirs(self, cid: str | None = None) -> list[str]:
        """Existing cgroup directories of this test (or of one container) in every hierarchy."""
        rel = self.cgroup_parent if cid is None else f"{self.cgroup_parent}/{cid}"
        return [d for m in cgroup_mounts() if os.path.isdir(d := os.path.join(m, rel))]

    def marked_pids(self, cid: str) -> list[int]:
        """Processes that carry the container's marker in their environment or its id in argv."""
        needle_env = f"{MARK_ENV}={cid}".encode()
        needle_arg = cid.encode()
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                with open(f"/proc/{entry}/environ", "rb") as f:
                    env = f.read().split(b"\0")
            except OSError:
                continue
            if needle_env in env or needle_arg in argv:
                found.append(int(entry))
        return found

    def leftovers(self, cid: str, bundle: Bundle | None = None) -> list[str]:
        """Everything a container left behind: state dir, cgroups, mounts, processes."""
        left = []
        if (self.root / cid).exists():
            left.append(f"state dir {self.root / cid}")
        left += [f"cgroup {d}" for d in self.cgroup_dirs(cid)]
        if bundle is not None:
            left += [f"mount {m}" for m in mounts_under(bundle.path)]
        left += [f"process {p}" for p in self.marked_pids(cid)]
        return left

    # -- cleanup ------------------------------------------------------------------------------

    def cleanup(self) -> list[str]:
        """Force-delete every container, then remove cgroups, processes and mounts by hand.

        Returns what had to be removed by hand after ``delete --force`` (for reporting).
        """
        problems = []
        for cid in self.ids:
            if (self.root / cid).exists():
                try:
                    r = self("delete", "--force", cid, timeout=10, skip_on_hybrid=False)
                except AssertionError as err:  # timed out
                    problems.append(str(err))
                else:
                    if r.returncode != 0:
                        problems.append(f"delete --force {cid} exited {r.returncode}: {r.stderr.strip()}")
        for cid in self.ids:
            for pid in self.marked_pids(cid):
                problems.append(f"killed process {pid} of {cid}")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        problems += self._remove_cgroups()
        for point in reversed(mounts_under(self.workdir)):
            problems.append(f"unmounted {point}")
            subprocess.run(["umount", "-l", point], capture_output=True, timeout=10)
        return problems

    def _remove_cgroups(self) -> list[str]:
        problems = []
        dirs = self.cgroup_dirs()
        for top in dirs:
            # thaw first: SIGKILL is not delivered to frozen tasks
            for state in Path(top).rglob("freezer.state"):
                with contextlib.suppress(OSError):
                    state.write_text("THAWED")
            for procs in Path(top).rglob("cgroup.procs"):
                with contextlib.suppress(OSError):
                    for pid in procs.read_text().split():
                        problems.append(f"killed process {pid} in {procs.parent}")
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(int(pid), signal.SIGKILL)
        for top in dirs:
            subdirs = sorted((p for p in Path(top).rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
            for d in [*subdirs, Path(top)]:
                _rmdir_retry(d)
        return problems


def _rmdir_retry(d: Path, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            os.rmdir(d)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class Bundle:
    """A bundle directory: ``rootfs/`` (busybox) and ``config.json`` from ``spec``."""

    def __init__(self, rt: Runtime, cid: str, args: list[str] | None, **spec_args: Any) -> None:
        self.rt = rt
        self.id = cid
        self.path = rt.workdir / "bundles" / cid
        self.rootfs = build_busybox_rootfs(self.path / "rootfs")
        spec_args.setdefault("cgroups_path", f"/{rt.cgroup_parent}/{cid}")
        self.spec = default_spec(args or ["true"], **spec_args)
        self.spec["process"]["env"].append(f"{MARK_ENV}={cid}")

    @property
    def process(self) -> dict[str, Any]:
        return self.spec["process"]

    @property
    def linux(self) -> dict[str, Any]:
        return self.spec["linux"]

    def write(self) -> Bundle:
        (self.path / "config.json").write_text(json.dumps(self.spec, indent=1))
        return self

    # -- operations on this bundle's container ---------------------------------------------------

    def run(self, *extra: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """``run`` in the foreground; the container's stdout/stderr are captured."""
        self.write()
        return self.rt("run", "--bundle", str(self.path), *extra, self.id, timeout=timeout)

    def create(self, *extra: str, timeout: float = DEFAULT_TIMEOUT, **call_args: Any) -> Result:
        """``create``; the container's stdio go to files ``out``/``err`` in the bundle."""
        self.write()
        with open(self.path / "out", "w") as out, open(self.path / "err", "w") as err:
            r = self.rt(
                "create",
                "--bundle",
                str(self.path),
                *extra,
                self.id,
                timeout=timeout,
                stdout=out,
                stderr=err,
                **call_args,
            )
        r.stdout = (self.path / "out").read_text()
        r.stderr = (self.path / "err").read_text()
        if r.returncode != 0:
            self.rt.skip_if_hybrid_refusal(r.stderr)
        return r

    def output(self) -> str:
        """What the created container wrote to stdout so far."""
        return (self.path / "out").read_text()

    def start(self) -> Result:
        return self.rt("start", self.id)

    def state(self) -> dict[str, Any]:
        return self.rt.state(self.id)

    def status(self) -> str:
        return self.rt.status(self.id)

    def wait_status(self, want: str, timeout: float = 10.0) -> str:
        return self.rt.wait_status(self.id, want, timeout)

    def exec(self, *args: str, timeout: float = DEFAULT_TIMEOUT) -> Result:
        return self.rt("exec", self.id, *args, timeout=timeout)

    def kill(self, sig: str = "KILL") -> Result:
        return self.rt("kill", self.id, sig)

    def delete(self, *extra: str) -> Result:
        return self.rt("delete", *extra, self.id)

    def wait_output(self, text: str, timeout: float = 10.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            time.sleep(0.02)
        raise AssertionError(f"{self.rt.name}: {self.id} did not print {text!r}; got {self.output()!r}")
