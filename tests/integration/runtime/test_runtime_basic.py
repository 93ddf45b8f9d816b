"""Smoke: a container runs, its output and exit code come back."""

from __future__ import annotations


def test_run_echo_and_exit_code(rt):
    b = rt.bundle(["sh", "-c", "echo hello from $(hostname); exit 3"])
    r = b.run()
    assert r.returncode == 3, r.stderr
    assert r.stdout == "hello from container\n"
    assert rt.leftovers(b.id, b) == []
