"""Image references as Docker reads them: ``[domain/]path[:tag][@digest]``, normalised.

``parse("busybox")`` is ``docker.io/library/busybox:latest``; a first component with a dot or a colon,
or ``localhost``, is a registry domain (``localhost:5000/x``, ``127.0.0.1:5000/bb:1``); ``docker.io``
paths without a slash get ``library/``. A reference with a digest and no tag keeps no tag (Docker does
not add ``latest`` then). ``familiar()`` is the short form the docker CLI prints (``busybox:latest``,
``user/app:1``, ``localhost:5000/x:y``).

The grammar is distribution's (reference/regexp.go), rewritten here from the spec: path components are
lower-case alphanumerics separated by ``.``, ``_``, ``__`` or runs of ``-``; a tag is ``[\\w][\\w.-]{0,127}``;
a digest is ``algorithm:hex``. Anything else is Docker's ``invalid reference format`` (InvalidArgument).
A 64-hex string alone is an image ID, not a name: ``parse`` refuses it, as Docker does for names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from engine.errors import InvalidArgument

DEFAULT_DOMAIN = "docker.io"
LEGACY_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_ID_RE = re.compile(r"^[a-f0-9]{64}$")
NAME_TOTAL_MAX = 255


@dataclass(frozen=True)
class Reference:
    domain: str
    path: str
    tag: str = ""
    digest: str = ""

    @property
    def repository(self) -> str:
        """``docker.io/library/busybox``: the name without tag or digest."""
        return f"{self.domain}/{self.path}"

    def __str__(self) -> str:
        s = self.repository
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def familiar(self) -> str:
        """The docker CLI's short form: ``busybox:latest``, ``user/app@sha256:…``."""
        s = familiar_repository(self.repository)
        if self.tag:
            s += ":" + self.tag
        if self.digest:
            s += "@" + self.digest
        return s

    def with_tag(self, tag: str) -> Reference:
        if not _TAG_RE.match(tag):
            raise InvalidArgument(f"invalid tag format: {tag!r}")
        return Reference(self.domain, self.path, tag, "")

    def with_digest(self, digest: str) -> Reference:
        if not _DIGEST_RE.match(digest):
            raise InvalidArgument(f"invalid digest format: {digest!r}")
        return Reference(self.domain, self.path, "", digest)


def familiar_repository(repository: str) -> str:
    """``docker.io/library/busybox`` → ``busybox``; ``docker.io/user/app`` → ``user/app``; others unchanged."""
    if repository.startswith(DEFAULT_DOMAIN + "/"):
        rest = repository[len(DEFAULT_DOMAIN) + 1:]
        if rest.startswith(OFFICIAL_PREFIX) and "/" not in rest[len(OFFICIAL_PREFIX):]:
            return rest[len(OFFICIAL_PREFIX):]
        return rest
    return repository


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain = DEFAULT_DOMAIN if first == LEGACY_DOMAIN else first
        return domain, rest
    return DEFAULT_DOMAIN, name


def valid_domain(domain: str) -> bool:
    """A registry host[:port] as references name it (``localhost:5000``, ``[::1]:5000``, ``quay.io``)."""
    return bool(_DOMAIN_RE.match(domain))


def is_id(s: str) -> bool:
    """A full 64-hex image ID (with or without ``sha256:``)."""
    return bool(_ID_RE.match(s.removeprefix("sha256:")))


def parse(s: str, *, default_tag: str = DEFAULT_TAG) -> Reference:
    """Parse and normalise a reference; InvalidArgument ``invalid reference format`` on bad input.

    `default_tag` is added when the reference has neither tag nor digest ("" to add none).
    """
    if not s or s != s.strip():
        raise InvalidArgument("invalid reference format")
    name, digest = s, ""
    if "@" in s:
        name, _, digest = s.partition("@")
        if not _DIGEST_RE.match(digest):
            raise InvalidArgument("invalid reference format")
    tag = ""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        name, tag = name[:colon], name[colon + 1:]
        if not _TAG_RE.match(tag):
            raise InvalidArgument("invalid reference format")
    if not name:
        raise InvalidArgument("invalid reference format")
    if _ID_RE.match(name) and not tag and not digest:
        raise InvalidArgument(f"invalid repository name ({name}), cannot specify 64-byte hexadecimal strings")
    domain, path = _split_domain(name)
    if not _DOMAIN_RE.match(domain):
        raise InvalidArgument("invalid reference format")
    if path != path.lower() or not _PATH_RE.match(path):
        if any(c.isupper() for c in path):
            raise InvalidArgument(f"invalid reference format: repository name ({path}) must be lowercase")
        raise InvalidArgument("invalid reference format")
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = OFFICIAL_PREFIX + path
    if len(f"{domain}/{path}") > NAME_TOTAL_MAX:
        raise InvalidArgument("invalid reference format: repository name must not be more than 255 characters")
    if not tag and not digest and default_tag:
        tag = default_tag
    return Reference(domain, path, tag, digest)
