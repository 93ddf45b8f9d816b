"""Journal queries: the audit question "who did what, when", as SQL for the backlog and a predicate live.

A ``JournalQuery`` narrows by event type (exact, or a prefix with ``*``: ``namespace.*``), subject,
namespace, actor (``*`` globs), a time range and a seq range. ``where()`` renders it as an SQL condition
over the events table, and ``match()`` tests a live envelope the same way; the two are kept equal by a
unit test that runs both over the same journal.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from engine.events.types import Envelope


def _glob_sql(column: str, pattern: str) -> tuple[str, list[object]]:
    if "*" in pattern or "?" in pattern:
        return f"{column} GLOB ?", [pattern]
    return f"{column} = ?", [pattern]


@dataclass
class JournalQuery:
    types: list[str] = field(default_factory=list)
    subjects: list[str] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)
    actors: list[str] = field(default_factory=list)
    since_ns: int | None = None
    until_ns: int | None = None
    from_seq: int | None = None
    to_seq: int | None = None

    def where(self) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        for column, values in (("type", self.types), ("subject", self.subjects),
                               ("namespace", self.namespaces), ("actor", self.actors)):
            if not values:
                continue
            ors = []
            for v in values:
                sql, p = _glob_sql(column, v)
                ors.append(sql)
                params += p
            clauses.append("(" + " OR ".join(ors) + ")")
        for sql, value in (("time_ns >= ?", self.since_ns), ("time_ns <= ?", self.until_ns),
                           ("seq >= ?", self.from_seq), ("seq <= ?", self.to_seq)):
            if value is not None:
                clauses.append(sql)
                params.append(value)
        return " AND ".join(clauses), params

    def match(self, env: Envelope) -> bool:
        for attr, values in ((env.type, self.types), (env.subject, self.subjects),
                             (env.namespace, self.namespaces), (env.actor, self.actors)):
            if values and not any(fnmatch.fnmatchcase(attr, v) for v in values):
                return False
        if self.since_ns is not None and env.time_ns < self.since_ns:
            return False
        if self.until_ns is not None and env.time_ns > self.until_ns:
            return False
        if self.from_seq is not None and env.seq < self.from_seq:
            return False
        return not (self.to_seq is not None and env.seq > self.to_seq)
