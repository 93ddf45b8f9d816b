"""Docker json-file compatibility of the shim's log writer (no root needed)."""

from __future__ import annotations

import json
import os

from engine.runtime.shim import jsonlog


def test_go_rfc3339nano_trimming():
    # 2026-01-02T03:04:05 UTC
    base = 1767323045 * 1_000_000_000
    assert jsonlog.go_time(base) == "2026-01-02T03:04:05Z"
    assert jsonlog.go_time(base + 120_000_000) == "2026-01-02T03:04:05.12Z"
    assert jsonlog.go_time(base + 1) == "2026-01-02T03:04:05.000000001Z"
    assert jsonlog.go_time(base + 123456789) == "2026-01-02T03:04:05.123456789Z"


def test_entry_bytes_match_dockers_writer():
    ns = 1767323045 * 1_000_000_000 + 5_000
    # a line as dockerd 28 writes it for `echo 'a<b>&"c"\'` (ffjson escaping, HTML-safe)
    want = b'{"log":"a\\u003cb\\u003e\\u0026\\"c\\"\\\\\\n","stream":"stdout","time":"2026-01-02T03:04:05.000005Z"}\n'
    assert jsonlog.entry(b'a<b>&"c"\\\n', "stdout", ns) == want
    assert jsonlog.entry(b"\x01\t\r\x7f\n", "stderr", ns).startswith(b'{"log":"\\u0001\\u0009\\r\x7f\\n"')
    # invalid UTF-8 becomes U+FFFD, valid multibyte stays as is, U+2028 is escaped
    out = jsonlog.entry(b"\xff\xc3\xa9\xe2\x80\xa8\n", "stdout", ns)
    assert out.startswith('{"log":"\\ufffd\u00e9\\u2028\\n"'.encode())
    # an empty message has no "log" key, as omitempty does
    assert jsonlog.entry(b"", "stdout", ns) == b'{"stream":"stdout","time":"2026-01-02T03:04:05.000005Z"}\n'
    assert json.loads(jsonlog.entry(b"x\n", "stdout", ns))["log"] == "x\n"


def test_splitter_lines_and_16k_partials():
    sp = jsonlog.LineSplitter()
    assert sp.feed(b"ab") == []
    assert sp.feed(b"c\nde\nf") == [b"abc\n", b"de\n"]
    assert sp.flush() == [b"f"]
    big = b"x" * 40000 + b"\n"
    got = sp.feed(big[:10000]) + sp.feed(big[10000:])
    assert [len(x) for x in got] == [16384, 16384, 7233]
    assert b"".join(got) == big


def test_rotation(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONFileWriter(p, max_size=300, max_file=3)
    for i in range(40):
        w.write("stdout", f"line {i}\n".encode(), ns=1767323045 * 10**9)
    w.close()
    assert sorted(os.listdir(tmp_path)) == ["c-json.log", "c-json.log.1", "c-json.log.2"]
    lines = []
    for name in ("c-json.log.2", "c-json.log.1", "c-json.log"):
        size = os.path.getsize(tmp_path / name)
        assert 0 < size <= 300
        lines += [json.loads(x)["log"] for x in (tmp_path / name).read_text().splitlines()]
    nums = [int(x.split()[1]) for x in lines]
    assert nums == list(range(nums[0], 40)) and nums[0] > 0


def test_rotation_with_one_file_truncates(tmp_path):
    p = str(tmp_path / "c-json.log")
    w = jsonlog.JSONFileWriter(p, max_size=200, max_file=1)
    for i in range(20):
        w.write("stderr", f"l{i}\n".encode())
    w.close()
    assert os.listdir(tmp_path) == ["c-json.log"]
    assert os.path.getsize(p) <= 200
    assert json.loads(open(p).read().splitlines()[-1])["log"] == "l19\n"
