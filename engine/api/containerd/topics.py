"""Which journal events containerd clients see, under which topic, as which message.

containerd's event stream carries ``Envelope{timestamp, namespace, topic, event: Any}``.
Our journal stores engine events; this table turns one into the other. A row maps a journal
type (``namespace.created``) to a function returning ``(topic, message)`` — or None to keep
that event off the containerd stream. Events that containerd clients published themselves
(``containerd.published``) go back out exactly as they came in: their topic and their Any.

Later domains add rows with `register` (containers, tasks, images, snapshots, content).

Some containerd events carry data that our journal keeps on the *intent* event, not on the
outcome that the containerd event stands for: containerd's ``/tasks/create`` (bundle, rootfs,
IO, pid) is sent when the task exists, but the bundle, mounts and stdio are in
``task.create_requested`` and the pid is in ``task.created``. A converter registered with
``needs=<intent type>`` is called as ``fn(envelope, intent_envelope | None)``; each subscription
keeps the intents it has seen in a small `Memo` (intents are never sent themselves), and
`missing_intent` tells the subscriber which intent to read from the journal when the
subscription began between an intent and its outcome.

Type URLs follow containerd's typeurl: the message's full protobuf name with no
``types.googleapis.com/`` prefix (``containerd.events.NamespaceCreate``), which is what Go
clients look up to decode the event.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

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

Converter = Callable[..., "tuple[str, message.Message] | None"]
_TABLE: dict[str, Converter] = {}
_NEEDS: dict[str, str] = {}  # outcome journal type -> the intent type its converter reads
_INTENTS: set[str] = set()


def register(journal_type: str, *, needs: str | None = None) -> Callable[[Converter], Converter]:
    """Decorator: `fn(envelope) -> (topic, message) | None` for one journal event type; with `needs`,
    `fn(envelope, intent)` where intent is the latest `needs` event of the same namespace and subject
    before it (None if the journal has none)."""

    def add(fn: Converter) -> Converter:
        if journal_type in _TABLE:
            raise ValueError(f"containerd topic for {journal_type!r} registered twice")
        _TABLE[journal_type] = fn
        if needs:
            _NEEDS[journal_type] = needs
            _INTENTS.add(needs)
        return fn

    return add


class Memo:
    """One subscription's memory of intent events (at most `limit`, oldest forgotten first)."""

    def __init__(self, limit: int = 4096) -> None:
        self.limit = limit
        self._seen: OrderedDict[tuple[str, str, str], Envelope] = OrderedDict()

    def put(self, env: Envelope) -> None:
        key = (env.namespace, env.type, env.subject)
        self._seen.pop(key, None)
        self._seen[key] = env
        while len(self._seen) > self.limit:
            self._seen.popitem(last=False)

    def pop(self, namespace: str, journal_type: str, subject: str) -> Envelope | None:
        return self._seen.pop((namespace, journal_type, subject), None)

    def has(self, namespace: str, journal_type: str, subject: str) -> bool:
        return (namespace, journal_type, subject) in self._seen


def missing_intent(env: Envelope, memo: Memo) -> str | None:
    """The intent type `env`'s converter needs and `memo` lacks (read it from the journal), else None."""
    need = _NEEDS.get(env.type)
    if need is None or memo.has(env.namespace, need, env.subject):
        return None
    return need


def type_url(msg: message.Message) -> str:
    return msg.DESCRIPTOR.full_name


def pack(msg: message.Message) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url(msg), value=msg.SerializeToString())


def to_containerd(env: Envelope, memo: Memo | None = None) -> tuple[str, any_pb2.Any] | None:
    """(topic, Any) for a journal envelope, or None if containerd clients do not see it.

    Intent events some converter needs are remembered in `memo` and not sent."""
    ev = env.event
    if isinstance(ev, ContainerdPublished):
        return ev.topic, any_pb2.Any(type_url=ev.type_url, value=ev.value)
    if env.type in _INTENTS and env.type not in _TABLE:
        if memo is not None:
            memo.put(env)
        return None
    fn = _TABLE.get(env.type)
    if fn is None:
        return None
    need = _NEEDS.get(env.type)
    args: tuple[Any, ...] = (env,)
    if need is not None:
        args = (env, memo.pop(env.namespace, need, env.subject) if memo is not None else None)
    out = fn(*args)
    if out is None:
        return None
    topic, msg = out
    return topic, pack(msg)


def visible_types() -> frozenset[str]:
    """Journal types that appear on the containerd stream (for narrowing backlog reads)."""
    return frozenset(_TABLE) | frozenset(_INTENTS) | {ContainerdPublished.TYPE}


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
