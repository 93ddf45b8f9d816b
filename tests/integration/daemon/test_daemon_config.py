"""`engine daemon` settings: daemon.json against flags (dockerd's rules), bad files and values refused with one
clear line before anything is created, and the TCP listener that needs TLS or an explicit --no-tls."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from daemon_util import free_port, port_open, run_daemon

pytestmark = pytest.mark.root


def args_for(tmp_path) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--root", str(tmp_path / "root"), "--exec-root", str(tmp_path / "run")]


def refused(proc, tmp_path, *needles: str) -> None:  # type: ignore[no-untyped-def]
    assert proc.returncode == 1, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1, f"want one line, got:\n{err}"
    assert err.startswith("engine daemon: "), err
    for n in needles:
        assert n in err, (n, err)
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("content,flags,needles", [
    ({"log-level": "debug"}, ["--log-level", "info"],
     ["the following directives are specified both as a flag and in the configuration file",
      "log-level: (from flag: info, from file: debug)"]),
    ({"group": "x", "debug": True}, ["--group", "y", "--debug"],
     ["specified both as a flag and in the configuration file", "group: (from flag: y, from file: x)", "debug:"]),
    ({"journal-durability": "full"}, ["--journal-durability", "off"],
     ["specified both as a flag and in the configuration file", "journal-durability"]),
])
def test_a_setting_in_both_the_file_and_a_flag_is_refused(tmp_path, content, flags, needles) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps(content))
    proc = run_daemon(*args_for(tmp_path), "--config", str(cfg), *flags)
    refused(proc, tmp_path, *needles)
    assert not (tmp_path / "root").exists() and not (tmp_path / "run").exists()  # nothing was created


def test_file_data_root_and_flag_root_conflict(tmp_path) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text(json.dumps({"data-root": str(tmp_path / "other")}))
    proc = run_daemon(*args_for(tmp_path), "--config", str(cfg))
    refused(proc, tmp_path, "specified both as a flag and in the configuration file", "data-root")


@pytest.mark.parametrize("text,needles", [
    ('{"foo": 1}', ["foo"]),
    ('{"labels": [], "no-such-thing": true, "other": 2}', ["no-such-thing", "other"]),
    ("{not json", ["invalid JSON", "daemon.json"]),
    ('{"labels": ["a=b"],}', ["invalid JSON"]),
    ("[1, 2]", ["JSON object"]),
    ('{"labels": "a=b"}', ["labels must be a list"]),
    ('{"debug": "yes"}', ["debug must be true or false"]),
    ('{"log-level": "chatty"}', ["invalid log level", "chatty"]),
    ('{"journal-durability": "sometimes"}', ["journal-durability", "sometimes"]),
    ('{"exec-root": "relative/dir"}', ["exec-root must be an absolute path"]),
])
def test_bad_config_file_is_a_clear_error(tmp_path, text: str, needles: list[str]) -> None:
    cfg = tmp_path / "daemon.json"
    cfg.write_text(text)
    # data-root/exec-root come from the file here, so do not pass them as flags for the exec-root case
    extra = [] if "exec-root" in text else args_for(tmp_path)
    proc = run_daemon(*extra, "--config", str(cfg))
    refused(proc, tmp_path, *needles)
    assert not (tmp_path / "root").exists()


def test_missing_config_file(tmp_path) -> None:
    proc = run_daemon(*args_for(tmp_path), "--config", str(tmp_path / "nope.json"))
    refused(proc, tmp_path, "unable to read config file", "nope.json")


def test_settings_from_the_file_are_used(daemon_factory) -> None:
    d = daemon_factory(start=False)
    d.base.mkdir(parents=True, exist_ok=True)
    cfg = d.base / "daemon.json"
    cfg.write_text(json.dumps({"labels": ["from=file"], "journal-durability": "full", "debug": True}))
    d.extra_args = ["--config", str(cfg)]
    # the harness passes --log-level, and "debug" is a different key: no conflict
    d.start()
    info = d.request("GET", "/info")[1]
    assert info["Labels"] == ["from=file"]
    assert info["EngineJournal"]["Durability"] == "full"
    assert info["Debug"] is True


@pytest.mark.parametrize("flags,needles", [
    (["--log-level", "loud"], ["invalid log level"]),
    (["--journal-durability", "maybe"], ["journal-durability"]),
    (["--tlsverify"], ["--tlsverify needs --tlscacert, --tlscert and --tlskey"]),
    (["--tls", "--tlscert", "/nonexistent.pem"], ["--tls needs --tlscert and --tlskey"]),
    (["-H", "http://127.0.0.1:2375"], ["invalid host", "http://127.0.0.1:2375"]),
    (["-H", "tcp://127.0.0.1"], ["invalid tcp address"]),
])
def test_bad_flags_are_refused(tmp_path, flags: list[str], needles: list[str]) -> None:
    proc = run_daemon(*args_for(tmp_path), *flags)
    refused(proc, tmp_path, *needles)
    assert not os.path.exists(tmp_path / "run" / "docker.sock")


def test_tcp_without_tls_is_refused(tmp_path) -> None:
    port = free_port()
    host = f"tcp://127.0.0.1:{port}"
    proc = run_daemon(*args_for(tmp_path), "-H", host)
    refused(proc, tmp_path, f"refusing to serve {host} without TLS", "--no-tls")
    assert not port_open(port)


def test_tcp_with_no_tls_serves_with_a_loud_warning(daemon_factory) -> None:
    port = free_port()
    d = daemon_factory(start=False)
    d.extra_args = ["-H", d.docker_host, "-H", f"tcp://127.0.0.1:{port}", "--no-tls"]
    d.start()
    warning = [line for line in d.log().splitlines() if "WARNING" in line and f"127.0.0.1:{port}" in line]
    assert warning and "WITHOUT TLS" in warning[0], d.log()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1.50/version", timeout=10) as resp:
        assert json.loads(resp.read())["ApiVersion"] == "1.50"
    # the docker CLI works over it too, and the unix socket still does
    out = d.docker("-H", f"tcp://127.0.0.1:{port}", "version", "--format", "{{.Server.APIVersion}}").stdout
    assert out.strip() == "1.50"
    assert d.request("GET", "/_ping")[0] == 200


def test_hosts_from_the_file(daemon_factory, tmp_path) -> None:
    port = free_port()
    d = daemon_factory(start=False)
    d.base.mkdir(parents=True, exist_ok=True)
    cfg = d.base / "daemon.json"
    cfg.write_text(json.dumps({"hosts": [d.docker_host, f"tcp://127.0.0.1:{port}"], "tls": False}))
    d.extra_args = ["--config", str(cfg)]
    d.start()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_ping", timeout=10) as resp:
        assert resp.read() == b"OK"
    assert "WITHOUT TLS" in d.log()
    assert d.stop() == 0
    assert not os.path.exists(d.docker_sock) and not port_open(port)
    # hosts in the file and -H on the command line: dockerd's conflict
    proc = run_daemon(*args_for(tmp_path), "--config", str(cfg), "-H", "unix:///tmp/other.sock")
    refused(proc, tmp_path, "specified both as a flag and in the configuration file", "hosts:")
