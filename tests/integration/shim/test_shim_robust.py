"""The shim keeps what the daemon must not lose: OOM, zombies, exits while nobody is connected,
events resumed by sequence number; and it works with runc/crun and from the fork server."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

from engine.errors import FailedPrecondition, InvalidArgument, NotFound
from engine.runtime.shim.client import ShimClient, spawn_from_fork_server
from tests.integration.shim.shimenv import wait_gone


async def _events_until(c: ShimClient, after: int, stop_type: str, timeout: float = 10) -> list[dict]:
    out = []

    async def run():
        async for ev in c.events(after=after):
            out.append(ev)
            if ev["type"] == stop_type:
                return

    await asyncio.wait_for(run(), timeout)
    return out


async def test_oom_kill_exit_137_and_oom_event(shims):
    # a 16 MiB limit; the shell's string doubling allocates past it
    script = "a=x; while :; do a=$a$a; done"
    _, c = await shims.new(["sh", "-c", script], memory=16 << 20)
    await c.start()
    res = await asyncio.wait_for(c.wait(), 30)
    assert res["exit_status"] == 137
    types = [e["type"] for e in await _events_until(c, 0, "exit")]
    assert "oom" in types and types.index("oom") < types.index("exit"), types
    await c.delete()


def _children(ppid: int) -> dict[int, str]:
    """pid -> state of every process whose parent is ``ppid``."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == ppid:
            out[int(d)] = rest[0]
    return out


async def test_zombies_are_reaped(shims):
    """PID 1 of the container never reaps; without a pid namespace its orphans come to the shim."""
    # `(sleep 1 &)`: the subshell exits at once, so its `sleep 1` is orphaned and, the shim being
    # a child subreaper, adopted by the shim; when it exits the shim must reap it
    rec, c = await shims.new(["sh", "-c", "(sleep 1 &); (sleep 1 &); exec sleep 100"], no_pidns=True)
    await c.start()
    task_pid = (await c.connect_info())["task_pid"]
    await asyncio.sleep(0.4)
    adopted = {p for p, st in _children(rec["pid"]).items() if p != task_pid}
    assert len(adopted) == 2, f"orphans not adopted by the shim: {_children(rec['pid'])}"
    await asyncio.sleep(1.2)
    left = _children(rec["pid"])
    assert not (adopted & set(left)), f"orphans not reaped by the shim: {left}"
    assert [st for st in left.values() if st == "Z"] == []
    assert (await c.state())["status"] == "running"
    await c.kill(9, all=True)
    await asyncio.wait_for(c.wait(), 10)
    await c.delete()


async def test_exits_while_disconnected_are_delivered_on_reconnect(shims):
    rec, c = await shims.new(
        ["sh", "-c", "sleep 0.5; echo late; exit 9"],
        create_kw={"log": {"path": str(shims.workdir / "logs" / "r-json.log")}},
    )
    await c.start()
    evs = await _events_until(c, 0, "start")
    last = evs[-1]["seq"]
    await c.ack(last)
    await c.close()  # the daemon goes away
    await asyncio.sleep(1.0)
    assert not wait_gone(rec["pid"], 0.1), "the shim must outlive its client"
    c2 = await shims.client(rec)  # the daemon is back
    info = await c2.connect_info()
    assert info["last_seq"] > last
    evs = await _events_until(c2, last, "exit")
    assert evs[0]["seq"] == last + 1
    ex = evs[-1]
    assert ex["exit_status"] == 9 and ex["exited_at"] > 0 and ex["exec_id"] == ""
    with open(os.path.join(rec["state"], "exit.json")) as f:
        rec_exit = json.load(f)
    assert rec_exit["exit_status"] == 9 and rec_exit["exited_at"] == ex["exited_at"]
    with open(shims.workdir / "logs" / "r-json.log") as f:
        assert '"log":"late\\n"' in f.read()
    await c2.ack(ex["seq"])
    assert (await c2.ack(ex["seq"]))["kept"] == 0
    await c2.delete()
    assert wait_gone(rec["pid"])


@pytest.mark.parametrize("runtime", ["/usr/sbin/runc", "/usr/bin/crun"])
async def test_external_runtime(shims, runtime):
    if not os.path.exists(runtime):
        pytest.fail(f"{runtime} is missing")
    log = str(shims.workdir / "logs" / "ext-json.log")
    try:
        rec, c = await shims.new(
            ["sh", "-c", "echo out; read x; echo got-$x; exit 4"],
            runtime=runtime,
            create_kw={"log": {"path": log}, "open_stdin": True},
        )
    except FailedPrecondition as e:
        # crun refuses this machine's hybrid cgroup layout; the shim must say so, then nothing is left
        assert runtime.endswith("crun") and "cgroups in hybrid mode not supported" in str(e), e
        rec = shims.shims[-1]
        with pytest.raises(NotFound, match="task not created"):
            await shims.clients[-1].state()
        pytest.skip(f"crun refuses the hybrid cgroup layout here, reported as: {e}")
    assert (await c.state())["status"] == "created"
    await c.start()
    c.write_stdin(b"y\n")
    await c.close_io()
    assert (await asyncio.wait_for(c.wait(), 20))["exit_status"] == 4
    with open(log) as f:
        lines = [json.loads(x)["log"] for x in f]
    assert lines == ["out\n", "got-y\n"]
    await c.delete()
    assert wait_gone(rec["pid"])
    assert not os.path.exists(rec["state"])


async def test_external_runtime_exec_pause_stats(shims):
    rec, c = await shims.new(["sleep", "100"], runtime="/usr/sbin/runc")
    await c.start()
    await c.exec(
        "e", {"args": ["sh", "-c", "exit 3"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
    )
    await c.start("e")
    assert (await asyncio.wait_for(c.wait("e"), 10))["exit_status"] == 3
    await c.pause()
    assert (await c.state())["status"] == "paused"
    await c.resume()
    stats = await c.stats()
    assert stats["memory"]["usage"]["usage"] > 0
    assert [p["pid"] for p in await c.pids()] == [(await c.connect_info())["task_pid"]]
    await c.kill(9)
    await asyncio.wait_for(c.wait(), 10)
    await c.delete()
    assert wait_gone(rec["pid"])


async def test_fork_server_shims(shims):
    server = shims.start_fork_server()
    with pytest.raises(InvalidArgument, match="unknown argument '--bogus'"):
        await spawn_from_fork_server(server, ["--bogus"])
    with pytest.raises(InvalidArgument, match="--state-dir is required"):
        await spawn_from_fork_server(server, ["--id", "x", "--socket", str(shims.workdir / "x.sock")])
    recs = []
    for _ in range(3):
        rec, c = await shims.new(["sh", "-c", "echo hi; exit 2"], fork_server=server)
        await c.start()
        assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 2
        recs.append((rec, c))
    for rec, c in recs:
        await c.delete()
        assert wait_gone(rec["pid"])
        assert not os.path.exists(rec["socket"]) and not os.path.exists(rec["state"])


async def test_stats_pids_update(shims):
    _, c = await shims.new(["sleep", "100"])
    await c.start()
    s = await c.stats()
    assert s["memory"]["usage"]["usage"] > 0 and "cpu" in s
    await c.update({"pids": {"limit": 50}})
    limit_file = [d for d in shims.cgroup_dirs() if "/pids/" in str(d)][0]
    cid = (await c.state())["id"]
    assert (limit_file / cid / "pids.max").read_text().strip() == "50"
    await c.kill(9)
    await asyncio.wait_for(c.wait(), 10)
    await c.delete()


async def test_external_runtime_tty_and_exec_tty(shims):
    """runc hands the pty master over the shim's console socket, for the init and for an exec."""
    rec, c = await shims.new(
        ["sh", "-c", "stty size; read x; echo got-$x"],
        runtime="/usr/sbin/runc",
        terminal=True,
        create_kw={"terminal": True, "open_stdin": True},
    )
    out = b""

    async def collect():
        nonlocal out
        async for _s, data in c.attach():
            out += data

    await c.resize_pty(90, 20)
    t = asyncio.ensure_future(collect())
    await asyncio.sleep(0.05)
    await c.start()
    await c.exec(
        "t",
        {"args": ["tty"], "cwd": "/", "env": ["PATH=/bin"], "terminal": True, "user": {"uid": 0, "gid": 0}},
    )
    got = b""

    async def collect_exec():
        nonlocal got
        async for _s, data in c.attach("t"):
            got += data

    te = asyncio.ensure_future(collect_exec())
    await asyncio.sleep(0.05)
    await c.start("t")
    assert (await asyncio.wait_for(c.wait("t"), 10))["exit_status"] == 0
    await asyncio.wait_for(te, 10)
    assert got.startswith(b"/dev/pts/"), got
    c.write_stdin(b"yo\n")
    assert (await asyncio.wait_for(c.wait(), 10))["exit_status"] == 0
    await asyncio.wait_for(t, 10)
    out = out.replace(b"\r\n", b"\n")
    assert b"20 90\n" in out and b"got-yo\n" in out, out
    await c.delete()
    assert wait_gone(rec["pid"])
