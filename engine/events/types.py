"""Event types: frozen msgspec Structs, one class per type, and the envelope the journal wraps them in.

A class declares its journal name (``TYPE``, past tense: ``namespace.created``), its schema version
(``SCHEMA``) and which field is the event's subject (``SUBJECT``). Classes register themselves on
definition, so the journal can decode any stored row by its ``type`` column.

A released event never changes meaning. When a type's fields must change, bump ``SCHEMA`` and register
an upcaster ``(type, old_schema) -> fn(dict) -> dict`` that turns the stored payload of the old version
into the next one; reading applies the chain. Payloads are stored as JSON so the journal can be queried
with SQLite's json functions during an audit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from engine.errors import DataLoss, InvalidArgument


class Event(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Base of every journal event."""

    TYPE: ClassVar[str] = ""
    SCHEMA: ClassVar[int] = 1
    SUBJECT: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.TYPE:
            if cls.TYPE in EVENT_TYPES and EVENT_TYPES[cls.TYPE] is not cls:
                raise TypeError(f"event type {cls.TYPE!r} is defined twice")
            EVENT_TYPES[cls.TYPE] = cls

    @property
    def subject(self) -> str:
        return str(getattr(self, self.SUBJECT)) if self.SUBJECT else ""


EVENT_TYPES: dict[str, type[Event]] = {}
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def upcaster(type_name: str, from_schema: int) -> Callable[[Upcaster], Upcaster]:
    """Register fn as the step that turns `type_name` payloads of `from_schema` into `from_schema + 1`."""

    def register(fn: Upcaster) -> Upcaster:
        UPCASTERS[(type_name, from_schema)] = fn
        return fn

    return register


class Envelope(msgspec.Struct, frozen=True):
    """One journal row: the event and everything the journal knows about it."""

    seq: int
    time_ns: int
    namespace: str
    type: str
    subject: str
    actor: str
    cause: str
    schema: int
    event: Event
    prev_hash: bytes
    hash: bytes


_encoder = msgspec.json.Encoder()
_decoders: dict[type[Event], msgspec.json.Decoder] = {}


def encode_payload(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_payload(type_name: str, schema: int, payload: bytes | str) -> Event:
    cls = EVENT_TYPES.get(type_name)
    if cls is None:
        raise DataLoss(f"journal holds an event of unknown type {type_name!r}")
    if schema == cls.SCHEMA:
        dec = _decoders.get(cls)
        if dec is None:
            dec = _decoders[cls] = msgspec.json.Decoder(cls)
        return dec.decode(payload)
    if schema > cls.SCHEMA:
        raise DataLoss(f"event {type_name!r} has schema {schema}, newer than this engine's {cls.SCHEMA}")
    data = msgspec.json.decode(payload)
    for version in range(schema, cls.SCHEMA):
        step = UPCASTERS.get((type_name, version))
        if step is None:
            raise DataLoss(f"no upcaster for {type_name!r} from schema {version} to {version + 1}")
        data = step(data)
    return msgspec.convert(data, cls)


class ContainerdPublished(Event, frozen=True):
    """An event a containerd client published (Events.Publish/Forward): kept as the topic and the Any."""

    TYPE: ClassVar[str] = "containerd.published"
    SUBJECT: ClassVar[str] = "topic"
    topic: str
    type_url: str
    value: bytes = b""


class DaemonReloaded(Event, frozen=True):
    """The daemon re-read its configuration file (SIGHUP); Docker reports it as a `daemon reload` event."""

    TYPE: ClassVar[str] = "daemon.reloaded"
    SUBJECT: ClassVar[str] = "daemon_id"
    daemon_id: str
    name: str
    attributes: dict[str, str] = {}


def validate_actor(actor: str) -> str:
    if not actor or len(actor) > 1024:
        raise InvalidArgument("an event needs an actor of 1 to 1024 characters")
    return actor


class DaemonInitialized(Event, frozen=True):
    """The first event of every journal: the daemon's identity (Docker's `ID`, containerd's UUID)."""

    TYPE: ClassVar[str] = "daemon.initialized"
    SUBJECT: ClassVar[str] = "daemon_id"
    daemon_id: str
    version: str


class DaemonStarted(Event, frozen=True):
    """A daemon process took over this root; a start without a stop before it marks a crash."""

    TYPE: ClassVar[str] = "daemon.started"
    SUBJECT: ClassVar[str] = "daemon_id"
    daemon_id: str
    pid: int
    version: str
    previous_stop_clean: bool = True


class DaemonStopped(Event, frozen=True):
    TYPE: ClassVar[str] = "daemon.stopped"
    SUBJECT: ClassVar[str] = "daemon_id"
    daemon_id: str
    pid: int
    signal: str = ""
