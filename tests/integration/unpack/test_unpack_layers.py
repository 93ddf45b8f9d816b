"""unpack_layers: an image's layers become a committed snapshot chain named by ChainIDs; shared layers are
not unpacked twice; a layer whose content does not match its diff ID is refused and leaves nothing."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.images.snapshots import Kind
from engine.images.unpacker import Layer, chain_id, unpack_layers
from tests.integration.snapshots.helpers import ACTOR, NS, mounts_under, open_service


def _diff_id(tar: Path) -> str:
    return "sha256:" + hashlib.sha256(tar.read_bytes()).hexdigest()


@pytest.mark.parametrize("backend", ["overlayfs", "native"])
async def test_unpack_layers_names_by_chain_id_and_skips_existing(backend: str, test_image) -> None:  # type: ignore
    root = Path(tempfile.mkdtemp(prefix="unpack-chain-"))
    try:
        async with open_service(root, backend) as svc:
            layers = [Layer(_diff_id(t), (lambda p=p: open(p, "rb"))) for p, t in
                      zip(test_image.layers, test_image.tars, strict=True)]
            chains = await unpack_layers(svc, backend, layers, namespace=NS, actor=ACTOR)
            d = [layer.diff_id for layer in layers]
            c1 = d[0]
            c2 = "sha256:" + hashlib.sha256(f"{c1} {d[1]}".encode()).hexdigest()
            c3 = "sha256:" + hashlib.sha256(f"{c2} {d[2]}".encode()).hexdigest()
            assert chains == [c1, c2, c3] and chain_id(c2, d[2]) == c3
            infos = {i.name: i for i in await svc.walk(backend, namespace=NS)}
            assert set(infos) == {c1, c2, c3}
            assert infos[c3].parent == c2 and infos[c3].kind is Kind.COMMITTED
            before = len(await svc.journal.read(limit=100_000))
            assert await unpack_layers(svc, backend, layers[:2], namespace=NS, actor=ACTOR) == [c1, c2]
            assert len(await svc.journal.read(limit=100_000)) == before  # nothing unpacked again

            bad = [layers[0], Layer("sha256:" + "0" * 64, layers[1].open)]
            await svc.remove(backend, c3, namespace=NS, actor=ACTOR)
            await svc.remove(backend, c2, namespace=NS, actor=ACTOR)
            with pytest.raises(InvalidArgument, match="expected diff id"):
                await unpack_layers(svc, backend, bad, namespace=NS, actor=ACTOR)
            assert [i.name for i in await svc.walk(backend, namespace=NS)] == [c1]
            assert len(svc.backends[backend].ids_on_disk()) == 1
        assert mounts_under(str(root)) == []
    finally:
        shutil.rmtree(root, ignore_errors=True)
