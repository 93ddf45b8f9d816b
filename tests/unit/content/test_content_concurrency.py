"""Concurrent writers, deletes and collections: no record ever points at a missing blob, and nothing a
lease or a root protects is collected, whatever the interleaving."""

from __future__ import annotations

import asyncio
import os
import random

from engine.errors import AlreadyExists
from engine.images.content import digests
from tests.unit.content.conftest import Env


async def check_invariants(env: Env) -> None:
    rows = await env.journal.run_read(lambda c: c.execute("SELECT namespace, digest, size FROM content").fetchall())
    for ns, dgst, size in rows:  # type: ignore[attr-defined]
        assert env.store.exists(dgst), f"{ns} holds {dgst} but the blob is gone"
        assert env.store.info(dgst).size == size
    pending = await env.journal.run_read(lambda c: c.execute("SELECT count(*) FROM content_removals").fetchone()[0])
    assert pending == 0


async def test_writers_and_collector_race(env: Env) -> None:
    rng = random.Random(5)
    blobs = [os.urandom(rng.randint(1, 300_000)) for _ in range(12)]
    await env.leases.create("ns", "keep", actor="t")
    kept: set[str] = set()
    stop = asyncio.Event()

    async def writer(i: int) -> None:
        for round_ in range(6):
            data = blobs[(i + round_) % len(blobs)]
            ns = f"ns{'' if i % 2 else i % 3}"
            lease = "keep" if ns == "ns" and round_ % 2 == 0 else ""
            w = await env.content.writer(ns, f"w{i}-{round_}", total=len(data), lease=lease, actor="t")
            try:
                for off in range(0, len(data), 65_536):
                    await w.write(data[off:off + 65_536])
                    await asyncio.sleep(0)
                try:
                    info = await w.commit(expected=digests.of_bytes(data))
                    if lease:
                        kept.add(info.digest)
                except AlreadyExists:
                    if lease:  # the namespace held it already; protect it explicitly
                        from engine.services.leases import Resource
                        await env.leases.add_resource(ns, "keep", Resource(digests.of_bytes(data), "content"),
                                                      actor="t")
                        kept.add(digests.of_bytes(data))
            finally:
                await w.close()

    async def collector() -> None:
        while not stop.is_set():
            await env.gc.collect()
            await asyncio.sleep(0)

    gc_task = asyncio.create_task(collector())
    await asyncio.gather(*(writer(i) for i in range(8)))
    stop.set()
    await gc_task
    collected = [e for e in await env.journal.read(limit=100_000) if e.type == "content.deleted"]
    assert len(collected) > 5  # the collector really ran against the writers
    await env.gc.collect()
    await check_invariants(env)
    held = {i.digest for i in await env.content.list("ns")}
    assert kept <= held
    for dgst in kept:
        assert env.store.exists(dgst)
    await env.leases.delete("ns", "keep", sync=True, actor="t")
    await check_invariants(env)
    assert await env.content.list("ns") == [] and list(env.store.walk()) == []
