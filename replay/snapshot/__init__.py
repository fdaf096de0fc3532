"""The .rsnap snapshot file: the one contract between capture and everything else.

Imports only the standard library, msgpack and zstandard (production path).
"""

from __future__ import annotations

from replay.snapshot.format import (
    DEFAULT_LIMITS,
    FORMAT_MAJOR,
    FORMAT_MINOR,
    MAGIC,
    ReadLimits,
    Section,
    SnapshotFile,
    SnapshotWriter,
)
from replay.snapshot.model import Interaction, Snapshot, open_snapshot

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_MAJOR",
    "FORMAT_MINOR",
    "MAGIC",
    "Interaction",
    "ReadLimits",
    "Section",
    "Snapshot",
    "SnapshotFile",
    "SnapshotWriter",
    "open_snapshot",
]
