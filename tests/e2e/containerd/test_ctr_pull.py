"""Debian's real ``ctr`` pulls from a real registry (docker-registry on 127.0.0.1) into engine: ctr fetches
client-side and writes through our Content, Leases and Images services, then unpacks through Snapshots and
Diff; the image is listed, checked complete and runs."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import EngineDaemon
from tests.support import images
from tests.support.registry import TestRegistry, random_oci_layout

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(shutil.which("ctr") is None, reason="ctr is not installed")]


@pytest.fixture(scope="module")
def env() -> Iterator[tuple[EngineDaemon, TestRegistry]]:
    reg = TestRegistry().start()
    d = EngineDaemon()
    work = Path(tempfile.mkdtemp(prefix="ctrpull-"))
    try:
        reg.skopeo_copy(f"oci-archive:{images.busybox_oci_archive(work, 'bb:1', gz=True)}", "bb:1")
        layout, _ = random_oci_layout(work / "multi", [300_000, 200_000], seed=21)
        reg.skopeo_copy(f"oci:{layout}", "layers:1")
        d.start()
        yield d, reg
    finally:
        d.cleanup()
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


@pytest.mark.parametrize("repo", ["bb:1", "layers:1"])
def test_ctr_pull_plain_http_lists_and_runs(env: tuple[EngineDaemon, TestRegistry], repo: str) -> None:
    d, reg = env
    ref = f"{reg.host}/{repo}"
    out = d.ctr("images", "pull", "--plain-http", ref, timeout=120)
    assert out.returncode == 0, out.stderr
    listed = d.ctr("images", "ls", "-q").stdout.split()
    assert ref in listed
    check = d.ctr("images", "check").stdout
    line = next(ln for ln in check.splitlines() if ln.startswith(ref))
    assert "complete" in line and "incomplete" not in line
    digest = reg.skopeo_inspect(repo)["Digest"]
    assert digest in d.ctr("images", "ls").stdout
    name = repo.replace(":", "-")
    run = d.ctr("run", "--rm", ref, f"t-{name}", "sh", "-c", "echo pulled; ls /data 2>/dev/null | wc -l",
                timeout=60)
    assert run.stdout.split() == ["pulled", "2" if repo == "layers:1" else "0"]  # /data/s<seed> per random layer
