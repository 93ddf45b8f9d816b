"""Docker's `filters` query argument: JSON ``{"key": {"value": true}}`` (API ≥ 1.22) or the legacy list
form ``{"key": ["value"]}``; each endpoint names the keys it accepts, others are a 400."""

from __future__ import annotations

import json

from engine.errors import InvalidArgument

Filters = dict[str, list[str]]


def parse_filters(raw: str | None, allowed: set[str] | frozenset[str]) -> Filters:
    if raw is None or raw.strip() == "":
        return {}
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise InvalidArgument(f"invalid filter: {err}") from err
    if not isinstance(data, dict):
        raise InvalidArgument("invalid filter: expected a JSON object of filter names")
    out: Filters = {}
    for key, values in data.items():
        if key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        if isinstance(values, dict):
            if not all(isinstance(v, bool) for v in values.values()):
                raise InvalidArgument(f"invalid filter '{key}': values must map to true")
            out[key] = [str(v) for v, on in values.items() if on]
        elif isinstance(values, list) and all(isinstance(v, str) for v in values):
            out[key] = list(values)
        else:
            raise InvalidArgument(f"invalid filter '{key}': expected {{\"value\": true}} or a list of strings")
    return out
