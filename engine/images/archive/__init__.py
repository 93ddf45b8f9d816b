"""Image archives, pure: tar streams in and out, no services.

* ``tarstream`` — safe extraction of an archive into a scratch directory, and a streaming tar writer.
* ``layout`` — reading what ``docker save`` writes (manifest.json + repositories + ``<id>.json`` + layer
  tars, skopeo's ``docker-archive:`` flavour, and the OCI layout Docker ≥ 25 adds in the same tar) and
  plain OCI image layouts (directory or tar) into one shape: blobs by digest and images (target
  descriptor + names).
* ``writer`` — the tar ``docker save`` writes since Docker 25: manifest.json + repositories AND
  oci-layout/index.json, every blob stored once under ``blobs/sha256``.
* ``changes`` — ``docker import --change`` Dockerfile instructions applied to an image config.
* ``rootfs`` — a rootfs tarball (plain, gzip, zstd) → layer blob + diff ID + image config and manifest.

Design choice: the reader works on an extracted directory, not on the stream, because a ``docker save``
tar may put manifest.json after the layers (skopeo does) and layers may be symlinks to one another; the
service extracts into a scratch directory under the daemon's root (Docker does the same).
"""
