"""A real registry for tests: Debian's ``docker-registry`` (distribution 2.8) on 127.0.0.1, a free port and a
temp storage dir, anonymous or with htpasswd basic auth (bcrypt file from ``htpasswd -B``); and test images
put into it by an independent writer, Debian's ``skopeo``.

Images: the busybox archives of tests/support/images.py, a random multi-layer gzip image
(``random_oci_layout``), and a two-platform index (``multiarch_oci_layout``: the host's platform carries the
real busybox, the other one a config that says so). The registry's access log (``log()``) shows every
request, which tests use to count blob downloads.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tests.support import images

OCI_INDEX = images.OCI_INDEX
OCI_MANIFEST = images.OCI_MANIFEST
OCI_CONFIG = images.OCI_CONFIG
OCI_LAYER_GZIP = images.OCI_LAYER_GZIP


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TestRegistry:
    """``docker-registry serve`` on 127.0.0.1:<free port>; `users` turns on htpasswd basic auth."""

    __test__ = False

    def __init__(self, users: dict[str, str] | None = None, *, auth: dict[str, Any] | None = None,
                 creds: tuple[str, str] | None = None, address: str = "127.0.0.1") -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="reg-", dir="/tmp"))
        self.port = free_port()
        self.address = address  # another of this host's own addresses, for the non-loopback (insecure) cases
        self.host = f"{address}:{self.port}"
        self.users = users or {}
        self.auth = auth  # a registry `auth` section of its own (token auth: tests/support/token_auth.py)
        self.creds = creds or (next(iter(self.users.items())) if self.users else None)  # for skopeo
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.dir / "registry.log"

    def start(self) -> TestRegistry:
        cfg: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {"filesystem": {"rootdirectory": str(self.dir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.host, "secret": "test-secret"},
        }
        if self.users:
            htp = self.dir / "htpasswd"
            for i, (user, password) in enumerate(self.users.items()):
                subprocess.run(["htpasswd", "-B", "-b", *(["-c"] if i == 0 else []), str(htp), user, password],
                               check=True, capture_output=True)
            cfg["auth"] = {"htpasswd": {"realm": "test-realm", "path": str(htp)}}
        if self.auth is not None:
            cfg["auth"] = self.auth
        (self.dir / "config.yml").write_text(json.dumps(cfg))  # JSON is YAML
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(self.dir / "config.yml")], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"docker-registry exited:\n{self.log()}")
            try:
                with socket.create_connection((self.address, self.port), 0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"docker-registry did not listen:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def blob_gets(self, digest: str) -> int:
        """How many GETs of the blob the access log shows (redirected or served)."""
        needle = '"GET /v2/'
        return sum(1 for line in self.log().splitlines() if needle in line and f"/blobs/{digest} " in line)

    def creds_args(self, flag: str) -> list[str]:
        if not self.creds:
            return []
        user, password = self.creds
        return [flag, f"{user}:{password}"]

    def skopeo_copy(self, src: str, repo_tag: str, *, all_images: bool = False) -> None:
        """Put an image in: ``skopeo copy SRC docker://HOST/REPO:TAG`` over plain HTTP."""
        subprocess.run(["skopeo", "copy", "--quiet", "--dest-tls-verify=false", *self.creds_args("--dest-creds"),
                        *(["--all"] if all_images else []), src, f"docker://{self.host}/{repo_tag}"],
                       check=True, capture_output=True, timeout=120)

    def skopeo_inspect(self, repo_tag: str, raw: bool = False) -> Any:
        out = subprocess.run(["skopeo", "inspect", "--tls-verify=false", *self.creds_args("--creds"),
                              *(["--raw"] if raw else []), f"docker://{self.host}/{repo_tag}"],
                             check=True, capture_output=True, timeout=60)
        return json.loads(out.stdout)

    def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes, dict[str, str]]:
        req = urllib.request.Request(f"http://{self.host}{path}", headers=headers or {})
        if self.users:
            import base64

            user, password = next(iter(self.users.items()))
            req.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read(), dict(err.headers)


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _write_layout(dest: Path, blobs: list[bytes], index: dict[str, Any]) -> Path:
    (dest / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (dest / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
    for b in blobs:
        (dest / "blobs" / "sha256" / sha256(b).split(":")[1]).write_bytes(b)
    (dest / "index.json").write_text(json.dumps(index))
    return dest


def _tar_of_files(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def image_layout(dest: str | Path, layer_tars: list[bytes], *, config_extra: dict[str, Any] | None = None,
                 level: int = 1) -> tuple[Path, str]:
    """An OCI layout dir with one gzip manifest of these tars; returns (dir, manifest digest)."""
    dest = Path(dest)
    gz = [gzip.compress(t, level, mtime=0) for t in layer_tars]
    config = json.dumps(images.image_config([sha256(t) for t in layer_tars], extra=config_extra),
                        sort_keys=True).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
        "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(b), "size": len(b)} for b in gz],
    }, sort_keys=True).encode()
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest)}]}
    _write_layout(dest, [*gz, config, manifest], index)
    return dest, sha256(manifest)


def busybox_layer_tar_bytes() -> bytes:
    return images._layer_bytes()


def random_layer(size: int, seed: int, files: int = 4) -> bytes:
    """A tar of `files` files of random bytes totalling about `size` (incompressible: gzip keeps the size)."""
    rnd = hashlib.sha256(f"seed-{seed}".encode()).digest()
    per = max(size // files, 1)
    out = {}
    for i in range(files):
        # os.urandom would make each run differ; a seeded stream keeps digests stable within a run
        out[f"data/s{seed}/f{i}.bin"] = _stream(rnd + bytes([i]), per)
    return _tar_of_files(out)


def _stream(seed: bytes, n: int) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


def random_oci_layout(dest: str | Path, layer_sizes: list[int], seed: int = 0,
                      with_busybox: bool = True) -> tuple[Path, str]:
    """busybox (optional, so the image runs) plus random layers of the given sizes."""
    tars = ([busybox_layer_tar_bytes()] if with_busybox else []) + [
        random_layer(s, seed * 100 + i) for i, s in enumerate(layer_sizes)]
    return image_layout(dest, tars)


def multiarch_oci_layout(dest: str | Path, other_arch: str = "arm64") -> tuple[Path, dict[str, str]]:
    """An index with two platforms: the host's (busybox) and `other_arch` (a small random layer).
    Returns (dir, {platform: manifest digest, "index": index digest})."""
    dest = Path(dest)
    host_arch = images._ARCH.get(os.uname().machine, os.uname().machine)
    blobs: list[bytes] = []
    entries = []
    out: dict[str, str] = {}
    for arch, tar in ((other_arch, random_layer(4096, 7, 1)), (host_arch, busybox_layer_tar_bytes())):
        gz = gzip.compress(tar, 1, mtime=0)
        cfg_doc = images.image_config([sha256(tar)], extra={"Labels": {"arch": arch}})
        cfg_doc["architecture"] = arch
        config = json.dumps(cfg_doc, sort_keys=True).encode()
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": sha256(config), "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER_GZIP, "digest": sha256(gz), "size": len(gz)}],
        }, sort_keys=True).encode()
        blobs += [gz, config, manifest]
        entries.append({"mediaType": OCI_MANIFEST, "digest": sha256(manifest), "size": len(manifest),
                        "platform": {"architecture": arch, "os": "linux"}})
        out[f"linux/{arch}"] = sha256(manifest)
        out[f"config:linux/{arch}"] = sha256(config)
    index_doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    idx = json.dumps(index_doc).encode()
    blobs.append(idx)
    # the layout's own index.json points at the nested index, so `skopeo copy --all` pushes an index
    _write_layout(dest, blobs, {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_INDEX, "digest": sha256(idx), "size": len(idx)}]})
    out["index"] = sha256(idx)
    return dest, out
