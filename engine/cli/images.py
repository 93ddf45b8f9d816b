"""Image verbs of the `engine` CLI, as the docker CLI does them: pull, push, images (image ls), image
inspect, history, tag, rmi, save, load, import, image prune — top-level and under ``engine image``.

pull/push send ``X-Registry-Auth`` (credentials from ~/.docker/config.json, else ``{}``) and render the
daemon's JSON-lines stream with progress.py (one line per layer on a terminal). Names go to the daemon
the way docker's client sends them: ``fromImage`` is the normalised repository and ``tag`` the tag or
digest. ``images`` prints REPOSITORY/TAG/IMAGE ID/CREATED/SIZE (a ``<none>`` row for an untagged
image), ``-q`` unique IDs, ``--digests`` a DIGEST column.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import typer

from engine.cli.common import ClientError, client, die, fail, print_inspect


def _parse(ref: str) -> Any:
    from engine.errors import InvalidArgument
    from engine.images.reference import parse

    try:
        return parse(ref, default_tag="")
    except InvalidArgument as err:
        fail(str(err))


def pull(ref_str: str, *, all_tags: bool = False, platform: str = "", quiet: bool = False,
         out: Any = None) -> None:
    """POST /images/create?fromImage=…&tag=…; raises ClientError / StreamError."""
    from engine.cli.client import registry_auth
    from engine.cli.progress import display

    ref = _parse(ref_str)
    if all_tags and (ref.tag or ref.digest):
        fail("tag can't be used with --all-tags/-a")
    tag = None if all_tags else (ref.digest or ref.tag or "latest")
    c = client(timeout=None)
    msgs = c.lines("/images/create", {"fromImage": ref.repository, "tag": tag, "platform": platform or None},
                   method="POST", headers={"X-Registry-Auth": registry_auth(ref.domain)})
    if quiet:
        display((m for m in msgs if m.get("error") or m.get("errorDetail")), out or sys.stdout)
    else:
        display(msgs, out or sys.stdout)


def pull_for_run(image: str, ref: Any, platform: str) -> None:
    """The pull `run`/`create` make for a missing image: progress on stderr, failures exit 125."""
    from engine.cli.progress import StreamError

    try:
        pull(image, platform=platform, out=sys.stderr)
    except (ClientError, StreamError) as err:
        msg = str(err)
        fail(f"engine: {msg if msg.startswith('Error') else 'Error response from daemon: ' + msg}", 125)


IMAGES_HEADERS = {"Repository": "REPOSITORY", "Tag": "TAG", "Digest": "DIGEST", "ID": "IMAGE ID",
                  "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "Size": "SIZE",
                  "Containers": "CONTAINERS", "SharedSize": "SHARED SIZE", "UniqueSize": "UNIQUE SIZE",
                  "VirtualSize": "VIRTUAL SIZE"}


class ImageRow:
    """docker's imageContext: one (repository, tag) of an /images/json item."""

    FIELDS = ("Containers", "CreatedAt", "CreatedSince", "Digest", "ID", "Repository", "SharedSize", "Size",
              "Tag", "UniqueSize", "VirtualSize")

    def __init__(self, img: dict[str, Any], repo: str, tag: str, digest: str, trunc: bool) -> None:
        self.img, self.Repository, self.Tag, self.Digest, self.trunc = img, repo, tag, digest, trunc

    @property
    def ID(self) -> str:  # noqa: N802
        from engine.cli.format import trunc_id

        return trunc_id(self.img["Id"]) if self.trunc else self.img["Id"]

    @property
    def CreatedSince(self) -> str:  # noqa: N802
        from engine.cli.format import human_duration

        created = int(self.img.get("Created") or 0)
        return human_duration(time.time() - created) + " ago" if created > 0 else "N/A"

    @property
    def CreatedAt(self) -> str:  # noqa: N802
        return time.strftime("%Y-%m-%d %H:%M:%S %z %Z", time.localtime(int(self.img.get("Created") or 0)))

    @property
    def Size(self) -> str:  # noqa: N802
        from engine.cli.format import human_size

        return human_size(self.img.get("Size") or 0, 3)

    VirtualSize = Size

    @property
    def SharedSize(self) -> str:  # noqa: N802
        from engine.cli.format import human_size

        v = self.img.get("SharedSize", -1)
        return "N/A" if v is None or v < 0 else human_size(v, 3)

    @property
    def UniqueSize(self) -> str:  # noqa: N802
        from engine.cli.format import human_size

        v = self.img.get("SharedSize", -1)
        return "N/A" if v is None or v < 0 else human_size((self.img.get("Size") or 0) - v, 3)

    @property
    def Containers(self) -> str:  # noqa: N802
        v = self.img.get("Containers", -1)
        return "N/A" if v is None or v < 0 else str(v)

    def to_dict(self) -> dict[str, str]:
        return {f: getattr(self, f) for f in self.FIELDS}


def image_rows(items: list[dict[str, Any]], trunc: bool, digests: bool) -> list[ImageRow]:
    """docker's imageFormat: a row per tag; a digest-only image shows its repository with tag <none>."""
    from engine.images.reference import familiar_repository

    rows = []
    for img in items:
        tags = [t for t in img.get("RepoTags") or [] if t != "<none>:<none>"]
        digs = [d for d in img.get("RepoDigests") or [] if d != "<none>@<none>"]
        by_repo: dict[str, str] = {}
        for d in digs:
            repo, _, dg = d.rpartition("@")
            by_repo.setdefault(repo, dg)
        if not tags and not digs:
            rows.append(ImageRow(img, "<none>", "<none>", "<none>", trunc))
            continue
        seen = set()
        for t in tags:
            repo, _, tag = t.rpartition(":")
            seen.add(repo)
            rows.append(ImageRow(img, repo, tag, by_repo.get(repo, "<none>"), trunc))
        for repo, dg in by_repo.items():
            if repo not in seen:
                rows.append(ImageRow(img, familiar_repository(repo) if "/" in repo else repo, "<none>", dg, trunc))
    return rows


def images_output(items: list[dict[str, Any]], *, quiet: bool, fmt: str | None, no_trunc: bool,
                  digests: bool) -> str:
    from engine.cli.format import render_rows

    rows = image_rows(items, not no_trunc, digests)
    if quiet and not fmt:
        seen: list[str] = []
        for r in rows:
            if r.ID not in seen:
                seen.append(r.ID)
        return "".join(i + "\n" for i in seen)
    default = "table {{.Repository}}\t{{.Tag}}\t" + ("{{.Digest}}\t" if digests else "") + \
        "{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    return render_rows(rows, fmt, default, IMAGES_HEADERS)


def history_output(items: list[dict[str, Any]], *, quiet: bool, fmt: str | None, no_trunc: bool,
                   human: bool) -> str:
    from engine.cli.format import ellipsis, human_duration, human_size, render_rows, trunc_id

    class Row:
        FIELDS = ("Comment", "CreatedAt", "CreatedBy", "CreatedSince", "ID", "Size")

        def __init__(self, h: dict[str, Any]) -> None:
            hid = h.get("Id") or "<missing>"
            self.ID = hid if no_trunc or hid == "<missing>" else trunc_id(hid)
            created = int(h.get("Created") or 0)
            self.CreatedSince = human_duration(time.time() - created) + " ago" if human else \
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
            self.CreatedAt = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created))
            by = (h.get("CreatedBy") or "").replace("\t", " ")
            self.CreatedBy = ellipsis(by, 45) if not no_trunc else by
            self.Size = human_size(h.get("Size") or 0, 3) if human else str(h.get("Size") or 0)
            self.Comment = h.get("Comment") or ""

        def to_dict(self) -> dict[str, str]:
            return {f: getattr(self, f) for f in self.FIELDS}

    rows = [Row(h) for h in items]
    if quiet and not fmt:
        return "".join(r.ID + "\n" for r in rows)
    headers = {"ID": "IMAGE", "CreatedSince": "CREATED", "CreatedAt": "CREATED AT", "CreatedBy": "CREATED BY",
               "Size": "SIZE", "Comment": "COMMENT"}
    return render_rows(rows, fmt, "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}",
                       headers)


def _print_deleted(items: list[dict[str, Any]]) -> None:
    for d in items or []:
        if d.get("Untagged"):
            typer.echo(f"Untagged: {d['Untagged']}")
        if d.get("Deleted"):
            typer.echo(f"Deleted: {d['Deleted']}")


def register(app: typer.Typer, image_app: typer.Typer) -> None:  # noqa: C901 - one place lists the verbs
    def pull_cmd(name: str = typer.Argument(..., metavar="NAME[:TAG|@DIGEST]"),
                 all_tags: bool = typer.Option(False, "-a", "--all-tags"),
                 platform: str = typer.Option("", "--platform"),
                 quiet: bool = typer.Option(False, "-q", "--quiet")) -> None:
        """Download an image from a registry."""
        from engine.cli.progress import StreamError

        try:
            pull(name, all_tags=all_tags, platform=platform, quiet=quiet)
        except ClientError as err:
            die(err)
        except StreamError as err:
            fail(str(err))
        ref = _parse(name)
        typer.echo(str(ref if (ref.tag or ref.digest or all_tags) else ref.with_tag("latest")))

    def push_cmd(name: str = typer.Argument(..., metavar="NAME[:TAG]"),
                 all_tags: bool = typer.Option(False, "-a", "--all-tags"),
                 quiet: bool = typer.Option(False, "-q", "--quiet"),
                 platform: str = typer.Option("", "--platform")) -> None:
        """Upload an image to a registry."""
        from engine.cli.client import q, registry_auth
        from engine.cli.progress import StreamError, display

        ref = _parse(name)
        if all_tags and ref.tag:
            fail("tag can't be used with --all-tags/-a")
        tag = None if all_tags else (ref.tag or "latest")
        c = client(timeout=None)
        try:
            msgs = c.lines(f"/images/{q(ref.repository)}/push", {"tag": tag, "platform": platform or None},
                           method="POST", headers={"X-Registry-Auth": registry_auth(ref.domain)})
            if quiet:
                display((m for m in msgs if m.get("error") or m.get("errorDetail")), sys.stdout)
                typer.echo(name)
            else:
                display(msgs, sys.stdout)
        except ClientError as err:
            die(err)
        except StreamError as err:
            fail(str(err))

    def images_cmd(
        repository: str | None = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
        all_: bool = typer.Option(False, "-a", "--all"),
        quiet: bool = typer.Option(False, "-q", "--quiet"),
        digests: bool = typer.Option(False, "--digests"),
        filter_: list[str] = typer.Option([], "-f", "--filter"),
        fmt: str | None = typer.Option(None, "--format"),
        no_trunc: bool = typer.Option(False, "--no-trunc"),
    ) -> None:
        """List images."""
        from engine.cli.ctrinfo import filters_param

        filters = list(filter_) + ([f"reference={repository}"] if repository else [])
        try:
            items = client().json("GET", "/images/json", {"all": 1 if all_ else None,
                                                          "filters": filters_param(filters)})
        except ClientError as err:
            die(err)
        sys.stdout.write(images_output(items, quiet=quiet, fmt=fmt, no_trunc=no_trunc, digests=digests))

    def image_inspect(names: list[str] = typer.Argument(..., metavar="IMAGE..."),
                      fmt: str | None = typer.Option(None, "-f", "--format")) -> None:
        """Display detailed information on one or more images."""
        from engine.cli.client import q

        c = client()
        objs, errors = [], []
        for n in names:
            try:
                objs.append(c.json("GET", f"/images/{q(n)}/json"))
            except ClientError as err:
                if err.status != 404:
                    die(err)
                errors.append(f"Error: No such image: {n}")
        print_inspect(objs, fmt, errors)

    def history(image: str = typer.Argument(...),
                human: bool = typer.Option(True, "-H", "--human", help="human readable sizes and dates"),
                quiet: bool = typer.Option(False, "-q", "--quiet"),
                no_trunc: bool = typer.Option(False, "--no-trunc"),
                fmt: str | None = typer.Option(None, "--format")) -> None:
        """Show the history of an image."""
        from engine.cli.client import q

        try:
            items = client().json("GET", f"/images/{q(image)}/history")
        except ClientError as err:
            die(err)
        sys.stdout.write(history_output(items, quiet=quiet, fmt=fmt, no_trunc=no_trunc, human=human))

    def tag(source: str = typer.Argument(..., metavar="SOURCE_IMAGE[:TAG]"),
            target: str = typer.Argument(..., metavar="TARGET_IMAGE[:TAG]")) -> None:
        """Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE."""
        from engine.cli.client import q

        ref = _parse(target)
        if ref.digest:
            fail("refusing to create a tag with a digest reference")
        try:
            client().request("POST", f"/images/{q(source)}/tag",
                             {"repo": ref.repository, "tag": ref.tag or "latest"}).read()
        except ClientError as err:
            die(err)

    def rmi(images: list[str] = typer.Argument(..., metavar="IMAGE..."),
            force: bool = typer.Option(False, "-f", "--force"),
            no_prune: bool = typer.Option(False, "--no-prune")) -> None:
        """Remove one or more images."""
        from engine.cli.client import q

        c = client()
        bad = False
        for img in images:
            try:
                _print_deleted(c.json("DELETE", f"/images/{q(img)}", {"force": 1 if force else None,
                                                                      "noprune": 1 if no_prune else None}))
            except ClientError as err:
                typer.echo(str(err), err=True)
                bad = True
        if bad:
            raise typer.Exit(1)

    def save(images: list[str] = typer.Argument(..., metavar="IMAGE..."),
             output: str | None = typer.Option(None, "-o", "--output", help="write to a file, not STDOUT"),
             platform: str = typer.Option("", "--platform")) -> None:
        """Save one or more images to a tar archive (streamed to STDOUT by default)."""
        if not output and os.isatty(sys.stdout.fileno()):
            fail("cowardly refusing to save to a terminal. Use the -o flag or redirect")
        c = client(timeout=None)
        try:
            resp = c.request("GET", "/images/get", {"names": images, "platform": platform or None}, stream=True)
            if output:
                tmp = f"{output}.tmp-{os.getpid()}"
                with open(tmp, "wb") as f:
                    for chunk in c.body(resp):
                        f.write(chunk)
                os.replace(tmp, output)
            else:
                for chunk in c.body(resp):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
        except ClientError as err:
            die(err)
        except OSError as err:
            fail(f"failed to save image: {err}")

    def load(input_: str | None = typer.Option(None, "-i", "--input", help="read from a tar file, not STDIN"),
             quiet: bool = typer.Option(False, "-q", "--quiet"),
             platform: str = typer.Option("", "--platform")) -> None:
        """Load an image from a tar archive or STDIN."""
        from engine.cli.progress import StreamError, display

        if not input_ and os.isatty(sys.stdin.fileno()):
            fail("requested load from stdin, but stdin is empty")
        try:
            src = open(input_, "rb") if input_ else sys.stdin.buffer
        except OSError as err:
            fail(f"open {input_}: {(err.strerror or str(err)).lower()}")
        quiet = quiet or not os.isatty(sys.stdout.fileno())
        c = client(timeout=None)
        try:
            with src:
                display(c.lines("/images/load", {"quiet": "1" if quiet else "0", "platform": platform or None},
                                method="POST", data=src), sys.stdout)
        except ClientError as err:
            die(err)
        except StreamError as err:
            fail(str(err))

    def import_(source: str = typer.Argument(..., metavar="file|URL|-"),
                repository: str | None = typer.Argument(None, metavar="[REPOSITORY[:TAG]]"),
                change: list[str] = typer.Option([], "-c", "--change", help="a Dockerfile instruction"),
                message: str = typer.Option("", "-m", "--message"),
                platform: str = typer.Option("", "--platform")) -> None:
        """Import the contents from a tarball to create a filesystem image."""
        from engine.cli.progress import StreamError, display

        if repository:
            _parse(repository)
        params = {"fromSrc": source, "repo": repository or None, "message": message or None,
                  "changes": change or None, "platform": platform or None}
        data: Any = None
        if source == "-":
            data = sys.stdin.buffer
        elif "://" not in source:
            try:
                data = open(source, "rb")
            except OSError as err:
                fail(f"open {source}: {(err.strerror or str(err)).lower()}")
            params["fromSrc"] = "-"
        c = client(timeout=None)
        try:
            display(c.lines("/images/create", params, method="POST", data=data), sys.stdout)
        except ClientError as err:
            die(err)
        except StreamError as err:
            fail(str(err))

    def prune(all_: bool = typer.Option(False, "-a", "--all", help="remove all unused images, not just dangling"),
              force: bool = typer.Option(False, "-f", "--force", help="do not prompt for confirmation"),
              filter_: list[str] = typer.Option([], "--filter")) -> None:
        """Remove unused images."""
        import json

        from engine.cli.format import human_size

        warning = ("WARNING! This will remove all images without at least one container associated to them."
                   if all_ else "WARNING! This will remove all dangling images.")
        if not force:
            typer.echo(f"{warning}\nAre you sure you want to continue? [y/N] ", nl=False)
            answer = sys.stdin.readline().strip().lower()
            if answer not in ("y", "yes"):
                raise typer.Exit(0)
        filters: dict[str, dict[str, bool]] = {"dangling": {"false" if all_ else "true": True}}
        for f in filter_:
            k, _, v = f.partition("=")
            filters.setdefault(k, {})[v] = True
        try:
            doc = client(timeout=None).json("POST", "/images/prune",
                                            {"filters": json.dumps(filters, separators=(",", ":"))})
        except ClientError as err:
            die(err)
        deleted = doc.get("ImagesDeleted") or []
        if deleted:
            typer.echo("Deleted Images:")
            for d in deleted:
                if d.get("Untagged"):
                    typer.echo(f"untagged: {d['Untagged']}")
                if d.get("Deleted"):
                    typer.echo(f"deleted: {d['Deleted']}")
            typer.echo("")
        typer.echo(f"Total reclaimed space: {human_size(doc.get('SpaceReclaimed') or 0)}")

    for target in (app, image_app):
        target.command("pull")(pull_cmd)
        target.command("push")(push_cmd)
        target.command("history")(history)
        target.command("tag")(tag)
        target.command("save")(save)
        target.command("load")(load)
        target.command("import")(import_)
    app.command("images")(images_cmd)
    app.command("rmi")(rmi)
    image_app.command("ls")(images_cmd)
    image_app.command("list", hidden=True)(images_cmd)
    image_app.command("rm")(rmi)
    image_app.command("inspect")(image_inspect)
    image_app.command("prune")(prune)
