"""Registry credentials and the authentication schemes a registry asks for in ``WWW-Authenticate``.

Credentials come from Docker's ``X-Registry-Auth`` header (base64url JSON ``{username, password,
serveraddress, identitytoken, registrytoken}``; ``e30=`` is "none") or, when a request brings none, from the
daemon user's ``~/.docker/config.json`` ``auths`` (``auth`` = base64 ``user:password``, or ``username`` and
``password``, or ``identitytoken``), looked up by registry host the way the docker CLI keys them
(``https://index.docker.io/v1/`` for Docker Hub, else the host with or without a scheme).

Schemes: ``Basic`` sends the credentials on every request once the registry asked for them; ``Bearer``
fetches a token from the challenge's realm for the scope ``repository:<path>:<actions>`` (with basic
credentials if any, or an OAuth2 refresh-token POST for an identity token) and caches it per scope until it
expires. The registry's challenge drives everything; nothing is sent before the first 401.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlencode, urlsplit

from engine.errors import InvalidArgument, PermissionDenied

if TYPE_CHECKING:
    from engine.images.registry.http import HttpClient

DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
_PARAM = re.compile(r'([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


class Unauthorized(PermissionDenied):
    """The registry refused the credentials (HTTP 401 on the Docker API)."""

    http_status = 401
    grpc_code = "UNAUTHENTICATED"


@dataclass(frozen=True)
class Credentials:
    username: str = ""
    password: str = ""
    identity_token: str = ""
    registry_token: str = ""
    server_address: str = ""

    def __bool__(self) -> bool:
        return bool(self.username or self.password or self.identity_token or self.registry_token)


def _b64decode(s: str) -> bytes:
    s = s.strip()
    pad = "=" * (-len(s) % 4)
    try:
        return base64.urlsafe_b64decode(s + pad) if ("-" in s or "_" in s) else base64.b64decode(s + pad)
    except (binascii.Error, ValueError) as err:
        raise InvalidArgument(f"invalid registry auth: {err}") from err


def from_header(value: str | None) -> Credentials | None:
    """Decode ``X-Registry-Auth``; None for an absent or empty one (``e30=``)."""
    if not value:
        return None
    try:
        doc = json.loads(_b64decode(value))
    except ValueError as err:
        raise InvalidArgument(f"invalid X-Registry-Auth header: {err}") from err
    if not isinstance(doc, dict):
        raise InvalidArgument("invalid X-Registry-Auth header: not a JSON object")
    creds = Credentials(username=str(doc.get("username") or ""), password=str(doc.get("password") or ""),
                        identity_token=str(doc.get("identitytoken") or ""),
                        registry_token=str(doc.get("registrytoken") or ""),
                        server_address=str(doc.get("serveraddress") or ""))
    return creds if creds else None


def _host_of(key: str) -> str:
    if "://" not in key:
        key = "//" + key
    return urlsplit(key).netloc.lower()


def config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG") or str(Path.home() / ".docker")
    return Path(base) / "config.json"


def from_docker_config(domain: str, path: Path | None = None) -> Credentials | None:
    """Credentials for `domain` (a reference domain: ``docker.io``, ``127.0.0.1:5000``) from config.json."""
    path = path or config_path()
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    auths = doc.get("auths") if isinstance(doc, dict) else None
    if not isinstance(auths, dict):
        return None
    wanted = {domain.lower()}
    if domain in ("docker.io", "index.docker.io", "registry-1.docker.io"):
        wanted |= {"index.docker.io", "docker.io", "registry-1.docker.io"}
    for key, entry in auths.items():
        if _host_of(key) not in wanted or not isinstance(entry, dict):
            continue
        user, password = str(entry.get("username") or ""), str(entry.get("password") or "")
        if entry.get("auth"):
            user, _, password = _b64decode(str(entry["auth"])).decode("utf-8", "replace").partition(":")
        creds = Credentials(username=user, password=password,
                            identity_token=str(entry.get("identitytoken") or ""),
                            registry_token=str(entry.get("registrytoken") or ""), server_address=key)
        if creds:
            return creds
    return None


@dataclass(frozen=True)
class Challenge:
    scheme: str  # lower-case: "basic" or "bearer"
    params: dict[str, str]


def parse_challenges(values: list[str]) -> list[Challenge]:
    """``WWW-Authenticate`` values → challenges (scheme + key="value" parameters)."""
    out = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        if not scheme:
            continue
        params = {m.group(1).lower(): (m.group(2) if m.group(2) is not None else m.group(3)).replace('\\"', '"')
                  for m in _PARAM.finditer(rest)}
        out.append(Challenge(scheme.lower(), params))
    return out


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


class Authorizer:
    """Per-registry auth state: the scheme the registry asked for and the tokens fetched so far."""

    def __init__(self, http: HttpClient, creds: Credentials | None) -> None:
        self.http = http
        self.creds = creds
        self.challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # scope → (token, expiry monotonic)

    def header(self, scope: str) -> str | None:
        """The Authorization value to send now (None until a challenge was seen or without a token)."""
        ch = self.challenge
        if ch is None:
            return None
        if ch.scheme == "basic":
            return basic_header(self.creds) if self.creds else None
        tok = self._tokens.get(scope)
        if tok and tok[1] > time.monotonic():
            return "Bearer " + tok[0]
        return None

    async def on_unauthorized(self, challenges: list[str], scope: str, url: str, sent: str | None) -> str | None:
        """Answer a 401 to a request that carried `sent`: the Authorization to retry with, or None when the
        registry refused what we have. The retry's value is returned rather than re-read from the cache, so a
        concurrent request caching a token of narrower scope cannot slip into this retry."""
        parsed = parse_challenges(challenges)
        chosen = next((c for c in parsed if c.scheme == "bearer"), None) or next(
            (c for c in parsed if c.scheme == "basic"), None)
        if chosen is None:
            return None
        self.challenge = chosen
        if chosen.scheme == "basic":
            if not self.creds:
                raise Unauthorized(f"{url}: no basic auth credentials")
            value = basic_header(self.creds)
            return value if value != sent else None
        if self.creds and self.creds.registry_token:
            value = "Bearer " + self.creds.registry_token
            return value if value != sent else None
        token, expires = await self._fetch_token(chosen, scope)
        self._tokens[scope] = (token, time.monotonic() + max(expires - 10, 10))
        value = "Bearer " + token
        return value if value != sent else None

    async def _fetch_token(self, ch: Challenge, scope: str) -> tuple[str, float]:
        realm = ch.params.get("realm", "")
        if not realm.startswith(("http://", "https://")):
            raise Unauthorized(f"bearer challenge without a usable realm: {realm!r}")
        scopes = [s for s in (*ch.params.get("scope", "").split(" "), scope) if s]  # a challenge may list several
        query: list[tuple[str, str]] = [("service", ch.params.get("service", ""))]
        query += [("scope", s) for s in dict.fromkeys(scopes)]
        headers = {}
        creds = self.creds
        if creds and creds.identity_token:
            form = urlencode([("grant_type", "refresh_token"), ("refresh_token", creds.identity_token),
                              ("service", ch.params.get("service", "")), ("client_id", "engine"),
                              *[("scope", s) for s in dict.fromkeys(scopes)]]).encode()
            resp = await self.http.request("POST", realm, {"Content-Type": "application/x-www-form-urlencoded"},
                                           form)
        else:
            if creds:
                headers["Authorization"] = basic_header(creds)
                query.append(("account", creds.username))
            resp = await self.http.request("GET", f"{realm}{'&' if '?' in realm else '?'}{urlencode(query)}",
                                           headers)
        body = await resp.read(1 << 20)
        if resp.status in (401, 403):
            raise Unauthorized(f"{realm}: unauthorized: incorrect username or password")
        if resp.status != 200:
            raise Unauthorized(f"{realm}: token request failed with status {resp.status}")
        try:
            doc = json.loads(body)
        except ValueError as err:
            raise Unauthorized(f"{realm}: bad token response: {err}") from err
        token = doc.get("token") or doc.get("access_token")
        if not token:
            raise Unauthorized(f"{realm}: token response without a token")
        return str(token), float(doc.get("expires_in") or 60)
