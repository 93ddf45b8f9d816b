"""Docker's container ``Config`` and ``HostConfig``: type checks, Docker's refusals, defaults, image merge.

``check_types`` answers a value of the wrong JSON type the way dockerd's JSON decoder does (``json: cannot
unmarshal string into Go struct field ... of type int64``), ``validate_host_config`` gives dockerd's 400
messages for impossible settings (memory below 6 MB, swap below memory, too many CPUs, a cpuset the host
lacks, a bad restart policy, …), ``normalise_host_config`` fills what dockerd fills (NetworkMode ``bridge``,
the log config, the ShmSize, the restart policy), and ``merge_image`` folds the image's config into the
container's as dockerd's ``merge`` does (Env by key, Labels, ExposedPorts, Volumes, Entrypoint/Cmd,
WorkingDir, User, StopSignal, Healthcheck).
"""

from __future__ import annotations

import os
import re
import signal as _signal
from typing import Any

from engine.errors import InvalidArgument
from engine.services.dockerd import health, restart

MIN_MEMORY = 6 * 1024 * 1024
DEFAULT_SHM = 64 * 1024 * 1024
_GO: dict[Any, str] = {str: "string", int: "int64", bool: "bool", list: "array", dict: "object", float: "number"}

# field -> expected Python type ("strs" list of strings, "strmap" dict of strings, "list", "dict")
CONFIG_TYPES: dict[str, Any] = {
    "Hostname": str, "Domainname": str, "User": str, "AttachStdin": bool, "AttachStdout": bool,
    "AttachStderr": bool, "Tty": bool, "OpenStdin": bool, "StdinOnce": bool, "Env": "strs",
    "Cmd": "strslice", "Entrypoint": "strslice", "Image": str, "WorkingDir": str, "Labels": "strmap",
    "StopSignal": str, "StopTimeout": int, "ExposedPorts": dict, "Volumes": dict, "Healthcheck": dict,
    "NetworkDisabled": bool, "Shell": "strs", "OnBuild": "strs", "ArgsEscaped": bool, "MacAddress": str,
}
HOST_CONFIG_TYPES: dict[str, Any] = {
    "Binds": "strs", "ContainerIDFile": str, "LogConfig": dict, "NetworkMode": str, "PortBindings": dict,
    "RestartPolicy": dict, "AutoRemove": bool, "VolumeDriver": str, "VolumesFrom": "strs", "Mounts": list,
    "CapAdd": "strs", "CapDrop": "strs", "CgroupnsMode": str, "Dns": "strs", "DnsOptions": "strs",
    "DnsSearch": "strs", "ExtraHosts": "strs", "GroupAdd": "strs", "IpcMode": str, "Cgroup": str, "Links": "strs",
    "OomScoreAdj": int, "PidMode": str, "Privileged": bool, "PublishAllPorts": bool, "ReadonlyRootfs": bool,
    "SecurityOpt": "strs", "StorageOpt": "strmap", "Tmpfs": "strmap", "UTSMode": str, "UsernsMode": str,
    "ShmSize": int, "Sysctls": "strmap", "Runtime": str, "Isolation": str, "CpuShares": int, "Memory": int,
    "NanoCpus": int, "CgroupParent": str, "BlkioWeight": int, "CpuPeriod": int, "CpuQuota": int,
    "CpuRealtimePeriod": int, "CpuRealtimeRuntime": int, "CpusetCpus": str, "CpusetMems": str, "Devices": list,
    "DeviceCgroupRules": "strs", "DeviceRequests": list, "MemoryReservation": int, "MemorySwap": int,
    "MemorySwappiness": int, "OomKillDisable": bool, "PidsLimit": int, "Ulimits": list, "CpuCount": int,
    "CpuPercent": int, "Init": bool, "ConsoleSize": list, "MaskedPaths": "strs", "ReadonlyPaths": "strs",
    "KernelMemory": int, "KernelMemoryTCP": int, "BlkioWeightDevice": list, "BlkioDeviceReadBps": list,
    "BlkioDeviceWriteBps": list, "BlkioDeviceReadIOps": list, "BlkioDeviceWriteIOps": list, "Annotations": "strmap",
}


def _jtype(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    names: dict[Any, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(v), "value")


def _bad(struct: str, field: str, v: Any, go: str) -> InvalidArgument:
    return InvalidArgument(f"json: cannot unmarshal {_jtype(v)} into Go struct field {struct}.{field} of type {go}")


def check_types(doc: dict[str, Any], types: dict[str, Any], struct: str) -> None:
    for key, want in types.items():
        v = doc.get(key)
        if v is None:
            continue
        if want == "strs":
            if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                raise _bad(struct, key, v, "[]string")
        elif want == "strslice":
            if not (isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))):
                raise _bad(struct, key, v, "strslice.StrSlice")
        elif want == "strmap":
            if not isinstance(v, dict) or not all(isinstance(x, str) for x in v.values()):
                raise _bad(struct, key, v, "map[string]string")
        elif want is int:
            if isinstance(v, bool) or not isinstance(v, int):
                raise _bad(struct, key, v, "int64")
        elif want is bool:
            if not isinstance(v, bool):
                raise _bad(struct, key, v, "bool")
        elif not isinstance(v, want):
            raise _bad(struct, key, v, _GO.get(want, "value") if isinstance(want, type) else "value")


def parse_cpuset(spec: str) -> set[int]:
    out: set[int] = set()
    if spec == "":
        return out
    for part in spec.split(","):
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not m:
            raise ValueError(spec)
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(spec)
        out.update(range(lo, hi + 1))
    return out


def _online(kind: str) -> str:
    path = "/sys/devices/system/cpu/online" if kind == "cpus" else "/sys/devices/system/node/online"
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return "0"


def parse_signal(name: str) -> int:
    """A signal by number or name (``SIGTERM``, ``TERM``, ``15``); Docker's message otherwise."""
    s = name.strip()
    if s.isdigit():
        n = int(s)
        if 0 < n < 65:
            return n
    else:
        up = s.upper()
        up = up if up.startswith("SIG") else "SIG" + up
        sig = getattr(_signal, up, None)
        if isinstance(sig, _signal.Signals):
            return int(sig)
        m = re.fullmatch(r"SIGRTMIN\+(\d+)", up)
        if m:
            return _signal.SIGRTMIN + int(m.group(1))
    raise InvalidArgument(f"Invalid signal: {name}")


_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


def validate_config(cfg: dict[str, Any]) -> None:
    mac = cfg.get("MacAddress") or ""
    if mac and not _MAC.match(mac):
        raise InvalidArgument(f"invalid MAC address: {mac}")
    wd = cfg.get("WorkingDir") or ""
    if wd and not wd.startswith("/"):
        raise InvalidArgument(f"the working directory '{wd}' is invalid, it needs to be an absolute path")
    if cfg.get("StopSignal"):
        parse_signal(cfg["StopSignal"])
    health.validate(cfg.get("Healthcheck"))
    for e in cfg.get("Env") or []:
        if e.partition("=")[0] == "":
            raise InvalidArgument(f"invalid environment variable: {e}")


def validate_host_config(hc: dict[str, Any]) -> None:  # noqa: C901 (one check per Docker refusal)
    pol = restart.parse(hc.get("RestartPolicy"))
    if hc.get("AutoRemove") and pol.restarts:
        raise InvalidArgument("can't create 'AutoRemove' container with restart policy")
    mem, swap = hc.get("Memory") or 0, hc.get("MemorySwap") or 0
    if mem < 0:
        raise InvalidArgument("invalid memory limit: must be a positive number")
    if 0 < mem < MIN_MEMORY:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    if swap > 0 and mem == 0:
        raise InvalidArgument("You should always set the Memory limit when using Memoryswap limit, see usage")
    if mem > 0 and swap > 0 and swap < mem:
        raise InvalidArgument("Minimum memoryswap limit should be larger than memory limit, see usage")
    res = hc.get("MemoryReservation") or 0
    if mem > 0 and res > mem:
        raise InvalidArgument("Minimum memory limit can not be less than memory reservation limit, see usage")
    if 0 < res < MIN_MEMORY:
        raise InvalidArgument("Minimum memory reservation allowed is 6MB")
    sw = hc.get("MemorySwappiness")
    if sw is not None and sw != -1 and not 0 <= sw <= 100:
        raise InvalidArgument(f"Invalid value: {sw}, valid memory swappiness range is 0-100")
    nano = hc.get("NanoCpus") or 0
    if nano and hc.get("CpuPeriod"):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Period cannot both be set")
    if nano and hc.get("CpuQuota"):
        raise InvalidArgument("Conflicting options: Nano CPUs and CPU Quota cannot both be set")
    ncpu = os.cpu_count() or 1
    if nano < 0 or nano > ncpu * 1_000_000_000:
        raise InvalidArgument(f"range of CPUs is from 0.01 to {ncpu}.00, as there are only {ncpu} CPUs available")
    period, quota = hc.get("CpuPeriod") or 0, hc.get("CpuQuota") or 0
    if period and not 1000 <= period <= 1_000_000:
        raise InvalidArgument("CPU cfs period can not be less than 1ms (i.e. 1000) or larger than 1s (i.e. 1000000)")
    if quota > 0 and quota < 1000:
        raise InvalidArgument("CPU cfs quota can not be less than 1ms (i.e. 1000)")
    if (hc.get("CpuShares") or 0) < 0:
        raise InvalidArgument(f"invalid CPU shares ({hc.get('CpuShares')}): value must be a positive integer")
    for key, kind in (("CpusetCpus", "cpus"), ("CpusetMems", "mems")):
        spec = hc.get(key) or ""
        if not spec:
            continue
        try:
            want = parse_cpuset(spec)
        except ValueError:
            raise InvalidArgument(f"Invalid value {spec} for cpuset {kind}") from None
        have = parse_cpuset(_online(kind))
        if not want <= have:
            raise InvalidArgument(f"Requested {'CPUs' if kind == 'cpus' else 'memory nodes'} are not available - "
                                  f"requested {spec}, available: {_online(kind)}")
    oom = hc.get("OomScoreAdj") or 0
    if not -1000 <= oom <= 1000:
        raise InvalidArgument(f"Invalid value {oom}, range for oom score adj is [-1000, 1000]")
    if (hc.get("ShmSize") or 0) < 0:
        raise InvalidArgument("SHM size can not be less than 0")
    for u in hc.get("Ulimits") or []:
        if not isinstance(u, dict) or not isinstance(u.get("Name"), str):
            raise InvalidArgument("invalid ulimit: expected {\"Name\", \"Soft\", \"Hard\"}")
        if u["Name"] not in ULIMITS:
            raise InvalidArgument(f"invalid ulimit type: {u['Name']}")
        if (u.get("Soft") or 0) > (u.get("Hard") or 0):
            raise InvalidArgument(f"ulimit soft limit must be less than or equal to hard limit: "
                                  f"{u.get('Soft')} > {u.get('Hard')}")
    if hc.get("Links"):
        raise InvalidArgument("legacy container links are not supported by engine")
    mode = hc.get("NetworkMode") or ""
    if mode.startswith("container:") and not mode[len("container:"):]:
        raise InvalidArgument("container mode requires a container name or id")
    for key in ("IpcMode", "PidMode", "UTSMode"):
        v = hc.get(key) or ""
        if v not in ("", "host", "private", "shareable") and not v.startswith("container:"):
            raise InvalidArgument(f"invalid {key.replace('Mode', '').upper()} mode: {v}")
    log = hc.get("LogConfig") or {}
    if log and log.get("Type") not in (None, "", "json-file", "local", "none"):
        raise InvalidArgument(f'failed to create logger: logger: no log driver named \'{log.get("Type")}\' is '
                              "registered")
    for opt in (log.get("Config") or {}):
        if opt not in ("max-size", "max-file", "compress", "labels", "env", "env-regex", "tag", "mode",
                       "max-buffer-size"):
            raise InvalidArgument(f"unknown log opt '{opt}' for {log.get('Type') or 'json-file'} log driver")
    if (log.get("Config") or {}).get("max-size"):
        log_max_size(log["Config"]["max-size"])
    mf = (log.get("Config") or {}).get("max-file")
    if mf is not None and (not mf.isdigit() or int(mf) < 1):
        raise InvalidArgument("max-file cannot be less than 1")


ULIMITS = {"core": "RLIMIT_CORE", "cpu": "RLIMIT_CPU", "data": "RLIMIT_DATA", "fsize": "RLIMIT_FSIZE",
           "locks": "RLIMIT_LOCKS", "memlock": "RLIMIT_MEMLOCK", "msgqueue": "RLIMIT_MSGQUEUE",
           "nice": "RLIMIT_NICE", "nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC", "rss": "RLIMIT_RSS",
           "rtprio": "RLIMIT_RTPRIO", "rttime": "RLIMIT_RTTIME", "sigpending": "RLIMIT_SIGPENDING",
           "stack": "RLIMIT_STACK", "as": "RLIMIT_AS"}


def log_max_size(v: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)b?\s*", v.lower())
    if not m:
        raise InvalidArgument(f"invalid size: '{v}'")
    return int(float(m.group(1)) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[m.group(2)])


def normalise_host_config(hc: dict[str, Any], *, log_driver: str, log_opts: dict[str, str],
                          shm_default: int, runtime: str) -> dict[str, Any]:
    out = dict(hc)
    mode = out.get("NetworkMode") or "default"
    out["NetworkMode"] = "bridge" if mode == "default" else mode
    log = dict(out.get("LogConfig") or {})
    if not log.get("Type"):
        log = {"Type": log_driver, "Config": {**log_opts, **(log.get("Config") or {})}}
    log.setdefault("Config", {})
    out["LogConfig"] = log
    out["RestartPolicy"] = {"Name": (out.get("RestartPolicy") or {}).get("Name") or "no",
                            "MaximumRetryCount": (out.get("RestartPolicy") or {}).get("MaximumRetryCount") or 0}
    out["ShmSize"] = out.get("ShmSize") or shm_default
    out.setdefault("IpcMode", "")
    out["IpcMode"] = out["IpcMode"] or "private"
    out["CgroupnsMode"] = out.get("CgroupnsMode") or ("private" if _cgroup2() else "host")
    out["Runtime"] = out.get("Runtime") or runtime
    out.setdefault("ConsoleSize", [0, 0])
    for key in ("Binds", "CapAdd", "CapDrop", "Dns", "DnsOptions", "DnsSearch", "ExtraHosts", "GroupAdd",
                "Links", "VolumesFrom", "Devices", "DeviceCgroupRules", "DeviceRequests", "Ulimits",
                "BlkioWeightDevice", "BlkioDeviceReadBps", "BlkioDeviceWriteBps", "BlkioDeviceReadIOps",
                "BlkioDeviceWriteIOps", "Mounts"):
        out.setdefault(key, None)
    for key in ("Memory", "MemoryReservation", "MemorySwap", "NanoCpus", "CpuShares", "CpuPeriod", "CpuQuota",
                "CpuRealtimePeriod", "CpuRealtimeRuntime", "BlkioWeight", "OomScoreAdj", "CpuCount", "CpuPercent",
                "IOMaximumIOps", "IOMaximumBandwidth", "KernelMemoryTCP"):
        out.setdefault(key, 0)
    for key in ("CpusetCpus", "CpusetMems", "CgroupParent", "PidMode", "UTSMode", "UsernsMode", "Cgroup",
                "VolumeDriver", "ContainerIDFile", "Isolation"):
        out.setdefault(key, "")
    for key in ("AutoRemove", "Privileged", "PublishAllPorts", "ReadonlyRootfs"):
        out[key] = bool(out.get(key))
    out.setdefault("PortBindings", {})
    out.setdefault("OomKillDisable", False)
    out.setdefault("PidsLimit", None)
    out.setdefault("MemorySwappiness", None)
    out.setdefault("SecurityOpt", None)
    return out


def _cgroup2() -> bool:
    return os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def _env_key(e: str) -> str:
    return e.partition("=")[0]


def merge_image(cfg: dict[str, Any], image: dict[str, Any]) -> dict[str, Any]:
    """dockerd's merge of the image's config into the container's (the container's wins)."""
    out = dict(cfg)
    for key in ("Cmd", "Entrypoint"):
        if isinstance(out.get(key), str):
            out[key] = [out[key]]
    if not out.get("User"):
        out["User"] = image.get("User") or ""
    ports = dict(image.get("ExposedPorts") or {})
    ports.update(out.get("ExposedPorts") or {})
    out["ExposedPorts"] = ports or None
    env = list(out.get("Env") or [])
    keys = {_env_key(e) for e in env}
    env += [e for e in image.get("Env") or [] if _env_key(e) not in keys]
    out["Env"] = env
    labels = dict(image.get("Labels") or {})
    labels.update(out.get("Labels") or {})
    out["Labels"] = labels
    entry = out.get("Entrypoint")
    if entry == [""]:
        out["Entrypoint"] = None
        if not out.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
    elif not entry:
        if not out.get("Cmd"):
            out["Cmd"] = image.get("Cmd")
        if entry is None:
            out["Entrypoint"] = image.get("Entrypoint")
    if not out.get("WorkingDir"):
        out["WorkingDir"] = image.get("WorkingDir") or ""
    vols = dict(image.get("Volumes") or {})
    vols.update(out.get("Volumes") or {})
    out["Volumes"] = vols or None
    if not out.get("StopSignal") and image.get("StopSignal"):
        out["StopSignal"] = image["StopSignal"]
    ihc, chc = image.get("Healthcheck"), out.get("Healthcheck")
    if chc is None and ihc:
        out["Healthcheck"] = ihc
    elif chc and ihc:
        merged = dict(chc)
        if not merged.get("Test"):
            merged["Test"] = ihc.get("Test")
        for k in ("Interval", "Timeout", "StartPeriod", "StartInterval", "Retries"):
            if not merged.get(k) and ihc.get(k):
                merged[k] = ihc[k]
        out["Healthcheck"] = merged
    if not out.get("Shell") and image.get("Shell"):
        out["Shell"] = image["Shell"]
    if image.get("OnBuild") and out.get("OnBuild") is None:
        out["OnBuild"] = None
    for key in ("Hostname", "Domainname", "Image", "WorkingDir", "User"):
        out.setdefault(key, "")
    for key in ("AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin", "StdinOnce"):
        out[key] = bool(out.get(key))
    return out


def command(cfg: dict[str, Any]) -> tuple[str, list[str]]:
    """(Path, Args) from the merged Entrypoint and Cmd; Docker's 400 when there is none."""
    argv = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if not argv:
        raise InvalidArgument("no command specified")
    return argv[0], argv[1:]
