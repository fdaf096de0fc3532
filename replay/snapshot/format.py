"""The .rsnap container: preamble, header, zstd frames of msgpack records, index, trailer.

Byte layout (version 1.0; little-endian; the normative text is docs/snapshot-format.md)::

    0   magic        8 bytes  b"\\x89RSN\\r\\n\\x1a\\n"
    8   major        u16
    10  minor        u16
    12  flags        u32      (0; reserved)
    16  header_len   u32
    20  header_crc   u32      CRC-32 of the header bytes
    24  header       msgpack map, uncompressed (what `replay show` needs first)
    ..  frames       repeated: section u8, records u32, size u32, then one zstd frame
                     (content size and checksum on) holding `records` msgpack objects
    ..  index        msgpack map {"frames": [[offset, section, records, size], ...]}
    -24 trailer      index_offset u64, index_len u32, index_crc u32, b"RSNAPEND"

Everything read from a file is bounded by :class:`ReadLimits` and every failure is a
:class:`replay.errors.SnapshotError` naming the file and the byte offset.
"""

from __future__ import annotations

import dataclasses
import os
import struct
import threading
import zlib
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, Final

import msgpack
import zstandard

from replay.errors import (
    CorruptSnapshotError,
    NotASnapshotError,
    SnapshotError,
    SnapshotLimitError,
    SnapshotNotFoundError,
    TruncatedSnapshotError,
    UnsupportedVersionError,
)

MAGIC: Final = b"\x89RSN\r\n\x1a\n"
TRAILER_MAGIC: Final = b"RSNAPEND"
FORMAT_MAJOR: Final = 1
FORMAT_MINOR: Final = 0
_PREAMBLE: Final = struct.Struct("<8sHHIII")
_FRAME_HEAD: Final = struct.Struct("<BII")
_TRAILER: Final = struct.Struct("<QII8s")


class Section:
    """Section ids of format 1 (a frame belongs to exactly one section)."""

    ENTRY: Final = 1  # one record: the entry point and its encoded arguments
    TAPE: Final = 2  # one record per interaction, in order
    OUTCOME: Final = 3  # one record: return value or exception
    CODE: Final = 4  # one record per application source file
    ENVIRONMENT: Final = 5  # one record: interpreter, platform, libraries

    NAMES: Final = {1: "entry", 2: "tape", 3: "outcome", 4: "code", 5: "environment"}


@dataclasses.dataclass(frozen=True)
class ReadLimits:
    """Upper bounds on everything read from a snapshot (files may come from strangers).

    Defaults follow ../shared/research/anchors-capture-security.md section 10.4.

    Attributes:
        max_header_bytes: Size of the uncompressed header.
        max_index_bytes: Size of the index.
        max_frame_bytes: Compressed size of one frame.
        max_frame_content_bytes: Decompressed size of one frame (checked before decompressing).
        max_total_content_bytes: Decompressed bytes read from one file in total.
        max_window_bytes: zstd window size accepted.
        max_records_per_frame: msgpack objects in one frame.
    """

    max_header_bytes: int = 1 << 20
    max_index_bytes: int = 16 << 20
    max_frame_bytes: int = 64 << 20
    max_frame_content_bytes: int = 64 << 20
    max_total_content_bytes: int = 1 << 30
    max_window_bytes: int = 1 << 27
    max_records_per_frame: int = 1 << 20


DEFAULT_LIMITS: Final = ReadLimits()
FRAME_TARGET_BYTES: Final = 256 << 10  # uncompressed bytes per frame before a new one starts


def _pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)  # type: ignore[no-any-return]


_tmp_counter = 0
_tmp_lock = threading.Lock()


class SnapshotWriter:
    """Write a snapshot: header first, then sections, then the index; atomically.

    The data goes to a temporary file in the target directory, which is fsynced and renamed
    over ``path`` by :meth:`close`; the directory is fsynced too. Until then no file exists
    under the final name. Not thread-safe.

    Args:
        path: Final file name (``.rsnap``).
        header: Small summary map, stored uncompressed (str keys; msgpack-native values).
        level: zstd compression level.

    Raises:
        OSError: the directory cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], *, level: int = 3):
        global _tmp_counter
        self.path = os.fspath(path)
        with _tmp_lock:
            _tmp_counter += 1
            n = _tmp_counter
        directory, name = os.path.split(self.path)
        self._tmp = os.path.join(directory, f".{name}.{os.getpid()}.{n}.tmp")
        head = _pack(header)  # before the file exists: a bad header leaves nothing behind
        self._file: BinaryIO = open(self._tmp, "wb")  # noqa: SIM115 - closed in close()/abort()
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        self._frames: list[list[int]] = []
        self._file.write(_PREAMBLE.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, 0, len(head), zlib.crc32(head)))
        self._file.write(head)

    def write_section(self, section: int, records: Iterable[Any]) -> None:
        """Append records to a section, in frames of about ``FRAME_TARGET_BYTES``."""
        batch: list[bytes] = []
        size = 0
        for record in records:
            data = _pack(record)
            batch.append(data)
            size += len(data)
            if size >= FRAME_TARGET_BYTES:
                self._write_frame(section, batch)
                batch, size = [], 0
        if batch:
            self._write_frame(section, batch)

    def _write_frame(self, section: int, batch: list[bytes]) -> None:
        payload = self._cctx.compress(b"".join(batch))
        offset = self._file.tell()
        self._file.write(_FRAME_HEAD.pack(section, len(batch), len(payload)))
        self._file.write(payload)
        self._frames.append([offset, section, len(batch), len(payload)])

    def close(self) -> str:
        """Write index and trailer, fsync, rename into place; return the final path."""
        index = _pack({"frames": self._frames})
        offset = self._file.tell()
        self._file.write(index)
        self._file.write(_TRAILER.pack(offset, len(index), zlib.crc32(index), TRAILER_MAGIC))
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._tmp, self.path)
        _fsync_dir(os.path.dirname(self.path) or ".")
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; nothing appears under the final name."""
        try:
            self._file.close()
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class SnapshotFile:
    """Low-level reader: validates the preamble, header, trailer and index on open.

    Only the preamble, header, trailer and index are read eagerly; frames are read and
    decompressed when a section is asked for. Use as a context manager.

    Args:
        path: The snapshot file.
        limits: Bounds applied to everything read.

    Raises:
        SnapshotNotFoundError, NotASnapshotError, UnsupportedVersionError,
        CorruptSnapshotError, TruncatedSnapshotError, SnapshotLimitError.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS):
        self.path = os.fspath(path)
        self.limits = limits
        try:
            self._file: BinaryIO = open(self.path, "rb")  # noqa: SIM115 - closed in close()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise SnapshotNotFoundError(self.path, "no such snapshot file") from exc
        except OSError as exc:
            raise SnapshotError(self.path, f"cannot open: {exc.strerror}") from exc
        try:
            self.size_bytes = os.fstat(self._file.fileno()).st_size
            self.version, self.header = self._read_header()
            self.frames = self._read_index()
        except BaseException:
            self._file.close()
            raise
        self._content_read = 0

    def __enter__(self) -> SnapshotFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def _read_exact(self, offset: int, n: int, what: str) -> bytes:
        self._file.seek(offset)
        data = self._file.read(n)
        if len(data) != n:
            raise TruncatedSnapshotError(
                self.path, f"file ends inside the {what} (wanted {n} bytes, found {len(data)})", offset=offset
            )
        return data

    def _read_header(self) -> tuple[tuple[int, int], dict[str, Any]]:
        first = self._file.read(_PREAMBLE.size)
        if len(first) < 8 or first[:8] != MAGIC:
            raise NotASnapshotError(self.path, "not a .rsnap snapshot (bad magic signature)", offset=0)
        if len(first) < _PREAMBLE.size:
            raise TruncatedSnapshotError(self.path, "file ends inside the preamble", offset=len(first))
        _, major, minor, _flags, head_len, head_crc = _PREAMBLE.unpack(first)
        if major != FORMAT_MAJOR:
            raise UnsupportedVersionError(self.path, (major, minor), FORMAT_MAJOR)
        if head_len > self.limits.max_header_bytes:
            raise SnapshotLimitError(self.path, "header size", head_len, self.limits.max_header_bytes, offset=16)
        raw = self._read_exact(_PREAMBLE.size, head_len, "header")
        if zlib.crc32(raw) != head_crc:
            raise CorruptSnapshotError(self.path, "header checksum mismatch", offset=_PREAMBLE.size)
        header = self._unpack_one(raw, _PREAMBLE.size, "header")
        if not isinstance(header, dict):
            raise CorruptSnapshotError(self.path, "header is not a map", offset=_PREAMBLE.size)
        return (major, minor), header

    def _read_index(self) -> list[tuple[int, int, int, int]]:
        end = self.size_bytes - _TRAILER.size
        if end < _PREAMBLE.size:
            raise TruncatedSnapshotError(self.path, "file too short for a trailer", offset=max(end, 0))
        index_offset, index_len, index_crc, magic = _TRAILER.unpack(self._read_exact(end, _TRAILER.size, "trailer"))
        if magic != TRAILER_MAGIC:
            raise TruncatedSnapshotError(
                self.path, "no trailer: the file was cut short or its writer did not finish", offset=end
            )
        if index_len > self.limits.max_index_bytes:
            raise SnapshotLimitError(self.path, "index size", index_len, self.limits.max_index_bytes, offset=end)
        if index_offset + index_len != end:
            raise CorruptSnapshotError(self.path, "index position does not match the trailer", offset=end)
        raw = self._read_exact(index_offset, index_len, "index")
        if zlib.crc32(raw) != index_crc:
            raise CorruptSnapshotError(self.path, "index checksum mismatch", offset=index_offset)
        index = self._unpack_one(raw, index_offset, "index")
        frames = index.get("frames") if isinstance(index, dict) else None
        if not isinstance(frames, list):
            raise CorruptSnapshotError(self.path, "index has no frame list", offset=index_offset)
        out = []
        for entry in frames:
            if not (isinstance(entry, list) and len(entry) == 4 and all(type(x) is int and x >= 0 for x in entry)):
                raise CorruptSnapshotError(self.path, f"bad index entry {entry!r:.60}", offset=index_offset)
            if entry[0] + _FRAME_HEAD.size + entry[3] > index_offset:
                raise CorruptSnapshotError(self.path, "index points past the frames", offset=index_offset)
            out.append((entry[0], entry[1], entry[2], entry[3]))
        return out

    def _unpack_one(self, raw: bytes, offset: int, what: str) -> Any:
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=True, max_buffer_size=max(len(raw), 1), use_list=True)
        unpacker.feed(raw)
        try:
            value = unpacker.unpack()
        except Exception as exc:  # msgpack raises several unrelated types
            raise CorruptSnapshotError(self.path, f"{what} is not valid msgpack ({exc})", offset=offset) from exc
        if unpacker.tell() != len(raw):
            raise CorruptSnapshotError(self.path, f"{what} has trailing bytes", offset=offset + unpacker.tell())
        return value

    def iter_records(self, section: int) -> Iterator[Any]:
        """Yield the records of one section in order, decompressing only its frames.

        Raises:
            CorruptSnapshotError, TruncatedSnapshotError, SnapshotLimitError.
        """
        for offset, sec, count, size in self.frames:
            if sec == section:
                yield from self._read_frame(offset, sec, count, size)

    def _read_frame(self, offset: int, section: int, count: int, size: int) -> list[Any]:
        lim = self.limits
        head = _FRAME_HEAD.unpack(self._read_exact(offset, _FRAME_HEAD.size, "frame header"))
        if head != (section, count, size):
            raise CorruptSnapshotError(self.path, "frame header does not match the index", offset=offset)
        if size > lim.max_frame_bytes:
            raise SnapshotLimitError(self.path, "frame size", size, lim.max_frame_bytes, offset=offset)
        if count > lim.max_records_per_frame:
            raise SnapshotLimitError(self.path, "records per frame", count, lim.max_records_per_frame, offset=offset)
        data_at = offset + _FRAME_HEAD.size
        payload = self._read_exact(data_at, size, "frame")
        try:
            params = zstandard.get_frame_parameters(payload)
        except zstandard.ZstdError as exc:
            raise CorruptSnapshotError(self.path, f"bad zstd frame header ({exc})", offset=data_at) from exc
        content = params.content_size
        if content in (zstandard.CONTENTSIZE_UNKNOWN, zstandard.CONTENTSIZE_ERROR):
            raise CorruptSnapshotError(self.path, "zstd frame without a content size", offset=data_at)
        if content > lim.max_frame_content_bytes:
            raise SnapshotLimitError(self.path, "frame content size", content, lim.max_frame_content_bytes, offset=data_at)
        if self._content_read + content > lim.max_total_content_bytes:
            raise SnapshotLimitError(
                self.path, "content read from file", self._content_read + content, lim.max_total_content_bytes, offset=data_at
            )
        if params.window_size > lim.max_window_bytes:
            raise SnapshotLimitError(self.path, "zstd window size", params.window_size, lim.max_window_bytes, offset=data_at)
        if not params.has_checksum:
            raise CorruptSnapshotError(self.path, "zstd frame without a content checksum", offset=data_at)
        try:
            dctx = zstandard.ZstdDecompressor(max_window_size=lim.max_window_bytes)
            data = dctx.decompress(payload, max_output_size=content)
        except zstandard.ZstdError as exc:
            raise CorruptSnapshotError(self.path, f"frame does not decompress ({exc})", offset=data_at) from exc
        if len(data) != content:
            raise TruncatedSnapshotError(self.path, "frame decompressed short", offset=data_at)
        self._content_read += content
        unpacker = msgpack.Unpacker(
            raw=False, strict_map_key=True, max_buffer_size=max(len(data), 1), use_list=True
        )
        unpacker.feed(data)
        try:
            records = [unpacker.unpack() for _ in range(count)]
        except msgpack.OutOfData as exc:
            raise TruncatedSnapshotError(self.path, "frame holds fewer records than its header says", offset=data_at) from exc
        except Exception as exc:
            raise CorruptSnapshotError(self.path, f"frame content is not valid msgpack ({exc})", offset=data_at) from exc
        if unpacker.tell() != len(data):
            raise CorruptSnapshotError(self.path, "frame holds more data than its records", offset=data_at)
        return records
