"""containerd.services.images.v1.Images over engine.services.images.

Protobuf in, ImageService call (journaled), protobuf out. List takes containerd filters over name,
target.digest, target.mediatype and labels. Delete honours ``target`` (delete only that target) and
``sync`` (collect before answering). Journal events go out as /images/create|update|delete.
The servicer takes ``services.images`` (or ``services.extra["images"]`` until the daemon builds it).
"""

from __future__ import annotations

from typing import Any

from google.protobuf import empty_pb2, message, timestamp_pb2

from engine.api.containerd import context, filters, topics
from engine.api.containerd.gen.containerd.events import image_pb2 as epb
from engine.api.containerd.gen.containerd.services.images.v1 import images_pb2 as pb
from engine.api.containerd.gen.containerd.services.images.v1.images_grpc import ImagesBase
from engine.api.containerd.gen.containerd.types import descriptor_pb2
from engine.api.containerd.registry import implements
from engine.errors import Unavailable
from engine.events.types import Envelope
from engine.services.images import Descriptor, Image, ImageCreated, ImageDeleted, ImageUpdated


def _ts(ns: int) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(ns)
    return ts


def from_pb(i: pb.Image) -> Image:
    t = i.target
    return Image(name=i.name, labels=dict(i.labels),
                 target=Descriptor(media_type=t.media_type, digest=t.digest, size=t.size,
                                   annotations=dict(t.annotations)))


def to_pb(i: Image) -> pb.Image:
    t = i.target
    return pb.Image(name=i.name, labels=dict(i.labels),
                    target=descriptor_pb2.Descriptor(media_type=t.media_type, digest=t.digest, size=t.size,
                                                     annotations=dict(t.annotations)),
                    created_at=_ts(i.created_ns), updated_at=_ts(i.updated_ns))


@implements(ImagesBase)
class ImagesServicer(ImagesBase):
    def __init__(self, services: Any) -> None:
        self._images = getattr(services, "images", None) or getattr(services, "extra", {}).get("images")

    @property
    def images(self) -> Any:
        if self._images is None:
            raise Unavailable("the images service is not running in this daemon")
        return self._images

    async def Get(self, stream: Any) -> None:
        req: pb.GetImageRequest = await stream.recv_message()
        img = await self.images.get(context.namespace(stream), req.name)
        await stream.send_message(pb.GetImageResponse(image=to_pb(img)))

    async def List(self, stream: Any) -> None:
        req: pb.ListImagesRequest = await stream.recv_message()
        items = await self.images.list(context.namespace(stream), filters.parse_all(req.filters))
        await stream.send_message(pb.ListImagesResponse(images=[to_pb(i) for i in items]))

    async def Create(self, stream: Any) -> None:
        req: pb.CreateImageRequest = await stream.recv_message()
        img = await self.images.create(context.namespace(stream), from_pb(req.image), actor=context.actor(stream))
        await stream.send_message(pb.CreateImageResponse(image=to_pb(img)))

    async def Update(self, stream: Any) -> None:
        req: pb.UpdateImageRequest = await stream.recv_message()
        paths = list(req.update_mask.paths) if req.HasField("update_mask") else []
        img = await self.images.update(context.namespace(stream), from_pb(req.image), paths,
                                       actor=context.actor(stream))
        await stream.send_message(pb.UpdateImageResponse(image=to_pb(img)))

    async def Delete(self, stream: Any) -> None:
        req: pb.DeleteImageRequest = await stream.recv_message()
        target = req.target.digest if req.HasField("target") else ""
        await self.images.delete(context.namespace(stream), req.name, target_digest=target, sync=req.sync,
                                 actor=context.actor(stream))
        await stream.send_message(empty_pb2.Empty())


@topics.register(ImageCreated.TYPE)
def _created(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, ImageCreated)
    return "/images/create", epb.ImageCreate(name=ev.name, labels=dict(ev.image.labels))


@topics.register(ImageUpdated.TYPE)
def _updated(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, ImageUpdated)
    return "/images/update", epb.ImageUpdate(name=ev.name, labels=dict(ev.image.labels))


@topics.register(ImageDeleted.TYPE)
def _deleted(env: Envelope) -> tuple[str, message.Message]:
    ev = env.event
    assert isinstance(ev, ImageDeleted)
    return "/images/delete", epb.ImageDelete(name=ev.name)
