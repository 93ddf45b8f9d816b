"""Docker's reference normalisation: short names get docker.io/library/ and :latest, registries keep their
domain, digests keep no default tag, and malformed references are refused with Docker's message."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.images.reference import familiar_repository, is_id, parse

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(("given", "full", "familiar"), [
    ("busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36"),
    ("user/app", "docker.io/user/app:latest", "user/app:latest"),
    ("index.docker.io/library/busybox", "docker.io/library/busybox:latest", "busybox:latest"),
    ("localhost/x", "localhost/x:latest", "localhost/x:latest"),
    ("localhost:5000/x", "localhost:5000/x:latest", "localhost:5000/x:latest"),
    ("127.0.0.1:5000/bb:1", "127.0.0.1:5000/bb:1", "127.0.0.1:5000/bb:1"),
    ("quay.io/a/b/c:v1.2-rc_3", "quay.io/a/b/c:v1.2-rc_3", "quay.io/a/b/c:v1.2-rc_3"),
    (f"busybox@{DIGEST}", f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    (f"busybox:1@{DIGEST}", f"docker.io/library/busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
])
def test_normalises_like_docker(given: str, full: str, familiar: str) -> None:
    ref = parse(given)
    assert str(ref) == full
    assert ref.familiar() == familiar
    assert str(parse(str(ref))) == full  # idempotent


def test_parts() -> None:
    ref = parse("127.0.0.1:5000/team/bb:1")
    assert (ref.domain, ref.path, ref.tag, ref.digest) == ("127.0.0.1:5000", "team/bb", "1", "")
    assert ref.repository == "127.0.0.1:5000/team/bb"
    assert str(ref.with_tag("2")) == "127.0.0.1:5000/team/bb:2"
    assert str(parse("busybox", default_tag="")) == "docker.io/library/busybox"
    assert familiar_repository("docker.io/library/busybox") == "busybox"
    assert familiar_repository("docker.io/library/a/b") == "library/a/b"
    assert is_id("ab" * 32) and is_id("sha256:" + "ab" * 32) and not is_id("busybox")


@pytest.mark.parametrize("bad", ["", " busybox", "Busybox", "bb:", "x::y", "a" * 64, "bb@sha256:short",
                                 "bb:" + "t" * 129, "-bb", "bb/", "bb//x", "host:port:x/y"])
def test_refused(bad: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid"):
        parse(bad)
