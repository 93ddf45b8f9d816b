"""Which journal events containerd clients see, under which topic, as which message.

containerd's event stream carries ``Envelope{timestamp, namespace, topic, event: Any}``.
Our journal stores engine events; this table turns one into the other. A row maps a journal
type (``namespace.created``) to a function returning ``(topic, message)`` — or None to keep
that event off the containerd stream. Events that containerd clients published themselves
(``containerd.published``) go back out exactly as they came in: their topic and their Any.

Later domains add rows with `register` (containers, tasks, images, snapshots, content).

Type URLs follow containerd's typeurl: the message's full protobuf name with no
``types.googleapis.com/`` prefix (``containerd.events.NamespaceCreate``), which is what Go
clients look up to decode the event.
"""

from __future__ import annotations

from collections.abc import Callable

from google.protobuf import any_pb2, descriptor_pool, message, message_factory

from engine.api.containerd.gen.containerd.events import (  # noqa: F401  (registers every event type)
    container_pb2,
    content_pb2,
    image_pb2,
    namespace_pb2,
    sandbox_pb2,
    snapshot_pb2,
    task_pb2,
)
from engine.events.types import ContainerdPublished, Envelope
from engine.services.namespaces import NamespaceCreated, NamespaceDeleted, NamespaceUpdated

Converter = Callable[[Envelope], "tuple[str, message.Message] | None"]
_TABLE: dict[str, Converter] = {}


def register(journal_type: str) -> Callable[[Converter], Converter]:
    """Decorator: `fn(envelope) -> (topic, message) | None` for one journal event type."""

    def add(fn: Converter) -> Converter:
        if journal_type in _TABLE:
            raise ValueError(f"containerd topic for {journal_type!r} registered twice")
        _TABLE[journal_type] = fn
        return fn

    return add


def type_url(msg: message.Message) -> str:
    return msg.DESCRIPTOR.full_name


def pack(msg: message.Message) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url(msg), value=msg.SerializeToString())


def to_containerd(env: Envelope) -> tuple[str, any_pb2.Any] | None:
    """(topic, Any) for a journal envelope, or None if containerd clients do not see it."""
    ev = env.event
    if isinstance(ev, ContainerdPublished):
        return ev.topic, any_pb2.Any(type_url=ev.type_url, value=ev.value)
    fn = _TABLE.get(env.type)
    if fn is None:
        return None
    out = fn(env)
    if out is None:
        return None
    topic, msg = out
    return topic, pack(msg)


def visible_types() -> frozenset[str]:
    """Journal types that appear on the containerd stream (for narrowing backlog reads)."""
    return frozenset(_TABLE) | {ContainerdPublished.TYPE}


def decode(any_msg: any_pb2.Any) -> message.Message | None:
    """The message inside an Any when we know its type (by containerd's type URL), else None."""
    name = any_msg.type_url.rsplit("/", 1)[-1]
    try:
        desc = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return None
    cls = message_factory.GetMessageClass(desc)
    msg = cls()
    try:
        msg.ParseFromString(any_msg.value)
    except message.DecodeError:
        return None
    return msg


# --- namespaces ---------------------------------------------------------------------------


@register(NamespaceCreated.TYPE)
def _namespace_created(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, NamespaceCreated)
    return "/namespaces/create", namespace_pb2.NamespaceCreate(name=ev.name, labels=ev.labels)


@register(NamespaceUpdated.TYPE)
def _namespace_updated(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, NamespaceUpdated)
    return "/namespaces/update", namespace_pb2.NamespaceUpdate(name=ev.name, labels=ev.labels)


@register(NamespaceDeleted.TYPE)
def _namespace_deleted(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, NamespaceDeleted)
    return "/namespaces/delete", namespace_pb2.NamespaceDelete(name=ev.name)
