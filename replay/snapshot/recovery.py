"""Validation of snapshot files and recovery of files without an index.

:func:`validate` reads every frame (checksums, limits) and checks the structure of every
known section. :func:`scan_frames` walks the frames of a file from the front without using
its index, stopping at the first frame that is incomplete or fails its checks;
:func:`recover` copies those frames verbatim into a new, complete snapshot. This is what
``replay validate [--recover]`` runs.
"""

from __future__ import annotations

import collections
import dataclasses
import os
from typing import Any

from replay.errors import (
    CorruptSnapshotError,
    SnapshotError,
    SnapshotLimitError,
    TruncatedSnapshotError,
)
from replay.snapshot import format as fmt
from replay.snapshot.format import DEFAULT_LIMITS, FrameInfo, ReadLimits, Section, short_repr
from replay.snapshot.model import header_reasons
from replay.snapshot.reader import SnapshotFile, open_file, read_exact, read_header
from replay.snapshot.writer import SnapshotWriter


@dataclasses.dataclass
class ValidationReport:
    """What :func:`validate` found in one file.

    Attributes:
        path: The file.
        ok: True when every check passed.
        error: The first error (a SnapshotError) when not ok.
        version: (major, minor), when the preamble was readable.
        frames: Frames in the index.
        records: Record count per section name.
        size_bytes: File size.
        content_bytes: Decompressed bytes of all frames.
        warnings: Things that are allowed but worth knowing (unknown sections, not replayable).
    """

    path: str
    ok: bool
    error: SnapshotError | None = None
    version: tuple[int, int] | None = None
    frames: int = 0
    records: dict[str, int] = dataclasses.field(default_factory=dict)
    size_bytes: int = 0
    content_bytes: int = 0
    warnings: list[str] = dataclasses.field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (the error as type, message and offset)."""
        err = None
        if self.error is not None:
            err = {"type": type(self.error).__name__, "message": self.error.detail, "offset": self.error.offset}
        return {
            "path": self.path, "ok": self.ok, "error": err,
            "version": f"{self.version[0]}.{self.version[1]}" if self.version else None,
            "frames": self.frames, "records": self.records, "size_bytes": self.size_bytes,
            "content_bytes": self.content_bytes, "warnings": self.warnings,
        }


def check_structure(path: str, section: int, records: list[Any]) -> None:
    """Check the records of a known section have the shape the spec gives.

    Raises:
        CorruptSnapshotError: naming the section and record number.
    """
    name = Section.name(section)
    if section in (Section.ENTRY, Section.OUTCOME, Section.ENVIRONMENT):
        if len(records) != 1 or not isinstance(records[0], dict):
            raise CorruptSnapshotError(path, f"the {name} section must hold exactly one map, it holds {len(records)} records")
        rec = records[0]
        if section == Section.ENTRY and not (isinstance(rec.get("module"), str) and isinstance(rec.get("qualname"), str)):
            raise CorruptSnapshotError(path, "the entry record has no module and qualname")
        if section == Section.OUTCOME and rec.get("kind") not in ("return", "exception"):
            raise CorruptSnapshotError(path, f"the outcome kind {short_repr(rec.get('kind'))} is neither return nor exception")
    elif section == Section.TAPE:
        for i, r in enumerate(records):
            if not (isinstance(r, list) and len(r) >= 5 and isinstance(r[0], str) and isinstance(r[1], str)):
                raise CorruptSnapshotError(path, f"tape record {i} is malformed")
    elif section == Section.STRANDS:
        last = -1
        for i, r in enumerate(records):
            if not (isinstance(r, list) and len(r) >= 2 and isinstance(r[0], int) and isinstance(r[1], str)
                    and r[0] >= last):
                raise CorruptSnapshotError(path, f"strands record {i} is malformed")
            last = r[0]
    elif section == Section.CODE:
        for i, r in enumerate(records):
            if not (isinstance(r, dict) and isinstance(r.get("path"), str)):
                raise CorruptSnapshotError(path, f"code record {i} is malformed")


def validate(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> ValidationReport:
    """Check one file completely: preamble, header, index, every frame's checksum and limits,
    and the structure of every known section.

    Never raises a SnapshotError: failures are reported in the result.
    """
    report = ValidationReport(os.fspath(path), ok=False)
    try:
        with SnapshotFile(path, limits) as f:
            report.version, report.size_bytes, report.frames = f.version, f.size_bytes, f.frame_count
            for section, _count in f.sections.items():
                records = list(f.iter_records(section))
                report.records[Section.name(section)] = len(records)
                if section in Section.NAMES:
                    check_structure(report.path, section, records)
                else:
                    report.warnings.append(f"unknown section {section} ({len(records)} records) skipped")
            for section in (Section.ENTRY, Section.OUTCOME, Section.ENVIRONMENT):
                if section in f.sections:
                    continue
                if "recovered" not in f.header:
                    raise CorruptSnapshotError(report.path, f"the {Section.name(section)} section is missing")
                report.warnings.append(f"recovered file without its {Section.name(section)} section")
            report.content_bytes = f.content_read
            if f.header.get("replayable") is False:
                reasons = "; ".join(header_reasons(f.header)) or "no reason given"
                report.warnings.append(f"marked not replayable: {reasons}")
    except SnapshotError as exc:
        report.error = exc
        return report
    report.ok = True
    return report


@dataclasses.dataclass
class ScanResult:
    """Frames found by :func:`scan_frames`.

    Attributes:
        version: (major, minor) from the preamble.
        header: The leading header.
        final_header: The index's header keys (empty without a valid index).
        frames: Complete, verified frames in file order.
        stop_offset: Where scanning stopped: just after the last good frame.
        stop_reason: Why it stopped: ``"end of frames"`` or the error met.
        index_ok: True when the file also has a valid trailer and index.
        frames_end: Where the frames end: the index offset of a complete file, else its size.
    """

    version: tuple[int, int]
    header: dict[str, Any]
    final_header: dict[str, Any]
    frames: list[FrameInfo]
    stop_offset: int
    stop_reason: str
    index_ok: bool
    frames_end: int


def scan_frames(path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS) -> ScanResult:
    """Walk the frames from the front, verifying each, without trusting the index.

    Stops at the first frame that is cut short or fails a check (checksum, limits, record
    count), or at the index when the file has a valid trailer.

    Raises:
        SnapshotError: the preamble or header is unreadable (nothing can be recovered).
    """
    spath = os.fspath(path)
    with open_file(spath) as file:
        size = os.fstat(file.fileno()).st_size
        version, header, pos = read_header(spath, file, limits)
        end, index_ok, final_header = size, False, {}
        try:
            with SnapshotFile(spath, limits) as complete:
                end = complete.index_offset
                final_header = complete.index_header
                index_ok = True
        except SnapshotError:
            pass
        frames: list[FrameInfo] = []
        reason = "end of frames"
        while pos < end:
            try:
                if len(frames) >= limits.max_frames:
                    raise SnapshotLimitError(spath, "frames found", len(frames) + 1, limits.max_frames, offset=pos)
                head = fmt.FRAME_HEAD.unpack(read_exact(spath, file, pos, fmt.FRAME_HEAD.size, "frame head"))
                fmt.check_frame_head(spath, head, pos, limits)
                section, count, fsize = head
                if count == 0:
                    raise CorruptSnapshotError(spath, "frame head says 0 records", offset=pos)
                if pos + fmt.FRAME_HEAD.size + fsize > end:
                    raise TruncatedSnapshotError(spath, "file ends inside a frame", offset=pos)
                payload = read_exact(spath, file, pos + fmt.FRAME_HEAD.size, fsize, "frame")
                data = fmt.frame_content(spath, payload, pos + fmt.FRAME_HEAD.size, limits)
                collections.deque(fmt.frame_records(spath, data, count, pos + fmt.FRAME_HEAD.size, limits), maxlen=0)
            except SnapshotError as exc:
                reason = exc.detail
                break
            frames.append(FrameInfo(pos, section, count, fsize))
            pos += fmt.FRAME_HEAD.size + fsize
    return ScanResult(version, header, final_header, frames, pos, reason, index_ok, end)


@dataclasses.dataclass
class RecoveryReport:
    """What :func:`recover` wrote.

    Attributes:
        source: The damaged file.
        output: The recovered snapshot.
        frames: Frames copied.
        records: Records copied per section name.
        dropped_bytes: Bytes of the source after the last good frame (index and trailer of a
            complete file not counted).
        stop_reason: Why the scan stopped.
        missing: Required sections absent from the recovered file (it is then marked not
            replayable).
    """

    source: str
    output: str
    frames: int
    records: dict[str, int]
    dropped_bytes: int
    stop_reason: str
    missing: list[str]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return dataclasses.asdict(self)


def recovered_name(path: str) -> str:
    """Default output name: ``x.rsnap`` -> ``x.recovered.rsnap``; a writer's temporary
    ``.x.rsnap.<pid>.<n>.tmp`` -> ``x.recovered.rsnap`` beside it."""
    directory, name = os.path.split(path)
    if name.startswith(".") and name.endswith(".tmp"):
        parts = name[1:].split(".")
        if len(parts) >= 4 and parts[-2].isdigit() and parts[-3].isdigit():
            name = ".".join(parts[:-3])
    stem = name[: -len(".rsnap")] if name.endswith(".rsnap") else name
    return os.path.join(directory, f"{stem}.recovered.rsnap")


def recover(path: str | os.PathLike[str], output: str | os.PathLike[str] | None = None,
            limits: ReadLimits = DEFAULT_LIMITS) -> RecoveryReport:
    """Rebuild a complete snapshot from the verified frames of a damaged or unfinished one.

    Frames are copied byte for byte up to the last complete, checksummed frame; a new index
    and trailer are written. The header gets a ``recovered`` map; a file missing its entry,
    outcome or environment is marked not replayable with the reason.

    Args:
        path: The damaged file (a truncated download, a crashed writer's ``.tmp`` file).
        output: Where to write; default :func:`recovered_name`.
        limits: Bounds for reading the damaged file.

    Returns:
        A :class:`RecoveryReport`.

    Raises:
        SnapshotError: the preamble or header is unreadable.
        OSError: the output cannot be written.
    """
    spath = os.fspath(path)
    scan = scan_frames(spath, limits)
    out = os.fspath(output) if output is not None else recovered_name(spath)
    counts: dict[int, int] = {}
    for fr in scan.frames:
        counts[fr.section] = counts.get(fr.section, 0) + fr.records
    missing = [Section.name(s) for s in (Section.ENTRY, Section.OUTCOME, Section.ENVIRONMENT) if s not in counts]
    dropped = scan.frames_end - scan.stop_offset
    # The leading header is copied as it was (it fitted the header limit); keys from the old
    # index and the corrections go to the new index, which has room for them.
    header = dict(scan.header)
    update = dict(scan.final_header)
    recovered = {"source": os.path.basename(spath), "frames": len(scan.frames), "dropped_bytes": dropped,
                 "stop_reason": scan.stop_reason}
    header["recovered"] = recovered
    if len(fmt.pack(header)) > limits.max_header_bytes:
        del header["recovered"]
        update["recovered"] = recovered
    if missing:
        merged = {**scan.header, **scan.final_header}
        update["replayable"] = False
        update["reasons"] = [*header_reasons(merged), f"recovered from a damaged file: no {', '.join(missing)} section"]
        if "outcome" in missing:
            update["outcome"] = None
    writer = SnapshotWriter(out, header)
    try:
        with open_file(spath) as file:
            for fr in scan.frames:
                payload = read_exact(spath, file, fr.offset + fmt.FRAME_HEAD.size, fr.size, "frame")
                writer.write_frame(fr.section, fr.records, payload)
    except BaseException:
        writer.abort()
        raise
    writer.close(update or None)
    return RecoveryReport(spath, out, len(scan.frames), {Section.name(s): n for s, n in sorted(counts.items())},
                          dropped, scan.stop_reason, missing)
