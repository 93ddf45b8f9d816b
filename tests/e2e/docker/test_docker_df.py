"""`docker system df` (and -v) with the real docker CLI: images, containers, volumes and the build cache,
with sizes that follow what is really on disk."""

from __future__ import annotations

import json

from tests.harness import EngineDaemon


def test_df_counts_and_sizes(d: EngineDaemon) -> None:
    d.docker("volume", "create", "dfv")
    cid = d.docker("create", "-v", "dfv:/data", "busybox", "true").stdout.strip()
    d.docker("run", "--rm", "-v", "dfv:/data", "busybox", "dd", "if=/dev/zero", "of=/data/blob", "bs=1024",
             "count=512")
    d.docker("run", "--name", "writer", "busybox", "dd", "if=/dev/zero", "of=/big", "bs=1024", "count=256")
    try:
        rows = {r["Type"]: r for r in map(json.loads, d.docker("system", "df", "--format", "json").stdout.splitlines())}
        assert rows["Images"]["TotalCount"] == "1" and rows["Images"]["Active"] == "1"
        assert rows["Containers"]["TotalCount"] == "2"
        assert rows["Local Volumes"]["TotalCount"] == "1" and rows["Local Volumes"]["Active"] == "1"
        assert rows["Build Cache"]["TotalCount"] == "0"
        status, body = d.request("GET", "/system/df")
        assert status == 200
        vol = next(v for v in body["Volumes"] if v["Name"] == "dfv")
        assert vol["UsageData"]["RefCount"] == 1 and vol["UsageData"]["Size"] >= 512 * 1024
        writer = next(c for c in body["Containers"] if c["Names"] == ["/writer"])
        assert writer["SizeRw"] >= 256 * 1024 and writer["SizeRootFs"] > writer["SizeRw"]
        assert body["LayersSize"] > 1_000_000 and body["Images"][0]["Containers"] == 2
        verbose = d.docker("system", "df", "-v").stdout
        assert "dfv" in verbose and "writer" in verbose and "busybox" in verbose
        status, body = d.request("GET", "/system/df?type=volume")
        assert status == 200 and set(body) == {"Volumes"}
        status, body = d.request("GET", "/system/df?type=bogus")
        assert status == 400 and "invalid type" in body["message"]
    finally:
        d.docker("rm", "-f", cid, "writer")
        d.docker("volume", "rm", "dfv")


def test_system_prune_says_what_it_freed(d: EngineDaemon) -> None:
    d.docker("run", "--name", "junk", "busybox", "dd", "if=/dev/zero", "of=/junk", "bs=1024", "count=1024")
    d.docker("network", "create", "junk-net")
    d.docker("volume", "create", "junk-vol")
    anon = d.docker("create", "-v", "/anon", "busybox", "true").stdout.strip()
    d.docker("rm", anon)  # its anonymous volume stays, unused
    out = d.docker("system", "prune", "-f", "--volumes").stdout
    assert "junk-net" in out and "Deleted Containers:" in out
    freed = out.strip().splitlines()[-1]
    assert freed.startswith("Total reclaimed space: ") and freed.endswith("MB") and float(freed.split()[-1][:-2]) >= 1.0
    assert "junk" not in d.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert "junk-vol" in d.docker("volume", "ls", "-q").stdout.split()  # named: kept without --all
    d.docker("volume", "rm", "junk-vol")
    assert d.docker("images", "-q").stdout.strip()  # in-use/tagged images stay without -a
