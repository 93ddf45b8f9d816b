"""Hooks: each kind records the state it got on stdin and its place in the order.

createRuntime, createContainer, prestart, poststart and poststop run in the runtime's
namespace (they see the host paths); startContainer runs inside the container, so it writes
through a bind mount of the same directory at /hooks.
"""

from __future__ import annotations

import json

from tests.support.ociruntime import one_line_error

KINDS = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


def add_recording_hooks(b, hook_dir):
    b.spec["mounts"].append(
        {"destination": "/hooks", "type": "bind", "source": str(hook_dir), "options": ["rbind", "rw"]}
    )
    hooks = {}
    for kind in KINDS:
        where = "/hooks" if kind == "startContainer" else str(hook_dir)
        script = f'cat > {where}/{kind}.json; echo {kind} >> {where}/order; echo "$HOOK_ENV|$1" > {where}/{kind}.env'
        hooks[kind] = [
            {
                "path": "/bin/sh",
                "args": ["sh", "-c", script, "sh", f"arg-{kind}"],
                "env": [f"HOOK_ENV={kind}"],
            }
        ]
    b.spec["hooks"] = hooks


def read_hooks(hook_dir):
    order = (hook_dir / "order").read_text().split()
    states = {
        k: json.loads((hook_dir / f"{k}.json").read_text())
        for k in KINDS
        if (hook_dir / f"{k}.json").exists()
    }
    return order, states


def test_hooks_run_in_order_with_state_on_stdin(rt):
    hook_dir = rt.workdir / "hooks"
    hook_dir.mkdir()
    b = rt.bundle(["sh", "-c", "echo main >> /hooks/order"])
    add_recording_hooks(b, hook_dir)
    b.create().ok()
    order, states = read_hooks(hook_dir)
    # (runc 1.1 also runs poststart already here, so its place is not checked)
    assert order.index("createRuntime") < order.index("createContainer")
    assert order.index("prestart") < order.index("createContainer")
    assert "startContainer" not in order and "main" not in order
    pid = b.state()["pid"]
    for kind in ("createRuntime", "createContainer"):
        s = states[kind]
        assert s["id"] == b.id
        assert s["bundle"] == str(b.path)
        assert s["status"] == "creating"
        assert s["ociVersion"]
    assert states["createRuntime"]["pid"] == pid

    b.start().ok()
    b.wait_status("stopped")
    order, states = read_hooks(hook_dir)
    # the process runs after startContainer; poststart runs before `start` returns
    assert order.index("startContainer") < order.index("main")
    assert order.index("createContainer") < order.index("startContainer")
    assert "poststart" in order and "poststop" not in order
    assert states["poststart"]["pid"] == pid and states["poststart"]["id"] == b.id

    b.delete().ok()
    order, states = read_hooks(hook_dir)
    assert order[-1] == "poststop"
    assert states["poststop"]["id"] == b.id
    assert states["poststop"]["status"] == "stopped"
    assert states["poststop"]["bundle"] == str(b.path)
    assert len(order) == len(KINDS) + 1


def test_hooks_get_their_args_and_env(rt):
    hook_dir = rt.workdir / "hooks"
    hook_dir.mkdir()
    b = rt.bundle(["true"])
    add_recording_hooks(b, hook_dir)
    r = b.run()
    assert r.returncode == 0, r.stderr
    for kind in KINDS:
        assert (hook_dir / f"{kind}.env").read_text() == f"{kind}|arg-{kind}\n", kind


def test_failing_create_runtime_hook_fails_create_and_leaves_nothing(rt):
    b = rt.bundle(["sleep", "60"])
    b.spec["hooks"] = {"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}
    one_line_error(rt, b.create())
    assert rt.leftovers(b.id, b) == []


def test_failing_poststop_hook_does_not_stop_delete(rt):
    # runtime-spec: a failing poststop hook is only a warning
    b = rt.bundle(["true"])
    b.spec["hooks"] = {"poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 3"]}]}
    b.create().ok()
    b.start().ok()
    b.wait_status("stopped")
    b.delete().ok()
    assert rt.leftovers(b.id, b) == []
