"""Random-access, bounded reading of .rsnap files.

Opening reads the preamble, header, trailer and index only (a 1 GB snapshot costs a few
reads of its two ends). Record N of a section is found by a binary search over the
section's cumulative record counts and costs the decompression of one frame; the last few
frames read are cached. See docs/snapshot-format.md.
"""

from __future__ import annotations

import bisect
import itertools
import os
import zlib
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, BinaryIO, NamedTuple

import msgpack

from replay.errors import (
    CorruptSnapshotError,
    NotASnapshotError,
    SnapshotError,
    SnapshotLimitError,
    SnapshotNotFoundError,
    TruncatedSnapshotError,
    UnsupportedVersionError,
)
from replay.snapshot import format as fmt
from replay.snapshot.format import DEFAULT_LIMITS, FrameInfo, ReadLimits, short_repr

_FRAME_CACHE = 4  # frames kept decompressed: enough for stepping back and forth across a boundary


class RecordPosition(NamedTuple):
    """Where one record lives (for ``replay show --records``).

    Attributes:
        section: Section id.
        number: Record number within its section, from 0.
        frame_offset: Byte offset of the frame head in the file.
        content_offset: Byte offset of the record inside the frame's decompressed content.
        size: Packed size of the record in bytes.
        record: The decoded msgpack record.
    """

    section: int
    number: int
    frame_offset: int
    content_offset: int
    size: int
    record: Any


class _SectionIndex:
    """Frame numbers of one section and the section record number each frame starts at."""

    __slots__ = ("frames", "starts", "total")

    def __init__(self) -> None:
        self.frames = array("Q")
        self.starts = array("Q")
        self.total = 0


class SnapshotFile:
    """Low-level reader: validates the preamble, header, trailer and index on open.

    Frames are read and decompressed only when their records are asked for. Use as a
    context manager. Not thread-safe.

    Args:
        path: The snapshot file.
        limits: Bounds applied to everything read.

    Attributes:
        version: (major, minor) of the file.
        header: The leading header with the index's final header keys merged over it.
        size_bytes: File size.

    Raises:
        SnapshotNotFoundError, NotASnapshotError, UnsupportedVersionError,
        CorruptSnapshotError, TruncatedSnapshotError, SnapshotLimitError.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS):
        self.path = os.fspath(path)
        self.limits = limits
        self._file = open_file(self.path)
        try:
            self.size_bytes = os.fstat(self._file.fileno()).st_size
            self.version, self.leading_header, self.header_end = read_header(self.path, self._file, limits)
            self.header = dict(self.leading_header)
            self.index_header: dict[str, Any] = {}
            self._offsets = array("Q")
            self._sections_of = bytearray()
            self._counts = array("I")
            self._sizes = array("I")
            self._sections: dict[int, _SectionIndex] = {}
            self._read_index()
        except BaseException:
            self._file.close()
            raise
        self._migrate = fmt.MIGRATIONS.get(self.version[0]) if self.version[0] != fmt.FORMAT_MAJOR else None
        self._seen = bytearray(len(self._offsets))  # frames already counted against the total
        self._content_read = 0
        self._cache: OrderedDict[int, tuple[bytes, array[int]]] = OrderedDict()  # content, record bounds

    def __enter__(self) -> SnapshotFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    # ------------------------------------------------------------------ index

    def _read_exact(self, offset: int, n: int, what: str) -> bytes:
        return read_exact(self.path, self._file, offset, n, what)

    def _read_index(self) -> None:
        end = self.size_bytes - fmt.TRAILER.size
        if end < self.header_end:
            raise TruncatedSnapshotError(self.path, "file too short for a trailer", offset=max(end, 0))
        index_offset, index_len, index_crc, magic = fmt.TRAILER.unpack(self._read_exact(end, fmt.TRAILER.size, "trailer"))
        if magic != fmt.TRAILER_MAGIC:
            raise TruncatedSnapshotError(
                self.path, "no trailer: the file was cut short or its writer did not finish "
                "(`replay validate --recover` rebuilds what it can)", offset=end,
            )
        if index_len > self.limits.max_index_bytes:
            raise SnapshotLimitError(self.path, "index size", index_len, self.limits.max_index_bytes, offset=end)
        if index_offset + index_len != end or index_offset < self.header_end:
            raise CorruptSnapshotError(self.path, "index position does not match the trailer", offset=end)
        self.index_offset = index_offset
        raw = self._read_exact(index_offset, index_len, "index")
        if zlib.crc32(raw) != index_crc:
            raise CorruptSnapshotError(self.path, "index checksum mismatch", offset=index_offset)
        self._parse_index(raw, index_offset)

    def _parse_index(self, raw: bytes, at: int) -> None:
        # Streamed entry by entry into flat arrays: a hostile index listing a million frames
        # costs ~20 bytes a frame, never a Python object per field.
        u = fmt.unpacker(len(raw), self.limits)
        u.feed(raw)
        seen: set[str] = set()
        if not raw or not (0x80 <= raw[0] <= 0x8F or raw[0] in (0xDE, 0xDF)):
            raise CorruptSnapshotError(self.path, "index is not a map with a frame list", offset=at)
        try:
            keys = u.read_map_header()
            for _ in range(keys):
                key = u.unpack()
                if key in seen:
                    raise CorruptSnapshotError(self.path, f"index has the key {short_repr(key)} twice", offset=at)
                seen.add(key)
                if key == "frames":
                    self._parse_frames(u, at)
                elif key == "header":
                    extra = u.unpack()
                    if not isinstance(extra, dict):
                        raise CorruptSnapshotError(self.path, "index header is not a map", offset=at)
                    self.index_header = extra
                    self.header.update(extra)
                else:
                    u.skip()  # keys of a later minor version
        except SnapshotError:
            raise
        except Exception as exc:
            raise fmt.msgpack_error(self.path, "index", exc, at) from exc
        if "frames" not in seen:
            raise CorruptSnapshotError(self.path, "index has no frame list", offset=at)
        if u.tell() != len(raw):
            raise CorruptSnapshotError(self.path, "index has trailing bytes", offset=at + u.tell())

    def _parse_frames(self, u: msgpack.Unpacker, at: int) -> None:
        n = u.read_array_header()
        if n > self.limits.max_frames:
            raise SnapshotLimitError(self.path, "frames in the index", n, self.limits.max_frames, offset=at)
        next_free = self.header_end
        for number in range(n):
            entry = u.unpack()
            if not (type(entry) is list and len(entry) == 4 and all(type(x) is int and x >= 0 for x in entry)):
                raise CorruptSnapshotError(self.path, f"bad index entry {entry!r:.60}", offset=at)
            offset, section, count, size = entry
            if not 0 < section < 256 or not 0 < count < 1 << 32 or size >= 1 << 32:
                raise CorruptSnapshotError(self.path, f"bad index entry {entry!r:.60}", offset=at)
            if offset + fmt.FRAME_HEAD.size + size > at:
                raise CorruptSnapshotError(self.path, "index points past the frames", offset=at)
            if offset < next_free:
                raise CorruptSnapshotError(self.path, "index lists overlapping or unordered frames", offset=at)
            next_free = offset + fmt.FRAME_HEAD.size + size
            self._offsets.append(offset)
            self._sections_of.append(section)
            self._counts.append(count)
            self._sizes.append(size)
            idx = self._sections.get(section)
            if idx is None:
                idx = self._sections[section] = _SectionIndex()
            idx.frames.append(number)
            idx.starts.append(idx.total)
            idx.total += count

    # ------------------------------------------------------------------ queries

    @property
    def frames(self) -> list[FrameInfo]:
        """Every frame in file order."""
        return [FrameInfo(*fr) for fr in zip(self._offsets, self._sections_of, self._counts, self._sizes, strict=True)]

    @property
    def content_read(self) -> int:
        """Decompressed bytes read so far (each frame counted once)."""
        return self._content_read

    @property
    def frame_count(self) -> int:
        """Number of frames in the file."""
        return len(self._offsets)

    @property
    def sections(self) -> dict[int, int]:
        """Record count per section id present in the file."""
        return {sec: idx.total for sec, idx in sorted(self._sections.items())}

    def count(self, section: int) -> int:
        """Number of records in ``section`` (0 when absent); reads nothing."""
        idx = self._sections.get(section)
        return idx.total if idx else 0

    def record(self, section: int, number: int) -> Any:
        """Record ``number`` (from 0; negative counts from the end) of ``section``.

        Decompresses at most the one frame that holds it, skips to the record and unpacks
        only that record; the frame stays cached for its neighbours.

        Raises:
            IndexError: no such record.
            CorruptSnapshotError, TruncatedSnapshotError, SnapshotLimitError.
        """
        idx = self._sections.get(section)
        total = idx.total if idx else 0
        if number < 0:
            number += total
        if idx is None or not 0 <= number < total:
            raise IndexError(f"{fmt.Section.name(section)} has {total} records, asked for record {number}")
        k = bisect.bisect_right(idx.starts, number) - 1
        frame = idx.frames[k]
        data, bounds = self._cached(frame)
        i = number - idx.starts[k]
        at = self._offsets[frame] + fmt.FRAME_HEAD.size
        return self._upgrade(section, fmt.unpack_record(self.path, data, bounds[i], bounds[i + 1], at, self.limits))

    def iter_records(self, section: int, start: int = 0) -> Iterator[Any]:
        """Yield the records of ``section`` in order from record ``start``.

        Only that section's frames are read, one at a time, and records are unpacked as
        they are yielded.

        Raises:
            CorruptSnapshotError, TruncatedSnapshotError, SnapshotLimitError.
        """
        idx = self._sections.get(section)
        start = max(start, 0)
        if idx is None or start >= idx.total:
            return
        k = bisect.bisect_right(idx.starts, start) - 1
        skip = start - idx.starts[k]
        for number in idx.frames[k:]:
            at = self._offsets[number] + fmt.FRAME_HEAD.size
            records = fmt.frame_records(self.path, self._content(number), self._counts[number], at, self.limits)
            if skip:
                records = itertools.islice(records, skip, None)
                skip = 0
            if self._migrate:
                migrate = self._migrate
                records = (migrate(section, r) for r in records)
            yield from records

    def iter_positions(self) -> Iterator[RecordPosition]:
        """Every record of every frame in file order, with where it is stored."""
        numbers: dict[int, int] = {}
        for i, offset in enumerate(self._offsets):
            section, at = self._sections_of[i], offset + fmt.FRAME_HEAD.size
            data = self._content(i)
            bounds = fmt.record_bounds(self.path, data, self._counts[i], at, self.limits)
            for start, end in itertools.pairwise(bounds):
                record = fmt.unpack_record(self.path, data, start, end, at, self.limits)
                n = numbers.get(section, 0)
                numbers[section] = n + 1
                yield RecordPosition(section, n, offset, start, end - start, self._upgrade(section, record))

    # ------------------------------------------------------------------ frames

    def _upgrade(self, section: int, record: Any) -> Any:
        return self._migrate(section, record) if self._migrate else record

    def _cached(self, number: int) -> tuple[bytes, array[int]]:
        entry = self._cache.get(number)
        if entry is not None:
            self._cache.move_to_end(number)
            return entry
        data = self._content(number)
        at = self._offsets[number] + fmt.FRAME_HEAD.size
        entry = (data, fmt.record_bounds(self.path, data, self._counts[number], at, self.limits))
        self._cache[number] = entry
        if len(self._cache) > _FRAME_CACHE:
            self._cache.popitem(last=False)
        return entry

    def raw_payload(self, number: int) -> bytes:
        """The compressed payload of frame ``number`` as stored (to copy frames verbatim).

        Raises:
            CorruptSnapshotError: the frame's head does not match the index.
        """
        offset, size = self._offsets[number], self._sizes[number]
        head = fmt.FRAME_HEAD.unpack(self._read_exact(offset, fmt.FRAME_HEAD.size, "frame head"))
        if head != (self._sections_of[number], self._counts[number], size):
            raise CorruptSnapshotError(self.path, "frame header does not match the index", offset=offset)
        return self._read_exact(offset + fmt.FRAME_HEAD.size, size, "frame")

    def _content(self, number: int) -> bytes:
        offset, size = self._offsets[number], self._sizes[number]
        expected = (self._sections_of[number], self._counts[number], size)
        head = fmt.FRAME_HEAD.unpack(self._read_exact(offset, fmt.FRAME_HEAD.size, "frame head"))
        if head != expected:
            raise CorruptSnapshotError(self.path, "frame header does not match the index", offset=offset)
        fmt.check_frame_head(self.path, head, offset, self.limits)
        data_at = offset + fmt.FRAME_HEAD.size
        payload = self._read_exact(data_at, size, "frame")
        first_read = not self._seen[number]
        budget = self.limits.max_total_content_bytes - self._content_read if first_read else None
        data = fmt.frame_content(self.path, payload, data_at, self.limits, budget=budget)
        if first_read:
            self._seen[number] = 1
            self._content_read += len(data)
        return data


def open_file(path: str) -> BinaryIO:
    """Open ``path`` for reading, mapping OS errors to snapshot errors."""
    try:
        return open(path, "rb")  # noqa: SIM115 - the caller closes it
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise SnapshotNotFoundError(path, "no such snapshot file") from exc
    except OSError as exc:
        raise SnapshotError(path, f"cannot open: {exc.strerror}") from exc


def read_exact(path: str, file: BinaryIO, offset: int, n: int, what: str) -> bytes:
    """Read exactly ``n`` bytes at ``offset``; a short read is a truncation."""
    file.seek(offset)
    data = file.read(n)
    if len(data) != n:
        raise TruncatedSnapshotError(path, f"file ends inside the {what} (wanted {n} bytes, found {len(data)})",
                                     offset=offset)
    return data


def read_header(path: str, file: BinaryIO, limits: ReadLimits) -> tuple[tuple[int, int], dict[str, Any], int]:
    """Read and check the preamble and header.

    Returns:
        ((major, minor), header map, offset of the first byte after the header).

    Raises:
        NotASnapshotError, UnsupportedVersionError, TruncatedSnapshotError,
        CorruptSnapshotError, SnapshotLimitError.
    """
    file.seek(0)
    first = file.read(fmt.PREAMBLE.size)
    if len(first) < 8 or first[:8] != fmt.MAGIC:
        raise NotASnapshotError(path, "not a .rsnap snapshot (bad magic signature)", offset=0)
    if len(first) < fmt.PREAMBLE.size:
        raise TruncatedSnapshotError(path, "file ends inside the preamble", offset=len(first))
    _, major, minor, _flags, head_len, head_crc = fmt.PREAMBLE.unpack(first)
    if major != fmt.FORMAT_MAJOR and major not in fmt.MIGRATIONS:
        raise UnsupportedVersionError(path, (major, minor), fmt.FORMAT_MAJOR)
    if head_len > limits.max_header_bytes:
        raise SnapshotLimitError(path, "header size", head_len, limits.max_header_bytes, offset=16)
    raw = read_exact(path, file, fmt.PREAMBLE.size, head_len, "header")
    if zlib.crc32(raw) != head_crc:
        raise CorruptSnapshotError(path, "header checksum mismatch", offset=fmt.PREAMBLE.size)
    header = fmt.unpack_one(path, raw, fmt.PREAMBLE.size, "header", limits)
    if not isinstance(header, dict):
        raise CorruptSnapshotError(path, "header is not a map", offset=fmt.PREAMBLE.size)
    return (major, minor), header, fmt.PREAMBLE.size + head_len
