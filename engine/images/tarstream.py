"""A forward-only tar reader for unpacking layers, without the copies ``tarfile``'s stream mode makes.

``tarfile.open(mode="r|")`` passes a file's bytes through its own buffers and a ``BufferedReader`` before
they reach the caller, four or five copies per byte; at a few hundred MB per pull that was most of the
unpacker's memory traffic. Here a member's data comes out as views into the chunks read from the
(decompressed) stream, ready for ``os.write``.

What it reads (what image layers use): POSIX ustar with its name prefix, PAX extended headers (``x``,
and ``g`` for all later members: path, linkpath, size, uid, gid, mtime with fractions, ``SCHILY.xattr.*``),
GNU long names and link names (``L``/``K``), base-256 numbers, and old-style directories (a regular
member whose name ends in ``/``). A bad header checksum, a truncated stream or a GNU sparse file is an
InvalidArgument; the archive ends at its first zero block, as tar and ``tarfile`` end it.

Names are decoded as ``tarfile`` decodes them (UTF-8, undecodable bytes kept by ``surrogateescape``); xattr
values stay bytes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from engine.errors import InvalidArgument

BLOCK = 512
CHUNK = 1 << 20

REGTYPE, AREGTYPE, LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE, CONTTYPE = (
    b"0", b"\0", b"1", b"2", b"3", b"4", b"5", b"6", b"7")
_PAX, _PAX_GLOBAL, _GNU_LONGNAME, _GNU_LONGLINK, _GNU_SPARSE = b"x", b"g", b"L", b"K", b"S"
_XATTR = "SCHILY.xattr."


def _decode(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _cstr(field_: bytes) -> bytes:
    end = field_.find(b"\0")
    return field_ if end < 0 else field_[:end]


def _number(field_: bytes, what: str) -> int:
    """A numeric header field: octal text, or GNU base-256 (first byte 0x80 or 0xff)."""
    if field_ and field_[0] in (0x80, 0xFF):
        n = int.from_bytes(field_[1:], "big")
        if field_[0] == 0xFF:
            n -= 1 << (8 * (len(field_) - 1))
        return n
    text = _cstr(field_).strip(b" ")
    if not text:
        return 0
    try:
        return int(text, 8)
    except ValueError:
        raise InvalidArgument(f"layer tar: bad {what} field {field_!r}") from None


@dataclass
class Entry:
    """One member, with the methods of ``tarfile.TarInfo`` that the unpacker uses."""

    name: str
    type: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str = ""
    devmajor: int = 0
    devminor: int = 0
    xattrs: dict[str, bytes] = field(default_factory=dict)

    def isreg(self) -> bool:
        return self.type in (REGTYPE, AREGTYPE, CONTTYPE)

    def isdir(self) -> bool:
        return self.type == DIRTYPE

    def issym(self) -> bool:
        return self.type == SYMTYPE

    def islnk(self) -> bool:
        return self.type == LNKTYPE

    def ischr(self) -> bool:
        return self.type == CHRTYPE

    def isblk(self) -> bool:
        return self.type == BLKTYPE

    def isfifo(self) -> bool:
        return self.type == FIFOTYPE


class TarReader:
    """Members of the tar read from `stream`, in order: ``for entry in reader: ... reader.data()``.

    A member's data is what ``data()`` yields; whatever the caller leaves unread is skipped on the next
    member."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._view = memoryview(b"")
        self._left = 0  # data bytes of the current member not read yet
        self._pad = 0  # and the padding after them
        self._global: dict[str, bytes] = {}
        self.ended = False

    # ---- bytes ----------------------------------------------------------------------------------------

    def _more(self) -> bool:
        chunk = self._stream.read(CHUNK)
        if not chunk:
            return False
        self._view = memoryview(chunk)
        return True

    def _take(self, n: int) -> memoryview:
        """Up to `n` bytes (at least one): a view into the current chunk."""
        if not self._view and not self._more():
            raise InvalidArgument("layer tar is truncated or corrupt: it ends inside a member")
        out, self._view = self._view[:n], self._view[n:]
        return out

    def _exact(self, n: int) -> bytes:
        if len(self._view) >= n:
            out, self._view = self._view[:n], self._view[n:]
            return out.tobytes()
        parts = []
        while n:
            part = self._take(n)
            parts.append(part.tobytes())
            n -= len(part)
        return b"".join(parts)

    def _skip(self, n: int) -> None:
        while n:
            n -= len(self._take(n))

    def data(self) -> Iterator[memoryview]:
        """The current member's data, as views valid until the next one is taken."""
        while self._left:
            part = self._take(self._left)
            self._left -= len(part)
            yield part

    # ---- members --------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Entry]:
        while (entry := self.next()) is not None:
            yield entry

    def next(self) -> Entry | None:
        self._skip(self._left + self._pad)
        self._left = self._pad = 0
        if self.ended:
            return None
        pax: dict[str, bytes] = {}
        long_name = long_link = None
        while True:
            if not self._view and not self._more():
                self.ended = True  # no end-of-archive blocks: tar accepts that, and so does tarfile
                return None
            head = self._exact(BLOCK)
            if head.count(0) == BLOCK:
                self.ended = True
                return None
            _check_sum(head)
            kind = head[156:157]
            size = _number(head[124:136], "size")
            if size < 0:
                raise InvalidArgument("layer tar: negative member size")
            if kind in (_PAX, _PAX_GLOBAL):
                records = _pax_records(self._exact(size))
                self._skip(-size % BLOCK)
                (pax if kind == _PAX else self._global).update(records)
                continue
            if kind in (_GNU_LONGNAME, _GNU_LONGLINK):
                value = _cstr(self._exact(size))
                self._skip(-size % BLOCK)
                if kind == _GNU_LONGNAME:
                    long_name = value
                else:
                    long_link = value
                continue
            if kind == _GNU_SPARSE:
                raise InvalidArgument("layer tar: GNU sparse files are not supported")
            return self._entry(head, kind, size, {**self._global, **pax}, long_name, long_link)

    def _entry(self, head: bytes, kind: bytes, size: int, pax: dict[str, bytes], long_name: bytes | None,
               long_link: bytes | None) -> Entry:
        name = _cstr(head[0:100])
        if head[257:263] == b"ustar\x00":  # POSIX ustar (GNU's "ustar  " keeps other fields there)
            prefix = _cstr(head[345:500])
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        link = long_link if long_link is not None else _cstr(head[157:257])
        if "path" in pax:
            name = pax["path"]
        if "linkpath" in pax:
            link = pax["linkpath"]
        if "size" in pax:
            size = _pax_int(pax["size"], "size")
        uid = _pax_int(pax["uid"], "uid") if "uid" in pax else _number(head[108:116], "uid")
        gid = _pax_int(pax["gid"], "gid") if "gid" in pax else _number(head[116:124], "gid")
        mtime_ns = _pax_time(pax["mtime"]) if "mtime" in pax else _number(head[136:148], "mtime") * 1_000_000_000
        if kind == AREGTYPE and name.endswith(b"/"):
            kind = DIRTYPE  # the old tar's way of storing a directory
        entry = Entry(name=_decode(name), type=kind, size=size, mode=_number(head[100:108], "mode"), uid=uid,
                      gid=gid, mtime_ns=mtime_ns, linkname=_decode(link),
                      devmajor=_number(head[329:337], "devmajor") if kind in (CHRTYPE, BLKTYPE) else 0,
                      devminor=_number(head[337:345], "devminor") if kind in (CHRTYPE, BLKTYPE) else 0,
                      xattrs={k[len(_XATTR):]: v for k, v in pax.items() if k.startswith(_XATTR)})
        # links, directories and devices carry no data in the archive whatever their size field says
        data = size if kind in (REGTYPE, AREGTYPE, CONTTYPE) or kind not in (
            LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE) else 0
        self._left, self._pad = data, -data % BLOCK
        return entry


def _check_sum(head: bytes) -> None:
    try:
        want = _number(head[148:156], "checksum")
    except InvalidArgument:
        want = -1
    unsigned = sum(head[:148]) + 8 * 0x20 + sum(head[156:])
    if want == unsigned:
        return
    signed = sum(b - 256 if b > 127 else b for b in head[:148] + head[156:]) + 8 * 0x20
    if want != signed:
        raise InvalidArgument("layer tar: bad header checksum (not a tar archive, or a corrupt one)")


def _pax_records(raw: bytes) -> dict[str, bytes]:
    """``<length> <key>=<value>\\n`` records; keys are text, values stay bytes."""
    out: dict[str, bytes] = {}
    pos = 0
    while pos < len(raw):
        if raw[pos] == 0:
            break
        space = raw.find(b" ", pos)
        if space < 0:
            raise InvalidArgument("layer tar: bad PAX header")
        try:
            length = int(raw[pos:space])
        except ValueError:
            raise InvalidArgument("layer tar: bad PAX record length") from None
        end = pos + length
        if length <= 0 or end > len(raw) or raw[end - 1:end] != b"\n":
            raise InvalidArgument("layer tar: bad PAX record")
        key, eq, value = raw[space + 1:end - 1].partition(b"=")
        if not eq:
            raise InvalidArgument("layer tar: bad PAX record")
        out[_decode(key)] = value
        pos = end
    return out


def _pax_int(value: bytes, what: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise InvalidArgument(f"layer tar: bad PAX {what} {value!r}") from None
    if n < 0:
        raise InvalidArgument(f"layer tar: negative PAX {what}")
    return n


def _pax_time(value: bytes) -> int:
    """A PAX time (``seconds[.fraction]``, maybe negative) in nanoseconds, without float rounding."""
    text = value.decode("ascii", "replace").strip()
    neg = text.startswith("-")
    whole, _, frac = text.lstrip("-").partition(".")
    if not whole.isdigit() or (frac and not frac.isdigit()):
        raise InvalidArgument(f"layer tar: bad PAX mtime {value!r}")
    ns = int(whole) * 1_000_000_000 + int((frac + "000000000")[:9])
    return -ns if neg else ns
