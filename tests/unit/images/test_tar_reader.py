"""engine/images/tarstream.py reads what Python's tarfile writes, in GNU, PAX and ustar formats, member by
member as tarfile reads it back; broken archives are InvalidArgument."""

from __future__ import annotations

import io
import random
import tarfile

import pytest

from engine.errors import InvalidArgument
from engine.images.tarstream import TarReader

FORMATS = {"gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT, "ustar": tarfile.USTAR_FORMAT}


class Trickle(io.RawIOBase):
    """A stream that gives at most `step` bytes per read, so headers straddle the reader's chunks."""

    def __init__(self, data: bytes, step: int) -> None:
        self.data, self.pos, self.step = data, 0, step

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.step if n < 0 else min(n, self.step)
        out = self.data[self.pos:self.pos + n]
        self.pos += len(out)
        return out


def _archive(members: list[tuple[tarfile.TarInfo, bytes]], fmt: int, **kw: object) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **kw) as tf:  # type: ignore[call-overload]
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **attrs: object) -> tuple[tarfile.TarInfo,
                                                                                                   bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.mode, ti.uid, ti.gid, ti.mtime = 0o640, 1000, 1001, 1_700_000_000
    for k, v in attrs.items():
        setattr(ti, k, v)
    return ti, data


def _expected(archive: bytes) -> list[tuple]:
    out = []
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:", encoding="utf-8", errors="surrogateescape") as tf:
        for m in tf:
            data = tf.extractfile(m).read() if m.isreg() else b""  # type: ignore[union-attr]
            xattrs = {k[len("SCHILY.xattr."):]: v.encode("utf-8", "surrogateescape")
                      for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")}
            mtime_ns = round(m.mtime * 1_000_000_000) if isinstance(m.mtime, float) else m.mtime * 1_000_000_000
            kind = "reg" if m.isreg() else "dir" if m.isdir() else m.type.decode("latin-1")
            dev = (m.devmajor, m.devminor) if m.ischr() or m.isblk() else (0, 0)
            out.append((m.name.rstrip("/"), kind, m.mode, m.uid, m.gid, mtime_ns, m.linkname, dev, xattrs, data))
    return out


def _read_all(stream: io.RawIOBase | io.BytesIO) -> list[tuple]:
    reader = TarReader(stream)  # type: ignore[arg-type]
    out = []
    for e in reader:
        data = b"".join(bytes(v) for v in reader.data())
        kind = "reg" if e.isreg() else "dir" if e.isdir() else e.type.decode("latin-1")
        out.append((e.name.rstrip("/"), kind, e.mode, e.uid, e.gid, e.mtime_ns, e.linkname,
                    (e.devmajor, e.devminor), e.xattrs, data))
    return out


def _kinds() -> list[tuple[tarfile.TarInfo, bytes]]:
    big = random.Random(1).randbytes(3 * (1 << 20) + 123)  # spans the reader's 1 MiB chunks
    return [
        _info("dir", tarfile.DIRTYPE, mode=0o755),
        _info("dir/empty"),
        _info("dir/small", data=b"hello\n"),
        _info("dir/big", data=big),
        _info("dir/odd", data=b"x" * 513),
        _info("dir/link", tarfile.SYMTYPE, linkname="small"),
        _info("dir/hard", tarfile.LNKTYPE, linkname="dir/small"),
        _info("dev/null", tarfile.CHRTYPE, devmajor=1, devminor=3),
        _info("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0),
        _info("dev/fifo", tarfile.FIFOTYPE),
        _info("a" * 60 + "/" + "b" * 60 + "/file", data=b"prefix split in ustar"),
    ]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("step", [1 << 30, 511, 7])
def test_every_kind_reads_as_tarfile_reads_it(fmt: str, step: int) -> None:
    archive = _archive(_kinds(), FORMATS[fmt])
    stream = io.BytesIO(archive) if step > len(archive) else Trickle(archive, step)
    assert _read_all(stream) == _expected(archive)


@pytest.mark.parametrize("fmt", ["gnu", "pax"])
def test_long_names_links_and_big_ids(fmt: str) -> None:
    members = [
        _info("d/" + "n" * 150 + "/" + "m" * 120, data=b"long name"),
        _info("l", tarfile.SYMTYPE, linkname="t" * 300),
        _info("ids", data=b"big ids", uid=3_000_000, gid=4_000_000),
    ]
    archive = _archive(members, FORMATS[fmt])
    got = _read_all(Trickle(archive, 100))
    assert got == _expected(archive)
    assert got[0][0].endswith("m" * 120) and got[1][6] == "t" * 300 and got[2][3:5] == (3_000_000, 4_000_000)


def test_pax_fractional_mtimes_xattrs_global_headers_and_undecodable_names() -> None:
    ti, data = _info("f", data=b"x")
    ti.pax_headers = {"mtime": "1700000000.123456789", "SCHILY.xattr.user.a": "v",
                      "SCHILY.xattr.security.capability": b"\x01\x00\xff".decode("utf-8", "surrogateescape")}
    archive = _archive([(ti, data), _info("g", data=b"y"), _info("caf\udce9", data=b"z")], tarfile.PAX_FORMAT,
                       pax_headers={"uid": "4242"}, encoding="utf-8", errors="surrogateescape")
    got = _read_all(io.BytesIO(archive))
    assert got[0][5] == 1_700_000_000_123_456_789  # exact, no float rounding
    assert got[0][8] == {"user.a": b"v", "security.capability": b"\x01\x00\xff"}
    assert got[1][3] == 4242  # the global header applies to later members
    assert got[2][0] == "caf\udce9"


def test_old_style_directory_and_unread_data_is_skipped() -> None:
    archive = _archive([_info("olddir/", tarfile.AREGTYPE), _info("a", data=b"A" * 5000), _info("b", data=b"B" * 10)], tarfile.GNU_FORMAT)
    reader = TarReader(Trickle(archive, 333))  # type: ignore[arg-type]
    first = reader.next()
    assert first is not None and first.isdir() and first.name == "olddir/"
    a = reader.next()
    assert a is not None and a.name == "a"
    part = next(reader.data())
    assert len(part) and bytes(part[:1]) == b"A"  # read a little of a, then go on
    b = reader.next()
    assert b is not None and b.name == "b" and b"".join(bytes(v) for v in reader.data()) == b"B" * 10
    assert reader.next() is None and reader.next() is None


def test_archive_ending_without_zero_blocks_ends_cleanly() -> None:
    archive = _archive([_info("a", data=b"1" * 700)], tarfile.PAX_FORMAT)
    end = 512 + 1024  # header + data padded to 1024, without the two zero blocks
    assert [g[0] for g in _read_all(io.BytesIO(archive[:end]))] == ["a"]


@pytest.mark.parametrize("cut", [100, 512 + 300, 512 * 3 + 10])
def test_truncated_archives_are_refused(cut: int) -> None:
    archive = _archive([_info("a", data=b"1" * 1000), _info("b", data=b"2" * 1000)], tarfile.USTAR_FORMAT)
    with pytest.raises(InvalidArgument):
        _read_all(io.BytesIO(archive[:cut]))


def test_bad_checksum_sparse_and_bad_pax_are_refused() -> None:
    archive = bytearray(_archive([_info("a", data=b"x")], tarfile.USTAR_FORMAT))
    archive[0] ^= 0x01
    with pytest.raises(InvalidArgument, match="not a tar archive"):
        _read_all(io.BytesIO(bytes(archive)))
    sparse = bytearray(_archive([_info("s", data=b"x")], tarfile.GNU_FORMAT))
    sparse[156:157] = b"S"
    _fix_checksum(sparse)
    with pytest.raises(InvalidArgument, match="sparse"):
        _read_all(io.BytesIO(bytes(sparse)))
    ti, data = _info("p", data=b"x")
    ti.pax_headers = {"comment": "c"}
    pax = bytearray(_archive([(ti, data)], tarfile.PAX_FORMAT))
    i = pax.index(b" comment=")
    pax[i - 2:i] = b"99"  # a record length past the header's data
    with pytest.raises(InvalidArgument, match="PAX"):
        _read_all(io.BytesIO(bytes(pax)))


def _fix_checksum(block: bytearray) -> None:
    block[148:156] = b" " * 8
    block[148:156] = b"%06o\0 " % sum(block[:512])


def test_random_archives_read_as_tarfile_reads_them() -> None:
    rnd = random.Random(7)
    for fmt in FORMATS.values():
        members = []
        for i in range(300):
            kind = rnd.choice([tarfile.REGTYPE] * 4 + [tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE])
            name = f"d{rnd.randrange(5)}/" + "x" * rnd.choice([1, 20, 90]) + str(i)
            if fmt == tarfile.USTAR_FORMAT:
                name = name[:99]
            size = rnd.choice([0, 1, 511, 512, 513, 4096, 70_000])
            data = rnd.randbytes(size) if kind == tarfile.REGTYPE else b""
            members.append(_info(name, kind, data, mode=rnd.choice([0o644, 0o755, 0o4755, 0o1777]),
                                 linkname="target" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else "",
                                 mtime=rnd.randrange(2**31)))
        archive = _archive(members, fmt)
        assert _read_all(Trickle(archive, rnd.choice([97, 4096, 1 << 20]))) == _expected(archive)
