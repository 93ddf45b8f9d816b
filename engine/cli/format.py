"""Output formatting for the `engine` CLI, as the docker CLI prints it.

* Tables are Go's text/tabwriter as docker configures it (minimum cell width 10, padding 3, spaces; `top`
  uses 20): each column is as wide as its widest cell plus 3, at least 10; the last column is not padded.
* ``--format`` takes a small, honest subset of Go templates: text with ``{{.Field}}`` / ``{{.A.B}}``
  actions, ``{{json .}}`` / ``{{json .Field}}``, ``{{index .Map "key"}}``, ``{{join .List ","}}``,
  ``{{upper .X}}``, ``{{lower .X}}``; a leading ``table`` prints a header row of the field names, and the
  bare words ``json`` (one JSON object per line) and ``table``. Anything else is an error, not a guess.
  Values print as Go prints them: maps as ``map[k:v]``, lists as ``[a b]``, nil as ``<nil>``, a missing
  map key as ``<no value>``.
* Sizes and durations are go-units' HumanSize (decimal, 3 or 4 significant digits), BytesSize (binary)
  and HumanDuration ("About a minute", "2 hours").
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from engine.humanize import human_duration  # noqa: F401 (re-exported)

_DECIMAL = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


class TemplateError(Exception):
    pass


def _size(size: float, base: float, units: Sequence[str], precision: int) -> str:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return f"{size:.{precision}g}{units[i]}"


def human_size(size: float, precision: int = 4) -> str:
    """go-units HumanSizeWithPrecision: ``4.26MB``."""
    return _size(float(size), 1000.0, _DECIMAL, precision)


def bytes_size(size: float) -> str:
    """go-units BytesSize: ``1.5MiB``."""
    return _size(float(size), 1024.0, _BINARY, 4)


def ellipsis(s: str, width: int) -> str:
    """Cut `s` to `width` characters, the last one an ellipsis (docker's formatter.Ellipsis)."""
    if len(s) <= width:
        return s
    return s[: width - 1] + "…" if width > 1 else s[:width]


def go_quote(s: str) -> str:
    """strconv.Quote, close enough: double quotes, backslash escapes, printable unicode kept."""
    return json.dumps(s, ensure_ascii=False)


def trunc_id(s: str) -> str:
    """stringid.TruncateID: drop an ``algo:`` prefix and keep 12 characters."""
    return s.split(":", 1)[-1][:12]


def table(rows: Iterable[Sequence[Any]], minwidth: int = 10, padding: int = 3) -> str:
    """Go tabwriter(minwidth, tabwidth=1, padding, ' ', 0): cells separated by tabs, last one not padded."""
    cells = [[str(c) for c in r] for r in rows]
    if not cells:
        return ""
    widths: dict[int, int] = {}
    for r in cells:
        for i, c in enumerate(r[:-1]):
            widths[i] = max(widths.get(i, 0), len(c) + padding, minwidth)
    out = []
    for r in cells:
        line = "".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + (r[-1] if r else "")
        out.append(line)
    return "\n".join(out) + "\n"


# ---- Go-template subset -----------------------------------------------------------------------------

_MISSING = object()
_ACTION = re.compile(r"{{-?\s*(.*?)\s*-?}}", re.S)
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\S+')


def go_str(v: Any) -> str:
    """A value printed as Go's text/template prints it."""
    if v is _MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    if isinstance(v, list | tuple):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _lookup(obj: Any, path: str) -> Any:
    if path == ".":
        return obj
    cur = obj
    for name in path.lstrip(".").split("."):
        if isinstance(cur, dict):
            cur = cur.get(name, _MISSING)
        elif hasattr(cur, name):
            cur = getattr(cur, name)
        else:
            raise TemplateError(f"template: can't evaluate field {name} in type {type(cur).__name__}")
        if callable(cur):
            cur = cur()
    return cur


def _arg(obj: Any, tok: str) -> Any:
    if tok.startswith('"'):
        return json.loads(tok)
    if tok.startswith("."):
        return _lookup(obj, tok)
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    raise TemplateError(f"template: unsupported argument {tok!r}")


def _jsonable(v: Any) -> Any:
    if v is _MISSING:
        return None
    if hasattr(v, "to_dict"):
        return v.to_dict()
    return v


def _call(obj: Any, expr: str) -> Any:
    toks = _TOKEN.findall(expr)
    if not toks:
        raise TemplateError("template: missing value for command")
    fn, args = toks[0], [_arg(obj, t) for t in toks[1:]]
    if fn.startswith(".") and not args:
        return _lookup(obj, fn)
    if fn == "json" and len(args) == 1:
        return json.dumps(_jsonable(args[0]), separators=(",", ":"), ensure_ascii=False)
    if fn == "index" and len(args) >= 2:
        cur = args[0]
        for key in args[1:]:
            try:
                cur = cur[key]
            except (KeyError, IndexError, TypeError):
                cur = _MISSING if isinstance(cur, dict) else None
        return cur
    if fn == "join" and len(args) == 2:
        return args[1].join(go_str(x) for x in (args[0] or []))
    if fn in ("upper", "lower") and len(args) == 1:
        s = go_str(args[0])
        return s.upper() if fn == "upper" else s.lower()
    raise TemplateError(f"template: unsupported action {{{{{expr}}}}} (supported: .Field, json, index, join, "
                        "upper, lower)")


class Template:
    """A parsed --format string."""

    def __init__(self, text: str) -> None:
        self.is_table = text.startswith("table")
        if self.is_table:
            text = text[len("table"):].lstrip(" ")
        text = text.replace("\\t", "\t").replace("\\n", "\n")
        self.parts: list[tuple[str, str]] = []
        pos = 0
        for m in _ACTION.finditer(text):
            if m.start() > pos:
                self.parts.append(("text", text[pos:m.start()]))
            expr = m.group(1)
            if not expr or expr.startswith(("if", "range", "end", "else", "with", "define", "template")):
                raise TemplateError(f"template: unsupported action {{{{{expr}}}}} (supported: .Field, json, "
                                    "index, join, upper, lower)")
            if "|" in expr:
                raise TemplateError("template: pipelines are not supported")
            self.parts.append(("expr", expr))
            pos = m.end()
        if pos < len(text):
            self.parts.append(("text", text[pos:]))

    def render(self, obj: Any) -> str:
        return "".join(t if kind == "text" else go_str(_call(obj, t)) for kind, t in self.parts)

    def header(self, headers: dict[str, str]) -> str:
        """The table's header: each ``{{.Field}}`` replaced by its column name."""
        out = []
        for kind, t in self.parts:
            if kind == "text":
                out.append(t)
            else:
                key = t.lstrip(".") if t.startswith(".") else t
                out.append(headers.get(key, key.upper()))
        return "".join(out)


def render_rows(items: Sequence[Any], fmt: str | None, default: str, headers: dict[str, str],
                minwidth: int = 10) -> str:
    """Render `items` with `fmt` (None: `default`, a ``table ...`` template), as docker's formatter does:
    a table template goes through tabwriter with a header row; a plain template prints one line each."""
    if fmt == "json":
        return "".join(json.dumps(_jsonable_obj(i), separators=(",", ":"), ensure_ascii=False) + "\n"
                       for i in items)
    text = default if not fmt or fmt == "table" else fmt
    tpl = Template(text)
    if tpl.is_table:
        rows = [tpl.header(headers).split("\t")] + [tpl.render(i).split("\t") for i in items]
        return table(rows, minwidth=minwidth)
    return "".join(tpl.render(i) + "\n" for i in items)


def _jsonable_obj(i: Any) -> Any:
    return i.to_dict() if hasattr(i, "to_dict") else i


def inspect_output(objs: list[Any], fmt: str | None) -> str:
    """``inspect``'s output: a JSON array indented by 4 spaces, or the template applied to each object."""
    if not fmt:
        return json.dumps(objs, indent=4, ensure_ascii=False) + "\n"
    if fmt == "json":
        return "".join(json.dumps(o, separators=(",", ":"), ensure_ascii=False) + "\n" for o in objs)
    tpl = Template(fmt)
    return "".join(tpl.render(o) + "\n" for o in objs)


Render = Callable[[Any], str]
