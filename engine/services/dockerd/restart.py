"""Docker's restart policies: whether an exited container starts again, and after how long.

The rules are dockerd's restart manager's, restated:

* policies ``no`` (or empty), ``always``, ``unless-stopped``, ``on-failure[:N]``; N is only valid with
  ``on-failure`` and must not be negative;
* after an exit: ``always`` restarts unless the container was stopped by hand (``docker stop``/``kill``),
  ``unless-stopped`` likewise, ``on-failure`` when the exit code is not 0 and fewer than N restarts were
  made (N = 0: no limit);
* at daemon start (``at_daemon_start``): ``always`` restarts even a container stopped by hand (that stop
  lasted until the daemon went away), ``unless-stopped`` only one that was not, ``on-failure`` one that
  had failed and has retries left;
* the delay doubles from 100 ms per restart up to one minute, and falls back to 100 ms when the
  container had run for 10 s or more.
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidArgument

POLICIES = ("no", "always", "unless-stopped", "on-failure")
FIRST_DELAY_S = 0.1
MAX_DELAY_S = 60.0
RESET_AFTER_S = 10.0


@dataclass(frozen=True)
class Policy:
    name: str = "no"
    maximum_retry_count: int = 0

    @property
    def restarts(self) -> bool:
        return self.name not in ("", "no")


def parse(policy: dict | None) -> Policy:
    """Docker's ``HostConfig.RestartPolicy`` ({"Name", "MaximumRetryCount"}); Docker's 400 messages."""
    if not policy:
        return Policy()
    if not isinstance(policy, dict):
        raise InvalidArgument("invalid restart policy: expected an object")
    name = policy.get("Name") or "no"
    count = policy.get("MaximumRetryCount") or 0
    if not isinstance(name, str) or not isinstance(count, int) or isinstance(count, bool):
        raise InvalidArgument("invalid restart policy: wrong type")
    if name not in POLICIES:
        raise InvalidArgument(f"invalid restart policy: unknown policy '{name}'; use one of 'no', 'always', "
                              "'on-failure', or 'unless-stopped'")
    if count < 0:
        raise InvalidArgument("invalid restart policy: maximum retry count cannot be negative")
    if count and name != "on-failure":
        raise InvalidArgument("invalid restart policy: maximum retry count can only be used with 'on-failure'")
    return Policy(name, count)


def should_restart(p: Policy, *, exit_code: int, restart_count: int, manually_stopped: bool,
                   at_daemon_start: bool = False) -> bool:
    if p.name == "always":
        return at_daemon_start or not manually_stopped
    if p.name == "unless-stopped":
        return not manually_stopped
    if p.name == "on-failure":
        if manually_stopped and not at_daemon_start:
            return False
        return exit_code != 0 and (p.maximum_retry_count == 0 or restart_count < p.maximum_retry_count)
    return False


def next_delay(previous_s: float, ran_for_s: float) -> float:
    """The wait before the next restart, given the previous one (0: none yet) and how long it ran."""
    if ran_for_s >= RESET_AFTER_S or previous_s <= 0:
        return FIRST_DELAY_S
    return min(previous_s * 2, MAX_DELAY_S)
