"""docker's jsonmessage display: the JSON-lines streams of pull, push, load and import, rendered.

On a terminal each message with an ``id`` (a layer) owns one line that is rewritten in place (the
cursor moves up to it, the line is cleared and redrawn), so a pull shows one progress line per layer;
the bar is drawn from ``progressDetail`` (current/total) only when the terminal is wider than 110
columns, as docker does, with the byte counts always. Off a terminal progress messages are dropped and
every other status is one ``id: status`` line. An ``error`` line ends the stream with StreamError.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable
from typing import Any, TextIO

from engine.cli.format import human_size


class StreamError(Exception):
    pass


def progress_string(detail: dict[str, Any], width: int) -> str:
    """jsonmessage.JSONProgress.String."""
    current = int(detail.get("current") or 0)
    total = int(detail.get("total") or 0)
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        units = detail.get("units") or ""
        return f"{human_size(current):>8}" if not units else f"{current} {units}"
    pct = min(int(current / total * 100) // 2, 50)
    bar = ""
    if width > 110:
        bar = f"[{'=' * pct}>{' ' * max(50 - pct, 0)}] "
    if detail.get("hidecounts"):
        numbers = ""
    elif detail.get("units"):
        numbers = f"{current}/{total} {detail['units']}"
    else:
        numbers = f"{human_size(current):>8}/{human_size(total)}"
        if current > total:
            numbers = f"{human_size(current):>8}"
    return bar + numbers


def display(messages: Iterable[dict[str, Any]], out: TextIO, *, terminal: bool | None = None,
            aux: list[dict[str, Any]] | None = None) -> None:
    """Render a jsonmessage stream on `out`; `aux` collects the ``aux`` payloads (IDs, push digests)."""
    if terminal is None:
        try:
            terminal = os.isatty(out.fileno())
        except (AttributeError, OSError, ValueError):
            terminal = False
    width = shutil.get_terminal_size((80, 24)).columns if terminal else 200
    lines: dict[str, int] = {}
    for jm in messages:
        if jm.get("error") or jm.get("errorDetail"):
            msg = (jm.get("errorDetail") or {}).get("message") or jm.get("error")
            raise StreamError(str(msg))
        if "aux" in jm:
            if aux is not None:
                aux.append(jm["aux"])
            continue
        ident = jm.get("id") or ""
        has_progress = jm.get("progressDetail") is not None
        diff = 0
        if ident and has_progress:
            if ident not in lines:
                lines[ident] = len(lines)
                if terminal:
                    out.write("\n")
            diff = len(lines) - lines[ident]
            if terminal and diff:
                out.write(f"\x1b[{diff}A")
        else:
            lines = {}  # a line that is not progress ends the block of layer lines
        prog = progress_string(jm.get("progressDetail") or {}, width)
        stream = jm.get("stream")
        endl = ""
        if terminal and stream is None and has_progress:
            out.write("\x1b[2K\r")
            endl = "\r"
        elif has_progress and prog:
            continue  # no progress bars off a terminal
        text = f"{ident}: " if ident else ""
        if jm.get("from"):
            text += f"(from {jm['from']}) "
        if has_progress and terminal:
            text += f"{jm.get('status', '')} {prog}{endl}"
        elif stream is not None:
            text += f"{stream}{endl}"
        else:
            text += f"{jm.get('status', '')}{endl}\n"
        out.write(text)
        if ident and terminal and diff:
            out.write(f"\x1b[{diff}B")
        out.flush()
