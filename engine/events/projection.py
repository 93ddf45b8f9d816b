"""Projections: tables derived from the journal by pure ``apply(envelope, tx)`` functions.

Each service declares one ``Projection`` next to its code: the tables it owns, the event types it
applies, and the function. The journal calls ``apply`` inside the same SQLite transaction as the append,
so a projection can never disagree with the events; ``apply`` may raise an engine error to refuse an
event (a name that already exists), which rolls back just that append. Replaying the whole journal
through the same functions into an empty database must give identical tables (``engine journal verify``).

``namespaced_tables`` lists the tables whose rows belong to a containerd namespace (a ``namespace``
column); a namespace that still has rows in any of them cannot be deleted.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.events.types import Envelope, Event

ApplyFn = Callable[[Envelope, sqlite3.Cursor], None]


@dataclass(frozen=True)
class Projection:
    name: str
    tables: tuple[str, ...]
    events: tuple[type[Event], ...]
    apply: ApplyFn
    namespaced_tables: tuple[str, ...] = field(default=())


class Projections:
    """The set of projections the journal maintains, dispatched by event type."""

    def __init__(self, projections: Iterable[Projection]) -> None:
        self.all = tuple(projections)
        names = [p.name for p in self.all]
        if len(set(names)) != len(names):
            raise ValueError(f"projection names repeat: {names}")
        self._by_type: dict[str, list[ApplyFn]] = {}
        for p in self.all:
            for cls in p.events:
                self._by_type.setdefault(cls.TYPE, []).append(p.apply)

    def apply(self, env: Envelope, tx: sqlite3.Cursor) -> None:
        for fn in self._by_type.get(env.type, ()):
            fn(env, tx)

    @property
    def tables(self) -> list[str]:
        return [t for p in self.all for t in p.tables]

    @property
    def namespaced_tables(self) -> list[str]:
        return [t for p in self.all for t in p.namespaced_tables]
