"""v2 pids controller: the files are the same as v1's, so this re-exports that module."""

from __future__ import annotations

from ..v1.pids import apply, stats

__all__ = ["apply", "stats"]
