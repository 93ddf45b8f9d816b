"""A reader that falls behind never misses or repeats (DESIGN §2.6), end to end through the Docker API socket.

A client follows `/engine/journal?follow=1` and stops reading while more events than a subscriber's live
queue holds (10,000) are published over the containerd socket by a real gRPC client; the daemon's socket
buffers fill, the stream blocks, the subscription falls behind and must go back to the database. When the
client reads again it must get every event, in seq order, each once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import time

import pytest
from daemon_util import events_listeners, wait_for
from google.protobuf import any_pb2
from grpclib.client import Channel

from engine.api.containerd.gen.containerd.services.events.v1 import events_grpc, events_pb2

pytestmark = pytest.mark.root

N = 14_000  # > the live queue of a subscriber (10,000) plus what the socket buffers hold


async def publish(path: str, n: int) -> None:
    ch = Channel(path=path)
    try:
        stub = events_grpc.EventsStub(ch)
        sem = asyncio.Semaphore(64)

        async def one(i: int) -> None:
            async with sem:
                await stub.Publish(events_pb2.PublishRequest(
                    topic="/slow-reader/burst", event=any_pb2.Any(type_url="engine.test/n", value=b"%d" % i)),
                    metadata={"containerd-namespace": "default"})

        await asyncio.gather(*(one(i) for i in range(n)))
    finally:
        ch.close()


def parse_chunked(buf: bytes) -> list[dict]:
    """The JSON lines of a chunked body (an incomplete last chunk is left out)."""
    pos = buf.index(b"\r\n\r\n") + 4
    out = []
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            break
        size = int(buf[pos:eol], 16)
        start = eol + 2
        if size == 0 or start + size + 2 > len(buf):
            break
        out.append(buf[start:start + size])
        pos = start + size + 2
    return [json.loads(x) for x in b"".join(out).splitlines() if x.strip()]


def test_a_reader_that_falls_behind_gets_everything_once_in_order(engine_daemon) -> None:
    d = engine_daemon
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(30)
    s.connect(d.docker_sock)
    try:
        s.sendall(b"GET /engine/journal?follow=1&type=containerd.published HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = s.recv(1024)
        assert buf.startswith(b"HTTP/1.1 200"), buf
        wait_for(lambda: events_listeners(d) == 1, what="the subscription")
        t0 = time.monotonic()
        asyncio.run(publish(d.containerd_sock, N))  # the reader reads nothing meanwhile
        published_in = time.monotonic() - t0
        t1 = time.monotonic()
        needle = b'"type":"containerd.published"'
        parts, seen, tail = [buf], buf.count(needle), b""
        while seen < N:
            chunk = s.recv(1 << 20)
            assert chunk, f"stream ended after {seen} events"
            seen += (tail + chunk).count(needle)
            tail = chunk[-(len(needle) - 1):]
            parts.append(chunk)
        buf = b"".join(parts)
        read_in = time.monotonic() - t1
    finally:
        s.close()
    got = parse_chunked(buf)
    seqs = [e["seq"] for e in got]
    assert len(seqs) == len(set(seqs)), "an event came twice"
    assert seqs == sorted(seqs), "events out of order"
    status, body = d.request("GET", "/engine/journal?type=containerd.published")
    journal = [json.loads(x) for x in body.splitlines()] if isinstance(body, bytes) else [body]
    assert seqs == [e["seq"] for e in journal], "the follower's events differ from the journal's"
    assert sorted(int(base64.b64decode(e["event"]["value"])) for e in got) == list(range(N))
    wait_for(lambda: events_listeners(d) == 0, what="the subscription to go")
    print(f"{N} events published in {published_in:.1f}s while the reader slept, read in {read_in:.1f}s")
