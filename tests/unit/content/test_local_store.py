"""Conformance of the on-disk content store: write, resume, commit, verify, abort, walk, delete, locking."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from engine.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound, Unavailable
from engine.images.content import LocalStore, digests

DATA = b"hello, content store\n" * 100
DGST = digests.of_bytes(DATA)


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_write_commit_read_layout(store: LocalStore) -> None:
    with store.writer("ref-1", total=len(DATA), expected=DGST) as w:
        assert w.write(DATA[:100]) == 100
        assert w.status().offset == 100 and w.status().total == len(DATA)
        w.write(DATA[100:])
        info = w.commit(len(DATA), DGST)
    assert info.digest == DGST and info.size == len(DATA)
    path = store.root / "blobs" / "sha256" / DGST.split(":")[1]
    assert path.read_bytes() == DATA
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert list(store.root.joinpath("ingest").iterdir()) == []
    assert store.info(DGST).size == len(DATA)
    assert [b.digest for b in store.walk()] == [DGST]
    with store.reader_at(DGST) as r:
        assert r.size == len(DATA)
        assert r.read_at(5, 7) == DATA[7:12]
        assert r.read_at(100, len(DATA) - 3) == DATA[-3:]
        assert b"".join(r.chunks(chunk=333)) == DATA


def test_ingest_files_match_containerd_layout(store: LocalStore) -> None:
    w = store.writer("layer-sha256:abc", total=len(DATA))
    w.write(DATA[:10])
    w.close()
    d = store.ingest_path("layer-sha256:abc")
    assert d.parent == store.root / "ingest" and len(d.name) == 64
    assert sorted(p.name for p in d.iterdir()) == ["data", "ref", "startedat", "total", "updatedat"]
    assert (d / "ref").read_text() == "layer-sha256:abc"
    assert (d / "total").read_text() == str(len(DATA))


def test_resume_continues_at_offset_with_the_right_digest(store: LocalStore) -> None:
    w = store.writer("r", total=len(DATA))
    w.write(DATA[:1000])
    w.close()
    st = store.status("r")
    assert (st.offset, st.total, st.ref) == (1000, len(DATA), "r")
    w = store.writer("r")
    assert w.offset == 1000 and w.total == len(DATA)
    w.write(DATA[1000:], offset=1000)
    assert w.commit(expected=DGST).digest == DGST


def test_write_at_zero_restarts(store: LocalStore) -> None:
    w = store.writer("r")
    w.write(b"garbage")
    w.write(DATA, offset=0)
    assert w.commit(len(DATA), DGST).digest == DGST


def test_second_writer_on_a_ref_is_unavailable_until_the_first_closes(store: LocalStore) -> None:
    w = store.writer("r")
    with pytest.raises(Unavailable, match="ref r locked"):
        store.writer("r")
    with pytest.raises(Unavailable, match="locked"):
        store.abort("r")
    assert store.locked("r")
    w.close()
    assert not store.locked("r")
    store.writer("r").close()


def test_digest_mismatch_is_failed_precondition_naming_both_and_stores_nothing(store: LocalStore) -> None:
    wrong = digests.of_bytes(b"something else")
    w = store.writer("r")
    w.write(DATA)
    with pytest.raises(FailedPrecondition) as err:
        w.commit(len(DATA), wrong)
    assert DGST in str(err.value) and wrong in str(err.value)
    assert list(store.walk()) == []
    w.close()
    assert store.status("r").offset == len(DATA)  # the ingest stays: resume or abort it


def test_size_mismatch_is_failed_precondition(store: LocalStore) -> None:
    w = store.writer("r")
    w.write(DATA)
    with pytest.raises(FailedPrecondition, match=f"unexpected commit size {len(DATA)}, expected 7"):
        w.commit(7)
    w.close()
    w = store.writer("short", total=len(DATA) + 1)
    w.write(DATA)
    with pytest.raises(FailedPrecondition, match="unexpected commit size"):
        w.commit()
    w.close()
    assert list(store.walk()) == []


def test_commit_of_present_content_is_already_exists_and_removes_the_ingest(store: LocalStore) -> None:
    for ref in ("a", "b"):
        w = store.writer(ref)
        w.write(DATA)
        if ref == "a":
            w.commit()
        else:
            with pytest.raises(AlreadyExists, match=f"content {DGST}: already exists"):
                w.commit()
    assert store.list_statuses() == []
    assert [b.digest for b in store.walk()] == [DGST]


def test_abort_removes_the_ingest(store: LocalStore) -> None:
    w = store.writer("r")
    w.write(DATA)
    w.close()
    store.abort("r")
    with pytest.raises(NotFound):
        store.status("r")
    with pytest.raises(NotFound):
        store.abort("r")
    assert list(store.root.joinpath("ingest").iterdir()) == []


def test_delete_and_missing(store: LocalStore) -> None:
    w = store.writer("r")
    w.write(DATA)
    w.commit()
    store.delete(DGST)
    for fn in (store.info, store.delete, store.reader_at):
        with pytest.raises(NotFound):
            fn(DGST)


def test_sha512_expected_digest_is_verified_with_sha512(store: LocalStore) -> None:
    want = digests.of_bytes(DATA, "sha512")
    w = store.writer("r", expected=want)
    w.write(DATA)
    assert w.commit().digest == want
    assert (store.root / "blobs" / "sha512" / want.split(":")[1]).is_file()


@pytest.mark.parametrize("bad", ["", "sha256", "sha256:", "md5:" + "0" * 32, "sha256:" + "A" * 64,
                                 "sha256:" + "0" * 63, "sha256:../../../etc/passwd", "sha256:" + "0" * 64 + "/x"])
def test_bad_digests_are_invalid_argument(store: LocalStore, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        store.info(bad)
    if bad == "":  # an empty expected digest means "none given"
        return
    with pytest.raises(InvalidArgument):
        store.writer("r", expected=bad)
    w = store.writer("r2")
    w.write(b"x")
    with pytest.raises(InvalidArgument):
        w.commit(expected=bad)
    w.close()


@pytest.mark.parametrize("ref", ["../../escape", "/abs/path", "a/../../b", "..", "x" * 4096, "é/ü\n"])
def test_hostile_refs_stay_inside_the_ingest_directory(store: LocalStore, tmp_path: Path, ref: str) -> None:
    before = set(tmp_path.parent.iterdir())
    w = store.writer(ref)
    w.write(DATA)
    assert w.commit().digest == DGST
    assert set(tmp_path.parent.iterdir()) == before
    assert all(str(p).startswith(str(store.root)) for p in store.root.rglob("*"))


@pytest.mark.parametrize("ref", ["", "a\x00b", "x" * 4097])
def test_bad_refs_are_invalid_argument(store: LocalStore, ref: str) -> None:
    with pytest.raises(InvalidArgument):
        store.writer(ref)
    assert tree(store.root) == ["blobs", "ingest"]


def test_out_of_order_and_huge_offsets_change_nothing(store: LocalStore) -> None:
    w = store.writer("r", total=len(DATA))
    w.write(DATA[:10])
    for off in (5, 11, 2**62, -1):
        with pytest.raises(InvalidArgument):
            w.write(b"zz", offset=off)
    with pytest.raises(InvalidArgument, match="exceeds the expected size"):
        w.write(DATA)
    with pytest.raises(InvalidArgument):
        w.truncate(3)
    assert w.offset == 10 and os.path.getsize(store.ingest_path("r") / "data") == 10
    w.write(DATA[10:])
    assert w.commit().digest == DGST


def test_resume_with_a_different_total_is_refused(store: LocalStore) -> None:
    store.writer("r", total=10).close()
    with pytest.raises(FailedPrecondition, match="total differs"):
        store.writer("r", total=11)
    with pytest.raises(InvalidArgument):
        store.writer("r2", total=-1)


def test_reader_bounds(store: LocalStore) -> None:
    w = store.writer("r")
    w.write(DATA)
    w.commit()
    with store.reader_at(DGST) as r:
        assert r.read_at(10, len(DATA)) == b""
        with pytest.raises(InvalidArgument):
            r.read_at(1, len(DATA) + 1)
        with pytest.raises(InvalidArgument):
            r.read_at(1, -1)


def test_large_writes_hash_in_parallel_and_a_failed_write_leaves_a_consistent_ingest(store: LocalStore) -> None:
    import resource
    import signal

    big = os.urandom(3 * 1024 * 1024 + 5)
    w = store.writer("big")
    w.write(big[:1024 * 1024])  # parallel path
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024 * 1024 + 300_000, hard))
    try:
        with pytest.raises(OSError):  # EFBIG after a partial write
            w.write(big[1024 * 1024:])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old_handler)
    assert w.offset == os.path.getsize(store.ingest_path("big") / "data") == 1024 * 1024 + 300_000
    assert w.digest() == digests.of_bytes(big[:w.offset])  # hash agrees with the bytes on disk
    w.write(big[w.offset:])
    assert w.commit(len(big), digests.of_bytes(big)).size == len(big)
