"""Content digests (``algorithm:hex``), parsed strictly, and the hashers that compute them.

The algorithms and encodings are the OCI image spec's registered ones: sha256 (64 lower-case hex
characters), sha384 (96) and sha512 (128). Anything else is an InvalidArgument naming the digest, so a
bad string never becomes a path.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from engine.errors import InvalidArgument

ALGORITHMS = {"sha256": 64, "sha384": 96, "sha512": 128}
CANONICAL = "sha256"
_HEX = re.compile(r"^[a-f0-9]+$")


def parse(digest: str) -> tuple[str, str]:
    """Split a digest into (algorithm, hex), raising InvalidArgument for anything malformed."""
    if not isinstance(digest, str) or not digest:
        raise InvalidArgument("invalid digest: empty")
    alg, sep, hexpart = digest.partition(":")
    if not sep:
        raise InvalidArgument(f"invalid digest {digest[:200]!r}: invalid checksum digest format")
    if alg not in ALGORITHMS:
        raise InvalidArgument(f"invalid digest {digest[:200]!r}: unsupported digest algorithm")
    if len(hexpart) != ALGORITHMS[alg] or not _HEX.match(hexpart):
        raise InvalidArgument(f"invalid digest {digest[:200]!r}: invalid checksum digest length or encoding")
    return alg, hexpart


def validate(digest: str) -> str:
    parse(digest)
    return digest


def hasher(algorithm: str = CANONICAL) -> Any:
    """A fresh hashlib object for `algorithm` (one of ALGORITHMS)."""
    if algorithm not in ALGORITHMS:
        raise InvalidArgument(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def of_bytes(data: bytes, algorithm: str = CANONICAL) -> str:
    h = hasher(algorithm)
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"
