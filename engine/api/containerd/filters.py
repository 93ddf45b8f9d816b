"""Re-export of engine.filters, where containerd's filter language now lives (services use it too)."""

from engine.filters import (  # noqa: F401
    ALWAYS,
    Adaptor,
    AllOf,
    AnyOf,
    Filter,
    Selector,
    describe,
    fieldpaths,
    mapping_adaptor,
    parse,
    parse_all,
)
