"""A pull killed by SIGKILL (``ENGINE_FAULT_PULL``) in a child process over a temp root: no image record is
left, the lease keeps the partial ingest, and the next pull resumes that ingest instead of starting over.
Killed with a layer extracted into the snapshotter's staging dir, recovery empties it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from engine.services.leases import LABEL_EXPIRE
from tests.integration.images.helpers import ACTOR, NS
from tests.integration.registry.conftest import Filled, pulling, remove_root
from tests.support import images
from tests.support.registry import random_oci_layout

REPO = Path(__file__).resolve().parents[3]
CHILD = """
import asyncio, sys
from pathlib import Path
from tests.integration.images.helpers import services_at
from engine.services.pull import PullService

async def main():
    s = await services_at(Path(sys.argv[1]))
    await PullService(s).pull("moby", sys.argv[2], actor="test")

asyncio.run(main())
"""


def _pull_in_child(root: Path, ref: str, fault: str) -> int:
    env = {**os.environ, "ENGINE_FAULT_PULL": fault}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(root), ref], cwd=REPO, env=env, capture_output=True,
                          timeout=120)
    return proc.returncode


@pytest.mark.parametrize("fault", ["layer:partial", "layer:staged", "layers:done"])
async def test_sigkill_during_pull_leaves_no_record_and_resumes(filled: Filled, fault: str) -> None:
    reg = filled.reg
    work = Path(tempfile.mkdtemp(prefix="reg-crash-work-"))
    layout, _ = random_oci_layout(work / "c", [3 << 20], seed=11, with_busybox=False)
    reg.skopeo_copy(f"oci:{layout}", f"crash-{fault.replace(':', '-')}:1")
    ref = f"{reg.host}/crash-{fault.replace(':', '-')}:1"
    root = Path(tempfile.mkdtemp(prefix="reg-crash-"))
    try:
        assert _pull_in_child(root, ref, fault) == -9  # killed at the fault point
        m = json.loads(reg.get(f"/v2/{ref.split('/', 1)[1].replace(':1', '')}/manifests/1",
                               {"Accept": images.OCI_MANIFEST})[1])
        big = max(m["layers"], key=lambda x: x["size"])
        staging = root / "snapshots" / "overlayfs" / "staging"
        left = sorted(os.listdir(staging)) if staging.is_dir() else []
        assert bool(left) == (fault == "layer:staged"), left
        async with pulling(root) as (s, p, _):
            rep = await s.snapshots.recover(actor=ACTOR)  # as the daemon does when it starts
            assert rep.staged_removed == [f"overlayfs/{n}" for n in left] and os.listdir(staging) == []
            assert await s.images.list(NS) == []  # no dangling record
            leases = await s.leases.list(NS)
            assert len(leases) == 1 and LABEL_EXPIRE in leases[0].labels  # protects the partial work meanwhile
            statuses = await s.content.list_statuses(NS)
            if fault == "layer:partial":
                st = {x.ref: x for x in statuses}[f"pull-{big['digest']}"]
                assert 0 < st.offset < big["size"]
            else:
                assert statuses == []
                await s.content.info(NS, big["digest"])  # committed before the kill
            msgs: list[dict] = []
            img = await p.pull(NS, ref, progress=msgs.append, actor=ACTOR)
            assert img.target.digest == reg.skopeo_inspect(ref.split("/", 1)[1])["Digest"]
            started = await s.journal.read(after_seq=0, where="type = ? AND subject = ?",
                                           params=("content.ingest_started", f"pull-{big['digest']}"))
            assert len(started) == 1  # resumed, not begun again
            if fault != "layer:partial":
                assert "Already exists" in [x["status"] for x in msgs]
            assert await s.content.list_statuses(NS) == []
            # the crashed pull's lease stays until it expires; our own is gone
            assert [le.id for le in await s.leases.list(NS)] == [leases[0].id]
    finally:
        remove_root(root)
        shutil.rmtree(work, ignore_errors=True)
