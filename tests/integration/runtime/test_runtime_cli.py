"""Commands that need no container: spec, features, version."""

from __future__ import annotations

import json

import pytest


def test_spec_writes_a_valid_config(rt):
    out = rt.workdir / "specdir"
    out.mkdir()
    r = rt("spec", cwd=str(out))
    assert r.returncode == 0, r.stderr
    spec = json.loads((out / "config.json").read_text())
    assert spec["ociVersion"].startswith("1.")
    assert spec["root"]["path"] == "rootfs"
    assert isinstance(spec["process"]["args"], list) and spec["process"]["args"]
    assert spec["process"]["cwd"] == "/"
    assert {m["destination"] for m in spec["mounts"]} >= {"/proc", "/dev", "/sys"}
    assert {n["type"] for n in spec["linux"]["namespaces"]} >= {"pid", "mount", "ipc", "uts", "network"}
    # an existing config.json is not overwritten
    r = rt("spec", cwd=str(out))
    assert r.returncode == 1 and r.stderr.strip()


def test_spec_bundle_option_and_the_result_runs(rt):
    b = rt.bundle(["true"])
    r = rt("spec", "--bundle", str(b.path))
    assert r.returncode == 0, r.stderr
    spec = json.loads((b.path / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = ["echo", "generated"]
    spec.setdefault("linux", {})["cgroupsPath"] = f"/{rt.cgroup_parent}/{b.id}"
    (b.path / "config.json").write_text(json.dumps(spec))
    r = rt("run", "--bundle", str(b.path), b.id)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "generated\n"


def test_features_prints_json(rt):
    r = rt("features")
    if rt.name == "crun" and "unknown command features" in r.stderr:
        pytest.skip("crun 1.8.1 has no features command")
    assert r.returncode == 0, r.stderr
    f = json.loads(r.stdout)
    assert f["ociVersionMin"].startswith("1.")
    assert f["ociVersionMax"].startswith("1.")
    assert {"createRuntime", "createContainer", "startContainer", "poststart", "poststop"} <= set(f["hooks"])
    assert {"bind", "ro", "nosuid"} <= set(f["mountOptions"])
    linux = f["linux"]
    assert {"pid", "network", "mount", "ipc", "uts", "user", "cgroup"} <= set(linux["namespaces"])
    assert "CAP_SYS_ADMIN" in linux["capabilities"]
    assert linux["seccomp"]["enabled"] is True
    assert "SCMP_ACT_ERRNO" in linux["seccomp"]["actions"]


def test_version(rt):
    r = rt("--version")
    assert r.returncode == 0, r.stderr
    assert "spec" in r.stdout.lower()
