"""fastjson gives exactly what the json package gives, without importing it on the hot path."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.runtime import fastjson

DOCS = [
    '{"a": [1, 2.5, -3e2, true, false, null, "x\\u00e9\\n\\"q\\""], "b": {}, "c": {"d": [[]]}}',
    "  [] \n",
    '"s"',
    "123456789012345678901234567890",
    '{"ociVersion":"1.2.0","process":{"args":["sh"],"env":["A=é"]}}',
]


@pytest.mark.parametrize("doc", DOCS)
def test_same_as_json(doc):
    assert fastjson.loads(doc) == json.loads(doc)
    assert fastjson.loads(doc.encode()) == json.loads(doc)
    obj = json.loads(doc)
    assert fastjson.dumps(obj) == json.dumps(obj, separators=(",", ":"))


@pytest.mark.parametrize("bad", ["{bad", '{"a":1} x', "", "[1,]", "{'a': 1}"])
def test_errors_are_value_errors(bad):
    with pytest.raises(ValueError):
        fastjson.loads(bad)


def test_unserialisable_is_a_type_error():
    with pytest.raises(TypeError, match="not JSON serializable"):
        fastjson.dumps({"a": object()})


def test_the_hot_path_does_not_import_json_or_re():
    code = (
        "import sys\n"
        "import engine.runtime.cli, engine.runtime.commands, engine.runtime.run, engine.runtime.create, engine.runtime.execute\n"
        "print(','.join(m for m in ('json', 're', 'typing', 'argparse', 'subprocess', 'asyncio', 'typer', 'msgspec') "
        "if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": ":".join(p for p in sys.path if p)},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
