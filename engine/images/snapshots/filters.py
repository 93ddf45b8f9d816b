"""containerd's filter syntax, the part Walk uses: ``field==value``, ``!=``, ``~=`` (regexp) and a bare
field (present), joined by commas (and); several filters are alternatives (or). Fields: ``name``,
``parent``, ``kind``, ``labels.<key>`` (quote a key with dots: ``labels."containerd.io/gc.root"``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from engine.errors import InvalidArgument
from engine.images.snapshots.base import Info

_FILTER = re.compile(r'^\s*(?P<field>[A-Za-z_]+(?:\.(?:"[^"]*"|[^.=!~"\s]+))*)\s*'
                     r'(?:(?P<op>==|!=|~=)\s*(?P<value>"[^"]*"|[^,]*?))?\s*$')


def _field(info: Info, path: str) -> str | None:
    head, _, rest = path.partition(".")
    if head == "labels" and rest:
        return info.labels.get(rest.strip('"'))
    return {"name": info.name, "parent": info.parent, "kind": info.kind.value}.get(path)


def compile_filters(filters: Sequence[str]) -> list[list[tuple[str, str, str]]]:
    """Each filter string is a conjunction (commas); the list is a disjunction, as containerd's."""
    out = []
    for f in filters:
        conj = []
        for part in (p for p in _split_commas(f) if p.strip()):
            m = _FILTER.match(part)
            if not m:
                raise InvalidArgument(f"invalid filter {f!r}: cannot parse {part!r}")
            path, op, value = m.group("field"), m.group("op") or "", (m.group("value") or "").strip()
            value = value[1:-1] if value.startswith('"') and value.endswith('"') and len(value) > 1 else value
            if path.split(".")[0] not in ("name", "parent", "kind", "labels"):
                raise InvalidArgument(f"invalid filter {f!r}: unknown field {path!r}")
            if op == "~=":
                try:
                    re.compile(value)
                except re.error as err:
                    raise InvalidArgument(f"invalid filter {f!r}: {err}") from err
            conj.append((path, op, value))
        out.append(conj)
    return out


def _split_commas(s: str) -> list[str]:
    parts, cur, quoted = [], "", False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return parts


def matches(info: Info, compiled: list[list[tuple[str, str, str]]]) -> bool:
    if not compiled:
        return True
    for conj in compiled:
        ok = True
        for path, op, value in conj:
            got = _field(info, path)
            if op == "":
                ok = got is not None and (path.startswith("labels") or got != "")
            elif op == "==":
                ok = got == value
            elif op == "!=":
                ok = got != value
            else:
                ok = got is not None and re.search(value, got) is not None
            if not ok:
                break
        if ok:
            return True
    return False
