"""Many ``docker exec`` sessions into one long-running container, under a real pty and a CPU load: the
container, its init (same pid) and its shim must survive them all, and no exec process may be left.

The sessions mix what a user does with ``exec -it``: exit at once, ``exit 3``, read stdin to EOF (^D),
resize the window (TIOCSWINSZ on the pty: the CLI sends a resize), print a lot, detach with ctrl-p
ctrl-q, get the CLI SIGKILLed mid-session; plus ``exec -i`` with piped stdin and plain ``exec``. They run
one to four at a time, and a busy loop takes one core for the first half.

This reproduced the shim that died under load after repeated ``exec -it``: when an exec's end and its
Delete reach the shim together, one ``select()`` reports both the Delete request and the EOF of the exec's
stdin FIFO; the Delete closed the FIFO, and the stale EOF event then closed fd -1, whose EBADF ended the
shim (and the daemon, its connection gone, removed the container). Since the loop reports a failing
callback and goes on, that EBADF only reached the shim's stderr (/dev/null), which this test cannot see:
the first test pins the loop's rule that fixes it (engine/runtime/shim/loop.py), an event whose
registration is gone is dropped.
"""

from __future__ import annotations

import json
import os
import random
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from engine.runtime.shim.loop import Loop
from tests.e2e.docker.term import Term
from tests.harness import EngineDaemon

NAME = "stress-sleeper"
SESSIONS_PER_RUN = int(os.environ.get("ENGINE_EXEC_STRESS_SESSIONS", "90"))  # more for a long soak


def term(d: EngineDaemon, *args: str) -> Term:
    """A CLI under a pty, with this file's longer waits (the sessions run under CPU load)."""
    return Term(d, *args, timeout=20)


def test_shim_loop_drops_an_event_whose_registration_an_earlier_callback_removed() -> None:
    """Two fds ready in one round; whichever callback runs first closes the other fd and registers a new
    one (which takes the lowest free number, often the one just closed): the other callback must not run."""
    old_sigchld = signal.getsignal(signal.SIGCHLD)
    loop = Loop()
    pipes = [os.pipe() for _ in range(2)]
    mine = {fd for p in pipes for fd in p}  # what is still ours to close
    opened: list[int] = []
    calls: list[int] = []

    def make(i: int) -> Callable[[int], None]:
        def on_ready(_mask: int) -> None:
            calls.append(i)
            other = pipes[1 - i][0]
            loop.remove(other)
            os.close(other)
            mine.discard(other)
            r, w = os.pipe()
            mine.update((r, w))
            opened.append(r)
            loop.add(r, selectors.EVENT_READ, lambda _m: None)
            loop.stopping = True

        return on_ready

    try:
        for i, (r, w) in enumerate(pipes):
            os.write(w, b"x")
            loop.add(r, selectors.EVENT_READ, make(i))
        loop.run()
        assert len(calls) == 1, calls
        assert loop.sel.get_map().get(opened[0]) is not None  # the new registration was left alone
    finally:
        loop.sel.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, old_sigchld)
        for fd in (loop._wr, loop._ww, *mine):
            os.close(fd)


# ---- the sessions: each runs one exec and checks what the user would see --------------------------------
def it_exit_at_once(d: EngineDaemon) -> None:
    t = term(d, "exec", "-it", NAME, "true")
    try:
        assert t.wait() == 0, t.buf
    finally:
        t.close()


def it_exit_3(d: EngineDaemon) -> None:
    t = term(d, "exec", "-it", NAME, "sh", "-c", "exit 3")
    try:
        assert t.wait() == 3, t.buf
    finally:
        t.close()


def it_stdin_eof(d: EngineDaemon) -> None:
    t = term(d, "exec", "-it", NAME, "sh", "-c", "echo ready; cat; echo done-$?")
    try:
        t.read_until(b"ready")
        t.send(b"abc\r")
        t.read_until(b"abc")
        t.send(
            b"\x04"
        )  # the CLI is raw: ^D reaches the container's pty, whose line discipline ends the input
        t.read_until(b"done-0")
        assert t.wait() == 0, t.buf
    finally:
        t.close()


def it_killed_client(d: EngineDaemon) -> None:
    # `read`, not an interactive shell: a ^D that reaches ash while it switches its line editor's terminal
    # modes is lost (the shell then runs on, as it would under Docker), so the test could not tell a leak
    t = term(d, "exec", "-it", NAME, "sh", "-c", "echo ready; read x; echo got-$x; read y")
    try:
        t.read_until(b"ready")
        t.send(b"42\r")
        t.read_until(b"got-42")
        t.kill()  # the stream breaks: the daemon closes the exec's stdin, the shim gives the pty a ^D
    finally:
        t.close()


def it_resize(d: EngineDaemon) -> None:
    t = term(d, "exec", "-it", NAME, "sh")
    try:
        t.read_until(b"# ")
        for rows, cols in ((30, 100), (31, 101), (50, 200), (30, 100)):
            t.resize(rows, cols)
        deadline = time.monotonic() + 10
        while True:  # the CLI's resize request races our next command: ask until the size shows
            n = random.randrange(1 << 30)  # the answer carries n+1, so the echoed command line never matches
            t.send(f"echo m$(({n}+1)) $(stty size)\r".encode())
            t.read_until(f"m{n + 1} ".encode())
            t.read_until(b"\r\n", after=t.buf.index(f"m{n + 1} ".encode()))
            if f"m{n + 1} 30 100\r\n".encode() in t.buf:
                break
            assert time.monotonic() < deadline, t.buf[-400:]
            time.sleep(0.05)
            # a SIGWINCH that came before the CLI watched for it is lost (the CLI's race, not ours): again
            t.resize(29, 99)
            t.resize(30, 100)
        t.send(b"exit 0\r")
        assert t.wait() == 0, t.buf
    finally:
        t.close()


def it_lots_of_output(d: EngineDaemon) -> None:
    t = term(d, "exec", "-it", NAME, "sh", "-c", "seq 1 30000; echo end-of-seq")
    try:
        out = t.read_until(b"end-of-seq")
        assert b"\r\n29999\r\n30000\r\n" in out
        assert t.wait() == 0, t.buf[-400:]
    finally:
        t.close()


def it_detach(d: EngineDaemon) -> None:
    t = term(d, "exec", "-it", NAME, "sh", "-c", "echo ready; read x")
    try:
        t.read_until(b"ready")
        t.send(b"\x10\x11")  # ctrl-p ctrl-q: the CLI leaves; the process reads on until its stdin ends
        t.wait()
    finally:
        t.close()


def it_shell(d: EngineDaemon) -> None:
    t = term(d, "exec", "-it", NAME, "sh")
    try:
        t.read_until(b"# ")
        t.send(b"echo $((6*7))x\r")
        t.read_until(b"42x")
        t.send(b"exit 4\r")
        assert t.wait() == 4, t.buf
    finally:
        t.close()


def i_piped(d: EngineDaemon) -> None:
    r = subprocess.run(
        ["docker", "exec", "-i", NAME, "sh", "-c", "cat; exit 5"],
        input=b"x" * 100000,
        capture_output=True,
        env=d.env,
        timeout=30,
    )
    assert (r.returncode, len(r.stdout)) == (5, 100000), r.stderr


def plain(d: EngineDaemon) -> None:
    r = d.docker("exec", NAME, "sh", "-c", "echo out; echo err >&2", check=False)
    assert (r.returncode, r.stdout, r.stderr) == (0, "out\n", "err\n")


SESSIONS: list[Callable[[EngineDaemon], None]] = [
    it_exit_at_once,
    it_exit_3,
    it_stdin_eof,
    it_killed_client,
    it_resize,
    it_lots_of_output,
    it_detach,
    it_shell,
    i_piped,
    plain,
]


# ---- the container's side -----------------------------------------------------------------------------
def inspect_state(d: EngineDaemon) -> dict:
    return json.loads(d.docker("inspect", NAME).stdout)[0]["State"]


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def others_in_pidns(init: int) -> list[str]:
    """The processes that share the init's pid namespace, but the init: exec processes left behind."""
    ns = os.readlink(f"/proc/{init}/ns/pid")
    found = []
    for p in os.listdir("/proc"):
        if not p.isdigit() or int(p) == init:
            continue
        try:
            if os.readlink(f"/proc/{p}/ns/pid") == ns:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{p}: {cmd}")
        except OSError:
            continue
    return found


@pytest.fixture
def sleeper(d: EngineDaemon):  # type: ignore[no-untyped-def]
    d.docker("run", "-d", "--name", NAME, "busybox", "sleep", "100000")
    yield NAME
    d.docker("rm", "-f", NAME, check=False)


@pytest.mark.parametrize("seed", [1, 2])
def test_many_exec_sessions_leave_the_container_and_its_shim_alone(
    d: EngineDaemon, sleeper: str, seed: int
) -> None:
    state = inspect_state(d)
    init = state["Pid"]
    shim = ppid(init)  # the shim is the init's parent (a child subreaper)
    with open(f"/proc/{shim}/cmdline", "rb") as f:
        assert b"shim" in f.read()
    rng = random.Random(seed)
    plan = [SESSIONS[i % len(SESSIONS)] for i in range(SESSIONS_PER_RUN)]
    rng.shuffle(plan)
    batches: list[list[Callable[[EngineDaemon], None]]] = []
    while plan:
        n = rng.randint(1, 4)
        batches.append(plan[:n])
        del plan[:n]
    done = 0
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        with ThreadPoolExecutor(4) as pool:
            for i, batch in enumerate(batches):
                if i == len(batches) // 2:
                    busy.kill()
                    busy.wait()
                for fut in [pool.submit(fn, d) for fn in batch]:
                    fut.result()
                    done += 1
    finally:
        if busy.poll() is None:
            busy.kill()
            busy.wait()
    assert done == SESSIONS_PER_RUN
    after = inspect_state(d)
    assert (after["Running"], after["Pid"]) == (True, init), after
    assert os.path.exists(f"/proc/{shim}") and ppid(init) == shim
    assert d.docker("exec", NAME, "true").returncode == 0
    deadline = time.monotonic() + 10  # a killed client's or a detached shell ends when its stdin does
    while (left := others_in_pidns(init)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert left == []
    log = d.log()
    assert "Traceback" not in log and "shim connection lost" not in log, log[-5000:]
    shim_log = d.exec_root / "shim.log"  # the shims' --log: a callback that failed would be reported here
    assert shim_log.exists() and "a callback failed" not in shim_log.read_text(), shim_log.read_text()[-5000:]


def test_a_resize_sent_before_the_start_waits_for_it(d: EngineDaemon, sleeper: str) -> None:
    """The CLI resizes as soon as it is attached, which can be before the start has run: as dockerd, the
    resize waits for the start instead of failing (it used to be a 409, and the window size was lost)."""
    status, body = d.request(
        "POST",
        f"/containers/{NAME}/exec",
        {"Cmd": ["sh", "-c", "sleep 1; stty size > /tmp/size"], "Tty": True},
    )
    assert status == 201, body
    exec_id = body["Id"]
    with ThreadPoolExecutor(1) as pool:
        resize = pool.submit(d.request, "POST", f"/exec/{exec_id}/resize?h=33&w=111")
        time.sleep(0.2)  # the resize is waiting now
        status, body = d.request("POST", f"/exec/{exec_id}/start", {"Detach": True, "Tty": True})
        assert status == 200, body
        assert resize.result(timeout=15)[0] == 200
    deadline = time.monotonic() + 10
    while (r := d.docker("exec", NAME, "cat", "/tmp/size", check=False)).returncode != 0:
        assert time.monotonic() < deadline, r.stderr
        time.sleep(0.05)
    assert r.stdout == "33 111\n"
