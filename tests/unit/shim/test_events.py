"""The shim's numbered event list: resume after a sequence number, ack, and the retention cap."""

from __future__ import annotations

from engine.runtime.shim.task import Events


class Sink:
    def __init__(self) -> None:
        self.got: list[dict] = []

    def send_event(self, ev: dict) -> None:
        self.got.append(ev)


def test_since_ack_and_live_delivery():
    ev = Events("c1", "ns")
    ev.emit("create", pid=10)
    ev.emit("start", pid=10)
    sink = Sink()
    ev.subscribers.append(sink)
    ev.emit("exit", exit_status=3, exited_at=5)
    assert [e["seq"] for e in ev.since(1)] == [2, 3]
    assert sink.got[0]["type"] == "exit" and sink.got[0]["exit_status"] == 3 and sink.got[0]["id"] == "c1"
    assert ev.ack(2) == 1
    assert [e["type"] for e in ev.since(0)] == ["exit"]


def test_cap_never_drops_an_exit(monkeypatch):
    monkeypatch.setattr(Events, "MAX_KEPT", 3)
    ev = Events("c1", "ns")
    ev.emit("exit", "e1")
    for _ in range(5):
        ev.emit("exec_added", "x")
    types = [e["type"] for e in ev.kept]
    assert types[0] == "exit" and len(types) == 3
    assert ev.seq == 6
