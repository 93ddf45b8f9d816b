"""engine's own endpoints next to Docker's: the full journal (every event type, with actor, cause and
hashes) for ``engine events`` / ``engine journal tail``, and ``engine journal verify``.

``GET /engine/journal``: query by ``type``, ``subject``, ``namespace``, ``actor`` (repeatable, ``*``
globs), ``since``/``until`` (Docker's time forms), ``from_seq``/``to_seq``, ``tail`` (the last N
matches), ``follow`` (then stay live). One JSON object per line.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import cast

import msgspec

from engine.api.docker.http import Request, Response, StreamResponse
from engine.api.docker.timefmt import parse_time_ns
from engine.errors import InvalidArgument
from engine.events.query import JournalQuery
from engine.events.types import Envelope
from engine.events.verify import VerifyReport, verify
from engine.services import Services

_enc = msgspec.json.Encoder()


def rfc3339_ns(time_ns: int) -> str:
    sec, ns = divmod(time_ns, 1_000_000_000)
    return datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


def envelope_json(env: Envelope) -> dict:
    return {"seq": env.seq, "time": rfc3339_ns(env.time_ns), "time_ns": env.time_ns, "namespace": env.namespace,
            "type": env.type, "subject": env.subject, "actor": env.actor, "cause": env.cause,
            "schema": env.schema, "event": msgspec.to_builtins(env.event), "prev_hash": env.prev_hash.hex(),
            "hash": env.hash.hex()}


def _int_arg(req: Request, name: str) -> int | None:
    value = req.arg(name)
    if value in (None, ""):
        return None
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, not {value!r}") from None
    if n < 0:
        raise InvalidArgument(f"{name} must not be negative")
    return n


def query_from_request(req: Request) -> JournalQuery:
    now = time.time_ns()
    since, until = req.arg("since"), req.arg("until")
    return JournalQuery(
        types=req.query.get("type", []), subjects=req.query.get("subject", []),
        namespaces=req.query.get("namespace", []), actors=req.query.get("actor", []),
        since_ns=parse_time_ns(since, "since", now) if since else None,
        until_ns=parse_time_ns(until, "until", now) if until else None,
        from_seq=_int_arg(req, "from_seq"), to_seq=_int_arg(req, "to_seq"),
    )


async def get_journal(services: Services, req: Request) -> StreamResponse:
    q = query_from_request(req)
    tail = _int_arg(req, "tail")
    follow = req.flag("follow")
    journal = services.journal
    where, params = q.where()

    async def start_seq() -> int:
        if tail is None:
            return 0
        sql = f"SELECT seq FROM events {'WHERE ' + where if where else ''} ORDER BY seq DESC LIMIT 1 OFFSET ?"

        def first(conn) -> int:  # the seq just before the tail's first match
            row = conn.execute(sql, (*params, max(tail - 1, 0))).fetchone() if tail else None
            return (row[0] - 1) if row else 0

        if tail == 0:
            return journal.last_seq
        return await journal.run_read(first)  # type: ignore[return-value]

    after = await start_seq()

    async def stream() -> AsyncIterator[bytes]:
        source: AsyncIterator[Envelope]  # a Subscription or an async generator: both have aclose()
        if follow and (q.until_ns is None or q.until_ns > time.time_ns()):
            source = journal.subscribe(after_seq=after, match=q.match, where=where, params=params)
            timeout = None if q.until_ns is None else (q.until_ns - time.time_ns()) / 1e9
        else:
            source = journal.history(after_seq=after, where=where, params=params)
            timeout = None
        try:
            async with asyncio.timeout(timeout):
                async for env in source:
                    yield _enc.encode(envelope_json(env)) + b"\n"
        except TimeoutError:
            return
        finally:
            await source.aclose()  # type: ignore[attr-defined]

    return StreamResponse(stream())


async def post_verify(services: Services, req: Request) -> Response:
    projections = services.journal.projections
    report = cast(VerifyReport, await services.journal.run_read(lambda conn: verify(conn, projections)))
    return Response.json(report.to_dict())
