"""v2 hugetlb controller: hugetlb.<size>.max (and .rsvd.max); shared with v1's module."""

from __future__ import annotations

from .. import fs
from ..resources import Resources
from ..stats import Stats
from ..v1 import hugetlb as _impl


def apply(w: fs.Writer, d: str, r: Resources) -> None:
    _impl.apply(w, d, r, v2=True)


def stats(d: str, s: Stats) -> None:
    _impl.stats(d, s, v2=True)
