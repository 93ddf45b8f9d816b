"""`run`/`create` flags → the create request body, as the docker CLI builds it."""

from __future__ import annotations

import pytest

from engine.cli.runopts import OptionError, RunOptions, create_body, parse_mount, parse_ports, ram_in_bytes


def test_plain_run_body() -> None:
    b = create_body(RunOptions(image="busybox", command=["echo", "hi"]))
    assert b["Image"] == "busybox" and b["Cmd"] == ["echo", "hi"] and b["Entrypoint"] is None
    assert (b["AttachStdin"], b["AttachStdout"], b["AttachStderr"], b["OpenStdin"], b["StdinOnce"], b["Tty"]) == \
        (False, True, True, False, False, False)
    h = b["HostConfig"]
    assert h["NetworkMode"] == "default" and h["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0}
    assert h["AutoRemove"] is False and h["Binds"] is None and h["Init"] is None
    assert b["NetworkingConfig"] == {"EndpointsConfig": {}} and "ExposedPorts" not in b


def test_interactive_tty_detach_flags() -> None:
    b = create_body(RunOptions(image="busybox", interactive=True, tty=True, rm=True, console_size=(24, 80)))
    assert (b["AttachStdin"], b["OpenStdin"], b["StdinOnce"], b["Tty"]) == (True, True, True, True)
    assert b["HostConfig"]["AutoRemove"] is True and b["HostConfig"]["ConsoleSize"] == [24, 80]
    d = create_body(RunOptions(image="busybox", interactive=True, detach=True))
    assert (d["AttachStdin"], d["AttachStdout"], d["OpenStdin"], d["StdinOnce"]) == (False, False, True, False)
    c = create_body(RunOptions(image="busybox", attach=False))
    assert (c["AttachStdout"], c["AttachStderr"]) == (False, False)


def test_every_mapped_flag(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    envf = tmp_path / "env"
    envf.write_text("# comment\n\nFROMFILE=1\n  HOMEVAR\n")
    monkeypatch.setenv("HOMEVAR", "h")
    monkeypatch.delenv("UNSETVAR", raising=False)
    b = create_body(RunOptions(
        image="busybox", command=["sh"], env=["A=B", "UNSETVAR"], env_file=[str(envf)],
        volumes=["/host:/ctr:ro", "named:/data", "/anon"], mounts=["type=tmpfs,target=/t,tmpfs-size=64m"],
        workdir="/w", user="1000:1000", name="x", entrypoint="/bin/sh", publish=["127.0.0.1:8080:80", "53/udp"],
        network="host", hostname="h1", labels=["a=1", "b"], memory="512m", cpus="1.5", restart="on-failure:3",
        init=True, privileged=True, cap_add=["NET_ADMIN"], cap_drop=["ALL"], read_only=True,
        tmpfs=["/run:rw,size=1m", "/tmp"]))
    assert b["Env"] == ["FROMFILE=1", "HOMEVAR=h", "A=B", "UNSETVAR"]
    assert b["Entrypoint"] == ["/bin/sh"] and b["WorkingDir"] == "/w" and b["User"] == "1000:1000"
    assert b["Hostname"] == "h1" and b["Labels"] == {"a": "1", "b": ""} and b["Volumes"] == {"/anon": {}}
    assert b["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}}
    h = b["HostConfig"]
    assert h["Binds"] == ["/host:/ctr:ro", "named:/data"]
    assert h["Mounts"] == [{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 64 * 2**20}}]
    assert h["PortBindings"] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": "8080"}],
                                 "53/udp": [{"HostIp": "", "HostPort": ""}]}
    assert h["NetworkMode"] == "host" and h["Memory"] == 512 * 2**20 and h["NanoCpus"] == 1_500_000_000
    assert h["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert (h["Init"], h["Privileged"], h["ReadonlyRootfs"]) == (True, True, True)
    assert h["CapAdd"] == ["NET_ADMIN"] and h["CapDrop"] == ["ALL"]
    assert h["Tmpfs"] == {"/run": "rw,size=1m", "/tmp": ""}


def test_empty_entrypoint_resets() -> None:
    assert create_body(RunOptions(image="busybox", entrypoint=""))["Entrypoint"] == [""]


def test_port_forms() -> None:
    assert parse_ports(["8000-8001:80-81"])[1] == {"80/tcp": [{"HostIp": "", "HostPort": "8000"}],
                                                   "81/tcp": [{"HostIp": "", "HostPort": "8001"}]}
    assert parse_ports(["8000-8010:80"])[1] == {"80/tcp": [{"HostIp": "", "HostPort": "8000-8010"}]}
    assert parse_ports(["[::1]:9000:90/udp"])[1] == {"90/udp": [{"HostIp": "::1", "HostPort": "9000"}]}
    assert parse_ports(["127.0.0.1::80"])[1] == {"80/tcp": [{"HostIp": "127.0.0.1", "HostPort": ""}]}
    for bad in ["x", "80/xyz", "1:2:3:4", "70000"]:
        with pytest.raises(OptionError):
            parse_ports([bad])


def test_mount_forms_and_errors() -> None:
    assert parse_mount("type=bind,source=/a,target=/b,readonly,bind-propagation=rslave") == \
        {"Type": "bind", "Source": "/a", "Target": "/b", "ReadOnly": True, "BindOptions": {"Propagation": "rslave"}}
    assert parse_mount("src=v,dst=/d,volume-nocopy,volume-label=k=v") == \
        {"Type": "volume", "Source": "v", "Target": "/d", "VolumeOptions": {"NoCopy": True, "Labels": {"k": "v"}}}
    for bad in ["type=bind,source=/a", "target=/b,bogus=1", "target=/b,source"]:
        with pytest.raises(OptionError):
            parse_mount(bad)


@pytest.mark.parametrize(("s", "n"), [("512m", 512 * 2**20), ("1g", 2**30), ("1024", 1024), ("2KB", 2048),
                                      ("1.5g", int(1.5 * 2**30)), ("10mib", 10 * 2**20)])
def test_ram_in_bytes(s: str, n: int) -> None:
    assert ram_in_bytes(s) == n


def test_bad_values_use_dockers_words() -> None:
    with pytest.raises(OptionError, match='invalid argument "12x" for "--memory" flag'):
        create_body(RunOptions(image="b", memory="12x"))
    with pytest.raises(OptionError, match="failed to parse x as a rational number"):
        create_body(RunOptions(image="b", cpus="x"))
    with pytest.raises(OptionError, match="cannot specify both --restart and --rm"):
        create_body(RunOptions(image="b", rm=True, restart="always"))
    with pytest.raises(OptionError, match="invalid volume specification"):
        create_body(RunOptions(image="b", volumes=["relative"]))


def test_less_common_flags() -> None:
    b = create_body(RunOptions(
        image="busybox", devices=["/dev/fuse", "/dev/sda:/dev/xvda:r"], ulimits=["nofile=1024:2048", "nproc=64"],
        shm_size="128m", pids_limit=100, security_opt=["no-new-privileges"], sysctls=["net.ipv4.ip_forward=1"],
        cpu_shares=512, cpuset_cpus="0", memory_swap="-1", oom_kill_disable=True, add_hosts=["db:10.0.0.2"],
        dns=["1.1.1.1"], dns_search=["example.com"], dns_options=["ndots:2"], log_driver="json-file",
        log_opts=["max-size=1m"], stop_signal="SIGUSR1", stop_timeout=3, expose=["80", "90-91/udp"],
        publish_all=True, group_add=["audio"], ipc="host", pid="host", uts="host", cgroup_parent="p",
        runtime="runc", domainname="d.example", volumes_from=["other:ro"], health_cmd="true",
        health_interval="1m30s", health_timeout="500ms", health_retries=3))
    h = b["HostConfig"]
    assert h["Devices"] == [{"PathOnHost": "/dev/fuse", "PathInContainer": "/dev/fuse", "CgroupPermissions": "rwm"},
                            {"PathOnHost": "/dev/sda", "PathInContainer": "/dev/xvda", "CgroupPermissions": "r"}]
    assert h["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}, {"Name": "nproc", "Soft": 64, "Hard": 64}]
    assert (h["ShmSize"], h["PidsLimit"], h["CpuShares"], h["CpusetCpus"], h["MemorySwap"]) == \
        (128 * 2**20, 100, 512, "0", -1)
    assert h["SecurityOpt"] == ["no-new-privileges"] and h["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert h["OomKillDisable"] is True and h["ExtraHosts"] == ["db:10.0.0.2"] and h["Dns"] == ["1.1.1.1"]
    assert h["DnsSearch"] == ["example.com"] and h["DnsOptions"] == ["ndots:2"] and h["GroupAdd"] == ["audio"]
    assert h["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}} and h["VolumesFrom"] == ["other:ro"]
    assert (h["IpcMode"], h["PidMode"], h["UTSMode"], h["CgroupParent"], h["Runtime"]) == \
        ("host", "host", "host", "p", "runc")
    assert h["PublishAllPorts"] is True
    assert b["ExposedPorts"] == {"80/tcp": {}, "90/udp": {}, "91/udp": {}}
    assert (b["StopSignal"], b["StopTimeout"], b["Domainname"]) == ("SIGUSR1", 3, "d.example")
    assert b["Healthcheck"] == {"Test": ["CMD-SHELL", "true"], "Interval": 90 * 10**9, "Timeout": 500 * 10**6,
                                "Retries": 3}
    assert create_body(RunOptions(image="b", no_healthcheck=True))["Healthcheck"] == {"Test": ["NONE"]}
    plain = create_body(RunOptions(image="b"))
    assert "Healthcheck" not in plain and "Devices" not in plain["HostConfig"]
    with pytest.raises(OptionError, match='invalid duration "5x"'):
        create_body(RunOptions(image="b", health_interval="5x"))
    with pytest.raises(OptionError, match="invalid ulimit argument"):
        create_body(RunOptions(image="b", ulimits=["nofile"]))
