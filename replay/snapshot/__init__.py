"""The .rsnap snapshot file: the one contract between capture and everything else.

Imports only the standard library, msgpack and zstandard (production path).
"""

from __future__ import annotations

from replay.snapshot.format import (
    DEFAULT_LIMITS,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    FrameInfo,
    ReadLimits,
    Section,
)
from replay.snapshot.model import Interaction, Snapshot, open_snapshot
from replay.snapshot.reader import RecordPosition, SnapshotFile
from replay.snapshot.recovery import (
    RecoveryReport,
    ValidationReport,
    recover,
    scan_frames,
    validate,
)
from replay.snapshot.writer import SnapshotWriter

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "FrameInfo",
    "Interaction",
    "ReadLimits",
    "RecordPosition",
    "RecoveryReport",
    "Section",
    "Snapshot",
    "SnapshotFile",
    "SnapshotWriter",
    "ValidationReport",
    "open_snapshot",
    "recover",
    "scan_frames",
    "validate",
]
