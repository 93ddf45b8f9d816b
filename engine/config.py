"""Daemon settings: command-line flags merged with a daemon.json, and every path derived from two roots.

As dockerd does, a setting given both as a flag and in the file is an error rather than a silent
precedence rule. Paths (sockets, database, shims, bundles) are derived from ``root`` and ``exec_root``
only, so a test daemon is isolated by choosing those two.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine import store
from engine.errors import InvalidArgument

DEFAULT_ROOT = "/var/lib/engine"
DEFAULT_EXEC_ROOT = "/run/engine"
LOG_LEVELS = ("debug", "info", "warn", "warning", "error", "fatal")

# daemon.json key -> Config attribute (Docker's names where Docker has the setting)
FILE_KEYS = {
    "data-root": "root",
    "exec-root": "exec_root",
    "hosts": "hosts",
    "containerd": "containerd_socket",
    "log-level": "log_level",
    "debug": "debug",
    "tls": "tls",
    "tlsverify": "tlsverify",
    "tlscacert": "tlscacert",
    "tlscert": "tlscert",
    "tlskey": "tlskey",
    "group": "group",
    "journal-durability": "journal_durability",
    "cgroup-parent": "cgroup_parent",
    "labels": "labels",
    "insecure-registries": "insecure_registries",
    "registry-mirrors": "registry_mirrors",
    "runtimes": "runtimes",
    "default-runtime": "default_runtime",
    "bridge": "bridge",
    "bip": "bip",
    "fixed-cidr": "fixed_cidr",
    "mtu": "mtu",
    "default-address-pools": "default_address_pools",
    "userland-proxy": "userland_proxy",
    "dns": "dns",
    "dns-search": "dns_search",
    "dns-opts": "dns_opts",
    "log-driver": "log_driver",
    "log-opts": "log_opts",
    "default-shm-size": "default_shm_size",
    "init": "init",
    "init-path": "init_path",
    "network-prefix": "network_prefix",
    "offline": "offline",
}
LOG_DRIVERS = ("json-file", "local", "none")


@dataclass
class Config:
    root: str = DEFAULT_ROOT
    exec_root: str = DEFAULT_EXEC_ROOT
    hosts: list[str] = field(default_factory=list)
    containerd_socket: str = ""
    log_level: str = "info"
    debug: bool = False
    tls: bool | None = None
    tlsverify: bool = False
    tlscacert: str = ""
    tlscert: str = ""
    tlskey: str = ""
    group: str = "engine"
    journal_durability: str = "normal"
    cgroup_parent: str = "engine"
    labels: list[str] = field(default_factory=list)
    # registries: plain HTTP (and unverified TLS) for these hosts or CIDRs, as dockerd's --insecure-registry
    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)
    # OCI runtimes by name, as dockerd's "runtimes": {"name": {"path": "/usr/bin/crun", "runtimeArgs": []}};
    # "engine" (the in-process runtime) is built in and the default
    runtimes: dict[str, Any] = field(default_factory=dict)
    default_runtime: str = "engine"
    # networking (engine/network): the default bridge's name and address, as dockerd's -b/--bip
    bridge: str = ""
    bip: str = ""
    fixed_cidr: str = ""
    mtu: int = 0
    default_address_pools: list[Any] = field(default_factory=list)
    userland_proxy: bool = True
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_opts: list[str] = field(default_factory=list)
    # prefix of every host-side network object (nft tables, veth names) so test daemons never collide
    network_prefix: str = "engine"
    # containers' defaults
    log_driver: str = "json-file"
    log_opts: dict[str, str] = field(default_factory=dict)
    default_shm_size: str = "64m"
    init: bool = False
    init_path: str = ""
    # air-gapped: never contact a registry that is not on this host (no DNS lookup of a remote name either)
    offline: bool = False
    config_file: str = ""

    # ---- derived paths ------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return Path(self.root) / "engine.db"

    @property
    def lock_path(self) -> Path:
        return Path(self.root) / "engine.lock"

    @property
    def docker_socket(self) -> Path:
        return Path(self.exec_root) / "docker.sock"

    @property
    def grpc_socket(self) -> Path:
        return Path(self.containerd_socket or Path(self.exec_root) / "containerd.sock")

    @property
    def docker_hosts(self) -> list[str]:
        return self.hosts or [f"unix://{self.docker_socket}"]

    def validate(self) -> Config:
        if self.log_level not in LOG_LEVELS:
            raise InvalidArgument(f"invalid log level {self.log_level!r}: use one of {', '.join(LOG_LEVELS)}")
        if self.journal_durability not in store.SYNC_MODES:
            raise InvalidArgument(
                f"invalid journal-durability {self.journal_durability!r}: use one of {', '.join(store.SYNC_MODES)}"
            )
        for attr in ("root", "exec_root"):
            if not Path(getattr(self, attr)).is_absolute():
                raise InvalidArgument(f"{attr.replace('_', '-')} must be an absolute path: {getattr(self, attr)!r}")
        if self.tlsverify and not (self.tlscacert and self.tlscert and self.tlskey):
            raise InvalidArgument("--tlsverify needs --tlscacert, --tlscert and --tlskey")
        if self.tls and not (self.tlscert and self.tlskey):
            raise InvalidArgument("--tls needs --tlscert and --tlskey")
        if self.log_driver not in LOG_DRIVERS:
            raise InvalidArgument(f"invalid log-driver {self.log_driver!r}: use one of {', '.join(LOG_DRIVERS)}")
        for name, rt in self.runtimes.items():
            if not isinstance(rt, dict) or not isinstance(rt.get("path"), str) or not rt["path"]:
                raise InvalidArgument(f"runtime {name!r}: want {{\"path\": \"/path/to/runtime\"}}")
        if self.default_runtime != "engine" and self.default_runtime not in self.runtimes:
            raise InvalidArgument(f"default-runtime {self.default_runtime!r} is not a configured runtime")
        if self.mtu < 0 or self.mtu > 65535:
            raise InvalidArgument(f"invalid mtu {self.mtu}")
        if not self.network_prefix.isalnum() or len(self.network_prefix) > 8:
            raise InvalidArgument(f"invalid network-prefix {self.network_prefix!r}: up to 8 letters or digits")
        for host in self.docker_hosts:
            validate_host(host, tls_decided=self.tls is not None or self.tlsverify)
        return self


def validate_host(host: str, *, tls_decided: bool) -> None:
    """unix://ABSOLUTE_PATH, tcp://HOST:PORT (only with a TLS decision made explicitly), or fd://[N]."""
    u = urlsplit(host)
    if u.scheme == "unix":
        if not u.path.startswith("/"):
            raise InvalidArgument(f"invalid host {host!r}: unix:// needs an absolute path")
    elif u.scheme == "tcp":
        try:
            port = u.port
        except ValueError:
            port = None
        if not u.hostname or not port:
            raise InvalidArgument(f"invalid tcp address {host!r}: want tcp://HOST:PORT")
        if not tls_decided:
            raise InvalidArgument(
                f"refusing to serve {host} without TLS: pass --tlsverify with --tlscacert/--tlscert/--tlskey, "
                "or --no-tls to serve the API unauthenticated on the network"
            )
    elif u.scheme == "fd":
        name = u.netloc or u.path.strip("/")
        if name and not name.isdigit():
            raise InvalidArgument(f"invalid host {host!r}: fd:// takes a file descriptor number or nothing")
    else:
        raise InvalidArgument(f"invalid host {host!r}: use unix://PATH, tcp://HOST:PORT or fd://")


def key_values(items: list[str], what: str) -> dict[str, str]:
    """``["a=b", "c=d"]`` (repeated ``--log-opt``/``--add-runtime`` flags) as a dict; InvalidArgument otherwise."""
    out: dict[str, str] = {}
    for item in items:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise InvalidArgument(f"invalid {what} {item!r}: want KEY=VALUE")
        out[k] = v
    return out


def load(flags: dict[str, Any], config_file: str | None) -> Config:
    """Build the Config from flags that were given (not defaults) and an optional daemon.json."""
    cfg = Config()
    from_file: dict[str, Any] = {}
    if config_file:
        try:
            raw = Path(config_file).read_text()
        except OSError as err:
            raise InvalidArgument(f"unable to read config file {config_file}: {err.strerror}") from err
        try:
            data = json.loads(raw) if raw.strip() else {}
        except json.JSONDecodeError as err:
            raise InvalidArgument(f"invalid JSON in config file {config_file}: {err}") from err
        if not isinstance(data, dict):
            raise InvalidArgument(f"config file {config_file} must hold a JSON object")
        unknown = sorted(set(data) - set(FILE_KEYS))
        if unknown:
            raise InvalidArgument(f"unknown keys in config file {config_file}: {', '.join(unknown)}")
        from_file = {FILE_KEYS[k]: v for k, v in data.items()}
        cfg.config_file = config_file
    both = sorted(k for k in from_file if k in flags)
    if both:
        names = {v: k for k, v in FILE_KEYS.items()}
        listed = ", ".join(f"{names[k]}: (from flag: {flags[k]}, from file: {from_file[k]})" for k in both)
        raise InvalidArgument(f"the following directives are specified both as a flag and in the configuration file: {listed}")
    known = {f.name: f.type for f in fields(Config)}
    for key, value in {**from_file, **flags}.items():
        if key not in known:
            raise InvalidArgument(f"unknown setting {key}")
        default = getattr(cfg, key)
        if isinstance(default, list) and not isinstance(value, list):
            raise InvalidArgument(f"{key} must be a list")
        if isinstance(default, bool) and not isinstance(value, bool) and value is not None:
            raise InvalidArgument(f"{key} must be true or false")
        if isinstance(default, str) and not isinstance(value, str):
            raise InvalidArgument(f"{key} must be a string")
        if isinstance(default, dict) and not isinstance(value, dict):
            raise InvalidArgument(f"{key} must be an object")
        if isinstance(default, int) and not isinstance(default, bool) and (
                not isinstance(value, int) or isinstance(value, bool)):
            raise InvalidArgument(f"{key} must be a number")
        setattr(cfg, key, value)
    if cfg.debug:
        cfg.log_level = "debug"
    return cfg.validate()
