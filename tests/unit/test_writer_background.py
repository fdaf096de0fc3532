"""SnapshotWriter(background=True): frames compressed and written on the writer's own thread.

The trace recorder writes this way while the traced program runs. The file must be the same,
byte for byte, as the one a foreground writer makes of the same records; flush() and close()
wait for the queued frames; a write that fails on the thread fails the writer's next call and
leaves nothing under the final name once closed; a writer dropped without close() does not leave its thread
behind.
"""

from __future__ import annotations

import errno
import gc
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from replay.snapshot import SnapshotFile, SnapshotWriter
from replay.snapshot.format import Section


def _records(n: int, seed: int = 7) -> list[list[Any]]:
    rng = random.Random(seed)
    return [["io", "read", ["t", i], rng.randbytes(rng.randrange(10, 9000)), None] for i in range(n)]


def _write(path: Path, background: bool) -> bytes:
    records = _records(200)
    w = SnapshotWriter(path, {"kind": "test"}, level=1, frame_bytes=50_000, background=background)
    for i, record in enumerate(records):
        w.append(Section.TAPE if i % 3 else Section.CODE, record)
        if i == 120:
            w.write_frame(Section.ENTRY, 1, b"\x28\xb5\x2f\xfd\x20\x01\x09\x00\x00\xc0")  # a copied frame
    w.close({"done": True})
    return path.read_bytes()


def test_the_file_is_the_same_byte_for_byte(tmp_path: Path) -> None:
    foreground = _write(tmp_path / "fg.rsnap", False)
    background = _write(tmp_path / "bg.rsnap", True)
    assert background == foreground
    with SnapshotFile(tmp_path / "bg.rsnap") as f:
        assert len(f.frames) > 8  # several frames of each section went through the thread
        assert list(f.iter_records(Section.TAPE)) == [r for i, r in enumerate(_records(200)) if i % 3]


def test_flush_waits_for_the_queued_frames(tmp_path: Path) -> None:
    w = SnapshotWriter(tmp_path / "f.rsnap", {}, level=1, frame_bytes=10_000, background=True)
    for record in _records(60):
        w.append(Section.TAPE, record)
    w.flush()
    written = Path(w.temp_path).stat().st_size
    assert written == w._offset and len(w._frames) >= 5  # every frame is in the file now
    w.abort()
    assert not Path(w.temp_path).exists()


class _FullDisk:
    """The writer's file, failing every write after the first ``ok`` bytes (ENOSPC)."""

    def __init__(self, real: Any, ok: int):
        self.real, self.ok = real, ok

    def write(self, data: bytes) -> int:
        if self.ok < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        self.ok -= len(data)
        return int(self.real.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_a_failed_write_on_the_thread_fails_the_writer(tmp_path: Path) -> None:
    path = tmp_path / "full.rsnap"
    w = SnapshotWriter(path, {}, level=1, frame_bytes=10_000, background=True)
    w._file = _FullDisk(w._file, ok=20_000)  # type: ignore[assignment]
    with pytest.raises(OSError, match="No space left"):  # raised by a later append
        for record in _records(100):
            w.append(Section.TAPE, record)
    with pytest.raises(OSError, match="No space left"):  # and by close(), which cleans up
        w.close()
    assert not path.exists() and not Path(w.temp_path).exists()
    assert w._thread is None


def test_a_dropped_writer_ends_its_thread(tmp_path: Path) -> None:
    def threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "replay-snapshot-writer")

    before = threads()
    w = SnapshotWriter(tmp_path / "d.rsnap", {}, background=True)
    w.append(Section.TAPE, ["x"])
    assert threads() == before + 1
    del w
    gc.collect()
    deadline = time.monotonic() + 5
    while threads() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threads() == before
