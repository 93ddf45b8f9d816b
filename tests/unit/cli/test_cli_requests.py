"""The `engine` CLI as a process against a recording stand-in for the Docker API (fakeapi.py): the
requests each verb sends (paths, query, bodies, headers, their order) and how it prints answers and
errors, with docker's exit codes."""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import tarfile
from collections.abc import Iterator

import pytest

from tests.harness import ENGINE
from tests.unit.cli.fakeapi import FakeAPI, Req, Resp, frame

CID = "c" * 64


@pytest.fixture
def api() -> Iterator[FakeAPI]:
    a = FakeAPI()
    yield a
    a.close()


def engine(api: FakeAPI, *args: str, stdin: bytes | None = None, cwd: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([ENGINE, "-H", api.host, *args], input=stdin if stdin is not None else b"",
                          capture_output=True, timeout=30, cwd=cwd, env={**os.environ, **(env or {})})


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _container_routes(api: FakeAPI, *, code: int = 0, out: bytes = b"hi\n", err: bytes = b"",
                      stdin_echo: bool = False) -> dict:
    seen: dict = {}

    def attach(sock: socket.socket) -> None:
        if stdin_echo:
            seen["stdin"] = read_until_eof(sock)  # ends with the client's half-close
            sock.sendall(frame(1, b"got:" + seen["stdin"]))
        else:
            seen["stdin"] = read_until_eof(sock)
            sock.sendall(frame(1, out) + (frame(2, err) if err else b""))
        sock.close()

    api.route("POST", "/containers/create", Resp(201, {"Id": CID, "Warnings": []}))
    api.route("POST", f"/containers/{CID}/attach", Resp(hijack=attach))
    api.route("POST", f"/containers/{CID}/wait", Resp(200, {"StatusCode": code, "Error": None}))
    api.route("POST", f"/containers/{CID}/start", Resp(204))
    return seen


def test_run_sends_dockers_sequence_and_exits_with_the_code(api: FakeAPI) -> None:
    _container_routes(api, code=3, out=b"hi\n", err=b"oops\n")
    p = engine(api, "run", "--rm", "-e", "A=B", "--name", "x", "busybox", "sh", "-c", "echo hi; exit 3")
    assert p.returncode == 3, p.stderr
    assert p.stdout == b"hi\n" and p.stderr == b"oops\n"
    assert api.calls() == ["POST /containers/create", f"POST /containers/{CID}/attach",
                           f"POST /containers/{CID}/wait", f"POST /containers/{CID}/start"]
    create = api.requests[0]
    assert create.q("name") == "x"
    body = create.json()
    assert body["Cmd"] == ["sh", "-c", "echo hi; exit 3"] and body["Env"] == ["A=B"]
    assert body["HostConfig"]["AutoRemove"] is True and body["Image"] == "busybox"
    att = api.requests[1]
    assert att.headers["Upgrade"] == "tcp" and att.headers["Connection"] == "Upgrade"
    assert (att.q("stream"), att.q("stdout"), att.q("stderr"), att.q("stdin")) == ("1", "1", "1", None)
    assert api.requests[2].q("condition") == "removed"


def test_run_without_i_half_closes_and_with_i_forwards_stdin(api: FakeAPI) -> None:
    seen = _container_routes(api)
    assert engine(api, "run", "busybox", "true").returncode == 0
    assert seen["stdin"] == b"" and api.requests[2].q("condition") == "next-exit"
    api.requests.clear()
    seen = _container_routes(api, stdin_echo=True)
    p = engine(api, "run", "-i", "busybox", "cat", stdin=b"line one\nline two\n")
    assert p.returncode == 0, p.stderr
    assert seen["stdin"] == b"line one\nline two\n" and p.stdout == b"got:line one\nline two\n"
    assert api.requests[1].q("stdin") == "1"
    body = api.requests[0].json()
    assert (body["OpenStdin"], body["AttachStdin"], body["StdinOnce"]) == (True, True, True)


def test_run_detached_prints_the_id(api: FakeAPI) -> None:
    _container_routes(api)
    p = engine(api, "run", "-d", "-p", "8080:80", "busybox", "sleep", "9")
    assert p.returncode == 0 and p.stdout.decode() == CID + "\n"
    assert api.calls() == ["POST /containers/create", f"POST /containers/{CID}/start"]
    assert api.requests[0].json()["HostConfig"]["PortBindings"] == {"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}


def test_run_pulls_a_missing_image_then_creates_again(api: FakeAPI) -> None:
    _container_routes(api)
    api.route("POST", "/containers/create", [Resp(404, {"message": "No such image: busybox:latest"}),
                                             Resp(201, {"Id": CID, "Warnings": []})])
    api.route("POST", "/images/create", Resp(200, [{"status": "Pulling from library/busybox", "id": "latest"},
                                                   {"status": "Status: Downloaded newer image for busybox:latest"}],
                                         stream=True))
    p = engine(api, "run", "busybox", "true")
    assert p.returncode == 0, p.stderr
    assert api.calls()[:3] == ["POST /containers/create", "POST /images/create", "POST /containers/create"]
    pull = api.requests[1]
    assert pull.q("fromImage") == "docker.io/library/busybox" and pull.q("tag") == "latest"
    assert json.loads(__import__("base64").urlsafe_b64decode(pull.headers["X-Registry-Auth"])) == {}
    err = p.stderr.decode()
    assert "Unable to find image 'busybox:latest' locally" in err and "latest: Pulling from library/busybox" in err


def test_run_pull_failure_and_daemon_errors_exit_125(api: FakeAPI) -> None:
    api.route("POST", "/containers/create", Resp(404, {"message": "No such image: nope:latest"}))
    api.route("POST", "/images/create", Resp(404, {"message": "pull access denied for nope"}))
    p = engine(api, "run", "nope")
    assert p.returncode == 125
    assert p.stderr.decode().endswith("engine: Error response from daemon: pull access denied for nope\n")
    api.route("POST", "/containers/create", Resp(409, {"message": 'Conflict. The container name "/x" is already in use'}))
    p = engine(api, "run", "--name", "x", "busybox")
    assert p.returncode == 125 and b"Error response from daemon: Conflict." in p.stderr
    assert engine(api, "run", "--memory", "12x", "busybox").returncode == 125


@pytest.mark.parametrize(("msg", "code"), [('exec: "nope": executable file not found in $PATH', 127),
                                           ("exec /etc: permission denied", 126), ("something else", 125)])
def test_run_start_failure_codes(api: FakeAPI, msg: str, code: int) -> None:
    _container_routes(api)
    api.route("POST", f"/containers/{CID}/start", Resp(400, {"message": msg}))
    p = engine(api, "run", "busybox", "nope")
    assert p.returncode == code and p.stderr.decode() == f"engine: Error response from daemon: {msg}\n"


def test_create_and_start_attach(api: FakeAPI) -> None:
    _container_routes(api, code=7, out=b"out\n")
    p = engine(api, "create", "--name", "c1", "-t", "busybox")
    assert p.returncode == 0 and p.stdout.decode() == CID + "\n"
    body = api.requests[0].json()
    assert body["Tty"] is True and body["AttachStdout"] is False
    api.route("GET", "/containers/c1/json", Resp(200, {"Id": CID, "Config": {"Tty": False, "OpenStdin": False},
                                                       "HostConfig": {"AutoRemove": False}}))
    api.requests.clear()
    p = engine(api, "start", "-a", "c1")
    assert p.returncode == 7 and p.stdout == b"out\n"
    assert api.calls() == ["GET /containers/c1/json", f"POST /containers/{CID}/attach",
                           f"POST /containers/{CID}/wait", f"POST /containers/{CID}/start"]


def test_multi_container_verbs_params_and_errors(api: FakeAPI) -> None:
    for verb in ("start", "stop", "restart", "kill", "pause", "unpause"):
        api.route("POST", f"/containers/a/{verb}", Resp(204))
        api.route("POST", f"/containers/b/{verb}", Resp(404, {"message": "No such container: b"}))
    api.route("DELETE", "/containers/a", Resp(204))
    p = engine(api, "stop", "-t", "3", "a", "b")
    assert p.returncode == 1 and p.stdout == b"a\n"
    assert p.stderr == b"Error response from daemon: No such container: b\n"
    assert api.find("POST", "/containers/a/stop")[0].q("t") == "3"
    assert engine(api, "kill", "-s", "HUP", "a").returncode == 0
    assert api.find("POST", "/containers/a/kill")[0].q("signal") == "HUP"
    p = engine(api, "rm", "-f", "-v", "a")
    assert p.returncode == 0 and p.stdout == b"a\n"
    rm = api.find("DELETE", "/containers/a")[0]
    assert (rm.q("force"), rm.q("v")) == ("1", "1")
    for verb in ("restart", "pause", "unpause"):
        assert engine(api, verb, "a").stdout == b"a\n"
    p = engine(api, "start", "a", "b")
    assert p.returncode == 1 and p.stderr.decode().endswith("Error: failed to start containers: b\n")


def test_wait_rename_top_port(api: FakeAPI) -> None:
    api.route("POST", "/containers/a/wait", Resp(200, {"StatusCode": 4}))
    assert engine(api, "wait", "a").stdout == b"4\n"
    api.route("POST", "/containers/a/rename", Resp(204))
    assert engine(api, "rename", "a", "b").returncode == 0
    assert api.find("POST", "/containers/a/rename")[0].q("name") == "b"
    api.route("GET", "/containers/a/top", Resp(200, {"Titles": ["UID", "PID", "CMD"],
                                                     "Processes": [["root", "4242", "sleep 9"]]}))
    p = engine(api, "top", "a", "-ef")
    assert p.stdout.decode() == ("UID                 PID                 CMD\n"
                                 "root                4242                sleep 9\n")
    assert api.find("GET", "/containers/a/top")[0].q("ps_args") == "-ef"
    api.route("GET", "/containers/a/json", Resp(200, {"Id": CID, "NetworkSettings": {"Ports": {
        "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, {"HostIp": "::", "HostPort": "8080"}],
        "53/udp": None}}}))
    assert engine(api, "port", "a").stdout.decode() == "80/tcp -> 0.0.0.0:8080\n80/tcp -> [::]:8080\n"
    assert engine(api, "port", "a", "80").stdout.decode() == "0.0.0.0:8080\n[::]:8080\n"
    p = engine(api, "port", "a", "53/udp")
    assert p.returncode == 1 and b"No public port '53/udp' published for a" in p.stderr


def test_ps_request_and_output(api: FakeAPI) -> None:
    api.route("GET", "/containers/json", Resp(200, [{"Id": CID, "Names": ["/web"], "Image": "busybox",
                                                     "Command": "sleep 9", "Created": 0, "Ports": [],
                                                     "State": "running", "Status": "Up 1 second"}]))
    p = engine(api, "ps", "-a", "-n", "5", "-s", "--filter", "status=running", "--filter", "label=a=b")
    assert p.returncode == 0
    r = api.requests[0]
    assert (r.q("all"), r.q("limit"), r.q("size")) == ("1", "5", "1")
    assert json.loads(r.q("filters") or "") == {"status": {"running": True}, "label": {"a=b": True}}
    assert p.stdout.decode().splitlines()[0].startswith("CONTAINER ID   IMAGE     COMMAND")
    assert engine(api, "ps", "-q").stdout.decode() == "cccccccccccc\n"
    assert engine(api, "ps", "-q", "--no-trunc").stdout.decode() == CID + "\n"
    assert engine(api, "ps", "--format", "{{.Names}}\t{{.Command}}").stdout.decode() == 'web\t"sleep 9"\n'
    assert api.requests[-1].q("all") is None
    p = engine(api, "ps", "--format", "{{range .Names}}{{end}}")
    assert p.returncode == 1 and b"unsupported action" in p.stderr


def test_inspect_falls_back_to_images_and_formats(api: FakeAPI) -> None:
    api.route("GET", "/containers/web/json", Resp(200, {"Id": CID, "State": {"Status": "running"}}))
    api.route("GET", "/images/busybox/json", Resp(200, {"Id": "sha256:" + "a" * 64, "RepoTags": ["busybox:latest"]}))
    p = engine(api, "inspect", "--format", "{{.Id}}", "web", "busybox")
    assert p.returncode == 0 and p.stdout.decode() == f"{CID}\nsha256:{'a' * 64}\n"
    p = engine(api, "inspect", "web", "ghost")
    assert p.returncode == 1 and json.loads(p.stdout)[0]["Id"] == CID
    assert p.stderr == b"Error: No such object: ghost\n"
    p = engine(api, "image", "inspect", "-f", "{{json .RepoTags}}", "busybox")
    assert p.stdout == b'["busybox:latest"]\n'


def test_logs_params_and_demux(api: FakeAPI) -> None:
    api.route("GET", "/containers/web/json", Resp(200, {"Id": CID, "Config": {"Tty": False}}))
    api.route("GET", f"/containers/{CID}/logs", Resp(200, frame(1, b"out\n") + frame(2, b"err\n"), stream=True))
    p = engine(api, "logs", "-t", "--tail", "5", "--since", "1700000000", "--until", "10m", "web")
    assert p.returncode == 0 and p.stdout == b"out\n" and p.stderr == b"err\n"
    r = api.find("GET", f"/containers/{CID}/logs")[0]
    assert (r.q("stdout"), r.q("stderr"), r.q("tail"), r.q("timestamps"), r.q("since"), r.q("follow")) == \
        ("1", "1", "5", "1", "1700000000", None)
    assert float(r.q("until") or 0) > 1_700_000_000
    api.route("GET", "/containers/web/json", Resp(200, {"Id": CID, "Config": {"Tty": True}}))
    api.route("GET", f"/containers/{CID}/logs", Resp(200, b"raw tty bytes\r\n", stream=True))
    assert engine(api, "logs", "-f", "web").stdout == b"raw tty bytes\r\n"


def test_exec_sequence_and_exit_code(api: FakeAPI) -> None:
    seen = {}

    def start(sock: socket.socket) -> None:
        seen["stdin"] = read_until_eof(sock)
        sock.sendall(frame(1, b"x\n"))
        sock.close()

    api.route("GET", "/containers/web/json", Resp(200, {"Id": CID}))
    api.route("POST", "/containers/web/exec", Resp(201, {"Id": "e1"}))
    api.route("POST", "/exec/e1/start", lambda r: Resp(hijack=start) if not r.json()["Detach"] else Resp(204))
    api.route("GET", "/exec/e1/json", Resp(200, {"ExitCode": 5, "Running": False}))
    p = engine(api, "exec", "-i", "-e", "A=1", "-u", "nobody", "-w", "/tmp", "web", "sh", "-c", "cat")
    assert p.returncode == 5 and p.stdout == b"x\n"
    assert api.calls() == ["GET /containers/web/json", "POST /containers/web/exec", "POST /exec/e1/start",
                           "GET /exec/e1/json"]
    body = api.requests[1].json()
    assert body["Cmd"] == ["sh", "-c", "cat"] and body["Env"] == ["A=1"] and body["User"] == "nobody"
    assert (body["AttachStdin"], body["AttachStdout"], body["Detach"], body["WorkingDir"]) == (True, True, False, "/tmp")
    assert api.requests[2].json()["Detach"] is False and api.requests[2].headers["Upgrade"] == "tcp"
    api.requests.clear()
    p = engine(api, "exec", "-d", "web", "sleep", "9")
    assert p.returncode == 0 and api.requests[2].json() == {"Detach": True, "Tty": False}


def test_attach_refuses_a_stopped_container(api: FakeAPI) -> None:
    api.route("GET", "/containers/web/json", Resp(200, {"Id": CID, "State": {"Running": False},
                                                        "Config": {"Tty": False}}))
    p = engine(api, "attach", "web")
    assert p.returncode == 1 and p.stderr == b"You cannot attach to a stopped container, start it first\n"


def test_images_pull_push_tag_rmi(api: FakeAPI) -> None:
    api.route("GET", "/images/json", Resp(200, [{"Id": "sha256:" + "a" * 64, "RepoTags": ["busybox:latest"],
                                                 "Created": 0, "Size": 4261234}]))
    p = engine(api, "images", "busybox", "-f", "dangling=false")
    assert p.stdout.decode().splitlines()[1].startswith("busybox      latest    aaaaaaaaaaaa   ")
    assert json.loads(api.requests[0].q("filters") or "") == {"dangling": {"false": True},
                                                              "reference": {"busybox": True}}
    assert engine(api, "image", "ls", "-q").stdout == b"aaaaaaaaaaaa\n"
    api.route("POST", "/images/create", Resp(200, [{"status": "Pulling from library/busybox", "id": "1.36"},
                                                   {"status": "Digest: sha256:bd"}], stream=True))
    p = engine(api, "pull", "busybox:1.36")
    assert p.stdout.decode() == ("1.36: Pulling from library/busybox\nDigest: sha256:bd\n"
                                 "docker.io/library/busybox:1.36\n")
    r = api.find("POST", "/images/create")[0]
    assert (r.q("fromImage"), r.q("tag")) == ("docker.io/library/busybox", "1.36") and "X-Registry-Auth" in r.headers
    api.route("POST", "/images/create", Resp(200, [{"errorDetail": {"message": "manifest unknown"},
                                                    "error": "manifest unknown"}], stream=True))
    p = engine(api, "pull", "localhost:5000/x")
    assert p.returncode == 1 and p.stderr == b"manifest unknown\n"
    assert api.requests[-1].q("fromImage") == "localhost:5000/x" and api.requests[-1].q("tag") == "latest"
    api.route("POST", "/images/localhost:5000/x/push", Resp(200, [{"status": "The push refers to repository"},
                                                                  {"status": "latest: digest: sha256:ab size: 527"}],
                                                            stream=True))
    p = engine(api, "push", "localhost:5000/x")
    assert p.returncode == 0 and b"latest: digest: sha256:ab size: 527" in p.stdout
    assert api.requests[-1].q("tag") == "latest"
    api.route("POST", "/images/busybox/tag", Resp(201))
    assert engine(api, "tag", "busybox", "localhost:5000/bb:v1").returncode == 0
    assert (api.requests[-1].q("repo"), api.requests[-1].q("tag")) == ("localhost:5000/bb", "v1")
    api.route("DELETE", "/images/bb:v1", Resp(200, [{"Untagged": "bb:v1"}, {"Deleted": "sha256:aa"}]))
    api.route("DELETE", "/images/ghost", Resp(404, {"message": "No such image: ghost:latest"}))
    p = engine(api, "rmi", "-f", "bb:v1", "ghost")
    assert p.returncode == 1 and p.stdout == b"Untagged: bb:v1\nDeleted: sha256:aa\n"
    assert p.stderr == b"Error response from daemon: No such image: ghost:latest\n"
    assert api.find("DELETE", "/images/bb:v1")[0].q("force") == "1"


def test_save_load_import_prune_history(api: FakeAPI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api.route("GET", "/images/get", Resp(200, b"TARBYTES" * 1000, stream=True))
    out = tmp_path / "out.tar"
    assert engine(api, "save", "-o", str(out), "busybox", "bb:1").returncode == 0
    assert out.read_bytes() == b"TARBYTES" * 1000 and api.requests[-1].query["names"] == ["busybox", "bb:1"]
    assert engine(api, "save", "busybox").stdout == b"TARBYTES" * 1000
    api.route("POST", "/images/load", Resp(200, [{"stream": "Loaded image: busybox:latest\n"}], stream=True))
    p = engine(api, "load", "-i", str(out))
    assert p.stdout == b"Loaded image: busybox:latest\n" and api.requests[-1].body == b"TARBYTES" * 1000
    assert api.requests[-1].q("quiet") == "1"
    p = engine(api, "load", stdin=b"FROMSTDIN")
    assert p.returncode == 0 and api.requests[-1].body == b"FROMSTDIN"
    api.route("POST", "/images/create", Resp(200, [{"status": "sha256:" + "d" * 64}], stream=True))
    p = engine(api, "import", "-c", 'CMD ["sh"]', "-c", "ENV A=1", "-m", "hello", str(out), "mine:v1")
    assert p.returncode == 0 and p.stdout.decode() == "sha256:" + "d" * 64 + "\n"
    r = api.requests[-1]
    assert (r.q("fromSrc"), r.q("repo"), r.q("message")) == ("-", "mine:v1", "hello")
    assert r.query["changes"] == ['CMD ["sh"]', "ENV A=1"] and r.body == b"TARBYTES" * 1000
    api.route("POST", "/images/prune", Resp(200, {"ImagesDeleted": [{"Deleted": "sha256:ee"}],
                                                  "SpaceReclaimed": 4261234}))
    p = engine(api, "image", "prune", "-f")
    assert p.stdout.decode() == "Deleted Images:\ndeleted: sha256:ee\n\nTotal reclaimed space: 4.261MB\n"
    assert json.loads(api.requests[-1].q("filters") or "") == {"dangling": {"true": True}}
    engine(api, "image", "prune", "-a", "-f")
    assert json.loads(api.requests[-1].q("filters") or "") == {"dangling": {"false": True}}
    n = len(api.requests)
    p = engine(api, "image", "prune", stdin=b"n\n")
    assert p.returncode == 0 and len(api.requests) == n and b"Are you sure you want to continue?" in p.stdout
    api.route("GET", "/images/busybox/history", Resp(200, [{"Id": "sha256:" + "a" * 64, "Created": 0,
                                                           "CreatedBy": "ADD x", "Size": 0, "Comment": ""}]))
    assert engine(api, "history", "-q", "busybox").stdout == b"aaaaaaaaaaaa\n"


def _tar(entries: dict[str, bytes | None]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
            else:
                info.size, info.mode = len(data), 0o640
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _stat_header(name: str, is_dir: bool) -> dict[str, str]:
    import base64

    st = {"name": name, "size": 0, "mode": (1 << 31 | 0o755) if is_dir else 0o644, "mtime": "", "linkTarget": ""}
    return {"X-Docker-Container-Path-Stat": base64.b64encode(json.dumps(st).encode()).decode()}


def test_cp_from_container(api: FakeAPI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api.route("GET", "/containers/web/archive", lambda r: Resp(
        200, _tar({"etc": None, "etc/hostname": b"web\n"}), headers=_stat_header("etc", True)))
    assert engine(api, "cp", "web:/etc", str(tmp_path)).returncode == 0
    assert (tmp_path / "etc" / "hostname").read_bytes() == b"web\n"
    assert api.requests[-1].q("path") == "/etc"
    p = engine(api, "cp", "web:/etc", str(tmp_path / "copy"))
    assert p.returncode == 0 and (tmp_path / "copy" / "hostname").read_bytes() == b"web\n"
    assert p.stderr.decode().startswith("Successfully copied ")
    api.route("GET", "/containers/web/archive", lambda r: Resp(
        200, _tar({"hostname": b"web\n"}), headers=_stat_header("hostname", False)))
    assert engine(api, "cp", "web:/etc/hostname", str(tmp_path / "h2")).returncode == 0
    assert (tmp_path / "h2").read_bytes() == b"web\n" and oct((tmp_path / "h2").stat().st_mode & 0o777) == "0o640"
    assert tarfile.open(fileobj=io.BytesIO(engine(api, "cp", "web:/etc/hostname", "-").stdout)).getnames() == \
        ["hostname"]
    api.route("GET", "/containers/web/archive", lambda r: Resp(200, _tar({"../evil": b"x"})))
    p = engine(api, "cp", "web:/x", str(tmp_path / "sub"))
    assert p.returncode == 1 and not (tmp_path / "evil").exists()


def test_cp_to_container(api: FakeAPI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"data")
    api.route("HEAD", "/containers/web/archive", lambda r: Resp(200, headers=_stat_header("tmp", True))
              if r.q("path") == "/tmp" else Resp(404, {"message": "Could not find the file"}))
    api.route("PUT", "/containers/web/archive", Resp(200))
    assert engine(api, "cp", str(tmp_path / "d"), "web:/tmp").returncode == 0
    put = api.find("PUT", "/containers/web/archive")[-1]
    assert put.q("path") == "/tmp" and put.q("noOverwriteDirNonDir") == "true"
    assert sorted(tarfile.open(fileobj=io.BytesIO(put.body)).getnames()) == ["d", "d/f"]
    assert engine(api, "cp", str(tmp_path / "d" / "f"), "web:/tmp/renamed").returncode == 0
    put = api.find("PUT", "/containers/web/archive")[-1]
    t = tarfile.open(fileobj=io.BytesIO(put.body))
    assert put.q("path") == "/tmp" and t.getnames() == ["renamed"] and t.extractfile("renamed").read() == b"data"
    p = engine(api, "cp", str(tmp_path / "missing"), "web:/tmp")
    assert p.returncode == 1 and b"no such file or directory" in p.stderr


def test_stats_no_stream(api: FakeAPI) -> None:
    api.route("GET", "/containers/json", Resp(200, [{"Id": CID}]))
    api.route("GET", f"/containers/{CID}/stats", Resp(200, {"id": CID, "name": "/web", "memory_stats": {},
                                                           "pids_stats": {"current": 1}}))
    p = engine(api, "stats", "--no-stream")
    assert p.returncode == 0 and api.requests[-1].q("stream") == "0"
    lines = p.stdout.decode().splitlines()
    assert lines[0].split("   ")[:3] == ["CONTAINER ID", "NAME      CPU %", "  MEM USAGE / LIMIT"] or \
        lines[0].startswith("CONTAINER ID   NAME      CPU %")
    assert lines[1].startswith("cccccccccccc   web       0.00%")


def test_unreachable_daemon_is_one_line() -> None:
    p = subprocess.run([ENGINE, "-H", "unix:///nonexistent/x.sock", "ps"], capture_output=True, timeout=30)
    assert p.returncode == 1 and p.stderr.count(b"\n") == 1 and b"Is the daemon running?" in p.stderr
    p = subprocess.run([ENGINE, "-H", "unix:///nonexistent/x.sock", "run", "busybox"], capture_output=True,
                       timeout=30)
    assert p.returncode == 125


def _unused(r: Req) -> None:  # keep the import used for type hints in lambdas
    pass


def test_container_group(api: FakeAPI) -> None:
    api.route("GET", "/containers/json", Resp(200, []))
    p = engine(api, "container", "ls", "-a")
    assert p.returncode == 0 and p.stdout.decode().startswith("CONTAINER ID   IMAGE ")
    assert api.requests[-1].q("all") == "1"
    api.route("POST", "/containers/prune", Resp(200, {"ContainersDeleted": [CID], "SpaceReclaimed": 0}))
    p = engine(api, "container", "prune", "-f", "--filter", "until=1h")
    assert p.stdout.decode() == f"Deleted Containers:\n{CID}\n\nTotal reclaimed space: 0B\n"
    assert json.loads(api.requests[-1].q("filters") or "") == {"until": {"1h": True}}
    api.route("GET", "/containers/web/json", Resp(200, {"Id": CID}))
    assert engine(api, "container", "inspect", "-f", "{{.Id}}", "web").stdout.decode() == CID + "\n"
    api.route("POST", "/containers/web/stop", Resp(204))
    assert engine(api, "container", "stop", "web").stdout == b"web\n"


def test_usage_errors_exit_125_for_run_and_1_elsewhere(api: FakeAPI) -> None:
    p = engine(api, "run", "--no-such-flag", "busybox")
    assert p.returncode == 125 and b"No such option: --no-such-flag" in p.stderr and not api.requests
    assert engine(api, "ps", "--no-such-flag").returncode == 1


def test_create_takes_runs_flags_and_cidfile(api: FakeAPI, tmp_path) -> None:  # type: ignore[no-untyped-def]
    api.route("POST", "/containers/create", Resp(201, {"Id": CID, "Warnings": ["a warning"]}))
    cidfile = tmp_path / "cid"
    p = engine(api, "create", "--ulimit", "nofile=10:20", "--stop-signal", "SIGINT", "--cidfile", str(cidfile),
               "--health-cmd", "true", "busybox", "sleep", "1")
    assert p.returncode == 0 and p.stdout.decode() == CID + "\n" and p.stderr == b"WARNING: a warning\n"
    assert cidfile.read_text() == CID and [r.path for r in api.requests] == ["/containers/create"]
    body = api.requests[0].json()
    assert body["HostConfig"]["Ulimits"] == [{"Name": "nofile", "Soft": 10, "Hard": 20}]
    assert body["StopSignal"] == "SIGINT" and body["Healthcheck"]["Test"] == ["CMD-SHELL", "true"]
    assert (body["AttachStdout"], body["AttachStderr"]) == (False, False)
    p = engine(api, "create", "--cidfile", str(cidfile), "busybox")
    assert p.returncode == 125 and b"Container ID file found" in p.stderr and len(api.requests) == 1
    assert engine(api, "create", "-d", "busybox").returncode == 125  # -d is run's alone


def test_stats_streams_until_interrupted(api: FakeAPI) -> None:
    import signal
    import time

    api.route("GET", "/containers/json", Resp(200, [{"Id": CID}]))
    api.route("GET", f"/containers/{CID}/stats", Resp(200, {"id": CID, "name": "/web", "pids_stats": {"current": 2}}))
    proc = subprocess.Popen([ENGINE, "-H", api.host, "stats", "--format", "{{.Name}} {{.PIDs}}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 15
        while len(api.find("GET", f"/containers/{CID}/stats")) < 2:
            assert time.monotonic() < deadline, "no second round"
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and out.decode().splitlines()[:2] == ["web 2", "web 2"]
    finally:
        proc.kill()
        proc.wait()


def test_it_without_a_terminal_is_refused_before_any_request(api: FakeAPI) -> None:
    p = engine(api, "run", "-it", "busybox", "sh")
    assert (p.returncode, p.stderr) == (1, b"the input device is not a TTY\n") and not api.requests
    p = engine(api, "run", "--detach-keys", "ctrl-", "busybox")
    assert p.returncode == 125 and b"Invalid detach keys (ctrl-) provided" in p.stderr and not api.requests
