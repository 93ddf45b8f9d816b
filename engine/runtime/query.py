"""Read-only operations: ``state``, ``list``, ``ps``, and the status with the freezer checked."""

from __future__ import annotations

import json
import os

from engine.runtime import state as st
from engine.runtime.kill import current_status, manager


def state(root: str, container_id: str) -> dict:
    c = st.load(root, container_id)
    return c.oci_state(current_status(c))


def list_states(root: str) -> list[dict]:
    out = []
    for cid in st.list_ids(root):
        try:
            c = st.load(root, cid)
        except Exception:  # a directory being removed right now
            continue
        s = c.oci_state(current_status(c))
        try:
            import pwd

            s["owner"] = pwd.getpwuid(os.stat(c.dir).st_uid).pw_name
        except (KeyError, OSError):
            s["owner"] = "#" + str(os.stat(c.dir).st_uid) if os.path.exists(c.dir) else ""
        out.append(s)
    return out


def format_list(states: list[dict], fmt: str = "table", quiet: bool = False) -> str:
    if quiet:
        return "".join(s["id"] + "\n" for s in states)
    if fmt == "json":
        return json.dumps(states, separators=(",", ":")) + "\n"
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    for s in states:
        rows.append([s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s.get("owner", "")])
    # text/tabwriter with minwidth 12, padding 3, as runc
    widths = [max(12, max(len(r[i]) for r in rows) + 3) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        lines.append("".join(r[i].ljust(widths[i]) for i in range(len(r) - 1)) + r[-1])
    return "\n".join(lines) + "\n"


def pids(root: str, container_id: str) -> list[int]:
    c = st.load(root, container_id)
    return manager(c).pids()


def ps(root: str, container_id: str, fmt: str = "table", ps_args: list[str] | None = None) -> str:
    """runc's ps: JSON pids, or ``ps`` output filtered to the container's processes."""
    from engine.errors import FailedPrecondition

    c = st.load(root, container_id)
    status = current_status(c)
    if status == st.STOPPED:
        raise FailedPrecondition("container not running")
    plist = manager(c).pids()
    if fmt == "json":
        return json.dumps(plist) + "\n"
    import subprocess

    args = ps_args or ["-ef"]
    r = subprocess.run(["ps", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise FailedPrecondition(f"ps: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    if not lines:
        return ""
    header = lines[0]
    cols = header.split()
    try:
        pid_idx = cols.index("PID")
    except ValueError as e:
        raise FailedPrecondition("couldn't find PID field in ps output") from e
    keep = set(plist)
    out = [header]
    for line in lines[1:]:
        f = line.split()
        if len(f) > pid_idx and f[pid_idx].isdigit() and int(f[pid_idx]) in keep:
            out.append(line)
    return "\n".join(out) + "\n"
