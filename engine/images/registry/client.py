"""A distribution-spec v2 client for one repository: manifests, blobs, uploads, mounts and tags.

``Registry`` is one registry host (endpoint + auth state + the shared HTTP pool); ``Repository`` is one
repository on it, and holds the auth scope (``repository:<path>:pull`` or ``pull,push``). Every request
goes through ``Registry.send``, which adds the Authorization the registry asked for and, on a 401, answers
the challenge once and retries.

Endpoints: ``docker.io`` is ``https://registry-1.docker.io``; loopback hosts (``localhost``, 127.0.0.0/8,
``::1``) use plain HTTP; the daemon's ``insecure-registries`` (hosts or CIDRs) are tried over HTTPS without
certificate checks, then over plain HTTP, as dockerd does; every other host is HTTPS with certificate checks. Registry errors (``{"errors": [{"code", "message"}]}``) become engine errors with
Docker's wording (``manifest unknown: manifest unknown``), so the daemon can print what dockerd prints.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import quote, urlencode, urljoin

from engine.errors import EngineError, InvalidArgument, NotFound, Unavailable
from engine.images import formats
from engine.images.content import digests
from engine.images.registry.auth import Authorizer, Credentials, Unauthorized
from engine.images.registry.http import Body, HttpClient, Response

DOCKER_HUB = "docker.io"
DOCKER_HUB_ENDPOINT = "registry-1.docker.io"
MANIFEST_ACCEPT = ", ".join([formats.OCI_INDEX, formats.OCI_MANIFEST, formats.DOCKER_MANIFEST_LIST,
                             formats.DOCKER_MANIFEST])
MAX_MANIFEST = 4 << 20


def _host(domain: str) -> str:
    host = domain.rsplit(":", 1)[0] if not domain.endswith("]") else domain
    return host.strip("[]")


def is_loopback(domain: str) -> bool:
    host = _host(domain)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_insecure(domain: str, insecure: list[str]) -> bool:
    """Loopback, or an `insecure` entry (host[:port] or a CIDR): TLS unverified or plain HTTP allowed."""
    host = _host(domain)
    if is_loopback(domain) or domain in insecure or host in insecure:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in insecure:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False


def endpoint(domain: str, insecure: list[str]) -> str:
    """The first endpoint to try: plain HTTP for loopback, HTTPS otherwise (an insecure registry falls back
    to HTTP when HTTPS does not answer, see ``Registry.send``)."""
    host = DOCKER_HUB_ENDPOINT if domain in (DOCKER_HUB, "index.docker.io") else domain
    return f"{'http' if is_loopback(domain) else 'https'}://{host}"


def _error_text(body: bytes) -> str:
    """Docker's rendering of a registry error body: ``code words: message`` joined by '; '."""
    try:
        doc = json.loads(body)
        errs = doc.get("errors") or []
        parts = [f"{str(e.get('code', 'unknown')).lower().replace('_', ' ')}: {e.get('message', '')}"
                 for e in errs if isinstance(e, dict)]
        if parts:
            return "; ".join(parts)
    except (ValueError, AttributeError):
        pass
    return body[:200].decode("utf-8", "replace").strip()


class RegistryError(EngineError):
    """An unexpected answer from the registry."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


async def raise_for(resp: Response, what: str) -> None:
    """Turn an error response into the matching engine error (reads the body)."""
    body = await resp.read(1 << 20)
    text = _error_text(body) or f"status {resp.status}"
    if resp.status == 404:
        raise NotFound(f"{what}: {text}")
    if resp.status in (401, 403):
        raise Unauthorized(f"{what}: {text}")
    if resp.status == 400:
        raise InvalidArgument(f"{what}: {text}")
    if resp.status in (429, 500, 502, 503, 504):
        raise Unavailable(f"{what}: {text}")
    raise RegistryError(f"{what}: unexpected status {resp.status}: {text}", resp.status)


class Registry:
    """One registry host: its endpoint, auth state and the HTTP pool."""

    def __init__(self, domain: str, http: HttpClient, creds: Credentials | None = None, *,
                 insecure: list[str] | None = None) -> None:
        self.domain = domain
        self.http = http
        self.base = endpoint(domain, insecure or [])
        self.auth = Authorizer(http, creds)
        self._fallback = ""
        if not is_loopback(domain) and is_insecure(domain, insecure or []):
            # as dockerd: HTTPS without certificate checks first, plain HTTP if that does not answer
            http.insecure_tls_hosts.add(_host(domain))
            self._fallback = f"http://{domain}"

    def repository(self, path: str, *, push: bool = False) -> Repository:
        return Repository(self, path, push)

    async def send(self, method: str, url: str, scope: str, headers: dict[str, str] | None = None,
                   body: Body = None, *, follow: bool = True) -> Response:
        """A request with the auth the registry asked for; one retry after answering a 401 challenge."""
        auth = self.auth.header(scope)
        for attempt in (0, 1):
            h = dict(headers or {})
            if auth:
                h["Authorization"] = auth
            try:
                resp = await self.http.request(method, url, h, body, follow=follow)
            except Unavailable:
                if not self._fallback or not url.startswith(self.base + "/"):
                    raise
                url = self._fallback + url[len(self.base):]
                self.base, self._fallback = self._fallback, ""
                resp = await self.http.request(method, url, h, body, follow=follow)
            if resp.status != 401 or attempt == 1:
                return resp
            challenges = resp.headers.get_all("www-authenticate")
            await resp.read(1 << 20)
            auth = await self.auth.on_unauthorized(challenges, scope, url, auth)
            if auth is None:
                return resp
            if body is not None and not isinstance(body, (bytes, bytearray)):
                raise Unauthorized(f"{url}: unauthorized (a streamed body cannot be sent again)")
        raise AssertionError("unreachable")

    async def ping(self) -> None:
        """``GET /v2/`` with credentials, as a login does; Unauthorized with dockerd's wording on failure."""
        url = self.base + "/v2/"
        resp = await self.send("GET", url, "")
        await resp.read(1 << 20)
        if resp.status == 401 and self.auth.challenge is not None and self.auth.challenge.scheme == "bearer":
            raise Unauthorized("unauthorized: incorrect username or password")
        if resp.status != 200:
            raise Unauthorized(f"login attempt to {url} failed with status: {resp.status} {_reason(resp.status)}")

    async def login(self) -> None:
        """Check the credentials: the API root, and for a token registry a token for no scope."""
        await self.ping()


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


@dataclass
class Manifest:
    media_type: str
    digest: str
    data: bytes

    @property
    def descriptor(self) -> formats.Descriptor:
        return formats.Descriptor(media_type=self.media_type, digest=self.digest, size=len(self.data))


class Repository:
    """One repository on a registry."""

    def __init__(self, registry: Registry, path: str, push: bool = False) -> None:
        self.registry = registry
        self.path = path
        self.scope = f"repository:{path}:{'pull,push' if push else 'pull'}"

    @property
    def url(self) -> str:
        return f"{self.registry.base}/v2/{self.path}"

    async def _send(self, method: str, url: str, headers: dict[str, str] | None = None, body: Body = None,
                    **kw: bool) -> Response:
        return await self.registry.send(method, url, self.scope, headers, body, **kw)

    # ---- manifests ---------------------------------------------------------------------------

    async def get_manifest(self, reference: str, accept: str = MANIFEST_ACCEPT) -> Manifest:
        """GET a manifest or index by tag or digest; its digest is checked when the reference is one."""
        resp = await self._send("GET", f"{self.url}/manifests/{quote(reference, safe=':')}", {"Accept": accept})
        if resp.status != 200:
            await raise_for(resp, f"manifest {self.path}:{reference}")
        data = await resp.read(MAX_MANIFEST)
        mt = resp.headers.get("content-type").split(";")[0].strip()
        if not mt or mt in ("application/json", "text/plain", "application/octet-stream"):
            try:
                mt = json.loads(data).get("mediaType") or formats.OCI_MANIFEST
            except (ValueError, AttributeError) as err:
                raise InvalidArgument(f"manifest {self.path}:{reference}: not JSON: {err}") from err
        if ":" in reference:
            alg = digests.parse(reference)[0]
            got = digests.of_bytes(data, alg)
            if got != reference:
                raise InvalidArgument(f"manifest {self.path}@{reference}: content has digest {got}")
            return Manifest(mt, reference, data)
        got = digests.of_bytes(data)
        announced = resp.headers.get("docker-content-digest")
        if announced and announced.startswith("sha256:") and announced != got:
            raise InvalidArgument(f"manifest {self.path}:{reference}: digest {got} does not match the "
                                  f"registry's {announced}")
        return Manifest(mt, got, data)

    async def head_manifest(self, reference: str) -> formats.Descriptor | None:
        resp = await self._send("HEAD", f"{self.url}/manifests/{quote(reference, safe=':')}",
                                {"Accept": MANIFEST_ACCEPT})
        resp.close()
        if resp.status == 404:
            return None
        if resp.status != 200:
            await raise_for(resp, f"manifest {self.path}:{reference}")
        return formats.Descriptor(media_type=resp.headers.get("content-type").split(";")[0],
                                  digest=resp.headers.get("docker-content-digest"),
                                  size=resp.content_length or 0)

    async def put_manifest(self, reference: str, media_type: str, data: bytes) -> str:
        resp = await self._send("PUT", f"{self.url}/manifests/{quote(reference, safe=':')}",
                                {"Content-Type": media_type}, data)
        if resp.status not in (200, 201, 202):
            await raise_for(resp, f"put manifest {self.path}:{reference}")
        await resp.read(1 << 20)
        return resp.headers.get("docker-content-digest") or digests.of_bytes(data)

    async def tags(self) -> list[str]:
        resp = await self._send("GET", f"{self.url}/tags/list")
        if resp.status != 200:
            await raise_for(resp, f"tags of {self.path}")
        return list(json.loads(await resp.read(16 << 20)).get("tags") or [])

    # ---- blobs -------------------------------------------------------------------------------

    async def open_blob(self, digest: str, offset: int = 0) -> tuple[Response, int]:
        """Start reading a blob at `offset`; returns the response and the offset it really starts at
        (0 when the registry ignored the Range)."""
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        resp = await self._send("GET", f"{self.url}/blobs/{digest}", headers)
        if resp.status == 206 and offset:
            start = resp.headers.get("content-range").removeprefix("bytes ").split("-")[0]
            if not start.isdigit() or int(start) != offset:
                resp.close()
                raise Unavailable(f"blob {digest}: bad Content-Range {resp.headers.get('content-range')!r}")
            return resp, offset
        if resp.status == 416 and offset:
            resp.close()
            return await self.open_blob(digest, 0)
        if resp.status != 200:
            await raise_for(resp, f"blob {self.path}@{digest}")
        return resp, 0

    async def read_blob(self, digest: str, limit: int = MAX_MANIFEST) -> bytes:
        resp, _ = await self.open_blob(digest)
        data = await resp.read(limit)
        if digests.of_bytes(data, digests.parse(digest)[0]) != digest:
            raise InvalidArgument(f"blob {self.path}@{digest}: content does not match its digest")
        return data

    async def blob_size(self, digest: str) -> int | None:
        """HEAD a blob: its size, or None when the repository does not have it."""
        resp = await self._send("HEAD", f"{self.url}/blobs/{digest}")
        resp.close()
        if resp.status == 404:
            return None
        if resp.status != 200:
            await raise_for(resp, f"blob {self.path}@{digest}")
        return resp.content_length or 0

    async def mount_blob(self, digest: str, from_path: str) -> str | None:
        """Cross-repository mount; None when mounted, else the upload location the registry opened."""
        q = urlencode({"mount": digest, "from": from_path})
        resp = await self._send("POST", f"{self.url}/blobs/uploads/?{q}")
        await resp.read(1 << 20)
        if resp.status == 201:
            return None
        if resp.status == 202:
            return urljoin(self.url, resp.headers.get("location"))
        await raise_for(resp, f"mount {digest} from {from_path}")
        return None

    async def start_upload(self) -> str:
        resp = await self._send("POST", f"{self.url}/blobs/uploads/")
        if resp.status != 202:
            await raise_for(resp, f"start upload to {self.path}")
        await resp.read(1 << 20)
        return urljoin(self.url, resp.headers.get("location"))

    @staticmethod
    def _with_digest(location: str, digest: str) -> str:
        return f"{location}{'&' if '?' in location else '?'}{urlencode({'digest': digest})}"

    async def upload_monolithic(self, location: str, digest: str, size: int, body: Body) -> None:
        """One PUT with the whole blob."""
        resp = await self._send("PUT", self._with_digest(location, digest),
                                {"Content-Type": "application/octet-stream", "Content-Length": str(size)}, body)
        if resp.status not in (201, 204):
            await raise_for(resp, f"upload {digest} to {self.path}")
        await resp.read(1 << 20)

    async def upload_chunked(self, location: str, digest: str, chunks: AsyncIterator[bytes]) -> None:
        """PATCH each chunk with its Content-Range, then PUT ?digest= to close the upload."""
        offset = 0
        async for chunk in chunks:
            end = offset + len(chunk) - 1
            resp = await self._send("PATCH", location, {"Content-Type": "application/octet-stream",
                                                        "Content-Range": f"{offset}-{end}"}, chunk)
            if resp.status != 202:
                await raise_for(resp, f"upload chunk {offset}-{end} of {digest} to {self.path}")
            await resp.read(1 << 20)
            location = urljoin(location, resp.headers.get("location") or location)
            offset = end + 1
        resp = await self._send("PUT", self._with_digest(location, digest))
        if resp.status not in (201, 204):
            await raise_for(resp, f"finish upload of {digest} to {self.path}")
        await resp.read(1 << 20)
