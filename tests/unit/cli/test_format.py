"""The CLI's output formatting against what the docker CLI prints: tabwriter widths, go-units sizes and
durations, the Go-template subset, and ps/images/history rows."""

from __future__ import annotations

import json
import time

import pytest

from engine.cli.ctrinfo import ContainerRow, display_ports, ps_output
from engine.cli.format import (
    Template,
    TemplateError,
    bytes_size,
    ellipsis,
    human_duration,
    human_size,
    inspect_output,
    table,
)
from engine.cli.images import history_output, images_output
from engine.cli.progress import StreamError, display, progress_string
from engine.cli.stats import StatsRow

ID = "4f3a1b2c5d6e" + "0" * 52


def test_table_is_docker_tabwriter() -> None:
    out = table([["CONTAINER ID", "IMAGE", "NAMES"], ["4f3a1b2c5d6e", "busybox", "x"]])
    assert out == ("CONTAINER ID   IMAGE     NAMES\n"
                   "4f3a1b2c5d6e   busybox   x\n")
    assert table([["PID", "CMD"], ["1", "sh"]], minwidth=20) == "PID                 CMD\n1                   sh\n"


@pytest.mark.parametrize(("n", "p", "s"), [(0, 3, "0B"), (999, 3, "999B"), (1000, 3, "1kB"),
                                           (4261234, 3, "4.26MB"), (4261234, 4, "4.261MB"),
                                           (1_500_000_000, 3, "1.5GB")])
def test_human_size(n: int, p: int, s: str) -> None:
    assert human_size(n, p) == s


def test_bytes_size() -> None:
    assert bytes_size(0) == "0B" and bytes_size(1536) == "1.5KiB" and bytes_size(64 * 2**20) == "64MiB"


@pytest.mark.parametrize(("sec", "s"), [(0.3, "Less than a second"), (1, "1 second"), (59, "59 seconds"),
                                        (60, "About a minute"), (150, "2 minutes"), (3600, "About an hour"),
                                        (3 * 3600, "3 hours"), (3 * 86400, "3 days"), (20 * 86400, "2 weeks"),
                                        (90 * 86400, "3 months"), (800 * 86400, "2 years")])
def test_human_duration(sec: float, s: str) -> None:
    assert human_duration(sec) == s


def test_ellipsis() -> None:
    assert ellipsis("sleep 1000", 20) == "sleep 1000"
    assert ellipsis("sh -c 'while true; do date; done'", 20) == "sh -c 'while true; …"


def test_template_fields_json_and_go_values() -> None:
    obj = {"State": {"Status": "running", "Pid": 42}, "Config": {"Env": ["A=1", "B=2"], "Labels": {"b": "2", "a": "1"}},
           "Name": "/x", "Nil": None, "Ok": True}
    assert Template("{{.State.Status}} {{.State.Pid}}").render(obj) == "running 42"
    assert Template("{{json .Config.Env}}").render(obj) == '["A=1","B=2"]'
    assert Template("{{.Config.Labels}}|{{.Config.Env}}|{{.Nil}}|{{.Missing}}|{{.Ok}}").render(obj) == \
        "map[a:1 b:2]|[A=1 B=2]|<nil>|<no value>|true"
    assert Template('{{index .Config.Labels "a"}} {{join .Config.Env ","}} {{upper .Name}}').render(obj) == \
        "1 A=1,B=2 /X"
    with pytest.raises(TemplateError):
        Template("{{if .Ok}}x{{end}}")
    with pytest.raises(TemplateError):
        Template("{{.Name | printf}}")


def test_inspect_output_indent_and_format() -> None:
    out = inspect_output([{"Id": "a", "X": [1]}], None)
    assert out == '[\n    {\n        "Id": "a",\n        "X": [\n            1\n        ]\n    }\n]\n'
    assert inspect_output([{"Id": "a"}, {"Id": "b"}], "{{.Id}}") == "a\nb\n"


def _ctr(**kw: object) -> dict:
    c = {"Id": ID, "Names": ["/web"], "Image": "busybox", "ImageID": "sha256:" + "1" * 64,
         "Command": "sh -c 'while true; do date; done'", "Created": int(time.time()) - 150,
         "Ports": [{"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"},
                   {"PrivatePort": 53, "Type": "udp"}],
         "Labels": {"b": "2", "a": "1"}, "State": "running", "Status": "Up 2 minutes",
         "NetworkSettings": {"Networks": {"bridge": {}}}, "Mounts": [], "SizeRw": 12, "SizeRootFs": 4261234}
    c.update(kw)
    return c


def test_ps_table() -> None:
    out = ps_output([_ctr()], quiet=False, fmt=None, no_trunc=False, size=False).splitlines()
    assert out[0].startswith("CONTAINER ID   IMAGE     COMMAND                  CREATED         STATUS         "
                             "PORTS   ")
    ports = "53/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"
    assert out[0].index("NAMES") == out[0].index("PORTS") + len(ports) + 3
    assert out[1].startswith("4f3a1b2c5d6e   busybox   \"sh -c 'while true; …\"   2 minutes ago   Up 2 minutes   ")
    assert out[1].endswith("53/udp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp   web")


def test_ps_quiet_format_json_size() -> None:
    assert ps_output([_ctr()], quiet=True, fmt=None, no_trunc=False, size=False) == "4f3a1b2c5d6e\n"
    assert ps_output([_ctr()], quiet=True, fmt=None, no_trunc=True, size=False) == ID + "\n"
    assert ps_output([_ctr()], quiet=False, fmt="{{.Names}} {{.State}} {{.Labels}}", no_trunc=False,
                     size=False) == "web running a=1,b=2\n"
    doc = json.loads(ps_output([_ctr()], quiet=False, fmt="json", no_trunc=False, size=False))
    assert doc["ID"] == "4f3a1b2c5d6e" and doc["Names"] == "web" and doc["Networks"] == "bridge"
    assert doc["Command"] == "\"sh -c 'while true; …\""
    sized = ps_output([_ctr()], quiet=False, fmt=None, no_trunc=False, size=True).splitlines()
    assert sized[0].endswith("NAMES     SIZE") and sized[1].endswith("web       12B (virtual 4.26MB)")
    tbl = ps_output([_ctr()], quiet=False, fmt="table {{.ID}}\t{{.Names}}", no_trunc=False, size=False)
    assert tbl == "CONTAINER ID   NAMES\n4f3a1b2c5d6e   web\n"


def test_container_row_image_forms() -> None:
    assert ContainerRow(_ctr(Image="sha256:" + "ab" * 32)).Image == "abababababab"
    assert ContainerRow(_ctr(Image="busybox@sha256:" + "ab" * 32)).Image == "busybox"
    assert ContainerRow(_ctr(Image="")).Image == "<no image>"
    assert display_ports([]) == ""


def test_images_table_and_none_rows() -> None:
    now = int(time.time())
    items = [{"Id": "sha256:" + "a" * 64, "RepoTags": ["busybox:latest", "bb:1"], "RepoDigests": [],
              "Created": now - 3 * 86400, "Size": 4261234},
             {"Id": "sha256:" + "b" * 64, "RepoTags": [], "RepoDigests": [], "Created": now - 7200, "Size": 5}]
    out = images_output(items, quiet=False, fmt=None, no_trunc=False, digests=False)
    assert out == ("REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n"
                   "busybox      latest    aaaaaaaaaaaa   3 days ago    4.26MB\n"
                   "bb           1         aaaaaaaaaaaa   3 days ago    4.26MB\n"
                   "<none>       <none>    bbbbbbbbbbbb   2 hours ago   5B\n")
    assert images_output(items, quiet=True, fmt=None, no_trunc=False, digests=False) == \
        "aaaaaaaaaaaa\nbbbbbbbbbbbb\n"
    assert images_output(items, quiet=False, fmt="{{.Repository}}:{{.Tag}}", no_trunc=False, digests=False) == \
        "busybox:latest\nbb:1\n<none>:<none>\n"


def test_history() -> None:
    items = [{"Id": "sha256:" + "c" * 64, "Created": int(time.time()) - 60,
              "CreatedBy": "/bin/sh -c #(nop)  CMD [\"sh\"] and a long tail of words", "Size": 0, "Comment": ""},
             {"Id": "<missing>", "Created": int(time.time()) - 60, "CreatedBy": "ADD file", "Size": 4261234,
              "Comment": "imported"}]
    out = history_output(items, quiet=False, fmt=None, no_trunc=False, human=True).splitlines()
    assert out[0].split() == ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "COMMENT"]
    assert out[1].startswith("cccccccccccc   About a minute ago   /bin/sh -c #(nop)  CMD [\"sh\"] and a long tai…   0B ")
    assert out[2].startswith("<missing>") and "4.26MB" in out[2] and out[2].endswith("imported")


def test_stats_row() -> None:
    s = {"id": ID, "name": "/web",
         "cpu_stats": {"cpu_usage": {"total_usage": 3_000_000}, "system_cpu_usage": 2_000_000_000, "online_cpus": 2},
         "precpu_stats": {"cpu_usage": {"total_usage": 1_000_000}, "system_cpu_usage": 1_000_000_000},
         "memory_stats": {"usage": 3 * 2**20, "limit": 1024 * 2**20, "stats": {"total_inactive_file": 2**20}},
         "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 500}},
         "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 0}]},
         "pids_stats": {"current": 3}}
    r = StatsRow(s, "web")
    assert (r.ID, r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs) == \
        ("4f3a1b2c5d6e", "web", "0.40%", "2MiB / 1GiB", "0.20%", "1.5kB / 500B", "4.1kB / 0B", "3")


def test_progress_stream_rendering() -> None:
    import io

    msgs = [{"status": "Pulling from library/busybox", "id": "latest"},
            {"status": "Pulling fs layer", "progressDetail": {}, "id": "1fab9dff08f8"},
            {"status": "Downloading", "progressDetail": {"current": 36445, "total": 1122603},
             "progress": "[=> ]", "id": "1fab9dff08f8"},
            {"status": "Pull complete", "progressDetail": {}, "id": "1fab9dff08f8"},
            {"status": "Digest: sha256:bd6d"}, {"aux": {"ID": "sha256:x"}}]
    out = io.StringIO()
    aux: list = []
    display(msgs, out, terminal=False, aux=aux)
    assert out.getvalue() == ("latest: Pulling from library/busybox\n1fab9dff08f8: Pulling fs layer\n"
                              "1fab9dff08f8: Pull complete\nDigest: sha256:bd6d\n")
    assert aux == [{"ID": "sha256:x"}]
    tty = io.StringIO()
    display(msgs[:3], tty, terminal=True)
    assert "\x1b[1A" in tty.getvalue() and "1fab9dff08f8: Downloading " in tty.getvalue()
    assert progress_string({"current": 36445, "total": 1122603}, 120).startswith("[=>" + " " * 49 + "] ")
    assert progress_string({"current": 561301, "total": 1122603}, 80) == " 561.3kB/1.123MB"
    with pytest.raises(StreamError, match="manifest unknown"):
        display([{"errorDetail": {"message": "manifest unknown"}, "error": "manifest unknown"}], io.StringIO(),
                terminal=False)


def test_display_ports_groups_ranges_like_docker() -> None:
    ports = [{"PrivatePort": 54, "Type": "udp"}, {"PrivatePort": 53, "Type": "udp"},
             {"IP": "0.0.0.0", "PrivatePort": 8001, "PublicPort": 8001, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 8000, "PublicPort": 8000, "Type": "tcp"},
             {"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 32768, "Type": "tcp"},
             {"PrivatePort": 9000, "Type": "tcp"}]
    assert display_ports(ports) == \
        "53-54/udp, 0.0.0.0:8000-8001->8000-8001/tcp, 9000/tcp, 0.0.0.0:32768->80/tcp"
