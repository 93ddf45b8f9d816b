"""Pushing an image record of a namespace to its registry (the other half of engine/services/pull.py).

For each manifest to push: every blob (config, layers) is first checked with a HEAD (``Layer already
exists``), then mounted from another repository of the same registry when the blob's
``containerd.io/distribution.source.<host>`` label names one (``Mounted from <repo>``), else uploaded —
in one PUT up to ``MONOLITHIC_MAX``, in ``CHUNK``-sized PATCHes above; then the manifest is PUT under the
tag. An index is pushed whole when every manifest it lists is here, else only the host's manifest is (as
dockerd does for a partly pulled index). The journal gets ``image.pushed``; progress is not journaled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from engine.errors import NotFound
from engine.images import formats, reference
from engine.images.registry import Credentials, Repository
from engine.services.pull import LABEL_SOURCE, ImagePushed, Progress, _gather, message, short

if TYPE_CHECKING:
    from engine.services.pull import PullService

MONOLITHIC_MAX = 16 << 20
CHUNK = 8 << 20
READ = 1 << 20


async def push(svc: PullService, namespace: str, ref: str | reference.Reference, *,
               auth: Credentials | None = None, progress: Progress | None = None, actor: str) -> str:
    """Push the image record `ref` (tag defaults to latest); returns the pushed manifest/index digest."""
    r = reference.parse(ref) if isinstance(ref, str) else ref
    emit = progress or (lambda _m: None)
    services = svc.services
    assert services.images is not None and services.content is not None
    try:
        img = await services.images.get(namespace, str(r))
    except NotFound:
        raise NotFound(f"An image does not exist locally with the tag: {reference.familiar_repository(r.repository)}"
                       ) from None
    content = services.content
    repo = svc.registry(r.domain, auth).repository(r.path, push=True)
    emit(message(f"The push refers to repository [{r.repository}]"))
    target = formats.Descriptor(media_type=img.target.media_type, digest=img.target.digest, size=img.target.size)
    data = await content.read(namespace, target.digest)
    doc = formats.parse(data, target.media_type)
    to_push: list[tuple[formats.Descriptor, bytes, formats.Manifest]] = []
    top: tuple[formats.Descriptor, bytes] = (target, data)
    if isinstance(doc, formats.Index):
        children: list[tuple[formats.Descriptor, bytes, formats.Manifest]] = []
        for d in doc.manifests:
            try:
                raw = await content.read(namespace, d.digest)
            except NotFound:
                children = []
                break
            m = formats.parse(raw, d.media_type)
            if not isinstance(m, formats.Manifest):
                children = []
                break
            children.append((d, raw, m))
        if children:
            to_push = children
        else:
            chosen = formats.choose(doc, None)
            raw = await content.read(namespace, chosen.digest)
            m = formats.parse(raw, chosen.media_type)
            assert isinstance(m, formats.Manifest)
            to_push = [(chosen, raw, m)]
            top = (chosen, raw)
    else:
        assert isinstance(doc, formats.Manifest)
        to_push = [(target, data, doc)]
    size = 0
    done: set[str] = set()
    sem = asyncio.Semaphore(5)

    async def one(d: formats.Descriptor, show: bool) -> None:
        async with sem:
            await _push_blob(svc, namespace, repo, r.domain, d, emit if show else None)

    for _desc, _raw, m in to_push:
        layers = list(m.layers)
        for d in layers:
            if d.digest not in done:
                emit(message("Preparing", short(d.digest)))
        todo = [d for d in layers if d.digest not in done]
        done.update(d.digest for d in todo)
        await _gather([one(m.config, False), *[one(d, True) for d in todo]])
        size += sum(d.size for d in m.layers)
    for desc, raw, _m in to_push:
        if desc.digest != top[0].digest:
            await repo.put_manifest(desc.digest, desc.media_type, raw)
    tag = r.tag or r.digest
    pushed = await repo.put_manifest(tag, top[0].media_type, top[1])
    emit(message(f"{tag}: digest: {pushed} size: {len(top[1])}"))
    emit({"progressDetail": {}, "aux": {"Tag": r.tag, "Digest": pushed, "Size": len(top[1])}})
    await services.journal.append([ImagePushed(name=str(r), digest=pushed, registry=r.domain, size=size)],
                                  namespace=namespace, actor=actor)
    return pushed


async def _push_blob(svc: PullService, namespace: str, repo: Repository, domain: str, d: formats.Descriptor,
                     emit: Progress | None) -> None:
    content = svc.services.content
    assert content is not None
    sid = short(d.digest)
    if await repo.blob_size(d.digest) is not None:
        if emit:
            emit(message("Layer already exists", sid))
        return
    info = await content.info(namespace, d.digest)
    location = None
    sources = [p for p in info.labels.get(LABEL_SOURCE + domain, "").split(",") if p and p != repo.path]
    for src in sources:
        location = await repo.mount_blob(d.digest, src)
        if location is None:
            if emit:
                emit(message(f"Mounted from {src}", sid))
            return
        break
    if location is None:
        location = await repo.start_upload()
    path = content.store.blob_path(d.digest)
    total = info.size
    sent = [0]

    async def chunks(size: int) -> AsyncIterator[bytes]:
        f = await asyncio.to_thread(open, path, "rb")
        try:
            while True:
                data = await asyncio.to_thread(f.read, size)
                if not data:
                    break
                sent[0] += len(data)
                if emit:
                    emit(message("Pushing", sid, sent[0], total))
                yield data
        finally:
            f.close()

    if total <= MONOLITHIC_MAX:
        await repo.upload_monolithic(location, d.digest, total, chunks(READ))
    else:
        await repo.upload_chunked(location, d.digest, chunks(CHUNK))
    if emit:
        emit(message("Pushed", sid))
    # remember that this repository has it: later pushes elsewhere on the registry can mount from here
    cur = [p for p in info.labels.get(LABEL_SOURCE + domain, "").split(",") if p]
    if repo.path not in cur:
        key = LABEL_SOURCE + domain
        await content.update(namespace, d.digest, {key: ",".join([*cur, repo.path])}, paths=[f"labels.{key}"],
                             actor="push")

