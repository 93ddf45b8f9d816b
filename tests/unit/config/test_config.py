"""Daemon settings: flags and daemon.json merge (a key in both is refused), types are checked, and the
Docker-named settings for registries, runtimes, networking and logging validate their values."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.config import key_values, load
from engine.errors import InvalidArgument


def _file(tmp_path: Path, data: object) -> str:
    p = tmp_path / "daemon.json"
    p.write_text(json.dumps(data))
    return str(p)


def test_docker_named_settings_from_file(tmp_path: Path) -> None:
    cfg = load({}, _file(tmp_path, {
        "insecure-registries": ["127.0.0.1:5000"], "runtimes": {"runc": {"path": "/usr/sbin/runc"}},
        "default-runtime": "runc", "bridge": "eng9", "bip": "10.250.0.1/24", "mtu": 1400,
        "log-driver": "local", "log-opts": {"max-size": "10m"}, "dns": ["127.0.0.53"], "network-prefix": "t1",
    }))
    assert cfg.insecure_registries == ["127.0.0.1:5000"] and cfg.default_runtime == "runc"
    assert cfg.runtimes["runc"]["path"] == "/usr/sbin/runc" and cfg.mtu == 1400 and cfg.bridge == "eng9"
    assert cfg.log_driver == "local" and cfg.log_opts == {"max-size": "10m"} and cfg.network_prefix == "t1"


def test_defaults() -> None:
    cfg = load({}, None)
    assert (cfg.default_runtime, cfg.log_driver, cfg.network_prefix, cfg.runtimes) == ("engine", "json-file", "engine", {})


@pytest.mark.parametrize(("data", "match"), [
    ({"log-driver": "syslog"}, "invalid log-driver"),
    ({"runtimes": {"x": {}}}, "runtime 'x'"),
    ({"runtimes": []}, "must be an object"),
    ({"default-runtime": "nope"}, "not a configured runtime"),
    ({"mtu": "1500"}, "must be a number"),
    ({"mtu": 70000}, "invalid mtu"),
    ({"network-prefix": "a-b"}, "invalid network-prefix"),
    ({"insecure-registries": "x"}, "must be a list"),
])
def test_bad_values_refused(tmp_path: Path, data: dict, match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        load({}, _file(tmp_path, data))


def test_flag_and_file_conflict(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="both as a flag and in the configuration file"):
        load({"bridge": "a"}, _file(tmp_path, {"bridge": "b"}))


def test_key_values() -> None:
    assert key_values(["a=b", "c=d=e"], "--log-opt") == {"a": "b", "c": "d=e"}
    with pytest.raises(InvalidArgument, match="want KEY=VALUE"):
        key_values(["nokey"], "--log-opt")
