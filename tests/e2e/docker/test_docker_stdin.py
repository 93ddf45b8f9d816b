"""`docker run -i` without a TTY: the container's stdin is a pipe the attach feeds, and the client's EOF closes
it (StdinOnce), so `cat` ends and the exit code comes back."""

from __future__ import annotations

import subprocess

from tests.harness import EngineDaemon


def test_run_i_pipes_stdin(d: EngineDaemon) -> None:
    p = subprocess.run(["docker", "run", "-i", "--rm", "busybox", "sh", "-c", "tr a-z A-Z; exit 4"],
                       input="hello\nworld\n", env=d.env, capture_output=True, text=True, timeout=60)
    assert (p.stdout, p.returncode) == ("HELLO\nWORLD\n", 4), p.stderr


def test_large_stdin_round_trip(d: EngineDaemon) -> None:
    data = "".join(f"line {i}\n" for i in range(20000))
    p = subprocess.run(["docker", "run", "-i", "--rm", "busybox", "wc", "-l"], input=data, env=d.env,
                       capture_output=True, text=True, timeout=60)
    assert p.stdout.strip() == "20000" and p.returncode == 0, p.stderr
