"""The .rsnap container: layout constants, read limits, and the checked frame decoder.

Byte layout (version 1.1; little-endian; the normative text is docs/snapshot-format.md)::

    0   magic        8 bytes  b"\\x89RSN\\r\\n\\x1a\\n"
    8   major        u16
    10  minor        u16
    12  flags        u32      (0; reserved)
    16  header_len   u32
    20  header_crc   u32      CRC-32 of the header bytes
    24  header       msgpack map, uncompressed (what `replay show` needs first)
    ..  frames       repeated: section u8, records u32, size u32, then one zstd frame
                     (content size and checksum on) holding `records` msgpack objects
    ..  index        msgpack map {"frames": [[offset, section, records, size], ...],
                                  "header": {...}}  (final header keys, 1.1)
    -24 trailer      index_offset u64, index_len u32, index_crc u32, b"RSNAPEND"

The writer is :class:`replay.snapshot.writer.SnapshotWriter`, the reader
:class:`replay.snapshot.reader.SnapshotFile`, recovery and validation live in
:mod:`replay.snapshot.recovery`. Everything read from a file is bounded by
:class:`ReadLimits` and every failure is a :class:`replay.errors.SnapshotError` naming the
file and the byte offset. Nothing here imports, evaluates or unpickles anything named in a
file.
"""

from __future__ import annotations

import dataclasses
import itertools
import re
import reprlib
import struct
from array import array
from collections.abc import Callable, Iterator
from typing import Any, Final, NamedTuple

import msgpack
import zstandard

from replay.errors import (
    CorruptSnapshotError,
    SnapshotError,
    SnapshotLimitError,
    TruncatedSnapshotError,
)

MAGIC: Final = b"\x89RSN\r\n\x1a\n"
TRAILER_MAGIC: Final = b"RSNAPEND"
FORMAT_MAJOR: Final = 1
FORMAT_MINOR: Final = 3
PREAMBLE: Final = struct.Struct("<8sHHIII")
FRAME_HEAD: Final = struct.Struct("<BII")
TRAILER: Final = struct.Struct("<QII8s")

FRAME_TARGET_BYTES: Final = 256 << 10
"""Uncompressed bytes of records after which the writer closes a frame."""
FRAME_TARGET_RECORDS: Final = 65536
"""Records after which the writer closes a frame (bounds the cost of reaching one record)."""
MSGPACK_MAX_DEPTH: Final = 1024
"""Nesting depth msgpack's C parser accepts (its fixed stack; deeper input is refused)."""


class Section:
    """Section ids of format 1 (a frame belongs to exactly one section).

    Readers skip sections they do not know, so a minor version may add ids.
    """

    ENTRY: Final = 1  # one record: the entry point and its encoded arguments
    TAPE: Final = 2  # one record per interaction, in order
    OUTCOME: Final = 3  # one record: return value or exception
    CODE: Final = 4  # one record per application source file
    ENVIRONMENT: Final = 5  # one record: interpreter, platform, libraries
    STRANDS: Final = 6  # [first tape index, strand id] runs (format 1.2); absent: one strand
    # 7..13: a trace (format 1.3), in a trace file or a snapshot (flight recorder); the
    # layout is in docs/time-travel.md and replay.replayer.tracer.TraceSection
    TRACE_STEPS: Final = 7
    TRACE_CHUNKS: Final = 8
    TRACE_CALLS: Final = 9
    TRACE_CODES: Final = 10
    TRACE_LINKS: Final = 11
    TRACE_SOURCES: Final = 12
    TRACE_THREADS: Final = 13

    NAMES: Final = {1: "entry", 2: "tape", 3: "outcome", 4: "code", 5: "environment", 6: "strands",
                    7: "trace-steps", 8: "trace-chunks", 9: "trace-calls", 10: "trace-codes",
                    11: "trace-links", 12: "trace-sources", 13: "trace-threads"}

    @classmethod
    def name(cls, section: int) -> str:
        """Readable name of a section id (``section-N`` for ids this reader does not know)."""
        return cls.NAMES.get(section, f"section-{section}")


class FrameInfo(NamedTuple):
    """One entry of the frame index.

    Attributes:
        offset: Byte offset of the frame head in the file.
        section: Section id.
        records: Number of msgpack records in the frame.
        size: Compressed payload size in bytes (the zstd frame, after the 9-byte head).
    """

    offset: int
    section: int
    records: int
    size: int


@dataclasses.dataclass(frozen=True)
class ReadLimits:
    """Upper bounds on everything read from a snapshot (files may come from strangers).

    Defaults follow ../shared/research/anchors-capture-security.md section 10.4, relaxed
    where a real snapshot needs more (a frame holds one record whole, and a record can be a
    large argument); sizes are bytes.

    Attributes:
        max_header_bytes: Size of the uncompressed header (1 MiB).
        max_index_bytes: Size of the index (64 MiB).
        max_frames: Frames listed in the index, or found by recovery (1,048,576).
        max_frame_bytes: Compressed size of one frame (64 MiB).
        max_frame_content_bytes: Decompressed size of one frame, checked before decompressing
            (64 MiB).
        max_total_content_bytes: Decompressed bytes read from one open file, each frame
            counted once however often it is read (4 GiB).
        max_window_bytes: zstd window size accepted, passed to the decompressor (8 MiB, the
            size RFC 8878 asks every decoder to support).
        max_records_per_frame: msgpack objects in one frame (1,048,576).
        max_container_items: Items of one msgpack array or map (4,194,304); strings and
            bytes are capped by the frame's size.
    """

    max_header_bytes: int = 1 << 20
    max_index_bytes: int = 64 << 20
    max_frames: int = 1 << 20
    max_frame_bytes: int = 64 << 20
    max_frame_content_bytes: int = 64 << 20
    max_total_content_bytes: int = 4 << 30
    max_window_bytes: int = 8 << 20
    max_records_per_frame: int = 1 << 20
    max_container_items: int = 1 << 22


DEFAULT_LIMITS: Final = ReadLimits()


# A breaking change bumps FORMAT_MAJOR and registers here how records of the older major
# become records of the current one: MIGRATIONS[old_major](section, record) -> record.
# Format 1 is the first major, so nothing is registered yet; the reader applies the step to
# every record it returns from an older-major file (see docs/snapshot-format.md).
Migration = Callable[[int, Any], Any]
MIGRATIONS: dict[int, Migration] = {}


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 120, 120


def short_repr(value: Any) -> str:
    """A bounded repr of a value read from a file (any depth or size; never raises)."""
    try:
        return _SHORT.repr(value)
    except Exception:  # noqa: BLE001 - a hostile value must not break an error message
        return f"<{type(value).__name__}>"


def pack(obj: Any) -> bytes:
    """msgpack bytes of ``obj`` as the format stores it (bin type for bytes)."""
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not used by the format")


_LIMIT_MESSAGE = re.compile(r"(\d+) exceeds (max_\w+)\((\d+)\)")


def unpacker(size: int, limits: ReadLimits) -> msgpack.Unpacker:
    """A fresh msgpack unpacker for ``size`` bytes of untrusted input.

    Every length is capped (strings and bytes by ``size``, containers by
    ``limits.max_container_items``), map keys must be strings, extension types are refused
    and nesting is capped by msgpack at :data:`MSGPACK_MAX_DEPTH`. Never reuse one after an
    error (msgpack GHSA-6v7p-g79w-8964): callers build one per frame.
    """
    n = max(size, 1)
    items = min(n, limits.max_container_items)
    return msgpack.Unpacker(
        raw=False, strict_map_key=True, use_list=True, max_buffer_size=n, max_str_len=n, max_bin_len=n,
        max_array_len=items, max_map_len=items, max_ext_len=0, ext_hook=_reject_ext,
    )


def msgpack_error(path: str, what: str, exc: Exception, offset: int) -> CorruptSnapshotError | SnapshotLimitError:
    """Turn a msgpack exception into the matching snapshot error."""
    if isinstance(exc, MemoryError):
        return SnapshotLimitError(
            path, f"memory for the decoded {what}", 0, 0, offset=offset,
            detail=f"out of memory while unpacking the {what} (records of many tiny containers can take "
                   "about 70 times their packed size)",
        )
    if isinstance(exc, msgpack.exceptions.StackError):
        return SnapshotLimitError(path, f"nesting depth of the {what}", MSGPACK_MAX_DEPTH + 1, MSGPACK_MAX_DEPTH, offset=offset)
    found = _LIMIT_MESSAGE.search(str(exc))
    if found and found.group(2) in ("max_array_len", "max_map_len"):
        return SnapshotLimitError(path, f"container items in the {what}", int(found.group(1)), int(found.group(3)), offset=offset)
    return CorruptSnapshotError(path, f"{what} is not valid msgpack ({type(exc).__name__}: {exc})", offset=offset)


def unpack_one(path: str, raw: bytes | memoryview, offset: int, what: str, limits: ReadLimits) -> Any:
    """Decode exactly one msgpack object filling ``raw``; errors name ``offset``."""
    u = unpacker(len(raw), limits)
    u.feed(raw)
    try:
        value = u.unpack()
    except Exception as exc:  # msgpack raises several unrelated types
        raise msgpack_error(path, what, exc, offset) from exc
    if u.tell() != len(raw):
        raise CorruptSnapshotError(path, f"{what} has trailing bytes", offset=offset + u.tell())
    return value


def check_frame_head(path: str, head: tuple[int, int, int], offset: int, limits: ReadLimits) -> None:
    """Check a frame head (section, records, size) against the limits before reading on."""
    section, count, size = head
    if section == 0:
        raise CorruptSnapshotError(path, "frame head names section 0", offset=offset)
    if size > limits.max_frame_bytes:
        raise SnapshotLimitError(path, "frame size", size, limits.max_frame_bytes, offset=offset)
    if count > limits.max_records_per_frame:
        raise SnapshotLimitError(path, "records per frame", count, limits.max_records_per_frame, offset=offset)


def frame_content(path: str, payload: bytes, offset: int, limits: ReadLimits, *, budget: int | None = None) -> bytes:
    """Decompress one zstd frame after checking its parameters against ``limits``.

    Args:
        path: File name for errors.
        payload: Exactly the frame's bytes.
        offset: Byte offset of ``payload`` in the file.
        limits: Bounds; content size and window are checked before any decompression, and
            decompression is capped at the declared content size.
        budget: Bytes still allowed by ``limits.max_total_content_bytes`` for this file (None:
            not counted, the frame was read before).

    Returns:
        The decompressed content, its zstd content checksum verified.

    Raises:
        CorruptSnapshotError, TruncatedSnapshotError, SnapshotLimitError.
    """
    try:
        params = zstandard.get_frame_parameters(payload)
    except zstandard.ZstdError as exc:
        raise CorruptSnapshotError(path, f"bad zstd frame header ({exc})", offset=offset) from exc
    content = params.content_size
    if content in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
        raise CorruptSnapshotError(path, "zstd frame without a content size", offset=offset)
    if content > limits.max_frame_content_bytes:
        raise SnapshotLimitError(path, "frame content size", content, limits.max_frame_content_bytes, offset=offset)
    if budget is not None and content > budget:
        total = limits.max_total_content_bytes - budget + content
        raise SnapshotLimitError(path, "content read from file", total, limits.max_total_content_bytes, offset=offset)
    if params.window_size > limits.max_window_bytes:
        raise SnapshotLimitError(path, "zstd window size", params.window_size, limits.max_window_bytes, offset=offset)
    if params.dict_id:
        raise CorruptSnapshotError(path, "zstd frame needs a dictionary (the format uses none)", offset=offset)
    if not params.has_checksum:
        raise CorruptSnapshotError(path, "zstd frame without a content checksum", offset=offset)
    try:
        dctx = zstandard.ZstdDecompressor(max_window_size=limits.max_window_bytes)
        data = dctx.decompress(payload, max_output_size=content, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        message = str(exc)
        cls = TruncatedSnapshotError if "full frame" in message or "incomplete" in message else CorruptSnapshotError
        raise cls(path, f"frame does not decompress ({message})", offset=offset) from exc
    if len(data) != content:
        raise TruncatedSnapshotError(path, "frame decompressed short", offset=offset)
    return data


def frame_records(path: str, data: bytes, count: int, offset: int, limits: ReadLimits) -> Iterator[Any]:
    """Yield exactly ``count`` records filling ``data`` (one frame's content), streaming.

    Records are yielded as they are unpacked (no list of the whole frame: its garbage
    would wake the cyclic collector); the counts are checked when the frame ends.

    Raises (possibly after yielding some records):
        TruncatedSnapshotError: fewer records, or the last one cut.
        CorruptSnapshotError: invalid msgpack, more records or bytes than declared.
        SnapshotLimitError: a container or nesting limit.
    """
    u = unpacker(len(data), limits)
    u.feed(data)
    n = 0
    try:
        for n, record in enumerate(itertools.islice(u, count), 1):  # noqa: B007 - n is the count after the loop
            yield record
    except SnapshotError:
        raise
    except Exception as exc:
        raise msgpack_error(path, "frame content", exc, offset) from exc
    if n < count:
        raise TruncatedSnapshotError(path, f"frame holds fewer records ({n}) than its head says ({count})", offset=offset)
    if u.tell() != len(data):
        raise CorruptSnapshotError(path, "frame holds more data than its records", offset=offset)


def record_bounds(path: str, data: bytes, count: int, offset: int, limits: ReadLimits) -> array[int]:
    """Start offsets of the ``count`` records in ``data``, plus its end (``count + 1`` items).

    Skips over records without building them; checks the count and that nothing is left.
    """
    u = unpacker(len(data), limits)
    u.feed(data)
    bounds = array("Q", [0])
    skip, tell, add = u.skip, u.tell, bounds.append
    try:
        for _ in range(count):
            skip()
            add(tell())
    except msgpack.OutOfData as exc:
        raise TruncatedSnapshotError(
            path, f"frame holds fewer records ({len(bounds) - 1}) than its head says ({count})", offset=offset
        ) from exc
    except Exception as exc:
        raise msgpack_error(path, "frame content", exc, offset) from exc
    if bounds[-1] != len(data):
        raise CorruptSnapshotError(path, "frame holds more data than its records", offset=offset)
    return bounds


def unpack_record(path: str, data: bytes, start: int, end: int, offset: int, limits: ReadLimits) -> Any:
    """Unpack the one record stored in ``data[start:end]`` (bounds from :func:`record_bounds`)."""
    return unpack_one(path, memoryview(data)[start:end], offset, "frame content", limits)
