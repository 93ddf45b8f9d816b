"""Running OCI hooks from the runtime's side: prestart, createRuntime, poststart, poststop.

(createContainer and startContainer run inside the container's namespaces, so the C child
runs those; see plan.py.)  Each hook gets the container's State JSON on stdin and may have a
``timeout`` in seconds.  A failing prestart/createRuntime hook fails the create; a failing
poststart or poststop hook is only a warning, as the spec says.  subprocess is imported only
when a hook exists, to keep the common path's imports small.
"""

from __future__ import annotations

from engine.errors import FailedPrecondition


def run(hooks: list[dict] | None, state_json: bytes, kind: str) -> None:
    for i, hook in enumerate(hooks or ()):
        import subprocess

        path = hook.get("path")
        if not path:
            raise FailedPrecondition(f"{kind} hook #{i}: path is required")
        args = list(hook.get("args") or ()) or [path]
        env = {}
        for e in hook.get("env") or ():
            k, _, v = e.partition("=")
            env[k] = v
        timeout = hook.get("timeout") or None
        try:
            r = subprocess.run(
                args,
                executable=path,
                input=state_json,
                env=env,
                capture_output=True,
                timeout=timeout,
                close_fds=True,
            )
        except subprocess.TimeoutExpired as e:
            raise FailedPrecondition(f"error running {kind} hook #{i}: timeout after {timeout}s") from e
        except OSError as e:
            raise FailedPrecondition(
                f"error running {kind} hook #{i}: {path}: {(e.strerror or str(e)).lower()}"
            ) from e
        if r.returncode != 0:
            out = r.stdout.decode(errors="replace").strip()
            err = r.stderr.decode(errors="replace").strip()
            raise FailedPrecondition(
                f"error running {kind} hook #{i}: exit status {r.returncode}, stdout: {out}, stderr: {err}"
            )


def run_warn(hooks: list[dict] | None, state_json: bytes, kind: str, log) -> None:
    try:
        run(hooks, state_json, kind)
    except FailedPrecondition as e:
        log(f"warning: {e}")
