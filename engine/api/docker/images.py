"""Docker's image endpoints (except pull/push/distribution/auth: images_registry.py).

``GET /images/json`` (ImageSummary; filters dangling, label, reference, before, since, until; ``all``,
``digests``, ``shared-size``), ``GET /images/{name}/json`` (ImageInspect), ``/history``, ``POST /tag``,
``DELETE /images/{name}`` (force, noprune), ``POST /images/prune``, ``GET /images/{name}/get`` and
``GET /images/get?names=`` (the save tar), ``POST /images/load`` (quiet) and ``POST /images/create``
(``fromSrc=-`` imports the body; ``fromImage`` pulls through images_registry.pull_stream).

The work is engine/services/image_archive.py's (namespace ``moby``). Image names hold slashes, so the
``{name}`` of these routes is matched greedily up to the route's last segment; the collection routes
(``/images/json``, ``/images/get``, ``/images/load`` …) are registered first.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import unquote

from engine.api.docker.filters import parse_filters
from engine.api.docker.http import Request, Response, StreamResponse
from engine.api.docker.router import API_VERSION, version_tuple
from engine.api.docker.timefmt import parse_time_ns
from engine.errors import InvalidArgument, Unimplemented
from engine.filters import docker_labels_match
from engine.images import reference
from engine.services import Services, image_archive
from engine.services.image_archive import Group, ImageArchiveService, is_dangling

NAMESPACE = "moby"
LIST_FILTERS = frozenset({"dangling", "label", "reference", "before", "since", "until"})
PRUNE_FILTERS = frozenset({"dangling", "label", "label!", "until"})


def _svc(services: Services) -> ImageArchiveService:
    return image_archive.service(services)


def _created_s(g: Group) -> int:
    return _created_ns(g) // 1_000_000_000


def _created_ns(g: Group) -> int:
    created = g.resolved.config.created if g.resolved else ""
    if created:
        try:
            return parse_time_ns(created)
        except InvalidArgument:
            pass
    return g.created_ns


def rfc3339_nano(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    frac = f"{ns % 1_000_000_000:09d}".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if frac else "") + "Z"


def repo_tags(g: Group) -> list[str]:
    out = []
    for n in g.names:
        ref = reference.parse(n, default_tag="")
        if ref.tag:
            out.append(ref.familiar())
    return sorted(out)


def repo_digests(g: Group) -> list[str]:
    out = set()
    for r in g.records:
        if is_dangling(r.name):
            continue
        ref = reference.parse(r.name, default_tag="")
        out.add(f"{reference.familiar_repository(ref.repository)}@{r.target.digest}")
    return sorted(out)


def _labels(g: Group) -> dict[str, str]:
    return dict(g.resolved.config.config.labels or {}) if g.resolved else {}


def summary(g: Group, digests: bool = True) -> dict[str, Any]:
    size = g.resolved.size if g.resolved else 0
    return {"Id": g.id, "ParentId": "", "RepoTags": repo_tags(g), "RepoDigests": repo_digests(g),
            "Created": _created_s(g), "Size": size, "SharedSize": -1, "VirtualSize": size,
            "Labels": _labels(g) or None, "Containers": -1}


def _ref_match(g: Group, patterns: list[str]) -> bool:
    """Docker's reference filter: a pattern against the familiar name, or name:tag."""
    for p in patterns:
        for n in g.names:
            ref = reference.parse(n, default_tag="")
            fam = reference.familiar_repository(ref.repository)
            cands = [fam, f"{fam}:{ref.tag}" if ref.tag else fam, ref.repository]
            if any(fnmatch.fnmatchcase(c, p) for c in cands):
                return True
    return False


async def list_images(services: Services, req: Request) -> Response:
    f = parse_filters(req.arg("filters"), LIST_FILTERS)
    svc = _svc(services)
    groups = await svc.groups(NAMESPACE)
    show_all = req.flag("all")
    if "dangling" in f:
        v = f["dangling"][-1].lower()
        if v not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={f['dangling'][-1]}'")
        want = v in ("true", "1")
        groups = [g for g in groups if g.dangling == want]
    elif not show_all:
        pass  # dangling images are listed too (the CLI shows them as <none>), as dockerd does
    if "label" in f:
        groups = [g for g in groups if docker_labels_match(_labels(g), f["label"])]
    if "reference" in f:
        groups = [g for g in groups if _ref_match(g, f["reference"])]
    for key in ("before", "since"):
        for v in f.get(key, []):
            ref_g, _ = await svc.lookup(NAMESPACE, v)
            t = _created_ns(ref_g)
            groups = [g for g in groups if (_created_ns(g) < t if key == "before" else _created_ns(g) > t)]
    for v in f.get("until", []):
        t = parse_time_ns(v, "until")
        groups = [g for g in groups if _created_ns(g) < t]
    groups.sort(key=lambda g: (-_created_ns(g), g.id))
    out = [summary(g) for g in groups]
    if version_tuple(req.version or API_VERSION) >= (1, 44):  # VirtualSize went in 1.44
        for x in out:
            del x["VirtualSize"]
    else:  # before 1.44 an untagged image listed Docker's placeholders
        for x in out:
            x["RepoTags"] = x["RepoTags"] or ["<none>:<none>"]
            x["RepoDigests"] = x["RepoDigests"] or ["<none>@<none>"]
    if req.flag("shared-size"):
        counts: dict[str, int] = {}
        for g in groups:
            for d in (g.resolved.manifest.layers if g.resolved else []):
                counts[d.digest] = counts.get(d.digest, 0) + 1
        for g, s in zip(groups, out, strict=True):
            s["SharedSize"] = sum(d.size for d in (g.resolved.manifest.layers if g.resolved else [])
                                  if counts[d.digest] > 1)
    return Response.json(out)


def _name(req: Request) -> str:
    return unquote(req.params["name"])


async def inspect(services: Services, req: Request) -> Response:
    g, _ = await _svc(services).lookup(NAMESPACE, _name(req))
    r = g.resolved
    assert r is not None
    raw = json.loads(r.config_raw)
    hist = r.config.history
    out = {
        "Id": g.id, "RepoTags": repo_tags(g), "RepoDigests": repo_digests(g), "Parent": "",
        "Comment": hist[-1].comment if hist else "", "Created": raw.get("created") or rfc3339_nano(_created_ns(g)),
        "DockerVersion": "", "Author": r.config.author, "Config": raw.get("config") or {},
        "Architecture": r.config.architecture, "Os": r.config.os, "Size": r.size,
        "GraphDriver": {"Name": "overlayfs", "Data": None},
        "RootFS": {"Type": "layers", "Layers": list(r.diff_ids)},
        "Metadata": {"LastTagTime": rfc3339_nano(max((x.updated_ns for x in g.records), default=0))},
        "Descriptor": {"mediaType": r.target.media_type, "digest": r.target.digest, "size": r.target.size},
    }
    if r.config.variant:
        out["Variant"] = r.config.variant
    if r.config.os_version:
        out["OsVersion"] = r.config.os_version
    return Response.json(out)


async def history(services: Services, req: Request) -> Response:
    g, _ = await _svc(services).lookup(NAMESPACE, _name(req))
    r = g.resolved
    assert r is not None
    layers = iter(r.manifest.layers)
    rows = []
    for h in r.config.history:
        size = 0
        if not h.empty_layer:
            d = next(layers, None)
            size = d.size if d is not None else 0
        created = 0
        if h.created:
            try:
                created = parse_time_ns(h.created) // 1_000_000_000
            except InvalidArgument:
                created = 0
        rows.append({"Id": "<missing>", "Created": created, "CreatedBy": h.created_by, "Tags": None,
                     "Size": size, "Comment": h.comment})
    rows.reverse()
    if rows:
        rows[0]["Id"] = g.id
        rows[0]["Tags"] = repo_tags(g) or None
    return Response.json(rows)


async def tag(services: Services, req: Request) -> Response:
    repo = req.arg("repo") or ""
    t = req.arg("tag") or ""
    if not repo:
        raise InvalidArgument("repository name must have at least one component")
    ref = reference.parse(repo, default_tag="")
    if t:
        if ref.tag or ref.digest:
            raise InvalidArgument("invalid reference format")
        ref = ref.with_tag(t)
    elif not ref.tag and not ref.digest:
        ref = ref.with_tag(reference.DEFAULT_TAG)
    await _svc(services).tag(NAMESPACE, _name(req), str(ref), actor=req.actor)
    return Response(201)


async def delete(services: Services, req: Request) -> Response:
    out = await _svc(services).remove(NAMESPACE, _name(req), force=req.flag("force"), actor=req.actor)
    return Response.json(out)


async def prune(services: Services, req: Request) -> Response:
    f = parse_filters(req.arg("filters"), PRUNE_FILTERS)
    all_images = False
    if "dangling" in f:
        v = f["dangling"][-1].lower()
        if v not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={f['dangling'][-1]}'")
        all_images = v in ("false", "0")
    until = [parse_time_ns(v, "until") for v in f.get("until", [])]

    def keep(g: Group) -> bool:
        labels = _labels(g)
        if "label" in f and not docker_labels_match(labels, f["label"]):
            return True
        if "label!" in f and any(docker_labels_match(labels, [x]) for x in f["label!"]):
            return True
        return any(_created_ns(g) >= t for t in until)

    deleted, reclaimed = await _svc(services).prune(NAMESPACE, all_images=all_images, keep=keep, actor=req.actor)
    return Response.json({"ImagesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    it = iter(chunks)
    while True:
        chunk = await asyncio.to_thread(next, it, None)
        if chunk is None:
            return
        buf = [chunk]
        n = len(chunk)
        while n < (1 << 20):  # small headers and blobs are sent together
            nxt = next(it, None)
            if nxt is None:
                yield b"".join(buf)
                return
            buf.append(nxt)
            n += len(nxt)
        yield b"".join(buf)


async def _save(services: Services, req: Request, names: list[str]) -> StreamResponse:
    chunks = await _svc(services).save(NAMESPACE, names, actor=req.actor)
    return StreamResponse(_aiter(chunks), content_type="application/x-tar")


async def get_one(services: Services, req: Request) -> StreamResponse:
    return await _save(services, req, [_name(req)])


async def get_many(services: Services, req: Request) -> StreamResponse:
    return await _save(services, req, [n for n in req.query.get("names", []) if n])


async def load(services: Services, req: Request) -> Response:
    """``POST /images/load``: errors before the images are stored are plain error responses (so the CLI
    prints Docker's ``Error response from daemon: …``); the answer is the ``Loaded image`` lines."""
    msgs: list[dict[str, Any]] = []
    await _svc(services).load(NAMESPACE, req.body, actor=req.actor, progress=msgs.append)
    body = b"".join(json.dumps(m).encode() + b"\n" for m in msgs)
    return Response(200, body, "application/json")


async def create(services: Services, req: Request) -> Response | StreamResponse:
    src = req.arg("fromSrc")
    if req.arg("fromImage"):
        try:
            from engine.api.docker import images_registry
        except ImportError:
            raise Unimplemented("pulling images is not available in this build") from None
        pull = getattr(images_registry, "pull_stream", None)
        if pull is None:
            raise Unimplemented("pulling images is not available in this build")
        return await pull(services, req)  # type: ignore[no-any-return]
    if src is None:
        raise InvalidArgument("fromImage or fromSrc must be given")
    if src != "-":
        raise InvalidArgument(f"importing from {src!r} is not supported: only fromSrc=- (the request body)")
    repo, t = req.arg("repo") or "", req.arg("tag") or ""
    ref = ""
    if repo:
        r = reference.parse(repo, default_tag="")
        if t:
            r = r.with_tag(t)
        elif not r.tag and not r.digest:
            r = r.with_tag(reference.DEFAULT_TAG)
        ref = str(r)
    changes = [c for c in req.query.get("changes", []) if c]
    image_id = await _svc(services).import_rootfs(NAMESPACE, req.body, ref=ref, changes=changes,
                                                  message=req.arg("message") or "",
                                                  platform=req.arg("platform") or "", actor=req.actor)
    return Response(200, json.dumps({"status": image_id}).encode() + b"\r\n", "application/json")


def register(r: Any, services: Services) -> None:
    def bind(fn: Callable[[Services, Request], Awaitable[Any]]) -> Callable[[Request], Awaitable[Any]]:
        return lambda req: fn(services, req)

    r.add("GET", "/images/json", bind(list_images))
    r.add("GET", "/images/get", bind(get_many))
    r.add("POST", "/images/load", bind(load))
    r.add("POST", "/images/create", bind(create))
    r.add("POST", "/images/prune", bind(prune))
    r.add("GET", "/images/(?P<name>.+)/json", bind(inspect))
    r.add("GET", "/images/(?P<name>.+)/history", bind(history))
    r.add("GET", "/images/(?P<name>.+)/get", bind(get_one))
    r.add("POST", "/images/(?P<name>.+)/tag", bind(tag))
    r.add("DELETE", "/images/(?P<name>.+)", bind(delete))
