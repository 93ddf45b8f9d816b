"""engine/images/archive on its own and through the service: multi-platform OCI layouts (an index whose
other platform is absent), hostile tar entries, and the --change grammar."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from engine.errors import InvalidArgument
from engine.images.archive import changes, tarstream
from engine.services import Services
from engine.services.image_archive import DANGLING, ImageArchiveService
from tests.integration.images.helpers import ACTOR, NS
from tests.support.registry import multiarch_oci_layout

Env = tuple[Services, ImageArchiveService, Path]


async def test_multiarch_index_loads_the_host_platform_and_saves_what_is_present(env: Env) -> None:
    s, svc, root = env
    layout_dir, digests = multiarch_oci_layout(root / "ma")
    host = [k for k in digests if k.startswith("linux/") and not k.endswith("arm64")][0]
    # the other platform's manifest is not in the layout: a save of one platform, still loadable
    other = digests["linux/arm64"]
    (layout_dir / "blobs" / "sha256" / other.split(":")[1]).unlink()
    loaded = await svc.load_dir(NS, layout_dir, actor=ACTOR)
    assert loaded == [digests["config:" + host]]  # no name: loaded by ID
    g, _ = await svc.lookup(NS, loaded[0])
    assert g.dangling and g.records[0].name == DANGLING + digests["index"]
    assert g.resolved is not None and g.resolved.manifest_desc.digest == digests[host]
    await svc.tag(NS, loaded[0], "docker.io/library/multi:1", actor=ACTOR)
    assert [r.name for r in (await svc.lookup(NS, "multi:1"))[0].records] == ["docker.io/library/multi:1"]
    out = root / "save.tar"
    with open(out, "wb") as f:
        for chunk in await svc.save(NS, ["multi:1"], actor=ACTOR):
            f.write(chunk)
    with tarfile.open(out) as tar:
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        names = set(tar.getnames())
    assert index["manifests"][0]["digest"] == digests["index"]
    assert "blobs/sha256/" + digests[host].split(":")[1] in names
    assert "blobs/sha256/" + other.split(":")[1] not in names


def _tar(entries: list[tarfile.TarInfo], data: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for e in entries:
            payload = data.get(e.name)
            if payload is not None:
                e.size = len(payload)
            tar.addfile(e, io.BytesIO(payload) if payload is not None else None)
    buf.seek(0)
    return buf


def _entry(name: str, type_: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    e = tarfile.TarInfo(name)
    e.type, e.linkname = type_, link
    return e


@pytest.mark.parametrize(("entry", "message"), [
    (_entry("../escape"), "outside the archive"),
    (_entry("/abs/file"), "outside the archive"),
    (_entry("a/../../escape"), "outside the archive"),
    (_entry("link", tarfile.SYMTYPE, "/etc/passwd"), "does not name a file in the archive"),
    (_entry("link", tarfile.SYMTYPE, "../../../etc/passwd"), "does not name a file in the archive"),
    (_entry("hard", tarfile.LNKTYPE, "../outside"), "outside the archive"),
])
def test_hostile_entries_are_refused_and_nothing_is_written_outside(tmp_path: Path, entry: tarfile.TarInfo,
                                                                    message: str) -> None:
    dest = tmp_path / "d" / "e"
    dest.mkdir(parents=True)
    before = set(os.listdir(tmp_path)) | set(os.listdir(tmp_path / "d"))
    with pytest.raises(InvalidArgument, match=message):
        tarstream.extract(_tar([entry], {entry.name: b"x"} if entry.type == tarfile.REGTYPE else {}), dest)
    assert set(os.listdir(tmp_path)) | set(os.listdir(tmp_path / "d")) == before
    assert not any(p.is_symlink() for p in dest.rglob("*"))


def test_links_inside_the_archive_become_files(tmp_path: Path) -> None:
    src = _tar([_entry("dir/layer.tar"), _entry("other/layer.tar", tarfile.SYMTYPE, "../dir/layer.tar"),
                _entry("hard", tarfile.LNKTYPE, "dir/layer.tar")], {"dir/layer.tar": b"payload"})
    digests = tarstream.extract(src, tmp_path)
    assert (tmp_path / "other" / "layer.tar").read_bytes() == b"payload"
    assert not (tmp_path / "other" / "layer.tar").is_symlink()
    assert (tmp_path / "hard").read_bytes() == b"payload"
    assert list(digests) == ["dir/layer.tar"]


def test_tar_stream_round_trips(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"y" * 1000)
    data = b"".join(tarstream.tar_stream([tarstream.Entry("blobs"), tarstream.file_entry("blobs/f", tmp_path / "f"),
                                          tarstream.bytes_entry("index.json", b"{}")]))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["blobs", "blobs/f", "index.json"]
        assert tar.extractfile("blobs/f").read() == b"y" * 1000  # type: ignore[union-attr]


@pytest.mark.parametrize(("change", "expect"), [
    ('CMD ["a", "b"]', {"Cmd": ["a", "b"]}),
    ("CMD echo hi", {"Cmd": ["/bin/sh", "-c", "echo hi"]}),
    ("cmd [not json", {"Cmd": ["/bin/sh", "-c", "[not json"]}),
    ('ENTRYPOINT ["/x"]', {"Entrypoint": ["/x"]}),
    ("ENV A=1 B=\"two words\"", {"Env": ["A=1", "B=two words"]}),
    ("ENV LEGACY some value", {"Env": ["LEGACY=some value"]}),
    ("WORKDIR /srv", {"WorkingDir": "/srv"}),
    ("USER nobody", {"User": "nobody"}),
    ("EXPOSE 80 53/UDP", {"ExposedPorts": {"80/tcp": {}, "53/udp": {}}}),
    ('LABEL a=1 "b c"=d', {"Labels": {"a": "1", "b c": "d"}}),
    ('VOLUME ["/a", "/b"]', {"Volumes": {"/a": {}, "/b": {}}}),
    ("VOLUME /c /d", {"Volumes": {"/c": {}, "/d": {}}}),
    ("STOPSIGNAL SIGTERM", {"StopSignal": "SIGTERM"}),
])
def test_changes(change: str, expect: dict[str, object]) -> None:
    assert changes.apply_changes({}, [change]) == expect


def test_env_replaces_and_refusals() -> None:
    assert changes.apply_changes({"Env": ["A=1", "B=2"]}, ["ENV A=3"]) == {"Env": ["B=2", "A=3"]}
    for bad, msg in [("ONBUILD RUN x", "onbuild is not a valid change command"),
                     ("RUN true", "run is not a valid change command"),
                     ("FROM x", "from is not a valid change command"),
                     ("EXPOSE http", "invalid containerPort: http"),
                     ("LABEL novalue", "Must be of the form: name=value"),
                     ("WORKDIR", "requires exactly one argument")]:
        with pytest.raises(InvalidArgument, match=msg):
            changes.apply_changes({}, [bad])
