"""System endpoints: ``/_ping``, ``/version``, ``/info`` — filled from the real state of this host."""

from __future__ import annotations

import os
import platform
import socket
import time

import engine
from engine.api.docker.http import Request, Response
from engine.api.docker.router import API_VERSION, MIN_API_VERSION
from engine.services import Services

PING_HEADERS = {
    "Api-Version": API_VERSION,
    "Builder-Version": "1",
    "Docker-Experimental": "false",
    "Ostype": "linux",
    "Swarm": "inactive",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def go_arch() -> str:
    return _ARCH.get(platform.machine(), platform.machine())


def os_name() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "Linux"


def cgroup_version() -> str:
    return "2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else "1"


def mem_total() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 0


async def ping(services: Services, req: Request) -> Response:
    body = b"" if req.method == "HEAD" else b"OK"
    return Response(200, body, "text/plain; charset=utf-8", dict(PING_HEADERS))


async def version(services: Services, req: Request) -> Response:
    uname = os.uname()
    details = {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION, "GitCommit": "", "GoVersion":
               f"python{platform.python_version()}", "Os": "linux", "Arch": go_arch(),
               "KernelVersion": uname.release, "Experimental": "false", "BuildTime": ""}
    return Response.json({
        "Platform": {"Name": f"engine {engine.__version__}"},
        "Components": [{"Name": "Engine", "Version": engine.__version__, "Details": details}],
        "Version": engine.__version__,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": details["GoVersion"],
        "Os": "linux",
        "Arch": go_arch(),
        "KernelVersion": uname.release,
        "BuildTime": "",
    })


async def _counts(services: Services) -> dict[str, int]:
    """Docker's container counts (by state) and the number of distinct image IDs in namespace moby."""
    out = {"Containers": 0, "ContainersRunning": 0, "ContainersPaused": 0, "ContainersStopped": 0, "Images": 0}
    docker = getattr(services, "docker", None)
    if docker is not None:
        for c in await docker.list():
            out["Containers"] += 1
            if c.state.status == "paused":
                out["ContainersPaused"] += 1
            elif c.state.running:
                out["ContainersRunning"] += 1
            else:
                out["ContainersStopped"] += 1
    if services.images is not None:
        targets = {img.target.digest for img in await services.images.list("moby")}
        out["Images"] = len(targets)
    return out


async def info(services: Services, req: Request) -> Response:
    cfg = services.config
    uname = os.uname()
    namespaces = await services.namespaces.list()
    counts = await _counts(services)
    info_doc = {
        "ID": services.daemon_uuid,
        **counts,
        "Driver": "overlayfs",
        "DriverStatus": [["Backing Filesystem", "extfs"]],
        "DockerRootDir": cfg.root,
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "none"], "Authorization": None,
                    "Log": ["json-file", "local"]},
        "MemoryLimit": True, "SwapLimit": True, "KernelMemoryTCP": False, "CpuCfsPeriod": True,
        "CpuCfsQuota": True, "CPUShares": True, "CPUSet": True, "PidsLimit": True, "IPv4Forwarding": True,
        "BridgeNfIptables": False, "BridgeNfIp6tables": False, "Debug": cfg.log_level == "debug",
        "NFd": len(os.listdir("/proc/self/fd")), "OomKillDisable": cgroup_version() == "1",
        "NGoroutines": 0, "SystemTime": time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime()),
        "LoggingDriver": "json-file", "CgroupDriver": "cgroupfs", "CgroupVersion": cgroup_version(),
        "NEventsListener": services.journal.subscriber_count,
        "KernelVersion": uname.release, "OperatingSystem": os_name(), "OSVersion": "", "OSType": "linux",
        "Architecture": platform.machine(), "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {"AllowNondistributableArtifactsCIDRs": None, "AllowNondistributableArtifactsHostnames": None,
                           "InsecureRegistryCIDRs": ["127.0.0.0/8", "::1/128"], "IndexConfigs": {
                               "docker.io": {"Name": "docker.io", "Mirrors": [], "Secure": True, "Official": True}},
                           "Mirrors": []},
        "NCPU": os.cpu_count() or 1, "MemTotal": mem_total(), "GenericResources": None,
        "DockerRootDirAvailable": True, "HttpProxy": "", "HttpsProxy": "", "NoProxy": "",
        "Name": socket.gethostname(), "Labels": list(cfg.labels), "ExperimentalBuild": False,
        "ServerVersion": engine.__version__,
        "Runtimes": {"engine": {"path": "engine-runtime"}, "runc": {"path": "runc"}},
        "DefaultRuntime": "engine",
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": False,
                  "Error": "", "RemoteManagers": None},
        "LiveRestoreEnabled": True, "Isolation": "", "InitBinary": "",
        "ContainerdCommit": {"ID": engine.__version__}, "RuncCommit": {"ID": engine.__version__},
        "InitCommit": {"ID": ""},
        "SecurityOptions": ["name=seccomp,profile=builtin"] + (["name=cgroupns"] if cgroup_version() == "2" else []),
        "CDISpecDirs": [],
        "Containerd": {"Address": str(cfg.grpc_socket), "Namespaces": {"Containers": "moby", "Plugins": "plugins.moby"}},
        "Warnings": [],
        # engine's own additions (ignored by Docker clients)
        "EngineJournal": {"Path": str(cfg.db_path), "LastSeq": services.journal.last_seq,
                          "Durability": cfg.journal_durability, "Namespaces": len(namespaces)},
    }
    return Response.json(info_doc)
