"""Container lifecycle with the real docker CLI (28.2.2) against engine: create, start, ps (and its
filters), inspect templates, stop -t, kill -s, restart, pause/unpause, wait, rename, rm -f, container
prune, update; run -d; what the kernel really gives the container (cgroup limits, capabilities,
hostname, /etc/hosts, lo up in its own network namespace); restart policies and --rm; Docker events; and
the bad-input sweep: Docker's status and message, and nothing left behind (no row, snapshot or directory).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.docker.dockerapi_util import wait_for
from tests.harness import EngineDaemon
from tests.support.images import import_busybox

DEFAULT_CAPS = 0xA80425FB  # Docker's 14 default capabilities


def dk(d: EngineDaemon, *args: str, ok: bool = True) -> str:
    r = d.docker(*args, check=False)
    if ok:
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.returncode} {r.stdout} {r.stderr}"
        return r.stdout.strip()
    assert r.returncode != 0, f"docker {' '.join(args)} should have failed: {r.stdout}"
    return r.stderr.strip()


def run_logs(d: EngineDaemon, *args: str) -> tuple[int, str]:
    """`docker run` detached, then its exit code and log: the output read from the json-file log, so the
    check does not depend on the attach stream (tested by test_docker_streams)."""
    cid = dk(d, "run", "-d", *args)
    code = int(dk(d, "wait", cid))
    out = d.docker("logs", cid).stdout
    dk(d, "rm", cid)
    return code, out


def fmt(d: EngineDaemon, template: str, name: str) -> str:
    return dk(d, "inspect", "-f", template, name)


def cgroup_dir(pid: int, controller: str) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if controller in ctrls.split(","):
                base = f"/sys/fs/cgroup/{controller}"
                return base + path if os.path.isdir(base) else f"/sys/fs/cgroup{path}"
    raise AssertionError(f"no {controller} cgroup for {pid}")


def status_field(pid: int, key: str) -> str:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split(":", 1)[1].strip()
    raise AssertionError(key)


def test_create_start_ps_inspect_stop(d: EngineDaemon) -> None:
    cid = dk(d, "create", "--name", "life", "--label", "app=web", "busybox", "sleep", "100")
    assert len(cid) == 64
    assert "life" in dk(d, "ps", "-a", "--filter", "status=created", "--format", "{{.Names}}").split()
    assert "life" not in dk(d, "ps", "--format", "{{.Names}}").split()
    assert fmt(d, "{{.State.Status}} {{.Config.Cmd}} {{.Name}} {{.Config.Image}}", "life") == \
        "created [sleep 100] /life busybox"
    dk(d, "start", "life")
    assert dk(d, "ps", "--filter", "name=life", "--format", "{{.ID}} {{.Status}}").startswith(cid[:12] + " Up")
    doc = json.loads(dk(d, "inspect", cid[:8]))[0]
    assert doc["Id"] == cid and doc["State"]["Running"] and doc["State"]["Pid"] > 0
    assert doc["Path"] == "sleep" and doc["Args"] == ["100"] and doc["Image"].startswith("sha256:")
    assert doc["HostConfig"]["NetworkMode"] == "bridge" and doc["Config"]["Labels"] == {"app": "web"}
    assert doc["LogPath"].endswith(f"/containers/{cid}/{cid}-json.log") and os.path.exists(doc["LogPath"])
    t0 = time.monotonic()
    dk(d, "stop", "-t", "1", "life")  # sleep as pid 1 ignores SIGTERM: SIGKILL after 1 s
    assert 0.9 < time.monotonic() - t0 < 10
    assert fmt(d, "{{.State.Status}} {{.State.ExitCode}} {{.State.Running}}", "life") == "exited 137 false"
    assert fmt(d, "{{.State.FinishedAt}}", "life") != "0001-01-01T00:00:00Z"
    assert dk(d, "ps", "-a", "--filter", "exited=137", "--format", "{{.Names}}") == "life"
    # dockerd removes the exited task: containerd's view in moby has no task left
    wait_for(lambda: cid not in d.ctr("-n", "moby", "tasks", "ls", check=False).stdout, what="task deleted")
    dk(d, "rm", "life")
    assert dk(d, "ps", "-a", "-q", "--filter", f"id={cid}") == ""
    assert not (d.root / "containers" / cid).exists()
    assert cid not in d.ctr("-n", "moby", "snapshots", "ls").stdout
    assert cid not in d.ctr("-n", "moby", "containers", "ls").stdout


def test_kill_signal_wait_restart_pause(d: EngineDaemon) -> None:
    dk(d, "run", "-d", "--name", "sig", "busybox", "sh", "-c",
       "trap 'exit 5' USR1; while true; do sleep 0.05; done")
    pid1 = int(fmt(d, "{{.State.Pid}}", "sig"))
    dk(d, "pause", "sig")
    assert fmt(d, "{{.State.Status}} {{.State.Paused}}", "sig") == "paused true"
    with open(os.path.join(cgroup_dir(pid1, "freezer"), "freezer.state")) as f:
        assert f.read().strip() == "FROZEN"
    assert "Paused" in dk(d, "ps", "--filter", "status=paused", "--format", "{{.Status}}")
    dk(d, "unpause", "sig")
    assert fmt(d, "{{.State.Status}}", "sig") == "running"
    dk(d, "kill", "-s", "USR1", "sig")
    assert dk(d, "wait", "sig") == "5"
    started = fmt(d, "{{.State.StartedAt}}", "sig")
    dk(d, "restart", "-t", "1", "sig")
    assert fmt(d, "{{.State.Status}}", "sig") == "running"
    assert fmt(d, "{{.State.StartedAt}}", "sig") != started
    assert int(fmt(d, "{{.State.Pid}}", "sig")) != pid1
    dk(d, "kill", "sig")
    assert dk(d, "wait", "sig") == "137"
    err = dk(d, "kill", "sig", ok=False)
    assert "is not running" in err
    dk(d, "rename", "sig", "sig2")
    assert fmt(d, "{{.Name}}", "sig2") == "/sig2"
    assert "No such container: sig" in dk(d, "container", "inspect", "sig", ok=False)
    dk(d, "rm", "sig2")


def test_run_d_really_gets_its_settings(d: EngineDaemon, tmp_path: Path) -> None:
    src = tmp_path / "bind-src-new"  # -v creates a missing source, as Docker does
    cid = dk(d, "run", "-d", "--name", "lim", "--memory", "64m", "--cpus", "0.5", "--pids-limit", "50",
             "--cpu-shares", "512", "--hostname", "box1", "--add-host", "db:10.1.2.3", "--ulimit", "nofile=100:200",
             "-v", f"{src}:/data", "--tmpfs", "/run:size=1m", "-w", "/work", "busybox", "sleep", "100")
    pid = int(fmt(d, "{{.State.Pid}}", "lim"))
    mem = cgroup_dir(pid, "memory")
    assert cid in mem and d.cgroup_parent in mem
    assert Path(mem, "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert Path(cgroup_dir(pid, "cpu"), "cpu.cfs_quota_us").read_text().strip() == "50000"
    assert Path(cgroup_dir(pid, "cpu"), "cpu.shares").read_text().strip() == "512"
    assert Path(cgroup_dir(pid, "pids"), "pids.max").read_text().strip() == "50"
    assert int(status_field(pid, "CapEff"), 16) == DEFAULT_CAPS
    assert int(status_field(pid, "CapBnd"), 16) == DEFAULT_CAPS
    assert status_field(pid, "NoNewPrivs") == "0" and status_field(pid, "Seccomp") == "2"
    root = f"/proc/{pid}/root"
    assert Path(root, "etc/hostname").read_text() == "box1\n"
    hosts = Path(root, "etc/hosts").read_text()
    assert "127.0.0.1\tlocalhost" in hosts and "10.1.2.3\tdb" in hosts
    assert "nameserver" in Path(root, "etc/resolv.conf").read_text()
    assert src.is_dir() and Path(root, "work").is_dir() and os.readlink(f"/proc/{pid}/cwd").endswith("/work")
    with open(f"/proc/{pid}/limits") as f:
        assert any(line.startswith("Max open files") and line.split()[3:5] == ["100", "200"] for line in f)
    with open(f"/proc/{pid}/mountinfo") as f:
        mounts = f.read()
    assert " /run " in mounts and " /data " in mounts and " /dev/shm " in mounts
    assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
    assert os.readlink(f"/proc/{pid}/ns/uts") != os.readlink("/proc/self/ns/uts")
    # the loopback of its own network namespace is up (dockerd's none/bridge without a network yet)
    flags = int(Path(f"/proc/{pid}/root/sys/class/net/lo/flags").read_text(), 16) if \
        Path(f"/proc/{pid}/root/sys/class/net/lo/flags").exists() else None
    assert flags is None or flags & 1
    dk(d, "update", "--memory", "128m", "--memory-swap", "256m", "lim")
    assert Path(mem, "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
    assert fmt(d, "{{.HostConfig.Memory}}", "lim") == str(128 << 20)
    dk(d, "rm", "-f", "lim")
    assert not Path(mem).exists() or not any(Path(mem).glob("cgroup.procs")) or \
        Path(mem, "cgroup.procs").read_text() == ""


def test_capabilities_and_privileged(d: EngineDaemon) -> None:
    dk(d, "run", "-d", "--name", "caps", "--cap-add", "NET_ADMIN", "--cap-drop", "chown", "--security-opt",
       "no-new-privileges", "busybox", "sleep", "100")
    pid = int(fmt(d, "{{.State.Pid}}", "caps"))
    eff = int(status_field(pid, "CapEff"), 16)
    assert eff & (1 << 12) and not eff & (1 << 0)  # CAP_NET_ADMIN in, CAP_CHOWN out
    assert status_field(pid, "NoNewPrivs") == "1"
    dk(d, "run", "-d", "--name", "priv", "--privileged", "busybox", "sleep", "100")
    ppid = int(fmt(d, "{{.State.Pid}}", "priv"))
    assert status_field(ppid, "Seccomp") == "0"
    assert int(status_field(ppid, "CapEff"), 16) == int(Path("/proc/self/status").read_text().split("CapBnd:")[1]
                                                        .split()[0], 16)
    dk(d, "rm", "-f", "caps", "priv")


def test_network_modes(d: EngineDaemon) -> None:
    dk(d, "run", "-d", "--name", "hostnet", "--network", "host", "busybox", "sleep", "100")
    pid = int(fmt(d, "{{.State.Pid}}", "hostnet"))
    assert os.readlink(f"/proc/{pid}/ns/net") == os.readlink("/proc/self/ns/net")
    assert fmt(d, "{{.HostConfig.NetworkMode}}", "hostnet") == "host"
    dk(d, "run", "-d", "--name", "nonet", "--network", "none", "busybox", "sleep", "100")
    pid2 = int(fmt(d, "{{.State.Pid}}", "nonet"))
    assert os.readlink(f"/proc/{pid2}/ns/net") != os.readlink("/proc/self/ns/net")
    assert "none" in fmt(d, "{{json .NetworkSettings.Networks}}", "nonet")
    dk(d, "rm", "-f", "hostnet", "nonet")
    dk(d, "run", "-d", "--name", "hostns", "--uts", "host", "--pid", "host", "--ipc", "host", "busybox", "sleep", "100")
    pid3 = int(fmt(d, "{{.State.Pid}}", "hostns"))
    for ns in ("uts", "pid", "ipc"):  # the host's hostname, processes and IPC
        assert os.readlink(f"/proc/{pid3}/ns/{ns}") == os.readlink(f"/proc/self/ns/{ns}"), ns
    assert os.readlink(f"/proc/{pid3}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    dk(d, "rm", "-f", "hostns")


def test_wait_run_exit_codes_and_rm(d: EngineDaemon) -> None:
    cid = dk(d, "run", "-d", "busybox", "sh", "-c", "sleep 0.3; exit 3")
    assert dk(d, "wait", cid) == "3"
    assert fmt(d, "{{.State.ExitCode}}", cid) == "3"
    # --rm: gone after its exit
    rid = dk(d, "run", "-d", "--rm", "busybox", "true")
    wait_for(lambda: d.docker("inspect", rid, check=False).returncode != 0, what="auto-removed")
    dk(d, "rm", cid)


def test_restart_policy(d: EngineDaemon) -> None:
    since = str(int(time.time()) - 1)
    cid = dk(d, "run", "-d", "--name", "flaky", "--restart", "on-failure:3", "busybox", "sh", "-c", "exit 1")
    wait_for(lambda: fmt(d, "{{.RestartCount}} {{.State.Status}}", "flaky") == "3 exited", timeout=20,
             what="three restarts then exited")
    time.sleep(0.5)
    assert fmt(d, "{{.RestartCount}} {{.State.Status}}", "flaky") == "3 exited"
    actions = d.docker("events", "--since", since, "--until", str(int(time.time()) + 1), "--filter",
                       f"container={cid}", "--format", "{{.Action}}").stdout.split()
    assert actions.count("start") == 4 and actions.count("die") == 4, actions
    dk(d, "update", "--restart", "no", "flaky")
    assert fmt(d, "{{.HostConfig.RestartPolicy.Name}}", "flaky") == "no"
    dk(d, "rm", "flaky")


def test_ps_filters(d: EngineDaemon) -> None:
    a = dk(d, "create", "--name", "fa", "--label", "tier=a", "busybox", "true")
    b = dk(d, "create", "--name", "fb", "--label", "tier=b", "busybox", "true")
    names = lambda *f: sorted(dk(d, "ps", "-a", *f, "--format", "{{.Names}}").split())  # noqa: E731
    assert names("--filter", "label=tier=a") == ["fa"]
    assert names("--filter", "label=tier") == ["fa", "fb"]
    assert names("--filter", "name=f[ab]") == ["fa", "fb"]
    assert names("--filter", f"id={b[:10]}") == ["fb"]
    assert "fb" in names("--filter", "since=fa") and "fa" not in names("--filter", "since=fa")
    assert "fa" in names("--filter", "before=fb") and "fb" not in names("--filter", "before=fb")
    assert {"fa", "fb"} <= set(names("--filter", "ancestor=busybox"))
    assert names("--filter", "ancestor=nosuchimage") == []
    assert {"fa", "fb"} <= set(names("--filter", "status=created"))
    assert "invalid filter 'status=bogus'" in dk(d, "ps", "--filter", "status=bogus", ok=False)
    assert dk(d, "ps", "-a", "-n", "1", "--format", "{{.Names}}") == "fb"
    assert dk(d, "ps", "-a", "-q", "--no-trunc", "--filter", "name=^fa$") == a
    out = dk(d, "container", "prune", "-f", "--filter", "label=tier=a")
    assert a in out and b not in out
    dk(d, "rm", "fb")


def test_events_and_info(d: EngineDaemon) -> None:
    since = str(time.time() - 1)
    cid = dk(d, "run", "-d", "--name", "ev", "--label", "evl=1", "busybox", "sh", "-c", "exit 4")
    dk(d, "wait", "ev")
    dk(d, "rm", "ev")
    out = dk(d, "events", "--since", since, "--until", str(time.time() + 0.5), "--filter", f"container={cid}",
             "--format", "{{json .}}")
    evs = [json.loads(line) for line in out.splitlines()]
    actions = [e["Action"] for e in evs]
    assert actions[:3] == ["create", "start", "die"] and actions[-1] == "destroy", actions
    die = evs[actions.index("die")]
    assert die["Actor"]["Attributes"]["exitCode"] == "4"
    assert die["Actor"]["Attributes"]["name"] == "ev" and die["Actor"]["Attributes"]["image"] == "busybox"
    assert die["Actor"]["Attributes"]["evl"] == "1" and die["from"] == "busybox"
    since = str(time.time() - 1)
    dk(d, "tag", "busybox", "evtag:1")
    dk(d, "rmi", "evtag:1")
    out = dk(d, "events", "--since", since, "--until", str(time.time() + 0.3), "--filter", "type=image",
             "--filter", "image=evtag:1", "--format", "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.name}}")
    image_id = fmt(d, "{{.Id}}", "busybox")
    assert out.splitlines() == [f"tag {image_id} evtag:1", f"untag {image_id} evtag:1"]
    dk(d, "run", "-d", "--name", "inf", "busybox", "sleep", "100")
    info = json.loads(dk(d, "info", "--format", "{{json .}}"))
    assert info["ContainersRunning"] >= 1 and info["Containers"] >= info["ContainersRunning"]
    assert info["Images"] >= 1
    dk(d, "rm", "-f", "inf")


def _footprint(d: EngineDaemon) -> tuple[str, str, list[str]]:
    return (dk(d, "ps", "-a", "-q", "--no-trunc"), d.ctr("-n", "moby", "snapshots", "ls").stdout,
            sorted(os.listdir(d.root / "containers")) if (d.root / "containers").exists() else [])


@pytest.mark.parametrize(("args", "message"), [
    (["--memory", "1m"], "Minimum memory limit allowed is 6MB"),
    (["--memory-swap", "100m", "--memory", "200m"], "Minimum memoryswap limit should be larger than memory limit"),
    (["--restart", "bogus"], "invalid restart policy"),
    (["--cpus", "64"], "range of CPUs is from 0.01 to"),
    (["--cpuset-cpus", "63"], "Requested CPUs are not available"),
    (["--mount", "type=bind,src=/nonexistent-h3,dst=/x"],
     'invalid mount config for type "bind": bind source path does not exist: /nonexistent-h3'),
    (["--cap-add", "NOPE"], "unknown capability"),
    (["--device", "/dev/nonexistent-h3"], "error gathering device information"),
    (["--name", "bad/name"], "Invalid container name (bad/name)"),
    (["--workdir", "rel"], "invalid"),
    (["--log-driver", "syslog"], "no log driver named 'syslog'"),
    (["--ulimit", "nofile=200:100"], "ulimit"),
])
def test_bad_create_leaves_nothing(d: EngineDaemon, args: list[str], message: str) -> None:
    before = _footprint(d)
    err = dk(d, "create", *args, "busybox", "true", ok=False)
    assert message in err, err
    assert _footprint(d) == before


def test_conflicts_and_unknowns(d: EngineDaemon) -> None:
    cid = dk(d, "create", "--name", "taken", "busybox", "true")
    before = _footprint(d)
    err = dk(d, "create", "--name", "taken", "busybox", "true", ok=False)
    assert f'Conflict. The container name "/taken" is already in use by container "{cid}"' in err
    assert _footprint(d) == before
    assert "No such container: nosuch" in dk(d, "start", "nosuch", ok=False)
    assert "No such container: nosuch" in dk(d, "rm", "nosuch", ok=False)
    # a failed start (no such executable) keeps the container, as Docker, with the exit code Docker gives
    r = d.docker("run", "--name", "badcmd", "busybox", "nosuchcmd", check=False)
    assert r.returncode == 127 and "executable file not found" in r.stderr
    assert fmt(d, "{{.State.Status}} {{.State.ExitCode}}", "badcmd") == "created 127"
    dk(d, "run", "-d", "--name", "busy", "busybox", "sleep", "100")
    assert "container is running: stop the container before removing or force remove" in dk(d, "rm", "busy",
                                                                                                ok=False)
    assert "already in use" in dk(d, "rename", "busy", "taken", ok=False)
    dk(d, "rm", "-f", "busy", "badcmd", "taken")


def test_api_bad_input(d: EngineDaemon) -> None:
    before = _footprint(d)
    status, body = d.request("POST", "/containers/create", "{not json")
    assert status == 400 and "invalid JSON" in body["message"]
    status, body = d.request("POST", "/containers/create", {"Image": "busybox", "HostConfig": {"Memory": "lots"}})
    assert status == 400 and body["message"] == ("json: cannot unmarshal string into Go struct field "
                                                 "HostConfig.Memory of type int64")
    status, body = d.request("POST", "/containers/create", {"Image": "busybox", "Cmd": 5})
    assert status == 400 and "Cmd" in body["message"]
    status, body = d.request("POST", "/containers/create", {"Image": "nosuchimage:1"})
    assert status == 404 and body["message"] == "No such image: nosuchimage:1"
    status, body = d.request("POST", "/containers/create?name=xx", {"Image": "busybox", "HostConfig": {
        "RestartPolicy": {"Name": "always"}, "AutoRemove": True}})
    assert status == 400 and "AutoRemove" in body["message"]
    status, body = d.request("POST", "/containers/create", {"Image": "busybox", "HostConfig": {
        "NetworkMode": "nosuchnet"}})
    assert status == 404 and body["message"] == "network nosuchnet not found"
    status, body = d.request("POST", "/containers/create", {"Image": "busybox", "HostConfig": {
        "Sysctls": {"kernel.panic": "1"}}})
    assert status == 400 and "kernel.panic" in body["message"]
    assert _footprint(d) == before
    status, body = d.request("POST", "/containers/nosuch/wait?condition=bogus")
    assert status == 404
    status, body = d.request("DELETE", "/containers/nosuch?link=1")
    assert status in (400, 404)
    cid = dk(d, "create", "busybox", "true")
    assert d.request("POST", f"/containers/{cid}/wait?condition=bogus")[0] == 400
    assert d.request("POST", f"/containers/{cid}/stop")[0] == 304
    assert d.request("DELETE", f"/containers/{cid}?link=1")[0] == 400
    assert d.request("POST", f"/containers/{cid}/start")[0] == 204
    dk(d, "wait", cid)
    assert d.request("DELETE", f"/containers/{cid}")[0] == 204


def test_daemon_restart_recovers_containers(engine_daemon: EngineDaemon) -> None:
    """Containers outlive the daemon; an exit while it was down is recorded with its code, `always` restarts
    a container that died meanwhile, and a stopped-by-hand `unless-stopped` one stays stopped."""
    d = engine_daemon
    import_busybox(d)
    dk(d, "run", "-d", "--name", "keeps", "busybox", "sleep", "100")
    dk(d, "run", "-d", "--name", "dies", "busybox", "sleep", "100")
    dk(d, "run", "-d", "--name", "always", "--restart", "always", "busybox", "sleep", "100")
    dk(d, "run", "-d", "--name", "unless", "--restart", "unless-stopped", "busybox", "sleep", "100")
    dk(d, "stop", "-t", "0", "unless")
    keeps_pid = int(fmt(d, "{{.State.Pid}}", "keeps"))
    victims = [int(fmt(d, "{{.State.Pid}}", n)) for n in ("dies", "always")]
    d.stop()
    for pid in victims:
        os.kill(pid, 9)
    d.start()
    wait_for(lambda: fmt(d, "{{.State.Status}} {{.State.ExitCode}}", "dies") == "exited 137", timeout=15,
             what="the exit while the daemon was down recorded")
    assert fmt(d, "{{.State.Status}} {{.State.Pid}}", "keeps") == f"running {keeps_pid}"
    wait_for(lambda: fmt(d, "{{.State.Status}}", "always") == "running" and
             int(fmt(d, "{{.State.Pid}}", "always")) not in victims, timeout=15, what="always restarted")
    assert fmt(d, "{{.State.Status}}", "unless") == "exited"
    dk(d, "stop", "-t", "0", "keeps")
    dk(d, "rm", "-f", "keeps", "dies", "always", "unless")
    assert dk(d, "ps", "-a", "-q") == ""


def test_bridge_and_user_network(d: EngineDaemon) -> None:
    """On the default bridge a container gets an address, its hostname in /etc/hosts and its published ports
    in inspect and ps; on a user network it finds another container by name through the embedded DNS; after
    the exit its network namespace and endpoint are gone."""
    dk(d, "run", "-d", "--name", "br", "-p", "127.0.0.1::80", "busybox", "sleep", "100")
    doc = json.loads(dk(d, "inspect", "br"))[0]
    ns = doc["NetworkSettings"]
    ip = ns["Networks"]["bridge"]["IPAddress"]
    assert ip and ns["IPAddress"] == ip and ns["Gateway"] and ns["Networks"]["bridge"]["NetworkID"]
    binds = ns["Ports"]["80/tcp"]
    assert binds[0]["HostIp"] == "127.0.0.1" and int(binds[0]["HostPort"]) > 0
    assert f"127.0.0.1:{binds[0]['HostPort']}->80/tcp" in dk(d, "ps", "--filter", "name=br", "--format",
                                                             "{{.Ports}}")
    pid = doc["State"]["Pid"]
    assert f"{ip}\t{doc['Config']['Hostname']}" in Path(f"/proc/{pid}/root/etc/hosts").read_text()
    dk(d, "network", "create", "h3net")
    try:
        dk(d, "run", "-d", "--name", "srv", "--network", "h3net", "busybox", "sleep", "100")
        _, out = run_logs(d, "--network", "h3net", "busybox", "sh", "-c", "cat /etc/resolv.conf; nslookup srv")
        assert "nameserver 127.0.0.11" in out
        srv_ip = fmt(d, "{{(index .NetworkSettings.Networks \"h3net\").IPAddress}}", "srv")
        assert srv_ip and srv_ip in out
        assert dk(d, "ps", "--filter", "network=h3net", "--format", "{{.Names}}") == "srv"
        dk(d, "stop", "-t", "0", "srv")
        assert fmt(d, "{{json .NetworkSettings.Networks}}", "srv").count("IPAddress\":\"\"") == 1
        assert not (d.exec_root / "netns" / fmt(d, "{{.Id}}", "srv")).exists()
        dk(d, "rm", "srv")
    finally:
        d.docker("rm", "-f", "srv", check=False)
        d.docker("network", "rm", "h3net", check=False)
    dk(d, "rm", "-f", "br")


def test_create_cut_by_a_crash_is_undone(engine_daemon: EngineDaemon) -> None:
    """The daemon dies after a create made its directory, snapshot and containerd record but before it
    journaled the outcome: the next daemon removes them and frees the name."""
    d = engine_daemon
    import_busybox(d)
    before = _footprint(d)
    d.stop()
    os.environ["ENGINE_FAULT_DOCKER"] = "create:materialised"
    try:
        d.start()
    finally:
        del os.environ["ENGINE_FAULT_DOCKER"]
    r = d.docker("create", "--name", "cut", "busybox", "true", check=False)
    assert r.returncode != 0
    assert d.proc is not None and d.proc.wait(10) == -9
    assert len(os.listdir(d.root / "containers")) == len(before[2]) + 1  # left by the crash
    d.start()
    wait_for(lambda: _footprint(d) == before, timeout=15, what="the cut create undone")
    assert d.ctr("-n", "moby", "containers", "ls", "-q").stdout.strip() == ""
    dk(d, "create", "--name", "cut", "busybox", "true")  # the name is free again
    dk(d, "rm", "cut")


def test_readonly_seccomp_devices_shm(d: EngineDaemon) -> None:
    code, text = run_logs(d, "--read-only", "--tmpfs", "/scratch", "--shm-size", "8m",
                          "--device", "/dev/zero:/dev/myzero:r", "busybox", "sh", "-c",
                          "touch /x 2>&1; touch /scratch/y && echo tmpfs-ok; df -k /dev/shm | tail -1; "
                          "head -c 4 /dev/myzero | od -An -tx1; unshare -n true 2>&1; echo unshare=$?")
    assert code == 0, text
    assert "Read-only file system" in text and "tmpfs-ok" in text
    assert " 8192 " in text  # the shm size
    assert "00 00 00 00" in text  # the mapped device
    assert "Operation not permitted" in text and "unshare=1" in text  # refused by the default seccomp profile
    code, text = run_logs(d, "--cap-add", "SYS_ADMIN", "busybox", "sh", "-c", "unshare -n true; echo $?")
    assert text.strip() == "0", text  # granted with CAP_SYS_ADMIN, as Docker


def test_oom_killed(d: EngineDaemon) -> None:
    since = str(time.time() - 1)
    r = d.docker("run", "--name", "oomer", "--memory", "8m", "--memory-swap", "8m", "busybox", "sh", "-c",
                 "head -c 200m /dev/zero | tail", check=False)
    assert r.returncode == 137
    assert fmt(d, "{{.State.OOMKilled}} {{.State.ExitCode}}", "oomer") == "true 137"
    out = dk(d, "events", "--since", since, "--until", str(time.time() + 0.3), "--filter", "container=oomer",
             "--filter", "event=oom", "--format", "{{.Action}}")
    assert out == "oom"
    dk(d, "rm", "oomer")


def test_remove_cut_by_a_crash_is_finished(engine_daemon: EngineDaemon) -> None:
    """The daemon dies right after journaling a removal's intent: the next daemon finishes the removal."""
    d = engine_daemon
    import_busybox(d)
    cid = dk(d, "create", "--name", "gone", "busybox", "true")
    d.stop()
    os.environ["ENGINE_FAULT_DOCKER"] = "remove:requested"
    try:
        d.start()
    finally:
        del os.environ["ENGINE_FAULT_DOCKER"]
    assert d.docker("rm", "gone", check=False).returncode != 0
    assert d.proc is not None and d.proc.wait(10) == -9
    assert (d.root / "containers" / cid).exists()
    d.start()
    wait_for(lambda: d.docker("container", "inspect", cid, check=False).returncode != 0, timeout=15,
             what="the cut removal finished")
    assert not (d.root / "containers" / cid).exists()
    assert cid not in d.ctr("-n", "moby", "snapshots", "ls").stdout
    assert d.ctr("-n", "moby", "containers", "ls", "-q").stdout.strip() == ""


def test_run_attached_sees_the_first_bytes(d: EngineDaemon) -> None:
    """`docker run` attaches, then starts: the start waits for the attached client, so even a process that
    prints and exits at once is seen whole (it was lost about one run in eight before)."""
    outs = [d.docker("run", "--rm", "busybox", "echo", "hi", check=False).stdout for _ in range(15)]
    assert outs == ["hi\n"] * 15


def test_runtime_choice(d: EngineDaemon) -> None:
    """--runtime runc runs the container with Debian's runc through the same shim; an unknown name is Docker's
    400 and creates nothing."""
    assert d.docker("run", "--rm", "--runtime", "runc", "busybox", "echo", "via-runc").stdout == "via-runc\n"
    cid = d.docker("run", "-d", "--runtime", "runc", "busybox", "sleep", "60").stdout.strip()
    try:
        state = d.root / "shims" / "moby" / cid / "runtime"
        listed = subprocess.run(["runc", "--root", str(state), "list", "-q"], capture_output=True, text=True)
        assert listed.stdout.split() == [cid], (listed.stdout, listed.stderr)
    finally:
        d.docker("rm", "-f", cid)
    before = d.docker("ps", "-aq").stdout
    p = d.docker("run", "--runtime", "nope", "busybox", "true", check=False)
    assert p.returncode != 0 and "unknown or invalid runtime name: nope" in p.stderr
    assert d.docker("ps", "-aq").stdout == before


def test_init_reaps_and_forwards_signals(d: EngineDaemon) -> None:
    """--init: PID 1 is Docker's docker-init (Debian's tini-static bind-mounted read-only), the command its child;
    it passes on SIGTERM, so `docker stop` ends a shell that would ignore it as PID 1."""
    cid = d.docker("run", "-d", "--init", "busybox", "sh", "-c", "sleep 60").stdout.strip()
    try:
        assert d.docker("exec", cid, "cat", "/proc/1/cmdline").stdout.split("\0")[0] in ("/sbin/docker-init", "docker-init")
        t = time.monotonic()
        d.docker("stop", "-t", "10", cid)
        assert time.monotonic() - t < 5, "SIGTERM was not forwarded"
    finally:
        d.docker("rm", "-f", cid)
