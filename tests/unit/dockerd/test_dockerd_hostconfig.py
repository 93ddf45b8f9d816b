"""Docker's Config/HostConfig checks (messages as dockerd's), defaults, the image merge and the mount parsers."""

from __future__ import annotations

import pytest

from engine.errors import InvalidArgument
from engine.services.dockerd import hostconfig, mounts, names


@pytest.mark.parametrize(("hc", "message"), [
    ({"Memory": 1 << 20}, "Minimum memory limit allowed is 6MB"),
    ({"MemorySwap": 64 << 20}, "You should always set the Memory limit when using Memoryswap limit"),
    ({"Memory": 64 << 20, "MemorySwap": 32 << 20}, "Minimum memoryswap limit should be larger than memory limit"),
    ({"NanoCpus": 10**9, "CpuPeriod": 100000}, "Conflicting options: Nano CPUs and CPU Period"),
    ({"NanoCpus": 1000 * 10**9}, "range of CPUs is from 0.01 to"),
    ({"CpusetCpus": "0-999"}, "Requested CPUs are not available"),
    ({"CpusetCpus": "x"}, "Invalid value x for cpuset cpus"),
    ({"RestartPolicy": {"Name": "sometimes"}}, "invalid restart policy: unknown policy 'sometimes'"),
    ({"RestartPolicy": {"Name": "always", "MaximumRetryCount": 2}}, "maximum retry count can only be used"),
    ({"AutoRemove": True, "RestartPolicy": {"Name": "always"}}, "can't create 'AutoRemove' container with restart"),
    ({"OomScoreAdj": 5000}, "range for oom score adj is"),
    ({"MemorySwappiness": 200}, "valid memory swappiness range is 0-100"),
    ({"Ulimits": [{"Name": "bogus", "Soft": 1, "Hard": 1}]}, "invalid ulimit type: bogus"),
    ({"LogConfig": {"Type": "syslog"}}, "no log driver named 'syslog'"),
    ({"LogConfig": {"Type": "json-file", "Config": {"max-size": "lots"}}}, "invalid size"),
])
def test_refusals(hc: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
        hostconfig.validate_host_config(hc)


def test_types_like_go() -> None:
    with pytest.raises(InvalidArgument, match="cannot unmarshal string into Go struct field HostConfig.Memory of "
                                              "type int64"):
        hostconfig.check_types({"Memory": "1g"}, hostconfig.HOST_CONFIG_TYPES, "HostConfig")
    with pytest.raises(InvalidArgument, match="Env of type"):
        hostconfig.check_types({"Env": "A=1"}, hostconfig.CONFIG_TYPES, "ContainerConfigWrapper")
    hostconfig.check_types({"Cmd": "sh", "Tty": True}, hostconfig.CONFIG_TYPES, "C")


def test_config_checks_and_signals() -> None:
    with pytest.raises(InvalidArgument, match="needs to be an absolute path"):
        hostconfig.validate_config({"WorkingDir": "rel"})
    with pytest.raises(InvalidArgument, match="Invalid signal: SIGNOPE"):
        hostconfig.validate_config({"StopSignal": "SIGNOPE"})
    assert hostconfig.parse_signal("TERM") == 15 and hostconfig.parse_signal("SIGUSR1") == 10
    assert hostconfig.parse_signal("9") == 9


def test_merge_image() -> None:
    image = {"Cmd": ["sh"], "Entrypoint": ["/init"], "Env": ["PATH=/bin", "A=1"], "Labels": {"l": "i", "k": "i"},
             "WorkingDir": "/img", "User": "daemon", "Volumes": {"/data": {}}, "ExposedPorts": {"80/tcp": {}},
             "StopSignal": "SIGQUIT"}
    out = hostconfig.merge_image({"Env": ["A=2"], "Labels": {"k": "c"}}, image)
    assert out["Env"] == ["A=2", "PATH=/bin"] and out["Labels"] == {"l": "i", "k": "c"}
    assert out["Entrypoint"] == ["/init"] and out["Cmd"] == ["sh"] and out["WorkingDir"] == "/img"
    assert out["User"] == "daemon" and out["Volumes"] == {"/data": {}} and out["StopSignal"] == "SIGQUIT"
    assert hostconfig.command(out) == ("/init", ["sh"])
    out = hostconfig.merge_image({"Cmd": ["echo", "hi"]}, image)
    assert (out["Entrypoint"], out["Cmd"]) == (["/init"], ["echo", "hi"])
    out = hostconfig.merge_image({"Entrypoint": [""], "Cmd": ["ls"]}, image)  # --entrypoint ""
    assert hostconfig.command(out) == ("ls", [])
    out = hostconfig.merge_image({"Entrypoint": ["/bin/x"]}, image)  # an entrypoint drops the image's Cmd
    assert hostconfig.command(out) == ("/bin/x", [])
    with pytest.raises(InvalidArgument, match="no command specified"):
        hostconfig.command(hostconfig.merge_image({}, {}))


def test_normalise() -> None:
    hc = hostconfig.normalise_host_config({"NetworkMode": "default"}, log_driver="json-file",
                                          log_opts={"max-size": "1m"}, shm_default=64 << 20, runtime="engine")
    assert hc["NetworkMode"] == "bridge" and hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert hc["RestartPolicy"] == {"Name": "no", "MaximumRetryCount": 0} and hc["ShmSize"] == 64 << 20
    assert hc["Privileged"] is False and hc["Binds"] is None


def test_mounts() -> None:
    b = mounts.parse_binds(["/src:/dst:ro", "vol:/v", "/a:/b:rshared,z"])
    assert (b[0].type, b[0].source, b[0].destination, b[0].rw, b[0].create_source) == ("bind", "/src", "/dst", False,
                                                                                      True)
    assert (b[1].type, b[1].name) == ("volume", "vol") and b[2].propagation == "rshared"
    assert b[0].oci() == {"destination": "/dst", "type": "bind", "source": "/src",
                          "options": ["rbind", "rprivate", "ro"]}
    with pytest.raises(InvalidArgument, match="invalid volume specification"):
        mounts.parse_binds(["/only"])
    with pytest.raises(InvalidArgument, match="invalid mode"):
        mounts.parse_binds(["/a:/b:xx"])
    with pytest.raises(InvalidArgument, match='bind source path does not exist: /nonexistent-h3'):
        mounts.parse_mounts([{"Type": "bind", "Source": "/nonexistent-h3", "Target": "/x"}])
    with pytest.raises(InvalidArgument, match="mount path must be absolute"):
        mounts.parse_mounts([{"Type": "tmpfs", "Target": "rel"}])
    t = mounts.parse_mounts([{"Type": "tmpfs", "Target": "/t", "TmpfsOptions": {"SizeBytes": 1024, "Mode": 0o700}}])
    assert t[0].oci()["options"][-2:] == ["size=1024", "mode=700"]
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        mounts.check_duplicates(mounts.parse_binds(["/a:/x"]), {"/x": ""})


def test_names() -> None:
    taken = {"/a_b"}
    n = names.generate(lambda x: x in taken)
    assert n.startswith("/") and "_" in n and n not in taken
    assert names.validate("web.1") == "/web.1"
    with pytest.raises(InvalidArgument, match=r"Invalid container name \(bad/name\)"):
        names.validate("bad/name")
    with pytest.raises(InvalidArgument):
        names.validate("x")  # at least two characters, as Docker's pattern says
