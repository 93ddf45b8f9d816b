"""Bearer-token auth against the real registry (docker-registry with ``token`` auth) and a token server
(tests/support/token_auth.py): the client follows the 401 challenge to the realm with the scope, with basic
credentials for a user or anonymously, caches the token per scope, and push asks for ``pull,push``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.images.registry import Credentials, Unauthorized
from engine.services.images import Image
from tests.integration.images.helpers import ACTOR, NS
from tests.integration.registry.conftest import pulling
from tests.support import images
from tests.support.registry import TestRegistry
from tests.support.token_auth import TokenServer


@pytest.fixture(scope="module")
def token_registry() -> Iterator[tuple[TestRegistry, TokenServer]]:
    work = Path(tempfile.mkdtemp(prefix="reg-token-"))
    tokens = TokenServer(work, "carol", "t0ken-pw", anonymous_pull=True).start()
    reg = TestRegistry(auth=tokens.registry_auth(), creds=("carol", "t0ken-pw")).start()
    try:
        reg.skopeo_copy(f"oci-archive:{images.busybox_oci_archive(work, 'bb:1', gz=True)}", "bb:1")
        yield reg, tokens
    finally:
        reg.stop()
        tokens.stop()
        shutil.rmtree(work, ignore_errors=True)


async def test_bearer_pull_anonymous_and_push_with_credentials(token_registry: tuple[TestRegistry, TokenServer]
                                                               ) -> None:
    reg, tokens = token_registry
    async with pulling() as (s, p, _root):
        before = len(tokens.requests)
        img = await p.pull(NS, f"{reg.host}/bb:1", actor=ACTOR)  # anonymous pull token
        asked = tokens.requests[before:]
        assert asked and all(r["auth"] == "" for r in asked)
        assert any("repository:bb:pull" in r["query"].get("scope", []) for r in asked)  # type: ignore[union-attr]
        assert len(asked) == 1  # one token for the whole pull (cached per scope)
        await s.images.create(NS, Image(name=f"{reg.host}/mine:1", target=img.target), actor=ACTOR)
        with pytest.raises(Unauthorized):  # anonymous tokens carry no push
            await p.push(NS, f"{reg.host}/mine:1", actor=ACTOR)
        with pytest.raises(Unauthorized, match="incorrect username or password"):
            await p.push(NS, f"{reg.host}/mine:1", auth=Credentials("carol", "nope"), actor=ACTOR)
        before = len(tokens.requests)
        digest = await p.push(NS, f"{reg.host}/mine:1", auth=Credentials("carol", "t0ken-pw"), actor=ACTOR)
        asked = tokens.requests[before:]
        assert asked and all(r["auth"] == "Basic" for r in asked)
        assert any("repository:mine:pull,push" in r["query"].get("scope", []) for r in asked)  # type: ignore[union-attr]
        assert reg.skopeo_inspect("mine:1")["Digest"] == digest
        await p.login(reg.host, Credentials("carol", "t0ken-pw"))
