"""The Content service's Write/Read protocol edge cases over the real gRPC socket (grpclib client):
offsets, locking, bad digests and refs, read ranges — each a clean status and nothing half-stored."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.api.containerd.gen.containerd.services.content.v1 import content_pb2 as pb
from engine.api.containerd.gen.containerd.services.content.v1.content_grpc import ContentStub
from tests.e2e.containerd.test_ctr_content import Server, server  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
MD = {"containerd-namespace": "default"}
DATA = b"grpc content " * 5000
DGST = "sha256:" + hashlib.sha256(DATA).hexdigest()


@pytest.fixture
async def stub(server: Server) -> AsyncIterator[ContentStub]:  # noqa: F811
    channel = Channel(path=str(server.sock))
    try:
        yield ContentStub(channel)
    finally:
        channel.close()


async def write(stub: ContentStub, *reqs: pb.WriteContentRequest) -> list[pb.WriteContentResponse]:
    out = []
    async with stub.Write.open(metadata=MD) as stream:
        for req in reqs:
            await stream.send_message(req)
            out.append(await stream.recv_message())
        await stream.end()
    return out


async def test_write_stat_write_commit(stub: ContentStub, server: Server) -> None:  # noqa: F811
    got = await write(stub, pb.WriteContentRequest(action=pb.STAT, ref="r", total=len(DATA), expected=DGST),
                      pb.WriteContentRequest(action=pb.WRITE, ref="r", offset=0, data=DATA[:100]),
                      pb.WriteContentRequest(action=pb.WRITE, ref="r", offset=100, data=DATA[100:200]))
    assert [(r.offset, r.total) for r in got] == [(0, len(DATA)), (100, len(DATA)), (200, len(DATA))]
    # resume in a new stream at the offset the status reports, then commit with labels
    st = (await stub.Status(pb.StatusRequest(ref="r"), metadata=MD)).status
    assert (st.ref, st.offset, st.expected) == ("r", 200, DGST)
    got = await write(stub, pb.WriteContentRequest(action=pb.COMMIT, ref="r", offset=200, data=DATA[200:],
                                                   total=len(DATA), expected=DGST, labels={"k": "v"}))
    assert got[0].digest == DGST and got[0].offset == len(DATA)
    info = (await stub.Info(pb.InfoRequest(digest=DGST), metadata=MD)).info
    assert (info.size, dict(info.labels)) == (len(DATA), {"k": "v"})
    chunks = await stub.Read(pb.ReadContentRequest(digest=DGST, offset=10, size=1000), metadata=MD)
    assert b"".join(c.data for c in chunks) == DATA[10:1010] and chunks[0].offset == 10
    chunks = await stub.Read(pb.ReadContentRequest(digest=DGST), metadata=MD)
    assert b"".join(c.data for c in chunks) == DATA


async def expect(status: Status, coro: Any, text: str = "") -> str:
    with pytest.raises(GRPCError) as err:
        await coro
    assert err.value.status == status, err.value
    assert text in (err.value.message or ""), err.value.message
    return err.value.message or ""


async def test_bad_writes_are_refused_and_store_nothing(stub: ContentStub, server: Server) -> None:  # noqa: F811
    await expect(Status.INVALID_ARGUMENT, write(stub, pb.WriteContentRequest(action=pb.STAT)), "reference")
    await expect(Status.INVALID_ARGUMENT, write(stub, pb.WriteContentRequest(action=pb.STAT, ref="r",
                                                                             expected="sha256:xyz")), "digest")
    await expect(Status.OUT_OF_RANGE, write(stub, pb.WriteContentRequest(action=pb.WRITE, ref="r", offset=2**62,
                                                                         data=b"x")), "current offset 0")
    await expect(Status.INVALID_ARGUMENT, write(stub, pb.WriteContentRequest(action=pb.WRITE, ref="t", total=3,
                                                                             data=b"four")), "exceeds")
    wrong = "sha256:" + "0" * 64
    msg = await expect(Status.FAILED_PRECONDITION,
                       write(stub, pb.WriteContentRequest(action=pb.COMMIT, ref="c", data=DATA, expected=wrong)),
                       "unexpected commit digest")
    assert DGST in msg and wrong in msg
    await expect(Status.FAILED_PRECONDITION,
                 write(stub, pb.WriteContentRequest(action=pb.COMMIT, ref="s", data=DATA, total=len(DATA) + 1)),
                 "unexpected commit size")
    await expect(Status.INVALID_ARGUMENT, write(stub, pb.WriteContentRequest(action=pb.STAT, ref="a\x00b")))
    assert list(server.env.store.walk()) == []
    await expect(Status.NOT_FOUND, stub.Info(pb.InfoRequest(digest=DGST), metadata=MD))
    await expect(Status.INVALID_ARGUMENT, stub.Info(pb.InfoRequest(digest="sha256:../../x"), metadata=MD))
    await expect(Status.FAILED_PRECONDITION, stub.Info(pb.InfoRequest(digest=DGST)), "namespace is required")
    await expect(Status.NOT_FOUND, stub.Abort(pb.AbortRequest(ref="never"), metadata=MD))


async def test_second_writer_is_unavailable(stub: ContentStub, server: Server) -> None:  # noqa: F811
    async with stub.Write.open(metadata=MD) as first:
        await first.send_message(pb.WriteContentRequest(action=pb.WRITE, ref="locked", data=b"abc"))
        assert (await first.recv_message()).offset == 3
        await expect(Status.UNAVAILABLE, write(stub, pb.WriteContentRequest(action=pb.STAT, ref="locked")),
                     "ref locked locked")
        await expect(Status.UNAVAILABLE, stub.Abort(pb.AbortRequest(ref="locked"), metadata=MD))
        await first.end()
    # the first stream ended: the ref is free, its bytes are there to resume
    got = await write(stub, pb.WriteContentRequest(action=pb.STAT, ref="locked"))
    assert got[0].offset == 3
    await stub.Abort(pb.AbortRequest(ref="locked"), metadata=MD)
    assert server.env.store.list_statuses() == []


async def test_read_ranges(stub: ContentStub, server: Server) -> None:  # noqa: F811
    await write(stub, pb.WriteContentRequest(action=pb.COMMIT, ref="r", data=DATA, expected=DGST))
    await expect(Status.OUT_OF_RANGE, stub.Read(pb.ReadContentRequest(digest=DGST, offset=len(DATA) + 1),
                                                metadata=MD))
    await expect(Status.INVALID_ARGUMENT, stub.Read(pb.ReadContentRequest(digest=DGST, offset=-1), metadata=MD))
    tail = await stub.Read(pb.ReadContentRequest(digest=DGST, offset=len(DATA) - 5, size=100), metadata=MD)
    assert b"".join(c.data for c in tail) == DATA[-5:]
    assert Path(server.env.store.blob_path(DGST)).stat().st_size == len(DATA)
