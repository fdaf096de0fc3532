"""Streaming, crash-safe writing of .rsnap files.

Records are appended while the program runs; each section buffers its packed records and
becomes a zstd frame after :data:`~replay.snapshot.format.FRAME_TARGET_BYTES` bytes or
:data:`~replay.snapshot.format.FRAME_TARGET_RECORDS` records. Frames go to a temporary file
in the target directory; :meth:`SnapshotWriter.close` writes the index and trailer, fsyncs,
renames atomically and fsyncs the directory (PostgreSQL's ``durable_rename``; see
../shared/research/anchors-capture-security.md section 9). A writer killed at any moment
leaves nothing under the final name; its temporary file keeps every frame already flushed
and ``replay validate --recover`` rebuilds a snapshot from them.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
import zlib
from collections.abc import Iterable
from typing import Any, BinaryIO

import msgpack
import zstandard

from replay.snapshot import format as fmt

_tmp_counter = 0
_tmp_lock = threading.Lock()


def temp_name(path: str) -> str:
    """The temporary name a writer of ``path`` uses: ``.<name>.<pid>.<n>.tmp`` beside it."""
    global _tmp_counter
    with _tmp_lock:
        _tmp_counter += 1
        n = _tmp_counter
    directory, name = os.path.split(path)
    return os.path.join(directory, f".{name}.{os.getpid()}.{n}.tmp")


class _Pending:
    """Packed records of one section waiting to become a frame."""

    __slots__ = ("chunks", "size", "count")

    def __init__(self) -> None:
        self.chunks: list[bytes] = []
        self.size = 0
        self.count = 0


class SnapshotWriter:
    """Write a snapshot: header first, then frames as records arrive, then index and trailer.

    Until :meth:`close` nothing exists under the final name. Sections may interleave: each
    section's frames are read back in file order. Not thread-safe (one writer per thread).
    With ``background``, frames are compressed and written by a thread of the writer's own
    (zstd releases the GIL, so the appending thread goes on meanwhile); at most two frames
    wait for it, and :meth:`flush`, :meth:`write_frame` and :meth:`close` wait for them.

    Args:
        path: Final file name (``.rsnap``).
        header: Summary map stored uncompressed at the start (str keys; msgpack-native
            values). Keys known only at the end go to ``close(header_update=...)``.
        level: zstd compression level, -7 to 19 (levels above 19 need windows over the
            8 MiB readers accept by default).
        frame_bytes: Uncompressed bytes per frame before a new one starts.
        frame_records: Records per frame before a new one starts.
        background: Compress and write frames on a thread (for a writer fed by a running
            program: the trace recorder). An error there (OSError of the write) is raised
            by the next :meth:`append`, :meth:`flush` or :meth:`close`.

    Raises:
        OSError: the directory cannot be written.
        ValueError: ``level`` or a frame size is out of range.
        TypeError: the header cannot be packed (nothing is created then).
    """

    def __init__(self, path: str | os.PathLike[str], header: dict[str, Any], *, level: int = 3,
                 frame_bytes: int | None = None, frame_records: int | None = None, background: bool = False):
        if not -7 <= level <= 19:
            raise ValueError(f"zstd level {level} is outside -7..19")
        self.path = os.fspath(path)
        self.frame_bytes = fmt.FRAME_TARGET_BYTES if frame_bytes is None else frame_bytes
        self.frame_records = fmt.FRAME_TARGET_RECORDS if frame_records is None else frame_records
        if self.frame_bytes < 1 or not 1 <= self.frame_records <= fmt.DEFAULT_LIMITS.max_records_per_frame:
            raise ValueError("frame_bytes must be positive and frame_records within 1..1048576")
        head = fmt.pack(header)  # before the file exists: a bad header leaves nothing behind
        self._tmp = temp_name(self.path)
        self._file: BinaryIO = open(self._tmp, "xb")  # noqa: SIM115 - closed in close()/abort()
        self._cctx = zstandard.ZstdCompressor(level=level, write_checksum=True, write_content_size=True)
        self._packer = msgpack.Packer(use_bin_type=True)
        self._pending: dict[int, _Pending] = {}
        self._frames: list[list[int]] = []
        self._offset = 0
        self.records_written = 0
        self._write(fmt.PREAMBLE.pack(fmt.MAGIC, fmt.FORMAT_MAJOR, fmt.FORMAT_MINOR, 0, len(head), zlib.crc32(head)))
        self._write(head)
        self._jobs: queue.Queue[tuple[int, int, bytes] | None] | None = None
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        if background:
            self._jobs = queue.Queue(maxsize=2)
            # the thread holds the writer weakly: one dropped without close() ends it too
            self._thread = threading.Thread(target=_compress_frames, args=(weakref.ref(self), self._jobs),
                                            name="replay-snapshot-writer", daemon=True)
            self._thread.start()
            weakref.finalize(self, self._jobs.put, None)

    @property
    def temp_path(self) -> str:
        """The temporary file being written (what a crash leaves behind)."""
        return self._tmp

    def _write(self, data: bytes) -> None:
        self._file.write(data)
        self._offset += len(data)

    def append(self, section: int, record: Any) -> None:
        """Add one record to ``section``; a full frame is compressed and written.

        Raises:
            TypeError: the record holds a value msgpack cannot pack (nothing is added).
            ValueError: ``section`` is outside 1..255.
        """
        data = self._packer.pack(record)
        p = self._pending.get(section) or self._new_section(section)
        p.chunks.append(data)
        p.size += len(data)
        p.count += 1
        if p.size >= self.frame_bytes or p.count >= self.frame_records:
            self._flush_section(section, p)

    def write_section(self, section: int, records: Iterable[Any]) -> None:
        """Append every record of ``records`` to ``section`` (see :meth:`append`)."""
        pack = self._packer.pack
        p = self._pending.get(section) or self._new_section(section)
        chunks = p.chunks
        limit_bytes, limit_records = self.frame_bytes, self.frame_records
        for record in records:
            data = pack(record)
            chunks.append(data)
            p.size += len(data)
            p.count += 1
            if p.size >= limit_bytes or p.count >= limit_records:
                self._flush_section(section, p)
                chunks = p.chunks

    def _new_section(self, section: int) -> _Pending:
        if type(section) is not int or not 0 < section < 256:
            raise ValueError(f"section id {section!r} is outside 1..255")
        p = self._pending[section] = _Pending()
        return p

    def _flush_section(self, section: int, p: _Pending) -> None:
        if p.count:
            raw = b"".join(p.chunks)
            count = p.count
            p.chunks = []
            p.size = 0
            p.count = 0
            if self._jobs is None:
                self._emit(section, count, self._cctx.compress(raw))
            else:
                self._raise_failure()
                self._jobs.put((section, count, raw))

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _drain(self) -> None:
        """Wait until every queued frame is written (background mode); raise its failure."""
        if self._jobs is not None:
            self._jobs.join()
            self._raise_failure()

    def _stop(self) -> None:
        """End the background thread (idempotent)."""
        thread, self._thread = self._thread, None
        if thread is not None and self._jobs is not None:
            self._jobs.put(None)
            thread.join()

    def write_frame(self, section: int, records: int, payload: bytes) -> None:
        """Write one already compressed frame (used by recovery to copy frames verbatim).

        Pending records of ``section`` are flushed first so the section keeps its order.
        """
        p = self._pending.get(section) or self._new_section(section)
        self._flush_section(section, p)
        self._drain()
        self._emit(section, records, payload)

    def _emit(self, section: int, records: int, payload: bytes) -> None:
        offset = self._offset
        self._write(fmt.FRAME_HEAD.pack(section, records, len(payload)))
        self._write(payload)
        self._frames.append([offset, section, records, len(payload)])
        self.records_written += records

    def flush(self, *, fsync: bool = False) -> None:
        """Turn every pending record into a frame and hand the bytes to the OS.

        After ``flush()`` a killed process loses none of the records appended so far (they
        are recoverable from the temporary file); ``fsync=True`` also survives power loss.
        """
        for section, p in self._pending.items():
            self._flush_section(section, p)
        self._drain()
        self._file.flush()
        if fsync:
            os.fsync(self._file.fileno())

    def close(self, header_update: dict[str, Any] | None = None) -> str:
        """Finish the file and move it into place.

        Args:
            header_update: Header keys known only now (outcome, counts); readers merge them
                over the leading header.

        Returns:
            The final path.

        Raises:
            OSError: writing, fsync or rename failed (the temporary file is removed).
        """
        try:
            for section, p in self._pending.items():
                self._flush_section(section, p)
            self._drain()
            self._stop()
            index: dict[str, Any] = {"frames": self._frames}
            if header_update:
                index["header"] = header_update
            raw = fmt.pack(index)
            offset = self._offset
            self._write(raw)
            self._write(fmt.TRAILER.pack(offset, len(raw), zlib.crc32(raw), fmt.TRAILER_MAGIC))
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            os.replace(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        fsync_directory(os.path.dirname(self.path) or ".")
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; nothing appears under the final name."""
        try:
            self._stop()
            self._file.close()
        finally:
            if os.path.exists(self._tmp):
                os.unlink(self._tmp)

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _compress_frames(ref: weakref.ref[SnapshotWriter], jobs: queue.Queue[tuple[int, int, bytes] | None]) -> None:
    """A background writer's thread: compress and write queued frames in order until None."""
    while True:
        job = jobs.get()
        try:
            if job is None:
                return
            writer = ref()
            if writer is not None and writer._failure is None:  # after a failure: dropped
                try:
                    section, count, raw = job
                    writer._emit(section, count, writer._cctx.compress(raw))
                except BaseException as exc:  # noqa: BLE001 - raised again in the writer's thread
                    writer._failure = exc
            writer = None  # not held while waiting for the next job
        finally:
            jobs.task_done()


def fsync_directory(directory: str) -> None:
    """fsync a directory so a rename in it is durable; errors are ignored as SQLite does."""
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
