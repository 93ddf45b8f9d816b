"""The committed generated code matches proto/, and proto/ has containerd's services and methods.

Field-level wire compatibility was checked against containerd's own api protos (api module
v1.8.0, vendored by containerd 1.7.34): every message, field (name, number, type, label),
enum and method is identical. These tests keep the inventory from drifting.
"""

from __future__ import annotations

import filecmp
import subprocess
from pathlib import Path

from engine.api.containerd import registry

ROOT = Path(__file__).resolve().parents[3]

# containerd 1.6's gRPC methods per service (67 in all with the ttrpc Forward), plus 1.7's
# additions: Introspection.PluginInfo and the sandbox, streaming and transfer services.
METHODS = {
    "containerd.services.containers.v1.Containers": 6,
    "containerd.services.content.v1.Content": 9,
    "containerd.services.diff.v1.Diff": 2,
    "containerd.services.events.v1.Events": 3,
    "containerd.services.images.v1.Images": 5,
    "containerd.services.introspection.v1.Introspection": 3,
    "containerd.services.leases.v1.Leases": 6,
    "containerd.services.namespaces.v1.Namespaces": 5,
    "containerd.services.snapshots.v1.Snapshots": 10,
    "containerd.services.tasks.v1.Tasks": 17,
    "containerd.services.version.v1.Version": 1,
}


def _methods(base: type) -> list[str]:
    inst = registry.complete(base)()
    return [path.rsplit("/", 1)[1] for path in inst.__mapping__()]


def test_service_inventory() -> None:
    names = {registry.service_name(info.base): info.base for info in registry.SERVICES}
    for service, count in METHODS.items():
        assert len(_methods(names[service])) == count, service
    tasks = set(_methods(names["containerd.services.tasks.v1.Tasks"]))
    assert {
        "Create",
        "Start",
        "Delete",
        "DeleteProcess",
        "Get",
        "List",
        "Kill",
        "Exec",
        "ResizePty",
        "CloseIO",
        "Pause",
        "Resume",
        "ListPids",
        "Checkpoint",
        "Update",
        "Metrics",
        "Wait",
    } == tasks
    assert "containerd.services.transfer.v1.Transfer" in names
    assert "containerd.services.sandbox.v1.Store" in names


def test_generated_code_is_up_to_date(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    subprocess.run(
        ["bash", str(ROOT / "scripts/gen_protos.sh")],
        check=True,
        capture_output=True,
        env={"GEN_OUT": str(out), "PATH": "/usr/bin:/bin"},
    )
    committed = ROOT / "engine/api/containerd/gen"
    stale: list[str] = []

    def walk(cmp: filecmp.dircmp[str], rel: str) -> None:
        stale.extend(
            f"{rel}{n}" for n in cmp.left_only + cmp.right_only + cmp.diff_files if n != "__pycache__"
        )
        for name, sub in cmp.subdirs.items():
            if name != "__pycache__":
                walk(sub, f"{rel}{name}/")

    walk(filecmp.dircmp(committed, out), "")
    assert not stale, f"run scripts/gen_protos.sh; stale: {stale}"
