"""The .rsnap container: writing, reading back, atomicity, corruption, limits and fuzzing."""

from __future__ import annotations

import contextlib
import functools
import os
import random
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any
from unittest import mock

import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replay.snapshot.format as fmt
from replay.errors import (
    CorruptSnapshotError,
    NotASnapshotError,
    SnapshotError,
    SnapshotLimitError,
    SnapshotNotFoundError,
    TruncatedSnapshotError,
    UnsupportedVersionError,
)
from replay.snapshot import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    Interaction,
    ReadLimits,
    Section,
    SnapshotFile,
    SnapshotWriter,
    open_snapshot,
)

PREAMBLE = struct.Struct("<8sHHIII")
FRAME_HEAD = struct.Struct("<BII")
TRAILER = struct.Struct("<QII8s")

HEADER = {"version": 1, "entry": "shop.checkout:charge", "kind": "exception", "tags": ["a", "b"]}
ENTRY = {"module": "shop.checkout", "qualname": "charge", "args": ["t", 100], "kwargs": ["d"]}
OUTCOME = {"kind": "exception", "exception": ["exc", "builtins:ValueError", ["x"], "x", []],
           "duration_ns": 12345}
ENVIRONMENT = {"python": "3.11.7", "platform": "linux", "libraries": {"msgpack": "1.0"}}
TAPE = [
    ["clock", "time.time", ["t"], 1700000000.25, None],
    ["random", "random.random", ["t"], [1, 2, 3], None],
    ["env", "environ.get", ["t", "HOME"], "/root", None],
    ["uuid", "uuid.uuid4", ["t"], None, ["exc", "builtins:OSError", [], "no", []]],
]
CODE = [
    {"path": "shop/checkout.py", "module": "shop.checkout", "sha256": "0" * 64, "size": 10,
     "source": "x = 1\n"},
    {"path": "shop/__init__.py", "module": "shop", "sha256": "1" * 64, "size": 0, "source": ""},
]


def write_snapshot(path: Path, *, header: dict[str, Any] | None = None, tape: list[Any] | None = None,
                   code: list[Any] | None = None, level: int = 3) -> Path:
    writer = SnapshotWriter(path, HEADER if header is None else header, level=level)
    writer.write_section(Section.ENTRY, [ENTRY])
    writer.write_section(Section.TAPE, TAPE if tape is None else tape)
    writer.write_section(Section.OUTCOME, [OUTCOME])
    writer.write_section(Section.CODE, CODE if code is None else code)
    writer.write_section(Section.ENVIRONMENT, [ENVIRONMENT])
    assert writer.close() == os.fspath(path)
    return path


@functools.lru_cache(maxsize=1)
def valid_bytes() -> bytes:
    """A small valid snapshot, built once."""
    with tempfile.TemporaryDirectory() as d:
        return write_snapshot(Path(d) / "valid.rsnap").read_bytes()


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / "run.rsnap")


def read_everything(path: Path | str, limits: ReadLimits = fmt.DEFAULT_LIMITS) -> None:
    """Touch every public reader property and section."""
    with open_snapshot(path, limits=limits) as s:
        assert isinstance(s.header, dict)
        _ = s.version, s.size_bytes
        for prop in ("entry", "outcome", "environment"):
            # "must hold exactly one map" is a fine answer for a mutated file
            with contextlib.suppress(CorruptSnapshotError):
                getattr(s, prop)
        tape = s.tape
        assert all(isinstance(i, Interaction) for i in tape)
        assert isinstance(s.code_files, list)
        s.channel_counts()
    with SnapshotFile(path, limits) as f:
        for section in (*Section.NAMES, 0, 99):
            list(f.iter_records(section))


def frame_layout(path: Path) -> list[tuple[int, int, int, int]]:
    with SnapshotFile(path) as f:
        return list(f.frames)


def patched(tmp_path: Path, data: bytes | bytearray, name: str = "bad.rsnap") -> Path:
    p = tmp_path / name
    p.write_bytes(bytes(data))
    return p


def assert_error(info: pytest.ExceptionInfo[BaseException], path: Path, *, offset: int | None | str = "int"):
    exc = info.value
    assert isinstance(exc, SnapshotError)
    assert str(path) in str(exc)
    assert exc.path == str(path)
    if offset == "int":
        assert isinstance(exc.offset, int) and exc.offset >= 0
        assert f"at byte {exc.offset}" in str(exc)
    else:
        assert exc.offset == offset


# --------------------------------------------------------------------------- round trips


def test_write_and_read_back_with_snapshot_file(snap):
    with SnapshotFile(snap) as f:
        assert f.header == HEADER
        assert f.version == (FORMAT_MAJOR, FORMAT_MINOR) == (1, 3)
        assert f.size_bytes == snap.stat().st_size
        assert list(f.iter_records(Section.ENTRY)) == [ENTRY]
        assert list(f.iter_records(Section.TAPE)) == TAPE
        assert list(f.iter_records(Section.OUTCOME)) == [OUTCOME]
        assert list(f.iter_records(Section.CODE)) == CODE
        assert list(f.iter_records(Section.ENVIRONMENT)) == [ENVIRONMENT]
        assert list(f.iter_records(99)) == []
        assert [sec for _, sec, _, _ in f.frames] == [1, 2, 3, 4, 5]


def test_write_and_read_back_with_open_snapshot(snap):
    with open_snapshot(snap) as s:
        assert s.path == str(snap)
        assert s.header == HEADER
        assert s.version == (FORMAT_MAJOR, FORMAT_MINOR)
        assert s.entry == ENTRY
        assert s.outcome == OUTCOME
        assert s.environment == ENVIRONMENT
        assert s.code_files == CODE
        tape = s.tape
        assert [i.to_record() for i in tape] == TAPE
        assert [i.index for i in tape] == list(range(len(TAPE)))
        assert tape[0] == Interaction(0, "clock", "time.time", ["t"], 1700000000.25, None)
        assert s.channel_counts() == {"clock": 1, "random": 1, "env": 1, "uuid": 1}
        assert s.entry is s.entry  # sections are cached


def test_file_starts_with_magic_and_ends_with_trailer(snap):
    data = snap.read_bytes()
    assert data[:8] == MAGIC
    magic, major, minor, flags, head_len, head_crc = PREAMBLE.unpack_from(data)
    assert (major, minor, flags) == (1, 3, 0)
    head = data[24:24 + head_len]
    assert zlib.crc32(head) == head_crc
    assert msgpack.unpackb(head, raw=False) == HEADER
    assert data[-8:] == b"RSNAPEND"


def test_empty_sections_and_repeated_sections(tmp_path):
    path = tmp_path / "s.rsnap"
    w = SnapshotWriter(path, {})
    w.write_section(Section.TAPE, [])
    w.write_section(Section.TAPE, [["a", "b", 1, 2, None]])
    w.flush()  # the first tape frame goes out before the code frame
    w.write_section(Section.CODE, [{"path": "x"}])
    w.write_section(Section.TAPE, [["c", "d", 3, 4, None]])
    w.close()
    with SnapshotFile(path) as f:
        assert f.header == {}
        assert [fr.section for fr in f.frames] == [Section.TAPE, Section.TAPE, Section.CODE]
        assert list(f.iter_records(Section.TAPE)) == [["a", "b", 1, 2, None], ["c", "d", 3, 4, None]]
    with open_snapshot(path) as s:
        with pytest.raises(CorruptSnapshotError, match="exactly one map") as info:
            _ = s.entry  # no ENTRY section at all
        assert str(path) in str(info.value)
        assert [i.channel for i in s.tape] == ["a", "c"]


def test_large_section_is_split_into_frames_and_read_in_order(tmp_path):
    rng = random.Random(1234)
    records = [["io", "read", ["t", i], rng.randbytes(10_000), None] for i in range(80)]  # ~800 KiB
    path = write_snapshot(tmp_path / "big.rsnap", tape=records, level=1)
    with SnapshotFile(path) as f:
        tape_frames = [fr for fr in f.frames if fr[1] == Section.TAPE]
        assert len(tape_frames) > 1
        assert sum(count for _, _, count, _ in tape_frames) == len(records)
        offsets = [off for off, _, _, _ in f.frames]
        assert offsets == sorted(offsets)
        assert list(f.iter_records(Section.TAPE)) == records
    with open_snapshot(path) as s:
        assert [i.args for i in s.tape] == [["t", i] for i in range(80)]
        assert s.entry == ENTRY and s.environment == ENVIRONMENT


msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
              st.floats(allow_nan=False), st.text(max_size=30), st.binary(max_size=300)),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)),
    max_leaves=10,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(msgpack_values, max_size=60), target=st.integers(min_value=1, max_value=600))
def test_random_records_round_trip_across_frames(records, target):
    with tempfile.TemporaryDirectory() as d, mock.patch.object(fmt, "FRAME_TARGET_BYTES", target):
        path = Path(d) / "r.rsnap"
        w = SnapshotWriter(path, {"n": len(records)})
        w.write_section(Section.TAPE, records)
        w.write_section(Section.CODE, records[::-1])
        w.close()
        with SnapshotFile(path) as f:
            assert list(f.iter_records(Section.TAPE)) == records
            assert list(f.iter_records(Section.CODE)) == records[::-1]
            counts = [c for _, sec, c, _ in f.frames if sec == Section.TAPE]
    assert sum(counts) == len(records)
    assert all(c > 0 for c in counts)
    sizes = [len(msgpack.packb(r, use_bin_type=True)) for r in records]
    # Every frame but the last is closed as soon as it reaches the target, not earlier.
    start = 0
    for n, count in enumerate(counts):
        chunk = sizes[start:start + count]
        if n < len(counts) - 1:
            assert sum(chunk) >= target > sum(chunk[:-1])
        else:
            assert sum(chunk[:-1]) < target
        start += count


# --------------------------------------------------------------------------- atomic write


def test_nothing_under_the_final_name_before_close(tmp_path):
    path = tmp_path / "atomic.rsnap"
    w = SnapshotWriter(path, HEADER)
    w.write_section(Section.TAPE, TAPE)
    assert not path.exists()
    temps = list(tmp_path.iterdir())
    assert len(temps) == 1 and temps[0].name.startswith(".") and temps[0].name.endswith(".tmp")
    w.close()
    assert path.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.rsnap"]
    with open_snapshot(path) as s:
        assert [i.to_record() for i in s.tape] == TAPE


def test_abort_leaves_nothing(tmp_path):
    path = tmp_path / "aborted.rsnap"
    w = SnapshotWriter(path, HEADER)
    w.write_section(Section.TAPE, TAPE * 100)
    w.abort()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
    w.abort()  # idempotent


def test_abort_right_after_open_leaves_nothing(tmp_path):
    w = SnapshotWriter(tmp_path / "x.rsnap", {})
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_close_replaces_an_existing_file_atomically(tmp_path):
    path = tmp_path / "same.rsnap"
    path.write_bytes(b"old content")
    w = SnapshotWriter(path, {"new": True})
    w.write_section(Section.TAPE, TAPE)
    assert path.read_bytes() == b"old content"
    w.close()
    with SnapshotFile(path) as f:
        assert f.header == {"new": True}


def test_two_writers_for_one_path_use_distinct_temp_files(tmp_path):
    a = SnapshotWriter(tmp_path / "x.rsnap", {"w": "a"})
    b = SnapshotWriter(tmp_path / "x.rsnap", {"w": "b"})
    assert len(list(tmp_path.iterdir())) == 2
    a.abort()
    b.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.rsnap"]


def test_record_that_cannot_be_packed_then_abort_leaves_nothing(tmp_path):
    w = SnapshotWriter(tmp_path / "x.rsnap", {})
    with pytest.raises(TypeError):
        w.write_section(Section.TAPE, [{1, 2}])  # a set is not msgpack
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_unpackable_header_leaves_no_temp_file(tmp_path):
    with pytest.raises((TypeError, OverflowError, ValueError)):
        SnapshotWriter(tmp_path / "x.rsnap", {"bad": {1, 2}})
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- corrupt files


def test_missing_file(tmp_path):
    path = tmp_path / "nope.rsnap"
    for opener in (SnapshotFile, open_snapshot):
        with pytest.raises(SnapshotNotFoundError) as info:
            opener(path)
        assert isinstance(info.value, FileNotFoundError)
        assert_error(info, path, offset=None)


def test_directory_is_not_a_snapshot_file(tmp_path):
    with pytest.raises(SnapshotNotFoundError) as info:
        open_snapshot(tmp_path)
    assert_error(info, tmp_path, offset=None)


@pytest.mark.parametrize("content", [b"", b"hello world\n" * 10, b"\x89RSN", b"\x89PNG\r\n\x1a\n" + b"\0" * 40,
                                     b"RSNAPEND" * 5], ids=["empty", "text", "short-magic", "png", "trailer-only"])
def test_not_a_snapshot(tmp_path, content):
    path = patched(tmp_path, content)
    with pytest.raises(NotASnapshotError) as info:
        open_snapshot(path)
    assert isinstance(info.value, ValueError)
    assert_error(info, path, offset=0)


@pytest.mark.parametrize("major", [0, 2, 65535])
def test_unsupported_major_version(tmp_path, major):
    data = bytearray(valid_bytes())
    data[8:10] = struct.pack("<H", major)
    path = patched(tmp_path, data)
    with pytest.raises(UnsupportedVersionError) as info:
        open_snapshot(path)
    assert info.value.found == (major, FORMAT_MINOR)
    assert info.value.supported == 1
    assert_error(info, path, offset=8)


def test_newer_minor_version_is_accepted(tmp_path):
    data = bytearray(valid_bytes())
    data[10:12] = struct.pack("<H", 7)
    with open_snapshot(patched(tmp_path, data)) as s:
        assert s.version == (1, 7)
        assert s.entry == ENTRY


@pytest.mark.parametrize("where", ["first", "middle", "last", "stored-crc"])
def test_header_checksum_mismatch(tmp_path, where):
    data = bytearray(valid_bytes())
    head_len = PREAMBLE.unpack_from(data)[4]
    pos = {"first": 24, "middle": 24 + head_len // 2, "last": 24 + head_len - 1, "stored-crc": 21}[where]
    data[pos] ^= 0x40
    path = patched(tmp_path, data)
    with pytest.raises(CorruptSnapshotError) as info:
        open_snapshot(path)
    assert "header checksum" in str(info.value)
    assert_error(info, path, offset=24)


def test_header_that_is_not_a_map(tmp_path):
    head = msgpack.packb([1, 2, 3])
    data = PREAMBLE.pack(MAGIC, 1, 0, 0, len(head), zlib.crc32(head)) + head
    path = patched(tmp_path, data)
    with pytest.raises(CorruptSnapshotError) as info:
        open_snapshot(path)
    assert_error(info, path)


def truncation_points() -> list[int]:
    data = valid_bytes()
    head_len = PREAMBLE.unpack_from(data)[4]
    first_frame = 24 + head_len
    n = len(data)
    return sorted({8, 9, 16, 23, 24, 25, 24 + head_len // 2, first_frame, first_frame + 5,
                   first_frame + FRAME_HEAD.size + 3, n // 2, n - 40, n - 24, n - 23, n - 8, n - 1})


@pytest.mark.parametrize("cut", truncation_points())
def test_truncated_file(tmp_path, cut):
    path = patched(tmp_path, valid_bytes()[:cut])
    with pytest.raises(CorruptSnapshotError) as info:  # TruncatedSnapshotError is one
        read_everything(path)
    assert isinstance(info.value, TruncatedSnapshotError)
    assert_error(info, path)


def test_missing_trailer_magic(tmp_path):
    data = bytearray(valid_bytes())
    data[-8:] = b"\0" * 8
    path = patched(tmp_path, data)
    with pytest.raises(TruncatedSnapshotError) as info:
        open_snapshot(path)
    assert "trailer" in str(info.value)
    assert_error(info, path, offset=len(data) - 24)


def test_unfinished_writer_output_has_no_trailer(tmp_path):
    """What a writer that died before close() leaves: preamble, header and frames, no index."""
    data = valid_bytes()
    index_offset = TRAILER.unpack_from(data, len(data) - 24)[0]
    path = patched(tmp_path, data[:index_offset])
    with pytest.raises(TruncatedSnapshotError) as info:
        open_snapshot(path)
    assert_error(info, path)


def _frame_payload_span(data: bytes, section: int) -> tuple[int, int]:
    """(payload offset, payload size) of the first frame of ``section``."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.rsnap"
        p.write_bytes(data)
        with SnapshotFile(p) as f:
            for off, sec, _count, size in f.frames:
                if sec == section:
                    return off + FRAME_HEAD.size, size
    raise AssertionError("no such frame")


def big_tape_bytes() -> bytes:
    rng = random.Random(7)
    tape = [["random", "os.urandom", ["t", 64], rng.randbytes(64), None] for _ in range(40)]
    with tempfile.TemporaryDirectory() as d:
        return write_snapshot(Path(d) / "t.rsnap", tape=tape).read_bytes()


@pytest.mark.parametrize("fraction", [0.3, 0.5, 0.7, 0.95])
def test_flipped_byte_in_zstd_payload(tmp_path, fraction):
    data = bytearray(big_tape_bytes())
    start, size = _frame_payload_span(bytes(data), Section.TAPE)
    assert size > 200
    data[start + int(size * fraction)] ^= 0xFF
    path = patched(tmp_path, data)
    with open_snapshot(path) as s:  # the index is intact, so opening works
        assert s.entry == ENTRY  # other sections are unaffected
        with pytest.raises(CorruptSnapshotError) as info:
            _ = s.tape
    assert_error(info, path)
    with SnapshotFile(path) as f, pytest.raises(CorruptSnapshotError):
        list(f.iter_records(Section.TAPE))


def test_flipped_byte_in_frame_head(tmp_path):
    data = bytearray(valid_bytes())
    start, _ = _frame_payload_span(bytes(data), Section.OUTCOME)
    data[start - FRAME_HEAD.size] ^= 0x01  # the section id byte
    path = patched(tmp_path, data)
    with open_snapshot(path) as s, pytest.raises(CorruptSnapshotError, match="frame header") as info:
        _ = s.outcome
    assert_error(info, path)


def test_index_checksum_mismatch(tmp_path):
    data = bytearray(valid_bytes())
    index_offset, index_len, _crc, _ = TRAILER.unpack_from(data, len(data) - 24)
    data[index_offset + index_len // 2] ^= 0x10
    path = patched(tmp_path, data)
    with pytest.raises(CorruptSnapshotError, match="index checksum") as info:
        open_snapshot(path)
    assert_error(info, path, offset=index_offset)


def test_index_position_mismatch(tmp_path):
    data = bytearray(valid_bytes())
    index_offset, index_len, crc, magic = TRAILER.unpack_from(data, len(data) - 24)
    data[-24:] = TRAILER.pack(index_offset - 1, index_len, crc, magic)
    path = patched(tmp_path, data)
    with pytest.raises(CorruptSnapshotError) as info:
        open_snapshot(path)
    assert_error(info, path, offset=len(data) - 24)


def rebuild(header: Any = None, frames: list[tuple[int, int, bytes]] | None = None, *,
            index: Any = None, raw_header: bytes | None = None) -> bytes:
    """A snapshot assembled by hand (checksums right), for structures the writer never makes.

    ``frames`` holds (section, records, zstd payload); ``index`` overrides the computed index.
    """
    head = raw_header if raw_header is not None else msgpack.packb(HEADER if header is None else header)
    out = bytearray(PREAMBLE.pack(MAGIC, 1, 0, 0, len(head), zlib.crc32(head)) + head)
    entries = []
    for section, count, payload in frames or []:
        entries.append([len(out), section, count, len(payload)])
        out += FRAME_HEAD.pack(section, count, len(payload)) + payload
    idx = msgpack.packb({"frames": entries} if index is None else index)
    offset = len(out)
    out += idx + TRAILER.pack(offset, len(idx), zlib.crc32(idx), b"RSNAPEND")
    return bytes(out)


def zstd(data: bytes, **kw: Any) -> bytes:
    opts = {"write_checksum": True, "write_content_size": True, **kw}
    return zstandard.ZstdCompressor(**opts).compress(data)


@pytest.mark.parametrize(("frames", "index", "match"), [
    ([], {"nope": 1}, "frame list"),
    ([], [1, 2], "frame list"),
    ([], {"frames": [[1, 2, 3]]}, "bad index entry"),
    ([], {"frames": [[True, 2, 3, 4]]}, "bad index entry"),
    ([], {"frames": [[-1, 2, 3, 4]]}, "bad index entry"),
    ([], {"frames": [[10, 2, 3, 10**6]]}, "past the frames"),
], ids=["no-frames-key", "not-a-map", "short-entry", "bool-entry", "negative-entry", "past-end"])
def test_bad_index(tmp_path, frames, index, match):
    path = patched(tmp_path, rebuild(frames=frames, index=index))
    with pytest.raises(CorruptSnapshotError, match=match) as info:
        open_snapshot(path)
    assert_error(info, path)


@pytest.mark.parametrize(("payload", "count", "error", "match"), [
    (zstd(msgpack.packb(1)), 2, TruncatedSnapshotError, "fewer records"),
    (zstd(msgpack.packb(1) * 3), 2, CorruptSnapshotError, "more data"),
    (zstd(b"\xc1"), 1, CorruptSnapshotError, "not valid msgpack"),
    (zstd(msgpack.packb({1: 2})), 1, CorruptSnapshotError, "not valid msgpack"),
    (zstd(msgpack.packb(1), write_checksum=False), 1, CorruptSnapshotError, "checksum"),
    (zstd(msgpack.packb(1), write_content_size=False), 1, CorruptSnapshotError, "content size"),
    (b"not zstd at all", 1, CorruptSnapshotError, "zstd"),
    (b"", 1, CorruptSnapshotError, "zstd"),
], ids=["fewer-records", "more-data", "bad-msgpack", "int-map-key", "no-checksum", "no-content-size",
        "not-zstd", "empty-payload"])
def test_bad_frames(tmp_path, payload, count, error, match):
    path = patched(tmp_path, rebuild(frames=[(Section.TAPE, count, payload)]))
    with SnapshotFile(path) as f, pytest.raises(error, match=match) as info:
        list(f.iter_records(Section.TAPE))
    assert_error(info, path)


@pytest.mark.parametrize(("records", "match"), [
    ([["clock", "time.time", []]], "tape record 0 is malformed"),
    ([["clock", "time.time", [], 1, None], [1, "op", [], 1, None]], "tape record 1 is malformed"),
    (["just a string"], "tape record 0"),
])
def test_malformed_tape_records(tmp_path, records, match):
    path = tmp_path / "t.rsnap"
    w = SnapshotWriter(path, {})
    w.write_section(Section.TAPE, records)
    w.close()
    with open_snapshot(path) as s, pytest.raises(CorruptSnapshotError, match=match) as info:
        _ = s.tape
    assert str(path) in str(info.value)


def test_sections_that_must_hold_one_map(tmp_path):
    path = tmp_path / "m.rsnap"
    w = SnapshotWriter(path, {})
    w.write_section(Section.ENTRY, [ENTRY, ENTRY])
    w.write_section(Section.OUTCOME, [["not", "a", "map"]])
    w.close()
    with open_snapshot(path) as s:
        for prop in ("entry", "outcome", "environment"):
            with pytest.raises(CorruptSnapshotError, match=f"the {prop} section"):
                getattr(s, prop)


# --------------------------------------------------------------------------- limits


def test_frame_content_limit(snap):
    with SnapshotFile(snap) as f:
        assert len([fr for fr in f.frames if fr[1] == Section.CODE]) == 1
    content = sum(len(msgpack.packb(r, use_bin_type=True)) for r in CODE)
    assert content > 100
    limits = ReadLimits(max_frame_content_bytes=100)
    with open_snapshot(snap, limits=limits) as s:
        assert s.entry == ENTRY  # small frames are fine
        with pytest.raises(SnapshotLimitError) as info:
            _ = s.code_files
    exc = info.value
    assert (exc.limit, exc.value, exc.maximum) == ("frame content size", content, 100)
    assert_error(info, snap)


def test_header_size_limit(snap):
    head_len = len(msgpack.packb(HEADER, use_bin_type=True))
    with pytest.raises(SnapshotLimitError) as info:
        open_snapshot(snap, limits=ReadLimits(max_header_bytes=head_len - 1))
    exc = info.value
    assert (exc.limit, exc.value, exc.maximum) == ("header size", head_len, head_len - 1)
    assert_error(info, snap, offset=16)
    with open_snapshot(snap, limits=ReadLimits(max_header_bytes=head_len)) as s:
        assert s.header == HEADER


@pytest.mark.parametrize(("limits", "name"), [
    (ReadLimits(max_index_bytes=10), "index size"),
])
def test_index_limit(snap, limits, name):
    with pytest.raises(SnapshotLimitError) as info:
        open_snapshot(snap, limits=limits)
    assert info.value.limit == name and info.value.maximum == 10
    assert_error(info, snap)


@pytest.mark.parametrize(("limits", "name"), [
    (ReadLimits(max_frame_bytes=10), "frame size"),
    (ReadLimits(max_records_per_frame=3), "records per frame"),
    (ReadLimits(max_total_content_bytes=200), "content read from file"),
    (ReadLimits(max_window_bytes=1024), "zstd window size"),
])
def test_section_limits(tmp_path, limits, name):
    rng = random.Random(3)
    path = write_snapshot(tmp_path / "l.rsnap", tape=[["c", "o", [], rng.randbytes(300), None]] * 5)
    with open_snapshot(path, limits=limits) as s, pytest.raises(SnapshotLimitError) as info:
        _ = s.entry
        _ = s.tape
    assert info.value.limit == name
    assert isinstance(info.value.value, int) and info.value.value > info.value.maximum
    assert_error(info, path)


# --------------------------------------------------------------------------- fuzzing

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("truncate"), st.integers(min_value=0)),
    st.tuples(st.just("insert"), st.integers(min_value=0), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("delete"), st.integers(min_value=0), st.integers(min_value=1, max_value=16)),
    st.tuples(st.just("overwrite"), st.integers(min_value=0), st.binary(min_size=1, max_size=8)),
)


def mutate(data: bytes, ops: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    for op in ops:
        pos = op[1] % (len(buf) + 1)
        if op[0] == "flip" and buf:
            buf[pos % len(buf)] ^= op[2]
        elif op[0] == "truncate":
            del buf[pos:]
        elif op[0] == "insert":
            buf[pos:pos] = op[2]
        elif op[0] == "delete":
            del buf[pos:pos + op[2]]
        elif op[0] == "overwrite":
            buf[pos:pos + len(op[2])] = op[2]
    return bytes(buf)


def fix_checksums(data: bytes) -> bytes:
    """Recompute header and index CRCs so mutations reach the deeper checks."""
    buf = bytearray(data)
    if len(buf) >= 24 and buf[:8] == MAGIC:
        head_len = PREAMBLE.unpack_from(buf)[4]
        if 24 + head_len <= len(buf):
            struct.pack_into("<I", buf, 20, zlib.crc32(bytes(buf[24:24 + head_len])))
    if len(buf) >= 48 and buf[-8:] == b"RSNAPEND":
        index_offset, index_len, _crc, magic = TRAILER.unpack_from(buf, len(buf) - 24)
        if index_offset + index_len <= len(buf) - 24:
            crc = zlib.crc32(bytes(buf[index_offset:index_offset + index_len]))
            struct.pack_into("<I", buf, len(buf) - 16, crc)
    return bytes(buf)


def only_snapshot_errors(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.rsnap"
        path.write_bytes(data)
        try:
            read_everything(path)
        except SnapshotError as exc:
            assert str(path) in str(exc)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(mutation, min_size=1, max_size=4), fix=st.booleans())
def test_fuzzed_files_raise_only_snapshot_errors(ops, fix):
    data = mutate(valid_bytes(), ops)
    if fix:
        data = fix_checksums(data)
    only_snapshot_errors(data)


junk_records = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text(max_size=5),
              st.binary(max_size=5), st.floats()),
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=junk_records,
    frames=st.lists(st.tuples(st.integers(min_value=0, max_value=7), st.lists(junk_records, max_size=4),
                              st.integers(min_value=-1, max_value=1)), max_size=6),
    raw_tail=st.binary(max_size=8),
)
def test_hand_built_files_with_junk_content_raise_only_snapshot_errors(header, frames, raw_tail):
    """Valid container, junk inside: reaches msgpack decoding and the model's checks."""
    built = []
    for section, records, count_skew in frames:
        content = b"".join(msgpack.packb(r, use_bin_type=True) for r in records) + raw_tail
        built.append((section, max(len(records) + count_skew, 0), zstd(content)))
    data = rebuild(raw_header=msgpack.packb(header, use_bin_type=True), frames=built)
    only_snapshot_errors(data)
