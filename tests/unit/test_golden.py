"""Golden files: every released format version still reads to the same values.

``tests/golden/v<major>.<minor>/`` holds snapshots written by that release and the
``manifest.json`` made by ``tests/golden/freeze.py`` when it was frozen: per file the version,
the header and, per section, the record count and the SHA-256 of the records re-packed with
msgpack, in order. A change that breaks one of these tests is a format change
(docs/snapshot-format.md, section 8).
"""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import msgpack
import pytest

import replay.snapshot.format as fmt
from replay.errors import SnapshotError, UnsupportedVersionError
from replay.snapshot import (
    FORMAT_MAJOR,
    Section,
    SnapshotFile,
    open_snapshot,
    validate,
)

GOLDEN = Path(__file__).resolve().parents[1] / "golden"
VERSIONS = ["v1.0", "v1.1"]


def manifest(version: str) -> dict[str, Any]:
    return json.loads((GOLDEN / version / "manifest.json").read_text())


GOLDEN_FILES = [(version, name) for version in VERSIONS for name in sorted(manifest(version))]


def golden_id(case: tuple[str, str]) -> str:
    return f"{case[0]}/{case[1]}"


def digest(records: Any) -> dict[str, Any]:
    h = hashlib.sha256()
    n = 0
    for record in records:
        h.update(msgpack.packb(record, use_bin_type=True))
        n += 1
    return {"records": n, "sha256": h.hexdigest()}


def section_digests(f: SnapshotFile) -> dict[str, dict[str, Any]]:
    return {Section.name(s): digest(f.iter_records(s)) for s in f.sections}


@pytest.fixture(params=GOLDEN_FILES, ids=golden_id)
def golden(request) -> tuple[Path, dict[str, Any]]:
    version, name = request.param
    return GOLDEN / version / name, manifest(version)[name]


def test_every_golden_directory_has_files_and_a_complete_manifest():
    for version in VERSIONS:
        files = sorted(p.name for p in (GOLDEN / version).glob("*.rsnap"))
        assert files, version
        assert sorted(manifest(version)) == files
        for entry in manifest(version).values():
            assert f"v{entry['version'][0]}.{entry['version'][1]}" == version
            assert set(entry["sections"]) >= {"entry", "tape", "outcome", "code", "environment"}


def test_golden_file_reads_to_its_manifest(golden):
    path, expected = golden
    with SnapshotFile(path) as f:
        assert list(f.version) == expected["version"]
        assert f.header == expected["header"]
        assert f.size_bytes == expected["size_bytes"] == path.stat().st_size
        assert {Section.name(s): n for s, n in f.sections.items()} == {
            name: s["records"] for name, s in expected["sections"].items()}
        assert section_digests(f) == expected["sections"]
        # Random access gives the same records as the sequential read that was frozen.
        for s in f.sections:
            assert digest(f.record(s, n) for n in range(f.count(s))) == expected["sections"][Section.name(s)]
            assert digest(p.record for p in f.iter_positions() if p.section == s) == \
                expected["sections"][Section.name(s)]


def test_golden_file_validates(golden):
    path, expected = golden
    report = validate(path)
    assert report.ok, report.error
    assert list(report.version) == expected["version"]
    assert report.records == {name: s["records"] for name, s in expected["sections"].items()}
    assert report.size_bytes == expected["size_bytes"]
    assert report.warnings == []


def test_golden_file_opens_as_a_snapshot(golden):
    path, expected = golden
    with open_snapshot(path) as s:
        assert s.header == expected["header"]
        assert isinstance(s.entry["module"], str) and isinstance(s.entry["qualname"], str)
        assert f"{s.entry['module']}:{s.entry['qualname']}" == expected["header"]["entry"]
        assert s.outcome["kind"] == expected["header"]["outcome"]
        assert isinstance(s.environment, dict)
        tape = s.tape
        assert len(tape) == s.tape_length == expected["sections"]["tape"]["records"]
        assert s.tape_length == expected["header"]["interactions"]
        assert [s.interaction(i) for i in range(len(tape))] == tape
        channels: dict[str, int] = {}
        for i in tape:
            channels[i.channel] = channels.get(i.channel, 0) + 1
        assert channels == expected["header"]["channels"]
        assert len(s.code_files) == expected["sections"]["code"]["records"]
        assert all(isinstance(c["path"], str) for c in s.code_files)


def test_v1_0_files_are_read_by_the_current_reader():
    """Minor-version compatibility: a 1.0 file (no index header) reads under the 1.1 reader."""
    expected = manifest("v1.0")
    assert fmt.FORMAT_MINOR > 0
    for name, entry in expected.items():
        path = GOLDEN / "v1.0" / name
        data = path.read_bytes()
        assert struct.unpack_from("<HH", data, 8) == (1, 0)
        with SnapshotFile(path) as f:
            assert f.version == (1, 0)
            assert f.header == f.leading_header == entry["header"]
            assert section_digests(f) == entry["sections"]


# --------------------------------------------------------------------------- versions


def patched_copy(tmp_path: Path, source: Path, *, major: int | None = None, minor: int | None = None) -> Path:
    data = bytearray(source.read_bytes())
    if major is not None:
        struct.pack_into("<H", data, 8, major)
    if minor is not None:
        struct.pack_into("<H", data, 10, minor)
    out = tmp_path / source.name
    out.write_bytes(bytes(data))
    return out


def test_any_minor_version_of_the_major_is_read(tmp_path, golden):
    path, expected = golden
    bumped = patched_copy(tmp_path, path, minor=99)
    with SnapshotFile(bumped) as f:
        assert f.version == (1, 99)
        assert f.header == expected["header"]
        assert section_digests(f) == expected["sections"]
    report = validate(bumped)
    assert report.ok and report.version == (1, 99)
    with open_snapshot(bumped) as s:
        assert s.tape_length == expected["sections"]["tape"]["records"]


@pytest.mark.parametrize("major", [0, 2, 3, 0xFFFF])
def test_other_major_versions_raise_unsupported_version_at_offset_8(tmp_path, major):
    path = GOLDEN / "v1.1" / "jan31-monthly.rsnap"
    bumped = patched_copy(tmp_path, path, major=major)
    for opener in (SnapshotFile, open_snapshot):
        with pytest.raises(UnsupportedVersionError) as info:
            opener(bumped)
        exc = info.value
        assert isinstance(exc, SnapshotError)
        assert exc.offset == 8 and "at byte 8" in str(exc)
        assert exc.path == str(bumped) and str(bumped) in str(exc)
        assert exc.found == (major, 1) and exc.supported == FORMAT_MAJOR
    report = validate(bumped)
    assert not report.ok and isinstance(report.error, UnsupportedVersionError)
    assert report.error.offset == 8


# --------------------------------------------------------------------------- migrations


def _wrap(section: int, record: Any) -> Any:
    return {"migrated_from": 1, "section": section, "record": record}


@pytest.fixture
def major_2(monkeypatch):
    """Pretend the current major is 2, so every golden file is of an older major."""
    monkeypatch.setattr(fmt, "FORMAT_MAJOR", 2)
    monkeypatch.delitem(fmt.MIGRATIONS, 1, raising=False)
    return monkeypatch


@pytest.mark.parametrize("version", VERSIONS)
def test_older_major_without_a_migration_is_unsupported(major_2, version):
    for name in manifest(version):
        with pytest.raises(UnsupportedVersionError) as info:
            SnapshotFile(GOLDEN / version / name)
        assert info.value.offset == 8
        assert info.value.found == tuple(manifest(version)[name]["version"])
        assert info.value.supported == 2


@pytest.mark.parametrize("version", VERSIONS)
def test_older_major_records_come_back_migrated(major_2, version):
    calls: list[int] = []

    def migrate(section: int, record: Any) -> Any:
        calls.append(section)
        return _wrap(section, record)

    major_2.setitem(fmt.MIGRATIONS, 1, migrate)
    for name, expected in manifest(version).items():
        path = GOLDEN / version / name
        with SnapshotFile(path) as f:
            assert list(f.version) == expected["version"]
            assert f.header == expected["header"]
            for s in f.sections:
                sequential = list(f.iter_records(s))
                assert all(r["migrated_from"] == 1 and r["section"] == s for r in sequential)
                assert digest(r["record"] for r in sequential) == expected["sections"][Section.name(s)]
                assert [f.record(s, n) for n in range(f.count(s))] == sequential
                assert f.record(s, -1) == sequential[-1]
                assert list(f.iter_records(s, 1)) == sequential[1:]
            positions = list(f.iter_positions())
            assert all(p.record["section"] == p.section for p in positions)
            for s in f.sections:
                assert digest(p.record["record"] for p in positions if p.section == s) == \
                    expected["sections"][Section.name(s)]
    assert calls and set(calls) <= set(Section.NAMES)


def test_migration_that_keeps_the_shape_validates_and_replays_through_the_model(major_2):
    """A realistic step: major 2 renamed the tape channel "clock" to "time"."""
    def migrate(section: int, record: Any) -> Any:
        if section == Section.TAPE and record[0] == "clock":
            return ["time", *record[1:]]
        return record

    major_2.setitem(fmt.MIGRATIONS, 1, migrate)
    path = GOLDEN / "v1.0" / "feb15-monthly.rsnap"
    expected = manifest("v1.0")["feb15-monthly.rsnap"]
    report = validate(path)
    assert report.ok, report.error
    assert report.version == (1, 0)
    with open_snapshot(path) as s:
        channels = [i.channel for i in s.tape]
        assert "clock" not in channels
        assert channels.count("time") == expected["header"]["channels"]["clock"]
        assert s.interaction(0).channel == channels[0]
        assert s.entry["module"] == "subscriptions.service"


def test_current_major_files_are_never_migrated(monkeypatch):
    """A step registered under the current major itself is never applied."""
    monkeypatch.setitem(fmt.MIGRATIONS, FORMAT_MAJOR, lambda section, record: pytest.fail("migration applied"))
    path = GOLDEN / "v1.1" / "jan31-monthly.rsnap"
    with SnapshotFile(path) as f:
        assert section_digests(f) == manifest("v1.1")["jan31-monthly.rsnap"]["sections"]
