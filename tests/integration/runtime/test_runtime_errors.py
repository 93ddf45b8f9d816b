"""Errors: exit status 1, a one-line message on stderr, and nothing left behind."""

from __future__ import annotations

import json

from tests.support.ociruntime import mounts_under, one_line_error


def test_unknown_id(rt):
    cid = rt.new_id("nope")
    for args in (["state", cid], ["kill", cid, "KILL"], ["delete", cid]):
        r = rt(*args)
        one_line_error(rt, r)
    assert rt.leftovers(cid) == []


def test_force_delete_of_an_unknown_id_succeeds(rt):
    # runc and crun agree: --force makes delete idempotent
    r = rt("delete", "--force", rt.new_id("nope"))
    assert r.returncode == 0, r.stderr


def test_delete_of_a_running_container_needs_force(rt):
    b = rt.bundle(["sleep", "60"])
    b.create().ok()
    b.start().ok()
    one_line_error(rt, b.delete())
    assert b.status() == "running"
    b.delete("--force").ok()
    assert rt.leftovers(b.id, b) == []


def test_duplicate_id(rt):
    first = rt.bundle(["sleep", "60"])
    first.create().ok()
    pid = first.state()["pid"]
    second = rt.bundle(["true"])
    second.id = first.id
    one_line_error(rt, second.create())
    assert mounts_under(second.path) == []
    st = first.state()
    assert (st["status"], st["pid"], st["bundle"]) == ("created", pid, str(first.path))


def test_missing_bundle(rt):
    cid = rt.new_id()
    missing = rt.workdir / "no-such-bundle"
    one_line_error(rt, rt("create", "--bundle", str(missing), cid))
    one_line_error(rt, rt("run", "--bundle", str(missing), cid))
    assert rt.leftovers(cid) == []


def test_invalid_json_config(rt):
    b = rt.bundle(["true"])
    b.write()
    (b.path / "config.json").write_text('{"ociVersion": "1.0.2", "process": ')
    one_line_error(rt, rt("create", "--bundle", str(b.path), b.id))
    assert rt.leftovers(b.id, b) == []


def test_config_that_is_not_an_object(rt):
    b = rt.bundle(["true"])
    b.write()
    (b.path / "config.json").write_text(json.dumps(["not", "a", "config"]))
    one_line_error(rt, rt("create", "--bundle", str(b.path), b.id))
    assert rt.leftovers(b.id, b) == []


def test_missing_rootfs(rt):
    b = rt.bundle(["true"])
    b.spec["root"]["path"] = "no-such-rootfs"
    one_line_error(rt, b.create())
    assert rt.leftovers(b.id, b) == []


def test_invalid_seccomp_action(rt):
    b = rt.bundle(["true"])
    b.linux["seccomp"] = {"defaultAction": "SCMP_ACT_BOGUS"}
    one_line_error(rt, b.create())
    assert rt.leftovers(b.id, b) == []


def test_failing_process_leaves_nothing_after_delete(rt):
    b = rt.bundle(["/no/such/binary"])
    r = b.create()
    if r.returncode == 0:  # runtimes may report the exec failure at create or at start
        r = b.start()
        rt("delete", "--force", b.id)
    one_line_error(rt, r)
    assert rt.leftovers(b.id, b) == []
