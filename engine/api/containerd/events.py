"""containerd.services.events.v1.Events: Publish, Forward and Subscribe over the journal.

* Publish and Forward append a ``containerd.published`` journal event holding the topic and
  the Any exactly as received, in the request's namespace (Publish: the
  ``containerd-namespace`` metadata, required; Forward: the envelope's). Topics are validated
  as containerd does: they start with ``/`` and every component is a valid identifier.
* Subscribe streams, as containerd envelopes, the journal events that have a containerd
  topic (see topics.py), from the moment of the call on, as containerd does (no backlog).
  Filters use containerd's syntax over ``namespace``, ``topic`` and ``event.<field>`` (the
  decoded event's string fields and ``labels.<key>``); a bad filter is INVALID_ARGUMENT
  before anything is streamed.

A Forward's own timestamp is not kept: the journal stamps its own time (monotonic, so
time ranges stay seq ranges).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from google.protobuf import any_pb2, descriptor, empty_pb2, message, timestamp_pb2

from engine.api.containerd import context, filters, topics
from engine.api.containerd.gen.containerd.services.events.v1 import events_pb2 as pb
from engine.api.containerd.gen.containerd.services.events.v1.events_grpc import EventsBase
from engine.api.containerd.gen.containerd.types import event_pb2
from engine.api.containerd.registry import implements
from engine.errors import InvalidArgument
from engine.events.types import ContainerdPublished, Envelope
from engine.services.namespaces import validate_name


def validate_topic(topic: str) -> str:
    if not topic:
        raise InvalidArgument(f"envelope topic {topic!r}: must not be empty")
    if not topic.startswith("/"):
        raise InvalidArgument(f"envelope topic {topic!r}: must start with '/'")
    if len(topic) == 1:
        raise InvalidArgument(f"envelope topic {topic!r}: must have at least one component")
    for component in topic[1:].split("/"):
        try:
            validate_name(component)
        except InvalidArgument as err:
            raise InvalidArgument(
                f"envelope topic {topic!r}: failed validation on component {component!r}: {err}"
            ) from None
    return topic


def message_adaptor(msg: message.Message | None) -> filters.Adaptor:
    """Filter fields of a decoded event: string fields (present if non-empty),
    ``<map>.<key>`` of string maps, and nested messages by dotted path."""

    def adapt(path: tuple[str, ...]) -> str | None:
        cur: Any = msg
        i = 0
        while cur is not None and i < len(path):
            fd = cur.DESCRIPTOR.fields_by_name.get(path[i])
            if fd is None:
                return None
            value = getattr(cur, fd.name)
            if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
                key = ".".join(path[i + 1 :])
                return value.get(key, None)
            if fd.type == descriptor.FieldDescriptor.TYPE_MESSAGE and not _is_repeated(fd):
                if not cur.HasField(fd.name):
                    return None
                cur, i = value, i + 1
                continue
            if (
                fd.type == descriptor.FieldDescriptor.TYPE_STRING
                and not _is_repeated(fd)
                and i == len(path) - 1
            ):
                return value or None
            return None
        return None

    return adapt


def _is_repeated(fd: descriptor.FieldDescriptor) -> bool:
    return bool(fd.is_repeated)  # protobuf >= 5; `label` is gone in 7


def envelope_adaptor(namespace: str, topic: str, event: any_pb2.Any | None) -> filters.Adaptor:
    decoded: list[message.Message | None] = []

    def adapt(path: tuple[str, ...]) -> str | None:
        if not path:
            return None
        if path == ("namespace",):
            return namespace or None
        if path == ("topic",):
            return topic or None
        if path[0] == "event" and event is not None:
            if not decoded:
                decoded.append(topics.decode(event))
            return message_adaptor(decoded[0])(path[1:])
        return None

    return adapt


def to_envelope(env: Envelope, memo: topics.Memo | None = None) -> event_pb2.Envelope | None:
    """The containerd envelope for a journal envelope, or None if containerd clients do not see it."""
    out = topics.to_containerd(env, memo)
    if out is None:
        return None
    topic, event = out
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(env.time_ns)
    return event_pb2.Envelope(timestamp=ts, namespace=env.namespace, topic=topic, event=event)


@implements(EventsBase)
class EventsServicer(EventsBase):
    def __init__(self, services: Any) -> None:
        self.journal = services.journal

    async def Publish(self, stream: Any) -> None:
        req: pb.PublishRequest = await stream.recv_message()
        ns = context.namespace(stream, required=True)
        assert ns is not None
        validate_topic(req.topic)
        if not req.HasField("event") or not req.event.type_url:
            raise InvalidArgument("publish needs an event with a type url")
        await self._append(ns, req.topic, req.event, context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def Forward(self, stream: Any) -> None:
        req: pb.ForwardRequest = await stream.recv_message()
        env = req.envelope
        try:
            validate_name(env.namespace)
        except InvalidArgument as err:
            raise InvalidArgument(f"event envelope has invalid namespace: {err}") from None
        validate_topic(env.topic)
        if not env.HasField("timestamp") or (env.timestamp.seconds == 0 and env.timestamp.nanos == 0):
            raise InvalidArgument("timestamp must be set on forwarded event")
        if not env.HasField("event") or not env.event.type_url:
            raise InvalidArgument("forwarded envelope needs an event with a type url")
        await self._append(env.namespace, env.topic, env.event, context.actor(stream))
        await stream.send_message(empty_pb2.Empty())

    async def _append(self, namespace: str, topic: str, event: any_pb2.Any, actor: str) -> None:
        await self.journal.append(
            [ContainerdPublished(topic=topic, type_url=event.type_url, value=event.value)],
            namespace=namespace,
            actor=actor,
        )

    async def _recall(self, memo: topics.Memo, env: Envelope, intent_type: str) -> None:
        found = await self.journal.read(after_seq=0, limit=1000, where="subject = ? AND type = ? AND namespace = ?"
                                        " AND seq < ?", params=(env.subject, intent_type, env.namespace, env.seq))
        if found:
            memo.put(found[-1])

    async def Subscribe(self, stream: Any) -> None:
        req: pb.SubscribeRequest = await stream.recv_message()
        try:
            flt = filters.parse_all(req.filters)
        except InvalidArgument as err:
            raise InvalidArgument(f"failed parsing subscription filters: {err}") from None
        visible = topics.visible_types()
        memo = topics.Memo()
        events = self.journal.subscribe(after_seq=None, match=lambda env: env.type in visible)
        # Run the subscription up to its first wait, so it is registered on the journal's bus,
        # then send the response headers: a client that has seen them misses no later event.
        first = asyncio.ensure_future(anext(events))
        try:
            await asyncio.sleep(0)
            await stream.send_initial_metadata()
            env = await first
            while True:
                need = topics.missing_intent(env, memo)
                if need is not None:  # subscribed between the intent and this outcome: read the intent
                    await self._recall(memo, env, need)
                out = to_envelope(env, memo)
                if out is not None and (
                    flt is filters.ALWAYS or flt.match(envelope_adaptor(out.namespace, out.topic, out.event))
                ):
                    await stream.send_message(out)
                env = await anext(events)
        except StopAsyncIteration:
            return  # the journal closed: end the stream cleanly
        finally:
            if not first.done():
                first.cancel()
                with contextlib.suppress(BaseException):
                    await first
            await events.aclose()
