"""Crash safety: SIGKILL the daemon at random moments during a burst of namespace creates and deletes from
several concurrent ctr clients, restart it, and check the journal's promises:

* every request that was answered with success has its event in the journal (nothing acknowledged is lost);
* `engine journal verify` passes (hash chain whole, every projection equal to its replay);
* what a live follower (`engine events --format json --since 0`) received before the kill is a prefix of the
  journal after the restart: same seq, same hash, no gap;
* the restart records that the previous run did not stop cleanly.

The seed is printed so a failing schedule can be replayed (ENGINE_CRASH_SEED).
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time

import pytest
from daemon_util import wait_for

from tests.harness import ENGINE, EngineDaemon

pytestmark = pytest.mark.root

ROUNDS = 3
WORKERS = 4


class Follower:
    """`engine events --format json --since 0` in the background, collecting every line it prints."""

    def __init__(self, d: EngineDaemon) -> None:
        self.proc = subprocess.Popen([ENGINE, "events", "--format", "json", "--since", "0"], env=d.env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.endswith("\n"):
                break  # cut off by the kill: not a delivered event
            with self.lock:
                self.events.append(json.loads(line))

    def wait_started(self, pid: int) -> None:
        """Until the follower has printed this run's daemon.started (it is then live)."""

        def seen() -> bool:
            with self.lock:
                return any(e["type"] == "daemon.started" and e["event"]["pid"] == pid for e in self.events)

        wait_for(seen, what="the follower to reach this run's daemon.started")

    def finish(self) -> list[dict]:
        try:
            self.proc.wait(15)  # the daemon died: the stream ends and the CLI exits
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.thread.join(5)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.events


def burst(d: EngineDaemon, round_no: int, worker: int, stop: threading.Event, acked: list[tuple[str, str]],
          lock: threading.Lock) -> None:
    """Create and delete namespaces until told to stop; record every success ctr reported."""
    i = 0
    while not stop.is_set():
        name = f"crash-r{round_no}-w{worker}-{i}"
        i += 1
        if ctr(d, "namespaces", "create", name, f"round={round_no}"):
            with lock:
                acked.append(("namespace.created", name))
        else:
            continue
        if i % 3 == 0:
            continue  # keep some: the projection then has rows to verify
        if ctr(d, "namespaces", "rm", name):
            with lock:
                acked.append(("namespace.deleted", name))


def ctr(d: EngineDaemon, *args: str) -> bool:
    try:
        proc = subprocess.run(["ctr", "--address", d.containerd_sock, *args], capture_output=True, text=True,
                              timeout=15, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def journal(d: EngineDaemon) -> list[dict]:
    out = d.engine("journal", "tail", "--format", "json", "-n", "0").stdout
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_sigkill_during_a_burst_loses_nothing_acknowledged(engine_daemon) -> None:
    d = engine_daemon
    seed = int(os.environ.get("ENGINE_CRASH_SEED", time.time_ns() % 1_000_000))
    print(f"ENGINE_CRASH_SEED={seed}")
    rng = random.Random(seed)
    t_start = time.monotonic()
    all_acked: list[tuple[str, str]] = []
    for round_no in range(ROUNDS):
        follower = Follower(d)
        follower.wait_started(d.proc.pid)
        acked: list[tuple[str, str]] = []
        lock = threading.Lock()
        stop = threading.Event()
        workers = [threading.Thread(target=burst, args=(d, round_no, w, stop, acked, lock), daemon=True)
                   for w in range(WORKERS)]
        for t in workers:
            t.start()
        time.sleep(rng.uniform(0.3, 1.2))
        d.kill()  # SIGKILL, and wait until the process is gone
        stop.set()
        for t in workers:
            t.join(30)
            assert not t.is_alive(), "a ctr client hung after the kill"
        streamed = follower.finish()
        assert acked, "the burst got nothing done before the kill: the test proved nothing"

        d.start()
        after = journal(d)
        by_seq = {e["seq"]: e for e in after}
        assert [e["seq"] for e in after] == list(range(1, len(after) + 1)), "the journal has a gap"
        # 1. every acknowledged request has its event
        recorded = {(e["type"], e["subject"]) for e in after}
        lost = [a for a in acked if a not in recorded]
        assert not lost, f"round {round_no} (seed {seed}): acknowledged but not journaled: {lost[:10]}"
        # 2. what was streamed before the kill is a prefix of the journal: same seq, same hash, no gap
        assert [e["seq"] for e in streamed] == list(range(1, len(streamed) + 1)), "the follower saw a gap"
        for e in streamed:
            j = by_seq.get(e["seq"])
            assert j is not None, f"streamed seq {e['seq']} is not in the journal after the restart"
            assert (j["hash"], j["prev_hash"], j["type"], j["subject"], j["actor"]) == \
                (e["hash"], e["prev_hash"], e["type"], e["subject"], e["actor"]), e["seq"]
        assert any(e["subject"].startswith(f"crash-r{round_no}-") for e in streamed), \
            "the follower saw none of the burst: the prefix check proved nothing"
        # 3. the restart knows the last run crashed
        started = [e for e in after if e["type"] == "daemon.started"]
        assert started[-1]["event"]["previous_stop_clean"] is False
        assert started[-1]["event"]["pid"] == d.proc.pid
        # 4. the hash chain and every projection check out
        report = json.loads(d.engine("journal", "verify", "--format", "json").stdout)
        assert report["ok"], report
        all_acked += acked

    # the namespaces the daemon lists are exactly the journal's story (created, not deleted)
    final = journal(d)
    alive: set[str] = set()
    for e in final:
        if e["type"] == "namespace.created":
            alive.add(e["subject"])
        elif e["type"] == "namespace.deleted":
            alive.discard(e["subject"])
    listed = {line.split()[0] for line in d.ctr("namespaces", "ls", "-q").stdout.splitlines() if line.strip()}
    assert {n for n in listed if n.startswith("crash-")} == {n for n in alive if n.startswith("crash-")}
    assert d.stop() == 0
    off = subprocess.run([ENGINE, "journal", "verify", "--root", str(d.root)], capture_output=True, text=True,
                         timeout=60)
    assert off.returncode == 0 and "journal verified" in off.stdout, off.stdout + off.stderr
    print(f"{len(all_acked)} acknowledged operations over {ROUNDS} kills in {time.monotonic() - t_start:.1f}s")
    assert time.monotonic() - t_start < 60
