""".rsnap files from strangers: exhaustive truncation, fuzzing, hostile structures, audit hooks.

Complements tests/unit/test_format.py (which covers round trips, single corruptions and a
first fuzzer over a writer-made file). Here:

* every byte offset of a real recorded snapshot is a truncation point (read, validate,
  recover);
* Hypothesis flips bits, inserts bytes and overwrites length fields of the same file: the
  reader either returns exactly the recorded records or raises a SnapshotError, never another
  exception and never silently different data;
* hand-made hostile files (zstd bombs, huge windows, huge indexes, msgpack length and
  nesting attacks) are opened in a child process whose address space is capped at 512 MiB,
  which must end with a clean SnapshotError of the right kind within seconds;
* an audit hook proves that reading and decoding hostile files imports, compiles, executes,
  unpickles and spawns nothing.

Helper children are small Python programs run with ``sys.executable -c``; they print one
line the parent parses.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import io
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
import tracemalloc
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replay.errors
from replay.errors import (
    CorruptSnapshotError,
    NotASnapshotError,
    SnapshotError,
    SnapshotLimitError,
    TruncatedSnapshotError,
)
from replay.snapshot import (
    DEFAULT_LIMITS,
    ReadLimits,
    Section,
    SnapshotFile,
    SnapshotWriter,
    ValidationReport,
    open_snapshot,
    recover,
    validate,
)
from replay.snapshot.codec import Decoder, render

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden" / "v1.1"

# The layout, written down from the spec rather than imported from the implementation.
MAGIC = b"\x89RSN\r\n\x1a\n"
PREAMBLE = struct.Struct("<8sHHIII")
FRAME_HEAD = struct.Struct("<BII")
TRAILER = struct.Struct("<QII8s")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

pytestmark = pytest.mark.timeout(60)  # hang guard; longer tests raise their own

MIB = 1 << 20
GIB = 1 << 30
TIB = 1 << 40
CHILD_MEMORY = 512 * MIB


# --------------------------------------------------------------------------- helpers


def sample_path() -> Path:
    """The smallest golden copy of a recorded sample snapshot (a real capture, ~4.4 KB)."""
    return min(GOLDEN.glob("*.rsnap"), key=lambda p: p.stat().st_size)


@functools.lru_cache(maxsize=1)
def sample_bytes() -> bytes:
    return sample_path().read_bytes()


@functools.lru_cache(maxsize=1)
def sample_layout() -> tuple[int, list[tuple[int, int, int, int]], dict[int, list[Any]], int, int]:
    """(header end, frames, records per section, index offset, index length) of the sample."""
    data = sample_bytes()
    header_end = 24 + PREAMBLE.unpack_from(data)[4]
    index_offset, index_len, _crc, magic = TRAILER.unpack_from(data, len(data) - 24)
    assert magic == b"RSNAPEND"
    with SnapshotFile(sample_path()) as f:
        frames = [tuple(fr) for fr in f.frames]
        records = {s: list(f.iter_records(s)) for s in f.sections}
    assert len(frames) >= 5 and frames[0][0] == header_end
    return header_end, frames, records, index_offset, index_len


@contextlib.contextmanager
def fast_dir() -> Iterator[Path]:
    """A scratch directory on tmpfs when there is one (the loops here write thousands of files)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    d = tempfile.mkdtemp(prefix="rsnap-hostile-", dir=base)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="module")
def work_dir() -> Iterator[Path]:
    with fast_dir() as d:
        yield d


def zstd(data: bytes, **kw: Any) -> bytes:
    opts = {"write_checksum": True, "write_content_size": True, **kw}
    return zstandard.ZstdCompressor(**opts).compress(data)


def assemble(*, header: bytes | None = None, frames: list[tuple[int, int, bytes]] = (),
             index: bytes | None = None, index_extra: dict[str, Any] | None = None) -> bytes:
    """A snapshot built by hand with correct checksums: header bytes, (section, count,
    payload) frames, and an index (computed unless raw bytes are given)."""
    head = msgpack.packb({"kind": "hostile"}) if header is None else header
    out = bytearray(PREAMBLE.pack(MAGIC, 1, 1, 0, len(head), zlib.crc32(head)) + head)
    entries = []
    for section, count, payload in frames:
        entries.append([len(out), section, count, len(payload)])
        out += FRAME_HEAD.pack(section, count, len(payload)) + payload
    raw = msgpack.packb({"frames": entries, **(index_extra or {})}) if index is None else index
    offset = len(out)
    out += raw + TRAILER.pack(offset, len(raw), zlib.crc32(raw), b"RSNAPEND")
    return bytes(out)


def records(*values: Any) -> bytes:
    return b"".join(msgpack.packb(v, use_bin_type=True) for v in values)


REQUIRED = [
    (Section.ENTRY, 1, zstd(records({"module": "m", "qualname": "f", "args": ["t"], "kwargs": ["d"]}))),
    (Section.OUTCOME, 1, zstd(records({"kind": "return", "value": None}))),
    (Section.ENVIRONMENT, 1, zstd(records({"python": "3.11"}))),
]
"""Frames that make a hand-built file pass validate() (entry, outcome, environment)."""


def fix_checksums(data: bytes | bytearray) -> bytes:
    """Recompute the header and index CRCs where the lengths allow, so mutations reach the
    deeper checks."""
    buf = bytearray(data)
    if len(buf) >= 24 and buf[:8] == MAGIC:
        head_len = struct.unpack_from("<I", buf, 16)[0]
        if 24 + head_len <= len(buf):
            struct.pack_into("<I", buf, 20, zlib.crc32(bytes(buf[24:24 + head_len])))
    if len(buf) >= 48 and buf[-8:] == b"RSNAPEND":
        offset, length, _crc, _magic = TRAILER.unpack_from(buf, len(buf) - 24)
        if offset + length <= len(buf) - 24:
            struct.pack_into("<I", buf, len(buf) - 16, zlib.crc32(bytes(buf[offset:offset + length])))
    return bytes(buf)


def check_error(exc: BaseException, path: Path | str) -> None:
    """The contract every failure honours: a SnapshotError naming the file (and a byte
    offset whenever one is given)."""
    assert isinstance(exc, SnapshotError), f"{type(exc).__name__}: {exc}"
    assert exc.path == os.fspath(path)
    assert os.fspath(path) in str(exc)
    if exc.offset is not None:
        assert isinstance(exc.offset, int) and exc.offset >= 0
        assert f"at byte {exc.offset}" in str(exc)


def same(a: Any, b: Any) -> bool:
    """a == b, also for values nested deeper than the interpreter's recursion limit."""
    try:
        return bool(a == b)
    except RecursionError:
        return msgpack.packb(a, use_bin_type=True) == msgpack.packb(b, use_bin_type=True)


def read_everything(path: Path | str, limits: ReadLimits = DEFAULT_LIMITS) -> dict[int, list[Any]]:
    """Touch every reading API: open, index, random access, iteration, positions, the model.

    Returns the records of every section (as iter_records gives them).
    """
    out: dict[int, list[Any]] = {}
    with SnapshotFile(path, limits) as f:
        assert isinstance(f.header, dict)
        _ = f.version, f.frames, f.frame_count, f.size_bytes
        for section in sorted(f.sections):
            n = f.count(section)
            out[section] = list(f.iter_records(section))
            assert len(out[section]) == n
            for number in sorted({0, n // 2, n - 1}):
                assert same(f.record(section, number), out[section][number])
            assert same(list(f.iter_records(section, start=n - 1)), out[section][-1:])
        positions = list(f.iter_positions())
        assert len(positions) == sum(len(v) for v in out.values())
    with open_snapshot(path, limits=limits) as snap:
        for name in ("entry", "outcome", "environment"):
            # "missing" / "must hold exactly one map" is a fine answer for a damaged file
            with contextlib.suppress(CorruptSnapshotError):
                getattr(snap, name)
        with contextlib.suppress(CorruptSnapshotError):  # a malformed tape record
            tape = snap.tape
            if tape:
                assert same(snap.interaction(-1).to_record(), tape[-1].to_record())
        _ = snap.code_files, snap.tape_length
    return out


def checked_validate(path: Path | str, limits: ReadLimits = DEFAULT_LIMITS) -> ValidationReport:
    """validate() must report, never raise; a failure carries a proper SnapshotError."""
    report = validate(path, limits)  # any exception here fails the test
    assert isinstance(report, ValidationReport)
    if not report.ok:
        check_error(report.error, path)
    else:
        assert report.error is None
    return report


def checked_recover(path: Path, output: Path) -> Any:
    """recover() either raises a SnapshotError or writes a file whose container is sound.

    The frames it copies were verified, so every record of the output must read back. Its
    validate() must pass, except for a content-level finding (a known section whose records
    have the wrong shape, which a mutated frame head can cause): such findings have no
    byte offset.
    """
    with contextlib.suppress(FileNotFoundError):
        output.unlink()
    try:
        report = recover(path, output)
    except SnapshotError as exc:
        check_error(exc, path)
        assert not output.exists()
        return None
    assert report.output == os.fspath(output)
    with SnapshotFile(output) as f:
        assert f.frame_count == report.frames
        for section in f.sections:
            list(f.iter_records(section))
        assert "recovered" in f.header
    result = checked_validate(output)
    if not result.ok:
        assert type(result.error) is CorruptSnapshotError and result.error.offset is None, result.error
    return report


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- truncation


@pytest.mark.timeout(120)
def test_truncation_at_every_byte_offset_of_a_real_snapshot():
    """Cut the sample after every byte: open + read everything + validate + recover.

    A cut file never reads: NotASnapshotError before the magic is complete, otherwise
    TruncatedSnapshotError. recover() works as soon as the preamble and header are complete
    and copies exactly the frames that were wholly present, byte for byte.
    """
    data = sample_bytes()
    header_end, frames, recorded, _, _ = sample_layout()
    with fast_dir() as d:
        cut_path, out_path = d / "cut.rsnap", d / "out.rsnap"
        for cut in range(len(data) + 1):
            cut_path.write_bytes(data[:cut])
            if cut == len(data):
                assert read_everything(cut_path) == recorded
                assert checked_validate(cut_path).ok
            else:
                with pytest.raises(SnapshotError) as info:
                    read_everything(cut_path)
                check_error(info.value, cut_path)
                assert isinstance(info.value.offset, int), info.value  # always tied to a position
                expected = NotASnapshotError if cut < len(MAGIC) else TruncatedSnapshotError
                assert type(info.value) is expected, (cut, info.value)
                report = checked_validate(cut_path)
                assert not report.ok and type(report.error) is expected, (cut, report.error)

            with contextlib.suppress(FileNotFoundError):
                out_path.unlink()
            if cut < header_end:
                with pytest.raises(SnapshotError) as info:
                    recover(cut_path, out_path)
                check_error(info.value, cut_path)
                assert not out_path.exists()
                continue
            rec = recover(cut_path, out_path)
            whole = [fr for fr in frames if fr[0] + FRAME_HEAD.size + fr[3] <= cut]
            assert rec.frames == len(whole), cut
            assert checked_validate(out_path).ok, cut
            got = out_path.read_bytes()
            with SnapshotFile(out_path) as f:
                copied = f.frames
            assert [(fr.section, fr.records) for fr in copied] == [(s, n) for _, s, n, _ in whole]
            for new, (offset, _section, _count, size) in zip(copied, whole, strict=True):
                assert new.size == size
                start = new.offset + FRAME_HEAD.size
                assert got[start:start + size] == data[offset + FRAME_HEAD.size:offset + FRAME_HEAD.size + size]


# --------------------------------------------------------------------------- fuzzing


def reads_same_or_fails(path: Path) -> None:
    """A damaged file reads exactly the recorded records or raises a SnapshotError."""
    _, _, recorded, _, _ = sample_layout()
    try:
        got = read_everything(path)
    except SnapshotError as exc:
        check_error(exc, path)
    else:
        # Frames carry a content checksum: whatever reads back is what was recorded.
        assert got == recorded
    checked_validate(path)


FUZZ = settings(max_examples=800, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.mark.timeout(120)
@FUZZ
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=7)),
                      min_size=1, max_size=4),
       fix=st.booleans())
def test_bit_flips_read_the_same_or_raise_snapshot_errors(work_dir, flips, fix):
    data = bytearray(sample_bytes())
    for pos, bit in flips:
        data[pos % len(data)] ^= 1 << bit
    if fix:
        data = bytearray(fix_checksums(data))
    path = write(work_dir, "flip.rsnap", bytes(data))
    reads_same_or_fails(path)
    checked_recover(path, work_dir / "flip.out.rsnap")


@pytest.mark.timeout(60)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_single_bit_flip_in_any_frame_payload_is_detected(work_dir, data):
    """zstd content checksums: a flipped bit in a frame's compressed payload never reads as
    different records (and reading that section almost always fails)."""
    _, frames, recorded, _, _ = sample_layout()
    offset, section, _count, size = data.draw(st.sampled_from(frames))
    pos = offset + FRAME_HEAD.size + data.draw(st.integers(min_value=0, max_value=size - 1))
    buf = bytearray(sample_bytes())
    buf[pos] ^= 1 << data.draw(st.integers(min_value=0, max_value=7))
    path = write(work_dir, "payload.rsnap", bytes(buf))
    with SnapshotFile(path) as f:  # the index is intact
        try:
            got = list(f.iter_records(section))
        except SnapshotError as exc:
            check_error(exc, path)
            assert isinstance(exc, CorruptSnapshotError | SnapshotLimitError)
        else:
            assert got == recorded[section]
    reads_same_or_fails(path)
    checked_recover(path, work_dir / "payload.out.rsnap")


@pytest.mark.timeout(120)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pos=st.integers(min_value=0), blob=st.binary(min_size=1, max_size=32), fix=st.booleans())
def test_inserted_bytes_read_the_same_or_raise_snapshot_errors(work_dir, pos, blob, fix):
    data = bytearray(sample_bytes())
    at = pos % (len(data) + 1)
    data[at:at] = blob
    if fix:
        data = bytearray(fix_checksums(data))
    path = write(work_dir, "insert.rsnap", bytes(data))
    reads_same_or_fails(path)
    checked_recover(path, work_dir / "insert.out.rsnap")


def _length_fields() -> list[tuple[str, int, str]]:
    """(name, byte offset, struct format) of every length/offset field of the sample."""
    _, frames, _, _, _ = sample_layout()
    n = len(sample_bytes())
    fields = [("header_len", 16, "<I"), ("header_crc", 20, "<I"), ("flags", 12, "<I"),
              ("index_offset", n - 24, "<Q"), ("index_len", n - 16, "<I"), ("index_crc", n - 12, "<I")]
    for k, (offset, _section, _count, _size) in enumerate(frames):
        fields += [(f"frame{k}_section", offset, "<B"), (f"frame{k}_records", offset + 1, "<I"),
                   (f"frame{k}_size", offset + 5, "<I")]
    return fields


HUGE = [0, 1, 2**31 - 1, 2**31, 2**32 - 1, 2**63, 2**64 - 1]


@pytest.mark.timeout(120)
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(_length_fields()), value=st.one_of(st.sampled_from(HUGE), st.integers(min_value=0)),
       fix=st.booleans())
def test_overwritten_length_fields_read_the_same_or_raise_snapshot_errors(work_dir, field, value, fix):
    _name, offset, fmt = field
    width = struct.calcsize(fmt)
    data = bytearray(sample_bytes())
    struct.pack_into(fmt, data, offset, value % (1 << (8 * width)))
    if fix:
        data = bytearray(fix_checksums(data))
    path = write(work_dir, "length.rsnap", bytes(data))
    reads_same_or_fails(path)
    checked_recover(path, work_dir / "length.out.rsnap")


def _patch(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    buf = bytearray(data)
    struct.pack_into(fmt, buf, offset, value)
    return bytes(buf)


def _with_index(entries: list[list[int]] | None = None, **extra: Any) -> bytes:
    """The sample with its index replaced (checksum and trailer right)."""
    data = sample_bytes()
    _, frames, _, index_offset, _ = sample_layout()
    raw = msgpack.packb({"frames": [list(fr) for fr in frames] if entries is None else entries, **extra})
    return data[:index_offset] + raw + TRAILER.pack(index_offset, len(raw), zlib.crc32(raw), b"RSNAPEND")


def _huge_cases() -> list[tuple[str, Callable[[], bytes], type[SnapshotError], str | None]]:
    data = sample_bytes()
    n = len(data)
    _, frames, _, index_offset, index_len = sample_layout()
    tape = next(k for k, fr in enumerate(frames) if fr[1] == Section.TAPE)
    t_off, t_sec, t_count, t_size = frames[tape]

    def entries_with(**change: int) -> list[list[int]]:
        out = [list(fr) for fr in frames]
        fields = ("offset", "section", "records", "size")
        for key, value in change.items():
            out[tape][fields.index(key)] = value
        return out

    def frame_and_index(records: int | None = None, size: int | None = None) -> bytes:
        patched = _with_index(entries_with(**{k: v for k, v in (("records", records), ("size", size)) if v is not None}))
        if records is not None:
            patched = _patch(patched, t_off + 1, "<I", records)
        if size is not None:
            patched = _patch(patched, t_off + 5, "<I", size)
        return patched

    return [
        ("header_len=2**32-1", lambda: _patch(data, 16, "<I", 2**32 - 1), SnapshotLimitError, "header size"),
        ("header_len=2**31", lambda: _patch(data, 16, "<I", 2**31), SnapshotLimitError, "header size"),
        ("header_len=1MiB-beyond-eof", lambda: _patch(data, 16, "<I", MIB), TruncatedSnapshotError, None),
        ("index_len=2**32-1", lambda: _patch(data, n - 16, "<I", 2**32 - 1), SnapshotLimitError, "index size"),
        ("index_len=1MiB", lambda: _patch(data, n - 16, "<I", MIB), CorruptSnapshotError, None),
        ("index_offset=2**63", lambda: _patch(data, n - 24, "<Q", 2**63), CorruptSnapshotError, None),
        ("index_offset=2**64-1", lambda: _patch(data, n - 24, "<Q", 2**64 - 1), CorruptSnapshotError, None),
        ("index_offset=2**32-1", lambda: _patch(data, n - 24, "<Q", 2**32 - 1), CorruptSnapshotError, None),
        ("index_offset+len-wrap", lambda: _patch(_patch(data, n - 24, "<Q", 2**64 - 1 - 100), n - 16, "<I", index_len),
         CorruptSnapshotError, None),
        ("frame_size=2**32-1", lambda: _patch(data, t_off + 5, "<I", 2**32 - 1), CorruptSnapshotError, None),
        ("frame_records=2**32-1", lambda: _patch(data, t_off + 1, "<I", 2**32 - 1), CorruptSnapshotError, None),
        ("frame_records=0", lambda: _patch(data, t_off + 1, "<I", 0), CorruptSnapshotError, None),
        ("frame+index_records=2**32-1", lambda: frame_and_index(records=2**32 - 1), SnapshotLimitError,
         "records per frame"),
        ("frame+index_records=2**20+1", lambda: frame_and_index(records=2**20 + 1), SnapshotLimitError,
         "records per frame"),
        ("frame+index_size=2**32-1", lambda: frame_and_index(size=2**32 - 1), CorruptSnapshotError, None),
        ("index_entry_offset=2**63", lambda: _with_index(entries_with(offset=2**63)), CorruptSnapshotError, None),
        ("index_entry_offset=2**64-1", lambda: _with_index(entries_with(offset=2**64 - 1)), CorruptSnapshotError, None),
        ("index_entry_size=2**32-1", lambda: _with_index(entries_with(size=2**32 - 1)), CorruptSnapshotError, None),
        ("index_entry_size=2**64-1", lambda: _with_index(entries_with(size=2**64 - 1)), CorruptSnapshotError, None),
        ("index_entry_records=2**32", lambda: _with_index(entries_with(records=2**32)), CorruptSnapshotError, None),
        ("index_entry_records=2**32-1", lambda: _with_index(entries_with(records=2**32 - 1)), CorruptSnapshotError,
         None),
        ("index_entry_section=256", lambda: _with_index(entries_with(section=256)), CorruptSnapshotError, None),
        ("index_entry_offset=0", lambda: _with_index(entries_with(offset=0)), CorruptSnapshotError, None),
        ("index_entry_offset=index", lambda: _with_index(entries_with(offset=index_offset)), CorruptSnapshotError,
         None),
    ]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("name", "build", "error", "limit"), _huge_cases(), ids=[c[0] for c in _huge_cases()])
def test_huge_length_and_offset_fields(work_dir, name, build, error, limit):
    """Each oversized field is refused before anything of that size is read or allocated."""
    path = write(work_dir, "huge.rsnap", build())
    with pytest.raises(SnapshotError) as info:
        read_everything(path)
    check_error(info.value, path)
    assert isinstance(info.value, error), info.value
    assert info.value.offset is not None
    if limit is not None:
        assert info.value.limit == limit
    report = checked_validate(path)
    assert not report.ok and isinstance(report.error, error)
    checked_recover(path, work_dir / "huge.out.rsnap")


# --------------------------------------------------------------------------- targeted


def test_index_with_the_frames_key_twice_never_mixes_sections(tmp_path):
    """An index map holding "frames" twice (msgpack allows duplicate keys).

    Either the file is refused, or each section reads only records of its own frames: the
    second list here names only the outcome frame, and must never make the entry record
    read back as an outcome.
    """
    data = sample_bytes()
    _, frames, recorded, index_offset, _ = sample_layout()
    outcome = next(list(fr) for fr in frames if fr[1] == Section.OUTCOME)
    raw = (b"\x82" + msgpack.packb("frames") + msgpack.packb([list(fr) for fr in frames])
           + msgpack.packb("frames") + msgpack.packb([outcome]))
    path = write(tmp_path, "dup.rsnap", data[:index_offset] + raw
                 + TRAILER.pack(index_offset, len(raw), zlib.crc32(raw), b"RSNAPEND"))
    try:
        with SnapshotFile(path) as f:
            got = {s: list(f.iter_records(s)) for s in f.sections}
    except SnapshotError as exc:
        check_error(exc, path)
        return
    for section, values in got.items():
        for value in values:
            assert value in recorded[section], f"{Section.name(section)} section returned a record of another section"


def _valid_file_with_header(header: dict[str, Any], frames: list[tuple[int, int, bytes]] = REQUIRED) -> bytes:
    return assemble(header=msgpack.packb(header), frames=frames)


@pytest.mark.parametrize("reasons", [5, True, 1.5], ids=["int", "bool", "float"])
def test_validate_never_raises_on_a_header_with_odd_reasons(tmp_path, reasons):
    """The header is the writer's free-form map: "reasons" need not be a list."""
    path = write(tmp_path, "r.rsnap", _valid_file_with_header({"replayable": False, "reasons": reasons}))
    read_everything(path)  # the reader itself accepts the file
    report = checked_validate(path)
    assert report.ok or isinstance(report.error, SnapshotError)


@pytest.mark.parametrize("reasons", [5, True], ids=["int", "bool"])
def test_recover_on_a_header_with_odd_reasons_raises_only_snapshot_errors(tmp_path, reasons):
    """recover() of a file missing sections extends the header's "reasons"."""
    data = _valid_file_with_header({"reasons": reasons}, frames=REQUIRED[:1])
    path = write(tmp_path, "r.rsnap", data[: len(data) - 30])  # drop the index: a crashed writer's file
    checked_recover(path, tmp_path / "out.rsnap")


def _nested_list(depth: int) -> list[Any]:
    root: list[Any] = []
    node = root
    for _ in range(depth - 1):
        child: list[Any] = []
        node.append(child)
        node = child
    return root


@pytest.mark.parametrize("where", ["outcome-kind", "header-reasons"])
def test_validate_never_raises_on_deep_but_legal_nesting(tmp_path, where):
    """msgpack accepts 1024 levels; a value that deep inside a record or the header must not
    make validate() raise (RecursionError from repr/str of the value)."""
    deep = _nested_list(1000)
    if where == "outcome-kind":
        frames = [REQUIRED[0], (Section.OUTCOME, 1, zstd(records({"kind": deep}))), REQUIRED[2]]
        data = _valid_file_with_header({}, frames)
    else:
        data = _valid_file_with_header({"replayable": False, "reasons": [deep]})
    path = write(tmp_path, "deep.rsnap", data)
    read_everything(path)
    checked_validate(path)


def test_recover_output_of_a_file_with_a_large_final_header_is_readable(tmp_path):
    """Final header keys live in the index (up to 64 MiB); recover() merges them into the
    leading header, which readers cap at 1 MiB. The recovered file must still open."""
    data = assemble(header=msgpack.packb({"kind": "x"}), frames=REQUIRED,
                    index_extra={"header": {"notes": "n" * (2 * MIB)}})
    path = write(tmp_path, "big-final-header.rsnap", data)
    assert checked_validate(path).ok
    checked_recover(path, tmp_path / "out.rsnap")
    assert checked_validate(tmp_path / "out.rsnap").ok


@pytest.mark.parametrize("node", [["ba", 48 * MIB], ["su", 48 * MIB]], ids=["bytearray", "surrogate-str"])
def test_decoding_a_tiny_node_allocates_little(node):
    """A 6-byte node from a file must not make the decoder or render() allocate its claimed
    size (bytearray(int) / bytes(int) build zero-filled buffers of that length)."""
    tracemalloc.start()
    try:
        value = Decoder().decode(node)
        text = render(node)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert isinstance(text, str) and len(text) <= 300
    del value
    assert peak < 16 * MIB, f"decoding {node!r} allocated {peak / MIB:.0f} MiB"


# --------------------------------------------------------------------------- hostile files


CHILD = textwrap.dedent("""
    import json, resource, sys, time
    resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
    started = time.perf_counter()
    path, opts = sys.argv[1], json.loads(sys.argv[2])
    from replay.errors import SnapshotError
    from replay.snapshot import ReadLimits, SnapshotFile, open_snapshot, recover, validate

    limits = ReadLimits(**opts.get("limits", {{}}))
    out = {{}}

    def describe(exc):
        return {{"class": type(exc).__name__, "offset": exc.offset, "path": exc.path,
                "message": str(exc), "limit": getattr(exc, "limit", None)}}

    try:
        with SnapshotFile(path, limits) as f:
            out["frames"] = f.frame_count
            sample = opts.get("sample")
            for section in sorted(f.sections):
                for k, _ in enumerate(f.iter_records(section)):
                    if sample and k >= sample:
                        break
                n = f.count(section)
                for number in sorted({{0, n // 2, n - 1}}):
                    f.record(section, number)
            if not sample:
                for _ in f.iter_positions():
                    pass
        if not opts.get("sample"):
            with open_snapshot(path, limits=limits) as snap:
                snap.tape, snap.code_files, snap.entry, snap.outcome, snap.environment
        out["read"] = {{"class": "ok"}}
    except SnapshotError as exc:
        out["read"] = describe(exc)
    if opts.get("validate", True):
        report = validate(path, limits)
        out["validate"] = "ok" if report.ok else type(report.error).__name__
    if opts.get("recover", True):
        try:
            result = recover(path, path + ".recovered.rsnap", limits)
        except SnapshotError as exc:
            out["recover"] = type(exc).__name__
        else:
            report = validate(result.output)
            out["recover"] = "ok"
            out["recovered_validate"] = "ok" if report.ok else repr(report.error)
    out["seconds"] = time.perf_counter() - started
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent
    with open("/proc/self/status") as status:
        peak = [line.split()[1] for line in status if line.startswith("VmHWM:")]
    out["maxrss_mib"] = int(peak[0]) / 1024 if peak else 0
    print("RESULT " + json.dumps(out))
""").format(limit=CHILD_MEMORY)


def run_child(path: Path, opts: dict[str, Any] | None = None) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, "-c", CHILD, os.fspath(path), json.dumps(opts or {})],
                          capture_output=True, text=True, timeout=90, cwd=REPO, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (
        f"child did not end with a clean SnapshotError (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# zstd frames made by hand (RFC 8878, section 3.1.1)

def zstd_frame_header(content_size: int, *, window_log: int | None = 23, checksum: bool = True) -> bytes:
    """Magic, Frame_Header_Descriptor, Window_Descriptor (omitted when window_log is None:
    single segment) and an 8-byte Frame_Content_Size."""
    single = window_log is None
    descriptor = (3 << 6) | (0x20 if single else 0) | (0x04 if checksum else 0)
    out = ZSTD_MAGIC + bytes([descriptor])
    if not single:
        assert 10 <= window_log <= 41
        out += bytes([(window_log - 10) << 3])  # exponent, mantissa 0: 2**window_log
    return out + struct.pack("<Q", content_size)


def claimed_content_frame(content_size: int, *, single_segment: bool = False) -> bytes:
    """A ~24-byte zstd frame whose header claims ``content_size`` bytes: one 3-byte raw block
    and a (wrong) checksum follow."""
    raw_block = bytes([(3 << 3) | 0b001, 0, 0]) + b"abc"  # Last_Block=1, Raw, size 3
    return zstd_frame_header(content_size, window_log=None if single_segment else 23) + raw_block + b"\0\0\0\0"


def parse_zstd_header(frame: bytes) -> tuple[int, int, int]:
    """(offset of the FCS field, its width, descriptor byte) of a real zstd frame."""
    assert frame[:4] == ZSTD_MAGIC
    descriptor = frame[4]
    single = bool(descriptor & 0x20)
    pos = 5 + (0 if single else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    width = {0: 1 if single else 0, 1: 2, 2: 4, 3: 8}[descriptor >> 6]
    return pos, width, descriptor


def huge_window_frame(content: bytes, window_log: int) -> bytes:
    """A complete, otherwise valid frame of ``content`` whose Window_Descriptor says
    2**window_log: header bytes made by hand, blocks and checksum from a real compressor."""
    real = zstandard.ZstdCompressor(write_content_size=False, write_checksum=True).compress(content)
    _pos, width, descriptor = parse_zstd_header(real)
    assert width == 0 and not descriptor & 0x20 and descriptor & 0x04  # window descriptor, no FCS
    descriptor = (2 << 6) | 0x04  # 4-byte Frame_Content_Size, checksum
    return (ZSTD_MAGIC + bytes([descriptor, (window_log - 10) << 3]) + struct.pack("<I", len(content))
            + real[6:])


@functools.lru_cache(maxsize=1)
def gigabyte_bomb() -> bytes:
    """~32 KB of zstd that really decompresses to 1 GiB of zeros (content size and checksum
    on). Built once by streaming a reused 1 MiB buffer (about a second)."""
    cctx = zstandard.ZstdCompressor(level=19, write_content_size=True, write_checksum=True)
    buf = io.BytesIO()
    chunk = bytes(MIB)
    with cctx.stream_writer(buf, size=GIB, closefd=False) as writer:
        for _ in range(GIB // MIB):
            writer.write(chunk)
    frame = buf.getvalue()
    params = zstandard.get_frame_parameters(frame)
    assert params.content_size == GIB and params.has_checksum and len(frame) < 64 * 1024
    return frame


def lying_bomb(claimed: int) -> bytes:
    """The 1 GiB bomb with its Frame_Content_Size rewritten to ``claimed``."""
    frame = bytearray(gigabyte_bomb())
    pos, width, _ = parse_zstd_header(bytes(frame))
    assert width in (4, 8)
    frame[pos:pos + width] = claimed.to_bytes(width, "little")
    assert zstandard.get_frame_parameters(bytes(frame)).content_size == claimed
    return bytes(frame)


def big_zero_bin_frame(content_bytes: int) -> bytes:
    """One record: a bin32 of zeros filling exactly ``content_bytes`` of content."""
    cobj = zstandard.ZstdCompressor(level=1, write_content_size=True, write_checksum=True).compressobj(size=content_bytes)
    parts = [cobj.compress(b"\xc6" + struct.pack(">I", content_bytes - 5))]
    left = content_bytes - 5
    chunk = bytes(4 * MIB)
    while left:
        n = min(left, len(chunk))
        parts.append(cobj.compress(chunk[:n]))
        left -= n
    parts.append(cobj.flush())
    return b"".join(parts)


TINY_PAYLOAD = zstd(msgpack.packb(0))


def many_tiny_frames(directory: Path, frames: int, listed: int) -> Path:
    """``frames`` real frames of one record each; the index lists the first ``listed``."""
    path = directory / f"tiny-{frames}-{listed}.rsnap"
    head = msgpack.packb({"kind": "many frames"})
    preamble = PREAMBLE.pack(MAGIC, 1, 1, 0, len(head), zlib.crc32(head)) + head
    frame = FRAME_HEAD.pack(Section.TAPE, 1, len(TINY_PAYLOAD)) + TINY_PAYLOAD
    start, step, size = len(preamble), len(frame), len(TINY_PAYLOAD)
    pack_offset = struct.Struct(">I").pack
    tail = bytes([Section.TAPE, 1, size])
    entries = b"".join(b"\x94\xce" + pack_offset(start + i * step) + tail for i in range(listed))
    index = b"\x81\xa6frames\xdd" + struct.pack(">I", listed) + entries
    index_offset = start + step * frames
    with open(path, "wb") as fh:
        fh.write(preamble)
        fh.write(frame * frames)
        fh.write(index)
        fh.write(TRAILER.pack(index_offset, len(index), zlib.crc32(index), b"RSNAPEND"))
    return path


def index_listing(entries: int) -> bytes:
    """A file with no frames whose index lists ``entries`` tiny frames (array32 header)."""
    one = msgpack.packb([24 + 20, Section.TAPE, 1, len(TINY_PAYLOAD)])
    index = b"\x81\xa6frames\xdd" + struct.pack(">I", entries) + one * entries
    return assemble(header=msgpack.packb({"kind": "x" * 11}), index=index)


A32 = b"\xdd\xff\xff\xff\xff"  # array32 claiming 2**32-1 items
M32 = b"\xdf\xff\xff\xff\xff"  # map32 claiming 2**32-1 pairs
STR32 = b"\xdb\xff\xff\xff\xff"  # str32 claiming 4 GiB
BIN32 = b"\xc6\xff\xff\xff\xff"  # bin32 claiming 4 GiB
EXT32 = b"\xc9\xff\xff\xff\xff\x05"  # ext32 type 5 claiming 4 GiB


def frame_with(content: bytes, count: int = 1) -> bytes:
    """A valid file plus one tape frame holding ``content`` (msgpack bytes), compressed."""
    return assemble(frames=[*REQUIRED, (Section.TAPE, count, zstd(content))])


def payload_with(payload: bytes, count: int = 1) -> bytes:
    """A valid file plus one tape frame whose zstd payload is ``payload`` verbatim."""
    return assemble(frames=[*REQUIRED, (Section.TAPE, count, payload)])


def header_with(raw_header: bytes) -> bytes:
    return assemble(header=raw_header, frames=REQUIRED)


def _good_entries() -> bytes:
    """msgpack of the frame list of ``assemble(frames=REQUIRED)``."""
    data = assemble(frames=REQUIRED)
    offset, length, _, _ = TRAILER.unpack_from(data, len(data) - 24)
    return msgpack.packb(msgpack.unpackb(data[offset:offset + length])["frames"])


def index_with(raw_index: bytes) -> bytes:
    return assemble(frames=REQUIRED, index=raw_index)


def amplification_frame() -> bytes:
    """~1 KB of zstd, 8.4 MB of content: two arrays of 4,194,304 empty arrays each.

    Every limit holds (container items, frame content, records), yet decoding builds 8.4
    million list objects: over 600 MB, from a file of about a kilobyte.
    """
    items = 1 << 22
    content = (b"\xdd" + struct.pack(">I", items) + b"\x90" * items) * 2
    return assemble(frames=[*REQUIRED, (Section.TAPE, 2, zstd(content))])


TAPE_RECORD = records(["clock", "time.time", ["t"], 1.5, None])
UNKNOWN_SECTION = 200  # readers skip sections they do not know; validate() only warns
CORRUPT = (CorruptSnapshotError,)  # TruncatedSnapshotError is one
LIMIT = (SnapshotLimitError,)
ANY = (SnapshotLimitError, CorruptSnapshotError)


@dataclasses.dataclass(frozen=True)
class Hostile:
    id: str
    build: Callable[[Path], Path]
    expect: tuple[type[SnapshotError], ...] | str  # error classes, or "ok"
    limit: str | None = None  # SnapshotLimitError.limit
    opts: dict[str, Any] = dataclasses.field(default_factory=dict)
    max_rss_mib: float = CHILD_MEMORY / MIB
    slow: bool = False  # started first, so the two workers finish together


def from_bytes(make: Callable[[], bytes]) -> Callable[[Path], Path]:
    def build(directory: Path) -> Path:
        path = directory / "hostile.rsnap"
        path.write_bytes(make())
        return path
    return build


HOSTILE = [
    # (a) a tiny frame whose header claims an enormous content size
    Hostile("content-size-1GiB", from_bytes(lambda: payload_with(claimed_content_frame(GIB))), LIMIT,
            "frame content size", max_rss_mib=100),
    Hostile("content-size-1TiB", from_bytes(lambda: payload_with(claimed_content_frame(TIB))), LIMIT,
            "frame content size", max_rss_mib=100),
    Hostile("content-size-1TiB-single-segment",
            from_bytes(lambda: payload_with(claimed_content_frame(TIB, single_segment=True))), LIMIT,
            "frame content size", max_rss_mib=100),
    # (b) a real bomb: 32 KB that expands to 1 GiB
    Hostile("zstd-bomb-1GiB", from_bytes(lambda: payload_with(gigabyte_bomb())), LIMIT, "frame content size",
            max_rss_mib=100),
    Hostile("zstd-bomb-claiming-1MiB", from_bytes(lambda: payload_with(lying_bomb(MIB))), CORRUPT, max_rss_mib=100),
    Hostile("zstd-bomb-claiming-64MiB", from_bytes(lambda: payload_with(lying_bomb(64 * MIB))), CORRUPT),
    Hostile("total-content-limit",
            from_bytes(lambda: assemble(frames=[*REQUIRED, *[(UNKNOWN_SECTION, 1, big_zero_bin_frame(32 * MIB))] * 3])),
            LIMIT, "content read from file", opts={"limits": {"max_total_content_bytes": 80 * MIB}}, slow=True),
    # (c) a window far over what readers accept
    Hostile("window-log-23-control", from_bytes(lambda: payload_with(huge_window_frame(TAPE_RECORD, 23))), "ok"),
    Hostile("window-log-31", from_bytes(lambda: payload_with(huge_window_frame(TAPE_RECORD, 31))), LIMIT,
            "zstd window size", max_rss_mib=100),
    Hostile("window-log-27", from_bytes(lambda: payload_with(huge_window_frame(TAPE_RECORD, 27))), LIMIT,
            "zstd window size", max_rss_mib=100),
    Hostile("window-log-32", from_bytes(lambda: payload_with(huge_window_frame(TAPE_RECORD, 32))), ANY,
            max_rss_mib=100),
    # (d) huge indexes
    Hostile("index-listing-2M-frames", from_bytes(lambda: index_listing(2_000_000)), LIMIT, "frames in the index",
            max_rss_mib=300),
    Hostile("1M+1-real-tiny-frames", lambda d: many_tiny_frames(d, (1 << 20) + 1, (1 << 20) + 1), LIMIT,
            "frames in the index", opts={"recover": False}, max_rss_mib=300),
    Hostile("1M-real-tiny-frames-at-the-limit", lambda d: many_tiny_frames(d, (1 << 20) + 1, 1 << 20), "ok",
            opts={"sample": 2000, "validate": False, "recover": False}, max_rss_mib=300, slow=True),
    # (e) msgpack containers claiming 2**32-1 items
    Hostile("array32-in-frame", from_bytes(lambda: frame_with(A32 + b"\xc0" * 8)), LIMIT,
            "container items in the frame content"),
    Hostile("map32-in-frame", from_bytes(lambda: frame_with(M32 + b"\xa1k\xc0")), LIMIT,
            "container items in the frame content"),
    Hostile("array32-nested-in-frame", from_bytes(lambda: frame_with(b"\x92\xc0" + A32 + b"\xc0")), LIMIT,
            "container items in the frame content"),
    Hostile("map32-header", from_bytes(lambda: header_with(M32 + b"\xa1k\xc0")), LIMIT,
            "container items in the header"),
    Hostile("array32-in-header", from_bytes(lambda: header_with(b"\x81\xa1k" + A32 + b"\xc0")), LIMIT,
            "container items in the header"),
    Hostile("map32-index", from_bytes(lambda: index_with(M32 + b"\xa6frames" + _good_entries())), ANY),
    Hostile("array32-index-frame-list", from_bytes(lambda: index_with(b"\x81\xa6frames" + A32)), LIMIT,
            "frames in the index"),
    Hostile("array32-index-entry", from_bytes(lambda: index_with(b"\x81\xa6frames\x91" + A32)), LIMIT,
            "container items in the index"),
    Hostile("map32-index-header",
            from_bytes(lambda: index_with(b"\x82\xa6frames" + _good_entries() + b"\xa6header" + M32)), LIMIT,
            "container items in the index"),
    Hostile("array32-index-unknown-key",
            from_bytes(lambda: index_with(b"\x82\xa6frames" + _good_entries() + b"\xa3zzz" + A32)), ANY),
    # (f) deep nesting
    Hostile("nesting-1024-tape-record-at-the-limit",  # the deepest msgpack accepts: reads and validates
            from_bytes(lambda: frame_with(b"\x95\xa1x\xa1y" + b"\x91" * 1022 + b"\x90\xc0\xc0")), "ok"),
    Hostile("nesting-1025-in-frame", from_bytes(lambda: frame_with(b"\x91" * 1025 + b"\xc0")), LIMIT,
            "nesting depth of the frame content"),
    Hostile("nesting-100000-in-frame", from_bytes(lambda: frame_with(b"\x91" * 100_000 + b"\xc0")), LIMIT,
            "nesting depth of the frame content"),
    Hostile("nesting-100000-maps-in-frame", from_bytes(lambda: frame_with(b"\x81\xa1k" * 100_000 + b"\xc0")), LIMIT,
            "nesting depth of the frame content"),
    Hostile("nesting-100000-in-header", from_bytes(lambda: header_with(b"\x81\xa1k" + b"\x91" * 100_000 + b"\xc0")),
            LIMIT, "nesting depth of the header"),
    Hostile("nesting-100000-in-index-header",
            from_bytes(lambda: index_with(b"\x82\xa6frames" + _good_entries() + b"\xa6header\x81\xa1k"
                                          + b"\x91" * 100_000 + b"\xc0")), LIMIT, "nesting depth of the index"),
    Hostile("nesting-100000-in-index-unknown-key",
            from_bytes(lambda: index_with(b"\x82\xa6frames" + _good_entries() + b"\xa3zzz" + b"\x91" * 100_000
                                          + b"\xc0")), LIMIT, "nesting depth of the index"),
    # (g) strings and bytes claiming 4 GiB
    Hostile("str32-4GiB-in-frame", from_bytes(lambda: frame_with(STR32 + b"abc")), CORRUPT),
    Hostile("bin32-4GiB-in-frame", from_bytes(lambda: frame_with(BIN32 + b"abc")), CORRUPT),
    Hostile("str32-4GiB-in-header", from_bytes(lambda: header_with(b"\x81\xa1k" + STR32 + b"abc")), CORRUPT),
    Hostile("bin32-4GiB-in-index-header",
            from_bytes(lambda: index_with(b"\x82\xa6frames" + _good_entries() + b"\xa6header\x81\xa1k" + BIN32
                                          + b"abc")), CORRUPT),
    # (h) extension types and non-string map keys
    Hostile("fixext-in-frame", from_bytes(lambda: frame_with(b"\xd4\x05\x00")), CORRUPT),
    Hostile("ext8-empty-in-frame", from_bytes(lambda: frame_with(b"\xc7\x00\x05")), CORRUPT),
    Hostile("ext32-4GiB-in-frame", from_bytes(lambda: frame_with(EXT32)), CORRUPT),
    Hostile("timestamp-ext-in-frame", from_bytes(lambda: frame_with(b"\xd6\xff\x00\x00\x00\x00")), CORRUPT),
    Hostile("ext-in-header", from_bytes(lambda: header_with(b"\x81\xa1k\xd4\x05\x00")), CORRUPT),
    Hostile("ext-in-index-header",
            from_bytes(lambda: index_with(b"\x82\xa6frames" + _good_entries() + b"\xa6header\x81\xa1k\xd4\x05\x00")),
            CORRUPT),
    Hostile("int-map-key-in-frame", from_bytes(lambda: frame_with(b"\x81\x01\x02")), CORRUPT),
    Hostile("float-map-key-in-frame", from_bytes(lambda: frame_with(b"\x81\xca\x00\x00\x00\x00\x02")), CORRUPT),
    Hostile("int-map-key-in-header", from_bytes(lambda: header_with(b"\x81\x01\x02")), CORRUPT),
    Hostile("int-map-key-in-index-header",
            from_bytes(lambda: index_with(b"\x82\xa6frames" + _good_entries() + b"\xa6header\x81\x01\x02")), CORRUPT),
    # decoded size: every limit holds, but the objects built do not fit in memory
    Hostile("object-amplification", from_bytes(amplification_frame), LIMIT, slow=True),
]


@pytest.fixture(scope="module")
def hostile_results() -> Iterator[dict[str, tuple[Path, dict[str, Any]]]]:
    """Build every hostile file and run its child (two at a time: the machine has 2 cores)."""
    with fast_dir() as base:
        def one(case: Hostile) -> tuple[Path, dict[str, Any]]:
            directory = base / case.id
            directory.mkdir()
            path = case.build(directory)
            return path, run_child(path, case.opts)

        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            ordered = sorted(HOSTILE, key=lambda case: not case.slow)
            futures = {case.id: pool.submit(one, case) for case in ordered}
            results = {}
            for key, future in futures.items():
                try:
                    results[key] = future.result()
                except BaseException as exc:  # reported by the test of that case
                    results[key] = exc
        yield results


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", HOSTILE, ids=[c.id for c in HOSTILE])
def test_hostile_file_in_a_memory_capped_child(hostile_results, case):
    """The child (address space capped at 512 MiB) opens the file, reads every record of
    every section, runs validate() and recover(), and ends cleanly within seconds."""
    result = hostile_results[case.id]
    if isinstance(result, BaseException):
        raise result
    path, out = result
    read = out["read"]
    assert out["seconds"] < 20, f"child took {out['seconds']:.1f} s"
    assert out["maxrss_mib"] < case.max_rss_mib, f"child used {out['maxrss_mib']:.0f} MiB"
    if case.expect == "ok":
        assert read["class"] == "ok", read
        assert out.get("validate", "ok") == "ok", out
    else:
        expected = {cls.__name__ for cls in case.expect}
        assert read["class"] != "ok", "the hostile file was read without an error"
        got = getattr(replay.errors, read["class"])
        assert any(issubclass(got, cls) for cls in case.expect), f"expected {expected}, got {read}"
        assert read["path"] == os.fspath(path) and os.fspath(path) in read["message"]
        assert isinstance(read["offset"], int) and read["offset"] >= 0
        if case.limit is not None:
            assert read["limit"] == case.limit, read
        if "validate" in out:
            assert out["validate"] != "ok"
            assert any(issubclass(getattr(replay.errors, out["validate"]), cls) for cls in case.expect), out
    if "recover" in out:
        assert out["recover"] in ("ok", "NotASnapshotError", "CorruptSnapshotError", "TruncatedSnapshotError",
                                  "SnapshotLimitError"), out
        if out["recover"] == "ok":
            assert out["recovered_validate"] == "ok", out


# --------------------------------------------------------------------------- audit hook


AUDIT_CHILD = textwrap.dedent("""
    import json, sys
    from replay.errors import SnapshotError
    from replay.snapshot import SnapshotFile, open_snapshot, validate
    from replay.snapshot.codec import Decoder, render

    def nodes(value, budget=20000):
        stack = [value]
        while stack and budget:
            budget -= 1
            v = stack.pop()
            yield v
            if isinstance(v, list):
                stack.extend(v)
            elif isinstance(v, dict):
                stack.extend(v.values())

    def exercise(path):
        try:
            with SnapshotFile(path) as f:
                for section in sorted(f.sections):
                    for record in f.iter_records(section):
                        for node in nodes(record):
                            Decoder().decode(node)
                            render(node)
                for _ in f.iter_positions():
                    pass
        except SnapshotError:
            pass
        try:
            with open_snapshot(path) as snap:
                for name in ("entry", "outcome", "environment"):
                    try:
                        value = getattr(snap, name)
                    except SnapshotError:
                        continue
                    for node in nodes(value):
                        Decoder().decode(node)
                        render(node, width=80)
                for interaction in snap.tape:
                    for node in (interaction.args, interaction.result, interaction.error):
                        Decoder().decode(node)
                        render(node)
                snap.code_files
        except SnapshotError:
            pass
        validate(path)

    warm, corpus = sys.argv[1], sys.argv[2:]
    exercise(warm)  # lazy imports of an ordinary read happen here, before the hook

    EXACT = {"import", "exec", "compile", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
             "os.forkpty", "os.kill", "os.killpg", "pickle.find_class", "marshal.loads", "marshal.load",
             "builtins.input", "code.__new__", "function.__new__", "webbrowser.open", "os.startfile"}
    PREFIXES = ("subprocess.", "ctypes.", "cpython.run_", "socket.", "urllib.", "os.spawn", "os.exec",
                "os.posix_spawn", "pickle.", "marshal.")
    events = []

    def hook(event, args):
        if event in EXACT or event.startswith(PREFIXES):
            events.append([event, repr(args)[:160]])

    sys.addaudithook(hook)
    for path in corpus:
        exercise(path)
    print("EVENTS " + json.dumps(events))
""")


DANGEROUS_TAPE = [
    ["x", "y", ["obj", "os:system", "a", 1], ["type", "subprocess:Popen"], None],
    ["x", "y", ["dc", "subprocess:CompletedProcess", "args", ["l"]], ["exc", "os:system", ["l"], "m", []],
     ["enum", "subprocess:Popen", 1]],
    ["x", "y", ["type", "pickle:loads"], ["type", "marshal:loads"], ["nt", "os:terminal_size", 1, 2]],
    ["x", "y", ["type", "builtins:eval"], ["type", "builtins:__import__"], ["obj", "importlib:import_module", "name", "os"]],
    ["x", "y", ["type", "antigravity:fly"], ["type", "this:s"], ["obj", "ctypes:CDLL", "name", "libc.so.6"]],
    ["x", "y", ["type", "concurrent.futures:ProcessPoolExecutor"], ["type", "xml.etree.ElementTree:XMLParser"],
     ["enum", "signal:Signals", 9]],
    ["x", "y", ["type", "code:InteractiveConsole"], ["type", "pdb:Pdb"], ["exc", "builtins:SystemExit", [0], "", []]],
    ["x", "y", ["exc", "subprocess:CalledProcessError", [1, "rm -rf /"], "m", ["cmd", "sh"]],
     ["exc", "builtins:KeyboardInterrupt", [], "", []], ["type", "builtins:exec"]],
    ["x", "y", ["type", "os:system.__call__"], ["type", "sys:modules.__class__"], ["type", "builtins:object.__subclasses__"]],
    ["x", "y", ["dt", 2020, 1, 1, 0, 0, 0, 0, 0, ["tz", 3600, 0, "X"]], ["path", "PosixPath", "/etc/passwd"],
     ["dec", "1e999999"]],
    ["x", "y", ["uuid", b"\0" * 16], ["range", 0, 2**63, 1], ["i", "9" * 5000]],
    ["x", "y", ["?", "os:system", "x", "y"], ["...", "os:system"], ["+", 5]],
    ["x", "y", ["l", ["@", 0], ["@", 99]], ["d", ["type", "os:system"], ["type", "subprocess:run"]],
     ["s", ["type", "os:popen"]]],
]


def dangerous_snapshot(path: Path) -> Path:
    """A complete, valid snapshot whose values name dangerous callables everywhere."""
    w = SnapshotWriter(path, {"entry": "os:system", "reasons": ["subprocess:Popen"], "replayable": True})
    w.append(Section.ENTRY, {"module": "os", "qualname": "system", "args": ["t", ["obj", "os:system", "cmd", "id"]],
                             "kwargs": ["d", "shell", ["type", "subprocess:Popen"]], "kind": "function"})
    w.write_section(Section.TAPE, DANGEROUS_TAPE)
    w.append(Section.OUTCOME, {"kind": "exception", "value": ["exc", "subprocess:CalledProcessError", [1, "x"], "m", []],
                               "traceback": [{"locals": ["d", "f", ["type", "pickle:loads"]]}]})
    w.append(Section.CODE, {"path": "evil.py", "module": "evil",
                            "source": "import os\nos.system('touch /tmp/rsnap-pwned')\n"})
    w.append(Section.ENVIRONMENT, {"python": "3.11", "libraries": {"os": "system"}})
    w.close()
    return path


def audit_corpus(directory: Path) -> list[Path]:
    """Dangerous names, their mutations, hostile structures and damaged samples."""
    base = dangerous_snapshot(directory / "dangerous.rsnap")
    corpus = [base, sample_path()]
    data = base.read_bytes()
    rng = random.Random(20261121)
    for k in range(120):
        buf = bytearray(data)
        for _ in range(rng.randint(1, 3)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        corpus.append(write(directory, f"flip{k}.rsnap", fix_checksums(buf) if k % 2 else bytes(buf)))
    for k, cut in enumerate(sorted(rng.sample(range(len(data)), 40))):
        corpus.append(write(directory, f"cut{k}.rsnap", data[:cut]))
    sample = sample_bytes()
    for k in range(30):
        buf = bytearray(sample)
        buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
        corpus.append(write(directory, f"sample{k}.rsnap", fix_checksums(buf)))
    small = [c for c in HOSTILE if c.id.startswith(("array32", "map32", "nesting", "str32", "bin32", "fixext",
                                                     "ext", "int-map", "timestamp", "window", "content-size"))]
    for case in small:
        sub = directory / case.id
        sub.mkdir()
        corpus.append(case.build(sub))
    return corpus


def run_audited(warm: Path, corpus: list[Path]) -> list[list[str]]:
    proc = subprocess.run([sys.executable, "-c", AUDIT_CHILD, os.fspath(warm), *map(os.fspath, corpus)],
                          capture_output=True, text=True, timeout=120, cwd=REPO, check=False)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("EVENTS ")]
    assert proc.returncode == 0 and lines, f"audit child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("EVENTS "):])


def summarize(events: list[list[str]]) -> str:
    """``import tempfile, exec x3, ...``: event names, with the module for imports."""
    seen: dict[str, int] = {}
    for name, args in events:
        key = f"import {args[2:].split(chr(39))[0]}" if name == "import" else name
        seen[key] = seen.get(key, 0) + 1
    return ", ".join(k if n == 1 else f"{k} x{n}" for k, n in seen.items())


@pytest.mark.timeout(120)
def test_reading_hostile_files_imports_executes_and_spawns_nothing(tmp_path):
    corpus = audit_corpus(tmp_path)
    assert len(corpus) > 200
    events = run_audited(sample_path(), corpus)
    assert events == [], "reading/decoding hostile files raised audit events: " + summarize(events)


@pytest.mark.timeout(60)
def test_decoding_a_recorded_zone_name_imports_nothing(tmp_path):
    """A datetime recorded in a zone this machine does not know (or a made-up zone name in a
    hostile file) must decode to a placeholder without importing anything."""
    path = tmp_path / "zones.rsnap"
    w = SnapshotWriter(path, {})
    w.write_section(Section.TAPE, [
        ["clock", "datetime.now", ["t"], ["dt", 2026, 1, 31, 8, 0, 0, 0, 0, ["zi", zone]], None]
        for zone in ("Europe/Amsterdam", "Nowhere/Atlantis", "America/Not_A_Zone", "os", "subprocess")
    ])
    w.append(Section.ENTRY, {"module": "m", "qualname": "f"})
    w.append(Section.OUTCOME, {"kind": "return"})
    w.append(Section.ENVIRONMENT, {})
    w.close()
    events = run_audited(sample_path(), [path])
    assert events == [], "decoding zone names raised audit events: " + summarize(events)
