"""Volumes used by containers, with the real docker CLI: a named volume's data outlives the container and is
shared by two; a new volume gets the image's content first (copy-up) unless `nocopy`; `--volumes-from`
shares another container's volumes (read-only with `:ro`); a tmpfs volume; a volume in use cannot be
removed; `rm -v` removes a container's anonymous volumes."""

from __future__ import annotations

from tests.harness import EngineDaemon


def test_data_outlives_the_container_and_is_shared(d: EngineDaemon) -> None:
    d.docker("run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo kept > /data/f")
    d.docker("run", "-d", "--name", "reader", "-v", "shared:/data", "busybox", "sleep", "60")
    try:
        assert d.docker("exec", "reader", "cat", "/data/f").stdout == "kept\n"
        d.docker("run", "--rm", "-v", "shared:/data", "busybox", "sh", "-c", "echo more >> /data/f")
        assert d.docker("exec", "reader", "cat", "/data/f").stdout == "kept\nmore\n"
        p = d.docker("volume", "rm", "shared", check=False)
        assert p.returncode != 0 and "volume is in use" in p.stderr
    finally:
        d.docker("rm", "-f", "reader")
    d.docker("volume", "rm", "shared")


def test_copy_up_and_nocopy(d: EngineDaemon) -> None:
    assert d.docker("run", "--rm", "-v", "etcvol:/etc", "busybox", "cat", "/etc/passwd").stdout.startswith("root:")
    assert "passwd" in d.docker("run", "--rm", "-v", "etcvol:/x", "busybox", "ls", "/x").stdout
    out = d.docker("run", "--rm", "--mount", "type=volume,source=empty1,target=/etc,volume-nocopy",
                   "busybox", "ls", "/etc").stdout
    assert out == ""
    d.docker("volume", "rm", "etcvol", "empty1")


def test_volumes_from(d: EngineDaemon) -> None:
    d.docker("create", "--name", "store", "-v", "vf:/data", "busybox", "true")
    try:
        d.docker("run", "--rm", "--volumes-from", "store", "busybox", "sh", "-c", "echo via > /data/g")
        assert d.docker("run", "--rm", "-v", "vf:/v", "busybox", "cat", "/v/g").stdout == "via\n"
        p = d.docker("run", "--rm", "--volumes-from", "store:ro", "busybox", "sh", "-c", "echo no > /data/g",
                     check=False)
        assert p.returncode != 0 and "Read-only file system" in p.stderr
        # (the docker CLI takes any 404 from create for a missing image and pulls: ask the API directly)
        status, body = d.request("POST", "/containers/create", {"Image": "busybox", "HostConfig": {
            "VolumesFrom": ["nope"]}})
        assert status == 404 and body["message"] == "No such container: nope"
    finally:
        d.docker("rm", "store")
        d.docker("volume", "rm", "vf")


def test_tmpfs_volume_and_rm_v(d: EngineDaemon) -> None:
    d.docker("volume", "create", "--opt", "type=tmpfs", "--opt", "device=tmpfs", "--opt", "o=size=1m", "tv")
    out = d.docker("run", "--rm", "-v", "tv:/t", "busybox", "sh", "-c", "grep ' /t ' /proc/mounts").stdout
    assert " /t " in out
    d.docker("volume", "rm", "tv")
    cid = d.docker("create", "-v", "/anon", "busybox", "true").stdout.strip()
    anon = d.docker("inspect", "-f", "{{range .Mounts}}{{.Name}}{{end}}", cid).stdout.strip()
    assert len(anon) == 64 and anon in d.docker("volume", "ls", "-q").stdout
    d.docker("rm", "-v", cid)
    assert anon not in d.docker("volume", "ls", "-q").stdout
