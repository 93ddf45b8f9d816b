"""Health checks with the real docker CLI: a container goes starting → healthy → unhealthy as its check starts
failing, each change journaled; --no-healthcheck disables the image's check; bad durations are refused."""

from __future__ import annotations

import json
import time

from tests.e2e.docker.dockerapi_util import journal
from tests.harness import EngineDaemon


def _statuses(d: EngineDaemon, cid: str) -> list[str]:
    return [e["event"]["status"] for e in journal(d, "type=docker_container.health_status_changed")
            if e["subject"] == cid]


def test_starting_healthy_unhealthy(d: EngineDaemon) -> None:
    cid = d.docker("run", "-d", "--health-cmd", "test -f /tmp/ok", "--health-interval", "200ms",
                   "--health-retries", "2", "busybox", "sh", "-c",
                   "touch /tmp/ok; sleep 1.5; rm /tmp/ok; sleep 60").stdout.strip()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _statuses(d, cid) != ["healthy", "unhealthy"]:
            time.sleep(0.1)
        assert _statuses(d, cid) == ["healthy", "unhealthy"]
        state = json.loads(d.docker("inspect", cid).stdout)[0]["State"]
        assert state["Health"]["Status"] == "unhealthy" and state["Health"]["FailingStreak"] >= 2
        assert 1 <= len(state["Health"]["Log"]) <= 5 and state["Health"]["Log"][-1]["ExitCode"] == 1
    finally:
        d.docker("rm", "-f", cid)


def test_no_healthcheck_and_bad_values(d: EngineDaemon) -> None:
    cid = d.docker("run", "-d", "--no-healthcheck", "busybox", "sleep", "60").stdout.strip()
    try:
        time.sleep(0.3)
        assert "Health" not in json.loads(d.docker("inspect", cid).stdout)[0]["State"]
    finally:
        d.docker("rm", "-f", cid)
    before = len(d.docker("ps", "-aq").stdout.split())
    p = d.docker("run", "-d", "--health-cmd", "true", "--health-interval", "100us", "busybox", check=False)
    assert p.returncode != 0 and "Interval in Healthcheck cannot be less than 1ms" in p.stderr, p.stderr
    assert len(d.docker("ps", "-aq").stdout.split()) == before
