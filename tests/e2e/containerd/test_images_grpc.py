"""The Images service over the real gRPC socket (grpclib client): field-mask updates, target-checked
delete, and clean statuses for bad input with nothing journaled."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from google.protobuf import field_mask_pb2
from grpclib.client import Channel
from grpclib.const import Status
from grpclib.exceptions import GRPCError

from engine.api.containerd.gen.containerd.services.images.v1 import images_pb2 as pb
from engine.api.containerd.gen.containerd.services.images.v1.images_grpc import ImagesStub
from engine.api.containerd.gen.containerd.types import descriptor_pb2
from engine.images.content import digests
from tests.e2e.containerd.test_ctr_images import OCI_MANIFEST, ImagesServer, server  # noqa: F401  (fixture)

pytestmark = pytest.mark.e2e
MD = {"containerd-namespace": "default"}
D1, D2 = digests.of_bytes(b"one"), digests.of_bytes(b"two")


def image(name: str, dgst: str = D1, **labels: str) -> pb.Image:
    return pb.Image(name=name, labels=labels,
                    target=descriptor_pb2.Descriptor(media_type=OCI_MANIFEST, digest=dgst, size=3))


@pytest.fixture
async def stub(server: ImagesServer) -> AsyncIterator[ImagesStub]:  # noqa: F811
    channel = Channel(path=str(server.sock))
    try:
        yield ImagesStub(channel)
    finally:
        channel.close()


async def test_update_masks_and_target_checked_delete(stub: ImagesStub) -> None:
    got = (await stub.Create(pb.CreateImageRequest(image=image("a", a="1", b="2")), metadata=MD)).image
    assert got.created_at.seconds > 0 and got.target.digest == D1
    mask = field_mask_pb2.FieldMask(paths=["labels.b", "annotations"])
    new = image("a", D2, b="")
    new.target.annotations["k"] = "v"
    got = (await stub.Update(pb.UpdateImageRequest(image=new, update_mask=mask), metadata=MD)).image
    assert dict(got.labels) == {"a": "1"} and got.target.digest == D1 and dict(got.target.annotations) == {"k": "v"}
    got = (await stub.Update(pb.UpdateImageRequest(image=image("a", D2, c="3"),
                                                   update_mask=field_mask_pb2.FieldMask(paths=["target"])),
                             metadata=MD)).image
    assert got.target.digest == D2 and dict(got.labels) == {"a": "1"}
    with pytest.raises(GRPCError) as err:
        await stub.Delete(pb.DeleteImageRequest(name="a", target=descriptor_pb2.Descriptor(digest=D1)), metadata=MD)
    assert err.value.status == Status.FAILED_PRECONDITION
    await stub.Delete(pb.DeleteImageRequest(name="a", target=descriptor_pb2.Descriptor(digest=D2)), metadata=MD)
    with pytest.raises(GRPCError) as err:
        await stub.Get(pb.GetImageRequest(name="a"), metadata=MD)
    assert err.value.status == Status.NOT_FOUND


async def test_bad_input_is_refused_and_nothing_is_journaled(stub: ImagesStub, server: ImagesServer) -> None:  # noqa: F811
    await stub.Create(pb.CreateImageRequest(image=image("a")), metadata=MD)
    before = len(await server.env.journal.read())
    cases = [
        (stub.Create(pb.CreateImageRequest(image=image("a")), metadata=MD), Status.ALREADY_EXISTS),
        (stub.Create(pb.CreateImageRequest(image=image("")), metadata=MD), Status.INVALID_ARGUMENT),
        (stub.Create(pb.CreateImageRequest(image=image("b", "sha256:zz")), metadata=MD), Status.INVALID_ARGUMENT),
        (stub.Create(pb.CreateImageRequest(image=pb.Image(name="b")), metadata=MD), Status.INVALID_ARGUMENT),
        (stub.Update(pb.UpdateImageRequest(image=image("a"), update_mask=field_mask_pb2.FieldMask(paths=["name"])),
                     metadata=MD), Status.INVALID_ARGUMENT),
        (stub.Update(pb.UpdateImageRequest(image=image("zz")), metadata=MD), Status.NOT_FOUND),
        (stub.List(pb.ListImagesRequest(filters=["name=a"]), metadata=MD), Status.INVALID_ARGUMENT),
        (stub.Delete(pb.DeleteImageRequest(name="zz"), metadata=MD), Status.NOT_FOUND),
        (stub.Get(pb.GetImageRequest(name="a"), metadata={"containerd-namespace": "bad ns"}),
         Status.INVALID_ARGUMENT),
    ]
    for call, status in cases:
        with pytest.raises(GRPCError) as err:
            await call
        assert err.value.status == status, err.value
    assert len(await server.env.journal.read()) == before
