"""Pushes to a real registry, read back by skopeo: cross-repository mount on the same registry, monolithic
and chunked uploads to another, an index whose other platforms are not here, and Docker's message for an
image that does not exist locally."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from engine.errors import NotFound
from engine.events.verify import verify_path
from engine.services import all_projections
from engine.services.images import Image
from tests.integration.images.helpers import ACTOR, NS
from tests.integration.registry.conftest import Filled, pulling
from tests.support.registry import TestRegistry, random_oci_layout


def _skopeo_copy_out(reg: TestRegistry, repo_tag: str, dest: Path) -> dict:
    """skopeo copies the pushed image out (verifying every blob's digest) into an OCI layout."""
    subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", f"docker://{reg.host}/{repo_tag}",
                    f"oci:{dest}"], check=True, capture_output=True, timeout=120)
    return json.loads((dest / "index.json").read_text())


async def test_push_mounts_across_repositories_and_skopeo_reads_it(filled: Filled, tmp_path: Path) -> None:
    reg = filled.reg
    async with pulling() as (s, p, _root):
        img = await p.pull(NS, f"{reg.host}/bb:1", actor=ACTOR)
        await s.images.create(NS, Image(name=f"{reg.host}/copied:2", target=img.target), actor=ACTOR)
        msgs: list[dict] = []
        digest = await p.push(NS, f"{reg.host}/copied:2", progress=msgs.append, actor=ACTOR)
        assert digest == img.target.digest
        assert msgs[0]["status"] == f"The push refers to repository [{reg.host}/copied]"
        assert any(m.get("status") == "Mounted from bb" for m in msgs)
        assert msgs[-1]["aux"] == {"Tag": "2", "Digest": digest, "Size": img.target.size}
        assert "mount=sha256" in reg.log() and "from=bb" in reg.log()
        assert reg.skopeo_inspect("copied:2")["Digest"] == digest
        index = _skopeo_copy_out(reg, "copied:2", tmp_path / "out")
        assert index["manifests"][0]["digest"] == digest
        pushed = await s.journal.read(after_seq=0, where="type = ?", params=("image.pushed",))
        assert [e.event.digest for e in pushed] == [digest]  # type: ignore[attr-defined]
        # a second push finds every blob there
        msgs.clear()
        await p.push(NS, f"{reg.host}/copied:2", progress=msgs.append, actor=ACTOR)
        assert any(m.get("status") == "Layer already exists" for m in msgs)
        # the journal with pulls and pushes replays to the same tables (the types are known to a fresh reader)
        report = verify_path(str(_root / "engine.db"), all_projections())
        assert report.ok, report.to_dict()


async def test_push_uploads_monolithic_and_chunked_to_another_registry(filled: Filled, tmp_path: Path) -> None:
    reg = filled.reg
    layout, _ = random_oci_layout(tmp_path / "big", [20 << 20], seed=3)  # one layer above MONOLITHIC_MAX
    reg.skopeo_copy(f"oci:{layout}", "big:1")
    other = TestRegistry().start()
    try:
        async with pulling() as (s, p, _root):
            img = await p.pull(NS, f"{reg.host}/big:1", actor=ACTOR)
            await s.images.create(NS, Image(name=f"{other.host}/big:1", target=img.target), actor=ACTOR)
            digest = await p.push(NS, f"{other.host}/big:1", actor=ACTOR)
            assert digest == img.target.digest
            log = other.log()
            assert '"PATCH /v2/big/blobs/uploads/' in log  # the big layer, in chunks
            assert log.count('"PUT /v2/big/blobs/uploads/') >= 3  # busybox, config, closing the chunked one
            _skopeo_copy_out(other, "big:1", tmp_path / "out")
            # the multi-platform index, of which only the host's manifest is here: that manifest is pushed
            multi = await p.pull(NS, f"{reg.host}/multi:1", actor=ACTOR)
            await s.images.create(NS, Image(name=f"{other.host}/multi:1", target=multi.target), actor=ACTOR)
            pushed = await p.push(NS, f"{other.host}/multi:1", actor=ACTOR)
            from engine.images import platforms

            assert pushed == filled.digests[f"multi/{platforms.host()}"]
            assert other.skopeo_inspect("multi:1")["Digest"] == pushed
    finally:
        other.stop()


async def test_push_of_a_missing_image_is_dockers_message(filled: Filled) -> None:
    async with pulling() as (_s, p, _root):
        with pytest.raises(NotFound) as err:
            await p.push(NS, f"{filled.reg.host}/nothing:1", actor=ACTOR)
        assert str(err.value) == f"An image does not exist locally with the tag: {filled.reg.host}/nothing"
