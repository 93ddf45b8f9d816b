"""The containerd gRPC server in-process, over a real journal and a real unix socket.

These pin the wire behaviour that ctr relies on (tests/e2e/containerd drives the real ctr):
status codes, what is journaled, and that every containerd service is registered.
"""

from __future__ import annotations

import asyncio
import os
import stat
from typing import Any

import pytest
from google.protobuf import any_pb2, empty_pb2, field_mask_pb2, timestamp_pb2
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError
from grpclib.health.v1.health_grpc import HealthStub
from grpclib.health.v1.health_pb2 import HealthCheckRequest, HealthCheckResponse

import engine
from engine.api.containerd import registry
from engine.api.containerd.gen.containerd.events import namespace_pb2 as ev_ns
from engine.api.containerd.gen.containerd.events import task_pb2 as ev_task
from engine.api.containerd.gen.containerd.services.events.v1 import events_pb2
from engine.api.containerd.gen.containerd.services.events.v1.events_grpc import EventsStub
from engine.api.containerd.gen.containerd.services.introspection.v1 import introspection_pb2
from engine.api.containerd.gen.containerd.services.introspection.v1.introspection_grpc import (
    IntrospectionStub,
)
from engine.api.containerd.gen.containerd.services.namespaces.v1 import namespace_pb2 as ns_pb
from engine.api.containerd.gen.containerd.services.namespaces.v1.namespace_grpc import NamespacesStub
from engine.api.containerd.gen.containerd.services.version.v1.version_grpc import VersionStub
from engine.api.containerd.gen.containerd.types import event_pb2

MD = {"containerd-namespace": "default"}
Api = Any  # the `api` fixture (conftest.py): .services, .journal, .channel, .socket


async def status_of(coro: object) -> tuple[Status, str]:
    with pytest.raises(GRPCError) as exc:
        await coro  # type: ignore[misc]
    return exc.value.status, exc.value.message or ""


async def journal_len(api: Api) -> int:
    return len(await api.journal.read(after_seq=0, limit=100_000))


def test_socket_is_0660(api: Api) -> None:
    mode = os.stat(api.socket).st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o660


async def test_every_containerd_method_is_registered(api: Api) -> None:
    """A stub answers UNIMPLEMENTED with its full name; nothing answers the transport error."""
    checked = registered = 0
    for info in registry.SERVICES:
        servicer = registry.implementation(info.base) or registry.complete(info.base)
        inst = servicer.__new__(servicer)
        for path, handler in inst.__mapping__().items():
            registered += 1
            method = path.rsplit("/", 1)[1]
            if method not in registry.unimplemented_methods(servicer):
                continue
            async with api.channel.request(
                path, handler.cardinality, handler.request_type, handler.reply_type, metadata=MD
            ) as stream:
                await stream.send_message(handler.request_type(), end=True)
                with pytest.raises(GRPCError) as exc:
                    await stream.recv_message()
            assert exc.value.status == Status.UNIMPLEMENTED, path
            assert exc.value.message == f"{path[1:]} is not implemented yet"
            checked += 1
    # every method of containerd 1.6's 12 services (66) plus 1.7's is registered, implemented or not
    assert registered >= 66 and checked > 0


async def test_an_unknown_service_is_still_unimplemented(api: Api) -> None:
    async with api.channel.request(
        "/containerd.services.nope.v1.Nope/Get", Cardinality.UNARY_UNARY, empty_pb2.Empty, empty_pb2.Empty
    ) as stream:
        await stream.send_message(empty_pb2.Empty(), end=True)
        with pytest.raises(GRPCError) as exc:
            await stream.recv_message()
    assert exc.value.status == Status.UNIMPLEMENTED
    assert "/containerd.services.nope.v1.Nope/Get" in (exc.value.message or "")


async def test_version_and_server(api: Api) -> None:
    v = await VersionStub(api.channel).Version(empty_pb2.Empty())
    assert v.version == engine.__version__
    s = await IntrospectionStub(api.channel).Server(empty_pb2.Empty())
    assert s.uuid == api.services.daemon_uuid
    assert s.pid == os.getpid()
    assert s.pidns == os.stat("/proc/self/ns/pid").st_ino
    assert list(s.deprecations) == []


async def test_health_is_serving(api: Api) -> None:
    r = await HealthStub(api.channel).Check(HealthCheckRequest())
    assert r.status == HealthCheckResponse.SERVING


async def test_plugins_are_truthful_and_filterable(api: Api) -> None:
    stub = IntrospectionStub(api.channel)
    plugins = (await stub.Plugins(introspection_pb2.PluginsRequest())).plugins
    by_id = {(p.type, p.id): p for p in plugins}
    assert not by_id[("io.containerd.grpc.v1", "namespaces")].HasField("init_err")
    transfer = by_id[("io.containerd.grpc.v1", "transfer")]
    assert transfer.init_err.code == Status.UNIMPLEMENTED.value
    assert "not implemented yet" in transfer.init_err.message
    one = await stub.Plugins(
        introspection_pb2.PluginsRequest(filters=["type==io.containerd.grpc.v1,id==events"])
    )
    assert [(p.type, p.id) for p in one.plugins] == [("io.containerd.grpc.v1", "events")]
    two = await stub.Plugins(introspection_pb2.PluginsRequest(filters=["id==events", "id==version"]))
    assert sorted(p.id for p in two.plugins) == ["events", "version"]
    code, _ = await status_of(stub.Plugins(introspection_pb2.PluginsRequest(filters=["id=events"])))
    assert code == Status.INVALID_ARGUMENT
    info = await stub.PluginInfo(
        introspection_pb2.PluginInfoRequest(type="io.containerd.grpc.v1", id="version")
    )
    assert info.plugin.id == "version"
    code, _ = await status_of(stub.PluginInfo(introspection_pb2.PluginInfoRequest(type="x", id="y")))
    assert code == Status.NOT_FOUND


async def test_namespaces_crud_and_masks(api: Api) -> None:
    stub = NamespacesStub(api.channel)
    created = await stub.Create(
        ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name="foo", labels={"a": "1", "b": "2"})),
        metadata=MD,
    )
    assert dict(created.namespace.labels) == {"a": "1", "b": "2"}
    code, _ = await status_of(
        stub.Create(ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name="foo")), metadata=MD)
    )
    assert code == Status.ALREADY_EXISTS

    # labels.<key>: set one, clear one with an empty value, leave the rest
    await stub.Update(
        ns_pb.UpdateNamespaceRequest(
            namespace=ns_pb.Namespace(name="foo", labels={"c": "3"}),
            update_mask=field_mask_pb2.FieldMask(paths=["labels.c", "labels.a"]),
        ),
        metadata=MD,
    )
    got = await stub.Get(ns_pb.GetNamespaceRequest(name="foo"))
    assert dict(got.namespace.labels) == {"b": "2", "c": "3"}
    # no mask: replace every label
    await stub.Update(
        ns_pb.UpdateNamespaceRequest(namespace=ns_pb.Namespace(name="foo", labels={"z": "9"})), metadata=MD
    )
    got = await stub.Get(ns_pb.GetNamespaceRequest(name="foo"))
    assert dict(got.namespace.labels) == {"z": "9"}

    before = await journal_len(api)
    code, msg = await status_of(
        stub.Update(
            ns_pb.UpdateNamespaceRequest(
                namespace=ns_pb.Namespace(name="foo"), update_mask=field_mask_pb2.FieldMask(paths=["name"])
            ),
            metadata=MD,
        )
    )
    assert code == Status.INVALID_ARGUMENT and "name" in msg
    assert await journal_len(api) == before

    await stub.Create(ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name="bar")), metadata=MD)
    listed = await stub.List(ns_pb.ListNamespacesRequest())
    assert [n.name for n in listed.namespaces] == ["bar", "foo"]
    filtered = await stub.List(ns_pb.ListNamespacesRequest(filter="labels.z==9"))
    assert [n.name for n in filtered.namespaces] == ["foo"]

    await stub.Delete(ns_pb.DeleteNamespaceRequest(name="foo"), metadata=MD)
    code, _ = await status_of(stub.Get(ns_pb.GetNamespaceRequest(name="foo")))
    assert code == Status.NOT_FOUND
    code, _ = await status_of(stub.Delete(ns_pb.DeleteNamespaceRequest(name="foo"), metadata=MD))
    assert code == Status.NOT_FOUND


@pytest.mark.parametrize("name", ["", "bad name", "-x", "a..b", "x" * 77, "UPPER!"])
async def test_invalid_namespace_names_write_nothing(api: Api, name: str) -> None:
    stub = NamespacesStub(api.channel)
    before = await journal_len(api)
    code, _ = await status_of(
        stub.Create(ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name=name)), metadata=MD)
    )
    assert code == Status.INVALID_ARGUMENT
    assert await journal_len(api) == before
    assert (await stub.List(ns_pb.ListNamespacesRequest())).namespaces == []


async def test_calls_are_journaled_with_the_peer_as_actor(api: Api) -> None:
    await NamespacesStub(api.channel).Create(
        ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name="who")), metadata=MD
    )
    [env] = await api.journal.read(after_seq=0)
    assert env.type == "namespace.created"
    assert str(os.getpid()) in env.actor and str(os.getuid()) in env.actor


async def _subscribe(api: Api, filters: list[str]) -> tuple[object, asyncio.Queue[event_pb2.Envelope]]:
    """Open Events.Subscribe; return once the server has sent its headers (subscribed)."""
    q: asyncio.Queue[event_pb2.Envelope] = asyncio.Queue()
    ready = asyncio.Event()

    async def run() -> None:
        async with EventsStub(api.channel).Subscribe.open(metadata=MD) as stream:
            await stream.send_message(events_pb2.SubscribeRequest(filters=filters), end=True)
            await stream.recv_initial_metadata()
            ready.set()
            async for env in stream:
                q.put_nowait(env)

    task = asyncio.create_task(run())
    done, _ = await asyncio.wait(
        [task, asyncio.create_task(ready.wait())], timeout=5, return_when=asyncio.FIRST_COMPLETED
    )
    if task in done:
        task.result()  # raises the call's error
    assert ready.is_set()
    return task, q


async def test_subscribe_streams_namespace_events_with_filters(api: Api) -> None:
    task_all, q_all = await _subscribe(api, [])
    task_f, q_f = await _subscribe(api, ['topic=="/namespaces/update"', "event.name==b1,topic~=/create/"])
    stub = NamespacesStub(api.channel)
    try:
        await stub.Create(
            ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name="a1", labels={"k": "v"})), metadata=MD
        )
        await stub.Create(ns_pb.CreateNamespaceRequest(namespace=ns_pb.Namespace(name="b1")), metadata=MD)
        await stub.Update(
            ns_pb.UpdateNamespaceRequest(namespace=ns_pb.Namespace(name="a1", labels={"k": "w"})), metadata=MD
        )
        await stub.Delete(ns_pb.DeleteNamespaceRequest(name="b1"), metadata=MD)
        got = [await asyncio.wait_for(q_all.get(), 5) for _ in range(4)]
        assert [e.topic for e in got] == [
            "/namespaces/create",
            "/namespaces/create",
            "/namespaces/update",
            "/namespaces/delete",
        ]
        first = got[0]
        assert first.event.type_url == "containerd.events.NamespaceCreate"
        assert ev_ns.NamespaceCreate.FromString(first.event.value) == ev_ns.NamespaceCreate(
            name="a1", labels={"k": "v"}
        )
        assert first.namespace == "a1"
        assert first.timestamp.ToNanoseconds() > 0
        filtered = [await asyncio.wait_for(q_f.get(), 5) for _ in range(2)]
        assert [(e.topic, ev_ns.NamespaceCreate.FromString(e.event.value).name) for e in filtered] == [
            ("/namespaces/create", "b1"),
            ("/namespaces/update", "a1"),
        ]
        await asyncio.sleep(0.1)
        assert q_f.empty()
    finally:
        task_all.cancel()
        task_f.cancel()
        await asyncio.gather(task_all, task_f, return_exceptions=True)
    # the server drops the subscriptions when the clients go away
    for _ in range(50):
        if api.journal.subscriber_count == 0:
            break
        await asyncio.sleep(0.05)
    assert api.journal.subscriber_count == 0


async def test_subscribe_with_a_bad_filter_is_invalid_argument(api: Api) -> None:
    async with EventsStub(api.channel).Subscribe.open(metadata=MD) as stream:
        await stream.send_message(events_pb2.SubscribeRequest(filters=["topic==/tasks/exit"]), end=True)
        with pytest.raises(GRPCError) as exc:
            await stream.recv_message()
    assert exc.value.status == Status.INVALID_ARGUMENT
    assert "failed parsing subscription filters" in (exc.value.message or "")


def _oom_any(cid: str = "c1") -> any_pb2.Any:
    return any_pb2.Any(
        type_url="containerd.events.TaskOOM", value=ev_task.TaskOOM(container_id=cid).SerializeToString()
    )


async def test_publish_and_forward_reach_subscribers_unchanged(api: Api) -> None:
    task, q = await _subscribe(api, ["event.container_id==c2"])
    stub = EventsStub(api.channel)
    try:
        await stub.Publish(events_pb2.PublishRequest(topic="/tasks/oom", event=_oom_any("c1")), metadata=MD)
        ts = timestamp_pb2.Timestamp(seconds=1_700_000_000)
        await stub.Forward(
            events_pb2.ForwardRequest(
                envelope=event_pb2.Envelope(
                    timestamp=ts, namespace="moby", topic="/tasks/oom", event=_oom_any("c2")
                )
            )
        )
        env = await asyncio.wait_for(q.get(), 5)
        assert (env.namespace, env.topic, env.event) == ("moby", "/tasks/oom", _oom_any("c2"))
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rows = await api.journal.read(after_seq=0)
    assert [(r.type, r.namespace, r.subject) for r in rows] == [
        ("containerd.published", "default", "/tasks/oom"),
        ("containerd.published", "moby", "/tasks/oom"),
    ]


@pytest.mark.parametrize(
    ("request_", "metadata", "code"),
    [
        (events_pb2.PublishRequest(topic="/tasks/oom", event=_oom_any()), None, Status.FAILED_PRECONDITION),
        (
            events_pb2.PublishRequest(topic="/tasks/oom", event=_oom_any()),
            {"containerd-namespace": "bad ns"},
            Status.INVALID_ARGUMENT,
        ),
        (events_pb2.PublishRequest(topic="tasks/oom", event=_oom_any()), MD, Status.INVALID_ARGUMENT),
        (events_pb2.PublishRequest(topic="/", event=_oom_any()), MD, Status.INVALID_ARGUMENT),
        (events_pb2.PublishRequest(topic="/tasks//oom", event=_oom_any()), MD, Status.INVALID_ARGUMENT),
        (events_pb2.PublishRequest(topic="/tasks/oom"), MD, Status.INVALID_ARGUMENT),
    ],
)
async def test_bad_publish_writes_nothing(
    api: Api, request_: events_pb2.PublishRequest, metadata: dict[str, str] | None, code: Status
) -> None:
    got, _ = await status_of(EventsStub(api.channel).Publish(request_, metadata=metadata))
    assert got == code
    assert await journal_len(api) == 0


@pytest.mark.parametrize(
    "envelope",
    [
        event_pb2.Envelope(namespace="moby", topic="/tasks/oom", event=_oom_any()),  # no timestamp
        event_pb2.Envelope(
            timestamp=timestamp_pb2.Timestamp(seconds=1), namespace="", topic="/tasks/oom", event=_oom_any()
        ),
        event_pb2.Envelope(
            timestamp=timestamp_pb2.Timestamp(seconds=1), namespace="moby", topic="x", event=_oom_any()
        ),
    ],
)
async def test_bad_forward_writes_nothing(api: Api, envelope: event_pb2.Envelope) -> None:
    got, _ = await status_of(EventsStub(api.channel).Forward(events_pb2.ForwardRequest(envelope=envelope)))
    assert got == Status.INVALID_ARGUMENT
    assert await journal_len(api) == 0
