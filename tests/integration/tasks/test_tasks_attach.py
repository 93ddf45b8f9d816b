"""TaskService.attach / write_stdin / close_io: several attachers, stdin round trip, TTY output also logged."""

from __future__ import annotations

import asyncio
import json

import pytest

from engine.errors import FailedPrecondition, NotFound
from tests.integration.tasks.taskenv import ACTOR, NS


async def _collect(it, until: bytes, timeout: float = 10.0) -> bytes:
    got = bytearray()

    async def go() -> None:
        async for _stream, data in it:
            got.extend(data)
            if until and until in got:
                return

    await asyncio.wait_for(go(), timeout)
    return bytes(got)


async def test_two_attachers_and_stdin_round_trip(env):
    cid = await env.container(["sh", "-c", "while read l; do echo out:$l; echo err:$l >&2; done; exit 4"])
    await env.tasks.create(NS, cid, open_stdin=True, actor=ACTOR)
    streams: list[list[tuple[int, bytes]]] = [[], []]

    async def follow(i: int) -> None:
        async for item in env.tasks.attach(NS, cid):
            streams[i].append(item)

    followers = [asyncio.ensure_future(follow(i)) for i in range(2)]
    await asyncio.sleep(0.2)  # both attached before the process starts
    await env.tasks.start(NS, cid, actor=ACTOR)
    await env.tasks.write_stdin(NS, cid, b"a\nb\n")
    await env.tasks.close_io(NS, cid)
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid), 10))[0] == 4
    await asyncio.wait_for(asyncio.gather(*followers), 10)  # both end at EOF of the output
    for s in streams:
        out = b"".join(d for k, d in s if k == 1)
        err = b"".join(d for k, d in s if k == 2)
        assert (out, err) == (b"out:a\nout:b\n", b"err:a\nerr:b\n")
    # after the exit, an attach ends at once; stdin of a stopped task is refused
    assert [x async for x in env.tasks.attach(NS, cid)] == []
    with pytest.raises(FailedPrecondition):
        await env.tasks.write_stdin(NS, cid, b"late\n")
    await env.tasks.delete(NS, cid, actor=ACTOR)
    with pytest.raises(NotFound):
        async for _ in env.tasks.attach(NS, cid):
            pass
    assert env.leftovers() == []


async def test_tty_output_is_attached_and_logged(env):
    logp = env.workdir / "tty-json.log"
    cid = await env.container(["sh", "-c", "read l; echo got:$l; exit 3"], terminal=True)
    await env.tasks.create(NS, cid, terminal=True, open_stdin=True, actor=ACTOR,
                           log={"path": str(logp), "max_size": 0, "max_file": 1})
    it = env.tasks.attach(NS, cid)
    first = asyncio.ensure_future(_collect(it, b"got:hi"))
    await asyncio.sleep(0.2)
    await env.tasks.start(NS, cid, actor=ACTOR)
    await env.tasks.write_stdin(NS, cid, b"hi\n")
    out = await first
    assert b"got:hi\r\n" in out  # raw pty bytes: the echo of the input and the output with CRLF
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid), 10))[0] == 3
    await it.aclose()
    lines = [json.loads(x) for x in logp.read_text().splitlines()]
    assert {x["stream"] for x in lines} == {"stdout"}
    assert "got:hi\r\n" in "".join(x["log"] for x in lines)
    await env.tasks.delete(NS, cid, actor=ACTOR)
    assert env.leftovers() == []


async def test_exec_attach_and_unknown_exec(env):
    cid = await env.run(["sleep", "300"])
    await env.tasks.exec(NS, cid, "e1", {"args": ["sh", "-c", "echo exec-out; echo exec-err >&2; exit 2"], "cwd": "/",
                                     "env": ["PATH=/bin:/usr/bin"]},
                         actor=ACTOR)
    with pytest.raises(NotFound):
        async for _ in env.tasks.attach(NS, cid, "nope"):
            pass
    got = asyncio.ensure_future(_collect(env.tasks.attach(NS, cid, "e1"), b""))
    await asyncio.sleep(0.2)
    await env.tasks.start(NS, cid, "e1", actor=ACTOR)
    assert sorted((await got).split()) == [b"exec-err", b"exec-out"]
    assert (await asyncio.wait_for(env.tasks.wait(NS, cid, "e1"), 10))[0] == 2
    await env.tasks.delete(NS, cid, "e1", actor=ACTOR)
    await env.tasks.kill(NS, cid, 9, actor=ACTOR)
    await asyncio.wait_for(env.tasks.wait(NS, cid), 10)
    await env.tasks.delete(NS, cid, actor=ACTOR)
    assert env.leftovers() == []
