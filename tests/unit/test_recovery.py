"""Recovery of damaged snapshots: crashed writers, truncated and corrupted files.

:func:`replay.snapshot.recover` copies every verified frame, in file order, up to the first
frame that is cut short or fails a check, into a new complete file. So for each section the
recovered records are a prefix of what was written, and their number is exactly the
records of the frames written whole before the damage.
"""

from __future__ import annotations

import functools
import glob
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard

from replay.errors import SnapshotError
from replay.snapshot import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    FrameInfo,
    Section,
    SnapshotFile,
    SnapshotWriter,
    open_snapshot,
    recover,
    scan_frames,
    validate,
)
from replay.snapshot.recovery import recovered_name
from replay.snapshot.writer import temp_name

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_snapshots" / "snapshots" / "jan31-monthly"
FRAME_HEAD = struct.Struct("<BII")
REQUIRED = (Section.ENTRY, Section.OUTCOME, Section.ENVIRONMENT)

HEADER = {"snapshot_id": "0123456789ab", "entry": "shop.checkout:charge", "replayable": True,
          "reasons": ["an earlier reason"], "outcome": None}
HEADER_UPDATE = {"outcome": "return", "interactions": 30, "duration_ns": 1234}
ENTRY = {"module": "shop.checkout", "qualname": "charge", "args": ["l", 1], "kwargs": ["d"]}
OUTCOME = {"kind": "return", "value": 42, "duration_ns": 1234}
ENVIRONMENT = {"python": "3.11.7", "platform": "linux", "libraries": {}}
TAPE = [["clock", "time.time", ["t"], 1_700_000_000.0 + i, None] for i in range(30)]
CODE = [{"path": f"shop/m{i}.py", "module": f"shop.m{i}", "sha256": "0" * 64, "size": 8,
         "source": f"x = {i}\n" * 20} for i in range(6)]


def fill(w: SnapshotWriter) -> dict[int, list[Any]]:
    """Write the reference content in streaming order; return the records per section."""
    w.append(Section.ENTRY, ENTRY)
    w.write_section(Section.TAPE, TAPE[:10])
    w.flush()
    w.write_section(Section.CODE, CODE)
    for record in TAPE[10:]:
        w.append(Section.TAPE, record)
    w.append(Section.OUTCOME, OUTCOME)
    w.append(Section.ENVIRONMENT, ENVIRONMENT)
    return {Section.ENTRY: [ENTRY], Section.TAPE: TAPE, Section.CODE: CODE, Section.OUTCOME: [OUTCOME],
            Section.ENVIRONMENT: [ENVIRONMENT]}


WRITTEN = {Section.ENTRY: [ENTRY], Section.TAPE: TAPE, Section.CODE: CODE, Section.OUTCOME: [OUTCOME],
           Section.ENVIRONMENT: [ENVIRONMENT]}


def write_reference(path: Path) -> Path:
    w = SnapshotWriter(path, HEADER, frame_records=4)
    assert fill(w) == WRITTEN
    w.close(header_update=HEADER_UPDATE)
    return path


@functools.lru_cache(maxsize=1)
def reference() -> tuple[bytes, tuple[FrameInfo, ...], int, int]:
    """(bytes, frames, header end, index offset) of the reference snapshot, built once."""
    with tempfile.TemporaryDirectory() as d:
        path = write_reference(Path(d) / "ref.rsnap")
        with SnapshotFile(path) as f:
            return path.read_bytes(), tuple(f.frames), f.header_end, f.index_offset


def frame_end(fr: FrameInfo) -> int:
    return fr.offset + FRAME_HEAD.size + fr.size


def whole_frames_before(frames: tuple[FrameInfo, ...] | list[FrameInfo], cut: int) -> list[FrameInfo]:
    return [fr for fr in frames if frame_end(fr) <= cut]


def expected_counts(frames: list[FrameInfo]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for fr in frames:
        counts[fr.section] = counts.get(fr.section, 0) + fr.records
    return counts


def read_sections(path: str | Path) -> dict[int, list[Any]]:
    with SnapshotFile(path) as f:
        return {s: list(f.iter_records(s)) for s in f.sections}


def payloads(data: bytes, frames: list[FrameInfo] | tuple[FrameInfo, ...]) -> list[tuple[int, int, bytes]]:
    return [(fr.section, fr.records, data[fr.offset + FRAME_HEAD.size: frame_end(fr)]) for fr in frames]


def assert_recovered(report: Any, source: Path, good: list[FrameInfo], source_bytes: bytes,
                     base_header: dict[str, Any], *, dropped: int) -> None:
    """Everything a recovery of ``source`` must satisfy when ``good`` are the frames it keeps."""
    counts = expected_counts(good)
    missing = [Section.name(s) for s in REQUIRED if s not in counts]
    assert report.source == str(source)
    assert report.frames == len(good)
    assert report.records == {Section.name(s): n for s, n in sorted(counts.items())}
    assert report.missing == missing
    assert report.dropped_bytes == dropped
    recovered = read_sections(report.output)
    assert {s: len(r) for s, r in recovered.items()} == counts
    for section, records in recovered.items():
        assert records == WRITTEN[section][:len(records)]  # a prefix of what was written
    out_bytes = Path(report.output).read_bytes()
    with SnapshotFile(report.output) as f:
        assert payloads(out_bytes, f.frames) == payloads(source_bytes, good)  # copied verbatim
        header = f.header
    assert header["recovered"] == {"source": source.name, "frames": len(good), "dropped_bytes": dropped,
                                   "stop_reason": report.stop_reason}
    rest = {k: v for k, v in header.items() if k not in ("recovered", "replayable", "reasons", "outcome")}
    assert rest == {k: v for k, v in base_header.items() if k not in ("replayable", "reasons", "outcome")}
    if missing:
        assert header["replayable"] is False
        assert header["reasons"] == [*base_header["reasons"],
                                     f"recovered from a damaged file: no {', '.join(missing)} section"]
        assert header["outcome"] == (None if "outcome" in missing else base_header["outcome"])
        # A recovered file may lack required sections: valid, with warnings saying which.
        result = validate(report.output)
        assert result.ok, result.error
        for name in missing:
            assert any(name in w for w in result.warnings), result.warnings
        assert any("not replayable" in w for w in result.warnings)
    else:
        assert header["replayable"] is True and header["reasons"] == base_header["reasons"]
        assert header["outcome"] == base_header["outcome"]
        assert validate(report.output).ok


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "expected"), [
    ("x.rsnap", "x.recovered.rsnap"),
    (".x.rsnap.12345.1.tmp", "x.recovered.rsnap"),
    (".renew-20260131T081244-2e0e.rsnap.77.12.tmp", "renew-20260131T081244-2e0e.recovered.rsnap"),
    (".my.run.2024.rsnap.9.3.tmp", "my.run.2024.recovered.rsnap"),
    ("download", "download.recovered.rsnap"),
    (".hidden.rsnap", ".hidden.recovered.rsnap"),
    (".x.rsnap.tmp", ".x.rsnap.tmp.recovered.rsnap"),  # not a writer's temporary name
    (".x.rsnap.a.1.tmp", ".x.rsnap.a.1.tmp.recovered.rsnap"),
    ("x.recovered.rsnap", "x.recovered.recovered.rsnap"),
])
def test_recovered_name(name, expected):
    assert recovered_name(os.path.join("/some/dir", name)) == os.path.join("/some/dir", expected)
    assert recovered_name(name) == expected


@pytest.mark.parametrize("name", ["x.rsnap", "renew-20260131T081244-2e0e.rsnap", "a.1.2.rsnap", "no-suffix",
                                  "dots.in.name.rsnap", "12.34"])
def test_recovered_name_of_a_writers_temp_file_is_that_of_its_final_name(tmp_path, name):
    final = os.fspath(tmp_path / name)
    tmp = temp_name(final)
    assert os.path.dirname(tmp) == os.fspath(tmp_path)
    assert recovered_name(tmp) == recovered_name(final)


# --------------------------------------------------------------------------- crashed writers


def test_unclosed_writers_temp_file_recovers_every_flushed_record(tmp_path):
    final = tmp_path / "run.rsnap"
    w = SnapshotWriter(final, HEADER, frame_records=4)
    fill(w)
    w.flush()
    w.append(Section.TAPE, ["clock", "late", ["t"], 0, None])  # pending in memory: lost by a crash
    try:
        source = Path(w.temp_path)
        data = source.read_bytes()
        assert not final.exists()
        report = recover(source)
    finally:
        w.abort()
    assert report.output == str(tmp_path / "run.recovered.rsnap")
    assert report.stop_reason == "end of frames"
    with SnapshotFile(write_reference(tmp_path / "ref.rsnap")) as f:
        ref_frames = list(f.frames)
    # Same frames as the closed file; the temporary file has no index, so no header_update.
    assert_recovered(report, source, ref_frames, data, HEADER, dropped=0)
    assert read_sections(report.output) == WRITTEN
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ref.rsnap", "run.recovered.rsnap"]


CRASH_SCRIPT = """
import os, random, sys
from replay.snapshot import Section, SnapshotWriter

def fill(w):
    rng = random.Random(7)
    w.append(Section.ENTRY, {"module": "m", "qualname": "f"})
    for i in range(8):
        w.append(Section.TAPE, ["io", "read", ["t", i], rng.randbytes(1500), None])
    w.flush()
    print(w.records_written, flush=True)  # records sure to be on disk
    for i in range(8, 20):
        w.append(Section.TAPE, ["io", "read", ["t", i], rng.randbytes(1500), None])
    w.append(Section.OUTCOME, {"kind": "return", "value": None})

w = SnapshotWriter(sys.argv[1], {"n": 1}, frame_records=2)
fill(w)
if sys.argv[2] == "crash":
    print(w.temp_path, flush=True)
    os._exit(3)  # no close(), no atexit, no buffer flush
w.close()
"""


def test_writer_killed_without_closing_leaves_a_recoverable_temp_file(tmp_path):
    script = textwrap.dedent(CRASH_SCRIPT)
    final = tmp_path / "crash.rsnap"
    proc = subprocess.run([sys.executable, "-c", script, str(final), "crash"], capture_output=True, text=True,
                          cwd=REPO, timeout=120, check=False)
    assert proc.returncode == 3, proc.stderr
    flushed_records, temp = proc.stdout.split()
    assert not final.exists()
    assert [p.name for p in tmp_path.iterdir()] == [os.path.basename(temp)]
    source = Path(temp)
    data = source.read_bytes()

    # The same writes, closed: zstd is deterministic, so the crashed file is a prefix of it.
    complete = tmp_path / "complete.rsnap"
    subprocess.run([sys.executable, "-c", script, str(complete), "close"], capture_output=True, text=True,
                   cwd=REPO, timeout=120, check=True)
    with SnapshotFile(complete) as f:
        frames, index_offset = list(f.frames), f.index_offset
        written = {s: list(f.iter_records(s)) for s in f.sections}
    assert complete.read_bytes()[:len(data)] == data
    assert len(data) < index_offset

    report = recover(source)
    assert report.output == str(tmp_path / "crash.recovered.rsnap")
    good = whole_frames_before(frames, len(data))
    counts = expected_counts(good)
    assert report.frames == len(good)
    assert sum(counts.values()) >= int(flushed_records)  # everything before flush() survived
    assert report.dropped_bytes == len(data) - (frame_end(good[-1]) if good else 0)
    recovered = read_sections(report.output)
    assert {s: len(r) for s, r in recovered.items()} == counts
    for section, records in recovered.items():
        assert records == written[section][:len(records)]
    with SnapshotFile(report.output) as f:
        header = f.header
        assert payloads(Path(report.output).read_bytes(), f.frames) == payloads(data, good)
    assert header["n"] == 1 and header["recovered"]["source"] == source.name
    assert header["replayable"] is False and "environment" in header["reasons"][-1]


# --------------------------------------------------------------------------- truncation


def truncation_points() -> list[int]:
    data, frames, header_end, index_offset = reference()
    points = {0, 3, 8, 12, 23, 24, 25, header_end - 1, header_end, header_end + 1}
    for fr in frames:
        end = frame_end(fr)
        points |= {fr.offset + 1, fr.offset + 4, fr.offset + FRAME_HEAD.size - 1, fr.offset + FRAME_HEAD.size,
                   fr.offset + FRAME_HEAD.size + 1, (fr.offset + end) // 2, end - 1, end}
    points |= {index_offset, index_offset + 1, len(data) - 24, len(data) - 23, len(data) - 8, len(data) - 1,
               len(data)}
    rng = random.Random(20240131)
    points |= {rng.randrange(header_end, len(data)) for _ in range(20)}
    return sorted(p for p in points if 0 <= p <= len(data))


def test_reference_file_has_many_frames_of_every_section():
    _, frames, _, _ = reference()
    assert len(frames) >= 12
    assert expected_counts(list(frames)) == {s: len(r) for s, r in WRITTEN.items()}
    # The last frames are the ones close() wrote: code, outcome and environment.
    assert [fr.section for fr in frames[-3:]] == [Section.CODE, Section.OUTCOME, Section.ENVIRONMENT]


@pytest.mark.parametrize("cut", truncation_points())
def test_truncated_file_recovers_the_whole_frames_before_the_cut(tmp_path, cut):
    data, frames, header_end, index_offset = reference()
    source = tmp_path / "cut.rsnap"
    source.write_bytes(data[:cut])
    if cut < header_end:
        with pytest.raises(SnapshotError) as info:
            recover(source)
        assert info.value.path == str(source) and isinstance(info.value.offset, int)
        assert list(tmp_path.iterdir()) == [source]  # nothing written
        return
    report = recover(source)
    assert report.output == str(tmp_path / "cut.recovered.rsnap")
    good = whole_frames_before(frames, cut)
    if cut == len(data):  # the complete file: its final header, nothing dropped
        assert good == list(frames)
        assert_recovered(report, source, good, data, {**HEADER, **HEADER_UPDATE}, dropped=0)
    else:
        last = frame_end(good[-1]) if good else header_end
        assert_recovered(report, source, good, data, HEADER, dropped=cut - last)
    at_boundary = cut in (header_end, *(frame_end(fr) for fr in frames), len(data))
    assert (report.stop_reason == "end of frames") == at_boundary, report.stop_reason


def test_scan_frames_of_a_truncated_file(tmp_path):
    data, frames, header_end, index_offset = reference()
    mid = frames[len(frames) // 2]
    source = tmp_path / "cut.rsnap"
    source.write_bytes(data[:mid.offset + 20])
    scan = scan_frames(source)
    assert scan.version == (FORMAT_MAJOR, FORMAT_MINOR)
    assert scan.header == HEADER and scan.final_header == {}
    assert scan.frames == list(frames[:len(frames) // 2])
    assert scan.stop_offset == mid.offset
    assert not scan.index_ok
    assert "ends inside" in scan.stop_reason
    complete = tmp_path / "complete.rsnap"
    complete.write_bytes(data)
    scan = scan_frames(complete)
    assert scan.index_ok and scan.frames == list(frames) and scan.stop_offset == index_offset
    assert scan.header == HEADER and scan.final_header == HEADER_UPDATE


@pytest.mark.parametrize("damage", [
    lambda d: d[:0],
    lambda d: d[:7],
    lambda d: d[:8] + b"\x02\x00" + d[10:],  # an unsupported major version
    lambda d: d[:30] + bytes([d[30] ^ 0xFF]) + d[31:],  # header checksum mismatch
    lambda d: b"PK\x03\x04" + d[4:],  # not a snapshot
], ids=["empty", "inside-magic", "major-2", "header-crc", "bad-magic"])
def test_file_without_a_readable_header_cannot_be_recovered(tmp_path, damage):
    data, *_ = reference()
    source = tmp_path / "bad.rsnap"
    source.write_bytes(damage(data))
    with pytest.raises(SnapshotError):
        recover(source)
    assert not (tmp_path / "bad.recovered.rsnap").exists()


# --------------------------------------------------------------------------- corruption


def _corrupt(data: bytes, fr: FrameInfo, how: str) -> bytes:
    out = bytearray(data)
    payload = fr.offset + FRAME_HEAD.size
    if how == "payload-first":
        out[payload] ^= 0x01
    elif how == "payload-middle":
        out[payload + fr.size // 2] ^= 0x40
    elif how == "payload-last":  # the zstd content checksum
        out[payload + fr.size - 1] ^= 0x80
    elif how == "head-records":
        FRAME_HEAD.pack_into(out, fr.offset, fr.section, fr.records + 1, fr.size)
    elif how == "head-size":
        FRAME_HEAD.pack_into(out, fr.offset, fr.section, fr.records, fr.size - 1)
    elif how == "head-section-0":
        FRAME_HEAD.pack_into(out, fr.offset, 0, fr.records, fr.size)
    return bytes(out)


CORRUPTIONS = ["payload-first", "payload-middle", "payload-last", "head-records", "head-size", "head-section-0"]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("with_index", [True, False], ids=["complete", "truncated"])
def test_recovery_stops_before_a_corrupted_frame_in_the_middle(tmp_path, how, with_index):
    data, frames, header_end, index_offset = reference()
    k = len(frames) // 2
    damaged = _corrupt(data, frames[k], how)
    if not with_index:
        damaged = damaged[:index_offset + 5]
    source = tmp_path / "bad.rsnap"
    source.write_bytes(damaged)
    report = recover(source)
    good = list(frames[:k])
    assert report.frames == k
    assert report.stop_reason != "end of frames"
    counts = expected_counts(good)
    assert report.records == {Section.name(s): n for s, n in sorted(counts.items())}
    recovered = read_sections(report.output)
    assert {s: len(r) for s, r in recovered.items()} == counts
    for section, records in recovered.items():
        assert records == WRITTEN[section][:len(records)]
    with SnapshotFile(report.output) as f:
        assert payloads(Path(report.output).read_bytes(), f.frames) == payloads(damaged, good)
        assert f.header["replayable"] is False
    assert report.missing == ["outcome", "environment"]
    result = validate(report.output)  # a recovered file is always readable
    assert result.ok, result.error


def _zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(data)


@pytest.mark.parametrize(("records", "content"), [
    (3, msgpack.packb(1) * 2),
    (2, msgpack.packb(1) * 3),
    (1, msgpack.packb(1) + b"\x00\x00"),
    (1, b"\xc1"),
    (1, msgpack.packb({1: 2})),
    (1, msgpack.packb([1, 2])[:-1]),
], ids=["fewer-records", "more-records", "trailing-bytes", "invalid-msgpack", "int-map-key", "cut-record"])
def test_recovery_stops_at_a_checksummed_frame_whose_records_are_wrong(tmp_path, records, content):
    """The zstd checksum holds, but the content is not the records the head announces: the
    frame must not be copied (a recovered file must always be readable)."""
    path = tmp_path / "bad.rsnap"
    w = SnapshotWriter(path, {"k": 1})
    w.write_section(Section.TAPE, TAPE[:3])
    w.flush()
    w.write_frame(Section.TAPE, records, _zstd(content))
    w.write_section(Section.TAPE, TAPE[3:6])
    w.close()
    report = recover(path)
    assert report.frames == 1 and report.records == {"tape": 3}
    assert report.stop_reason != "end of frames"
    assert read_sections(report.output) == {Section.TAPE: TAPE[:3]}
    result = validate(report.output)
    assert result.ok, result.error


@pytest.mark.parametrize("how", ["payload-middle", "payload-last"])
def test_dropped_bytes_of_a_complete_file_with_a_corrupted_frame(tmp_path, how):
    """RecoveryReport.dropped_bytes: "Bytes of the source after the last good frame (index and
    trailer of a complete file not counted)". With a valid index but a bad frame in the middle,
    every frame from the bad one up to the index is dropped, and must be counted."""
    data, frames, header_end, index_offset = reference()
    k = len(frames) // 2
    source = tmp_path / "bad.rsnap"
    source.write_bytes(_corrupt(data, frames[k], how))
    report = recover(source)
    assert report.frames == k
    lost = index_offset - frames[k].offset
    assert report.dropped_bytes == lost, f"{report.dropped_bytes} dropped bytes reported, {lost} dropped"
    with SnapshotFile(report.output) as f:
        assert f.header["recovered"]["dropped_bytes"] == lost


# --------------------------------------------------------------------------- complete files


def test_recovering_a_complete_file_copies_everything(tmp_path):
    source = write_reference(tmp_path / "ok.rsnap")
    data = source.read_bytes()
    with SnapshotFile(source) as f:
        frames = list(f.frames)
    report = recover(source, tmp_path / "copy.rsnap")
    assert report.output == str(tmp_path / "copy.rsnap")
    assert report.stop_reason == "end of frames"
    assert_recovered(report, source, frames, data, {**HEADER, **HEADER_UPDATE}, dropped=0)
    assert read_sections(report.output) == WRITTEN
    assert validate(report.output).ok
    with open_snapshot(report.output) as s:
        assert s.entry == ENTRY and s.outcome == OUTCOME and s.environment == ENVIRONMENT
        assert [i.to_record() for i in s.tape] == TAPE and s.code_files == CODE
    # Recovering the recovered file again changes nothing but the "recovered" map.
    again = recover(report.output)
    assert again.output == str(tmp_path / "copy.recovered.rsnap")
    assert read_sections(again.output) == WRITTEN
    with SnapshotFile(again.output) as f, SnapshotFile(report.output) as g:
        assert f.header["recovered"]["source"] == "copy.rsnap"
        assert {k: v for k, v in f.header.items() if k != "recovered"} == {
            k: v for k, v in g.header.items() if k != "recovered"}


def test_recovery_without_entry_outcome_and_environment_is_not_replayable(tmp_path):
    final = tmp_path / "tape-only.rsnap"
    w = SnapshotWriter(final, {"entry": "a:b", "reasons": []}, frame_records=3)
    w.write_section(Section.TAPE, TAPE[:7])
    w.flush()
    try:
        report = recover(w.temp_path)
    finally:
        w.abort()
    assert report.missing == ["entry", "outcome", "environment"]
    assert report.records == {"tape": 7}
    with open_snapshot(report.output) as s:
        assert s.header["replayable"] is False
        assert s.header["reasons"] == ["recovered from a damaged file: no entry, outcome, environment section"]
        assert s.header["outcome"] is None
        assert [i.to_record() for i in s.tape] == TAPE[:7]
    result = validate(report.output)
    assert result.ok and result.records == {"tape": 7}
    assert all(any(name in w for w in result.warnings) for name in ("entry", "outcome", "environment"))


def test_recovery_of_a_writer_that_wrote_nothing(tmp_path):
    w = SnapshotWriter(tmp_path / "empty.rsnap", {"k": "v"})
    w.flush()
    try:
        report = recover(w.temp_path, tmp_path / "out.rsnap")
    finally:
        w.abort()
    assert report.frames == 0 and report.records == {} and report.dropped_bytes == 0
    assert report.missing == ["entry", "outcome", "environment"]
    with SnapshotFile(report.output) as f:
        assert f.frame_count == 0 and f.header["k"] == "v" and f.header["replayable"] is False


# --------------------------------------------------------------------------- a real snapshot


@pytest.fixture
def sample(tmp_path) -> Path:
    (src,) = glob.glob(str(SAMPLE / "*.rsnap"))
    dest = tmp_path / os.path.basename(src)
    shutil.copyfile(src, dest)
    return dest


@pytest.mark.parametrize("cut", ["index", "trailer"])
def test_real_snapshot_cut_before_its_index_recovers_and_reproduces(tmp_path, sample, cut):
    from replay.verify.verdict import Verdict, reproduce

    data = sample.read_bytes()
    with SnapshotFile(sample) as f:
        index_offset, frames, header = f.index_offset, list(f.frames), f.header
        original = {s: list(f.iter_records(s)) for s in f.sections}
    assert {Section.ENTRY, Section.TAPE, Section.OUTCOME, Section.CODE, Section.ENVIRONMENT} <= set(original)
    assert frame_end(frames[-1]) == index_offset
    source = tmp_path / "download.rsnap"
    source.write_bytes(data[:index_offset] if cut == "index" else data[:-24])
    report = recover(source)
    assert report.frames == len(frames) and report.missing == []
    assert report.dropped_bytes == (len(data) - 24 - index_offset if cut == "trailer" else 0)
    assert read_sections(report.output) == original
    assert validate(report.output).ok
    with SnapshotFile(report.output) as f:
        assert f.header["replayable"] is header["replayable"] is True
        assert {k: v for k, v in f.header.items() if k != "recovered"} == header
    result = reproduce(report.output)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert result.entry == header["entry"]


def test_real_snapshot_cut_inside_its_environment_is_not_replayable(tmp_path, sample):
    data = sample.read_bytes()
    with SnapshotFile(sample) as f:
        env = [fr for fr in f.frames if fr.section == Section.ENVIRONMENT]
    source = tmp_path / "download.rsnap"
    source.write_bytes(data[:env[0].offset + 30])
    report = recover(source)
    assert "environment" in report.missing
    with open_snapshot(report.output) as s:
        assert s.header["replayable"] is False
        assert s.header["reasons"][-1].startswith("recovered from a damaged file: no ")
        assert "environment" in s.header["reasons"][-1]
