"""containerd's filter language: parse ``topic=="/tasks/exit",namespace==moby`` and match it (used by every layer).

containerd clients send filters as strings (Events.Subscribe, Introspection.Plugins, the
List calls of images, containers, content, snapshots, leases). The grammar, taken from the
behaviour of containerd's ``filters`` package::

    selectors := selector ("," selector)*          all must match (AND)
    selector  := fieldpath [operator value]        no operator: the field must be present
    fieldpath := field ("." field)*
    field     := "quoted" | [A-Za-z0-9_]+
    operator  := "==" | "!=" | "~="               ~= is a regular expression search
    value     := quoted | a run of characters up to "," or white space

A request carries a list of such strings; an object matches if ANY of them matches
(`parse_all`). An empty string, or an empty list, matches everything.

Quoting follows containerd, including its quirks: ``"`` quotes a field or a value with Go
string escapes; ``/.../`` and ``|...|`` quote a value only after ``~=`` (so
``topic~=/tasks/`` searches for ``tasks``, and ``topic==/tasks/exit`` is a parse error:
a value that starts with ``/`` must be written ``"/tasks/exit"``). White space between
tokens is skipped, except before a "," or the end of the string, which containerd
rejects (``a==b ,c`` and a trailing space are parse errors there too).

Design choices:

* An object is seen through an *adaptor*: a callable taking the field path (a tuple of
  strings) and returning the field's value as a string, or None when it is absent. Each
  transport adapts its own objects (see `events_adaptor` users in events.py).
* ``!=`` matches when the field is absent (containerd compares the empty string).
* Regular expressions are compiled at parse time with Python's ``re`` (close to Go's RE2 for
  the patterns clients send); one that does not compile is an InvalidArgument, where
  containerd would log it and match nothing.
* Errors are engine.errors.InvalidArgument with containerd's message shape
  (``filters: parse error: [before >|at|< after]: reason``), so the gRPC layer answers
  INVALID_ARGUMENT.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from engine.errors import InvalidArgument

Adaptor = Callable[[tuple[str, ...]], str | None]

_EOF = ""
# token kinds
_QUOTED, _VALUE, _FIELD, _SEPARATOR, _OPERATOR, _ILLEGAL, _END, _OTHER = range(8)
_QUOTE_CHARS = '/|"'
_OPERATOR_CHARS = "=!~"
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


class Filter:
    """Something that decides whether an adapted object matches."""

    def match(self, adaptor: Adaptor) -> bool:
        raise NotImplementedError


class _Always(Filter):
    def match(self, adaptor: Adaptor) -> bool:
        return True

    def __repr__(self) -> str:
        return "ALWAYS"


ALWAYS: Filter = _Always()


@dataclass(frozen=True)
class AnyOf(Filter):
    """Matches if any member matches (several filter strings)."""

    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return any(f.match(adaptor) for f in self.filters)


@dataclass(frozen=True)
class AllOf(Filter):
    """Matches if every member matches (comma-separated selectors)."""

    filters: tuple[Filter, ...]

    def match(self, adaptor: Adaptor) -> bool:
        return all(f.match(adaptor) for f in self.filters)


@dataclass(frozen=True)
class Selector(Filter):
    """One ``fieldpath op value`` test; op is "?" (present), "==", "!=" or "~="."""

    fieldpath: tuple[str, ...]
    op: str
    value: str = ""
    regex: re.Pattern[str] | None = field(default=None, compare=False)

    def match(self, adaptor: Adaptor) -> bool:
        got = adaptor(self.fieldpath)
        if self.op == "?":
            return got is not None
        if self.op == "==":
            return got is not None and got == self.value
        if self.op == "!=":
            return (got or "") != self.value
        assert self.regex is not None
        return self.regex.search(got or "") is not None


def parse(s: str) -> Filter:
    """Parse one filter string (comma = AND); raise InvalidArgument on a syntax error."""
    if s == "":
        return ALWAYS
    return _Parser(s).parse()


def parse_all(filters: Iterable[str]) -> Filter:
    """Parse a request's list of filter strings: ANY of them may match; none = ALWAYS."""
    parsed = [parse(s) for s in filters]
    if not parsed:
        return ALWAYS
    if len(parsed) == 1:
        return parsed[0]
    return AnyOf(tuple(parsed))


def mapping_adaptor(fields: dict[str, object]) -> Adaptor:
    """Adapt a plain dict: str values are fields, dict values are label-like maps.

    ``{"topic": "/x", "labels": {"a": "b"}}`` answers ``topic`` and ``labels.a``; a path into
    a nested dict with no further segment (``labels``) is present with an empty value.
    """

    def adapt(path: tuple[str, ...]) -> str | None:
        cur: object = fields
        for seg in path:
            if not isinstance(cur, dict) or seg not in cur:
                return None
            cur = cur[seg]
        if isinstance(cur, dict):
            return ""
        if isinstance(cur, bool):
            return "true" if cur else "false"
        return None if cur is None else str(cur)

    return adapt


# --- scanning ---------------------------------------------------------------------------


class _Scanner:
    """Tokenises one filter string the way containerd's scanner does."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0  # start of the last character read
        self.next_pos = 0  # index of the next character
        self.in_value = False  # the previous token was an operator
        self.err = ""

    def _next(self) -> str:
        if self.next_pos >= len(self.text):
            self.pos = len(self.text)
            return _EOF
        self.pos = self.next_pos
        ch = self.text[self.next_pos]
        self.next_pos += 1
        if ch == "\x00":
            self._error("unexpected null")
        return ch

    def peek(self) -> str:
        saved = (self.pos, self.next_pos)
        ch = self._next()
        self.pos, self.next_pos = saved
        return ch

    def _error(self, msg: str) -> None:
        if not self.err:
            self.err = msg

    def scan(self) -> tuple[int, int, str]:
        """Return (position, kind, text) of the next token."""
        ch = self._next()
        while ch and ch.isspace():
            ch = self._next()
        start = self.pos
        if ch == _EOF:
            return start, _END, ""
        if ch == "\x00":
            return start, _ILLEGAL, ch
        if ch in _QUOTE_CHARS:
            ok = self._scan_quoted(ch)
            return start, (_QUOTED if ok else _ILLEGAL), self.text[start : self.next_pos]
        if ch in ",.":
            self.in_value = False
            return start, _SEPARATOR, ch
        if ch in _OPERATOR_CHARS:
            while self.peek() and self.peek() in _OPERATOR_CHARS:
                self._next()
            self.in_value = True
            return start, _OPERATOR, self.text[start : self.next_pos]
        if self.in_value:
            while (c := self.peek()) and c != "," and not c.isspace() and c.isprintable():
                self._next()
            self.in_value = False
            return start, _VALUE, self.text[start : self.next_pos]
        if _is_field_char(ch):
            while (c := self.peek()) and _is_field_char(c):
                self._next()
            return start, _FIELD, self.text[start : self.next_pos]
        return start, _OTHER, ch

    def _scan_quoted(self, quote: str) -> bool:
        while True:
            ch = self._next()
            if ch == quote:
                return True
            if ch == _EOF or ch == "\n":
                self._error("quoted literal not terminated")
                return False
            if ch == "\\":
                self._next()  # the escaped character; validated when unquoting


def _is_field_char(ch: str) -> bool:
    return ch == "_" or ("a" <= ch <= "z") or ("A" <= ch <= "Z") or ("0" <= ch <= "9")


def _unquote(s: str) -> str:
    """Decode a quoted literal (``"..."``, ``/.../`` or ``|...|``) with Go string escapes."""
    quote, body = s[0], s[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == quote:
            raise ValueError("quote syntax error")
        if c != "\\":
            out.append(c)
            i += 1
            continue
        if i + 1 >= len(body):
            raise ValueError("quote syntax error")
        e = body[i + 1]
        i += 2
        if e in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[e])
        elif e in "xuU":
            n = {"x": 2, "u": 4, "U": 8}[e]
            digits = body[i : i + n]
            if len(digits) < n or any(d not in "0123456789abcdefABCDEF" for d in digits):
                raise ValueError("quote syntax error")
            v = int(digits, 16)
            if v > 0x10FFFF:
                raise ValueError("quote syntax error")
            out.append(chr(v))
            i += n
        elif e in "01234567":
            digits = e + body[i : i + 2]
            if len(digits) < 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                raise ValueError("quote syntax error")
            out.append(chr(int(digits, 8)))
            i += 2
        elif e in "'\"|/" and e == quote:
            out.append(e)
        else:
            raise ValueError("quote syntax error")
    return "".join(out)


# --- parsing ----------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.scanner = _Scanner(text)

    def parse(self) -> Filter:
        selectors = [self._selector()]
        while True:
            ch = self.scanner.peek()
            if ch == ",":
                self.scanner.scan()
                selectors.append(self._selector())
            elif ch == _EOF:
                break
            else:
                raise self._error(self.scanner.next_pos, f"unexpected input: {ch}")
        return selectors[0] if len(selectors) == 1 else AllOf(tuple(selectors))

    def _selector(self) -> Selector:
        path = self._fieldpath()
        if self.scanner.peek() in (",", _EOF):
            return Selector(path, "?")
        op = self._operator()
        value = self._value(allow_alt_quotes=(op == "~="))
        if op == "~=":
            try:
                regex = re.compile(value)
            except re.error as err:
                raise InvalidArgument(f"filters: invalid regular expression {value!r}: {err}") from err
            return Selector(path, op, value, regex)
        return Selector(path, op, value)

    def _fieldpath(self) -> tuple[str, ...]:
        parts = [self._field()]
        while self.scanner.peek() == ".":
            self.scanner.scan()
            parts.append(self._field())
        return tuple(parts)

    def _field(self) -> str:
        pos, kind, text = self.scanner.scan()
        if kind == _FIELD:
            return text
        if kind == _QUOTED:
            return self._unquote(pos, text, allow_alts=False)
        if kind == _ILLEGAL:
            raise self._error(pos, self.scanner.err)
        raise self._error(pos, "expected field or quoted")

    def _operator(self) -> str:
        pos, kind, text = self.scanner.scan()
        if kind == _OPERATOR:
            if text in ("==", "!=", "~="):
                return text
            raise self._error(pos, f'unsupported operator "{text}"')
        if kind == _ILLEGAL:
            raise self._error(pos, self.scanner.err)
        raise self._error(pos, 'expected an operator ("=="|"!="|"~=")')

    def _value(self, *, allow_alt_quotes: bool) -> str:
        pos, kind, text = self.scanner.scan()
        if kind in (_VALUE, _FIELD):
            return text
        if kind == _QUOTED:
            return self._unquote(pos, text, allow_alts=allow_alt_quotes)
        if kind == _ILLEGAL:
            raise self._error(pos, self.scanner.err)
        raise self._error(pos, "expected value or quoted")

    def _unquote(self, pos: int, text: str, *, allow_alts: bool) -> str:
        if not allow_alts and text[0] != '"':
            raise self._error(pos, "invalid quote encountered")
        try:
            return _unquote(text)
        except ValueError as err:
            raise self._error(pos, f"unquoting failed: {err}") from None

    def _error(self, pos: int, msg: str) -> InvalidArgument:
        t = self.text
        where = f"[{t[:pos]} >|{t[pos]}|< {t[pos + 1 :]}]" if pos < len(t) else f"[{t}]"
        return InvalidArgument(f"filters: parse error: {where}: {msg}")


def describe(f: Filter) -> str:
    """A compact rendering, for logs and test failure messages."""
    if isinstance(f, Selector):
        path = ".".join(f.fieldpath)
        return path if f.op == "?" else f"{path}{f.op}{f.value!r}"
    if isinstance(f, AllOf):
        return "(" + " AND ".join(describe(x) for x in f.filters) + ")"
    if isinstance(f, AnyOf):
        return "(" + " OR ".join(describe(x) for x in f.filters) + ")"
    return repr(f)


def fieldpaths(f: Filter) -> Sequence[tuple[str, ...]]:
    """Every field path a filter reads (lets a service reject unknown fields if it wants)."""
    if isinstance(f, Selector):
        return [f.fieldpath]
    if isinstance(f, AllOf | AnyOf):
        return [p for x in f.filters for p in fieldpaths(x)]
    return []


def docker_labels_match(have: dict[str, str], wanted: list[str]) -> bool:
    """Docker's ``label`` filters: every ``key`` present and every ``key=value`` equal; a leading ``!``
    (``label!=…`` as prune sends it) negates one."""
    for w in wanted:
        neg = w.startswith("!")
        key, sep, value = w.lstrip("!").partition("=")
        has = key in have and (not sep or have[key] == value)
        if has == neg:
            return False
    return True
