"""The logical content of a snapshot: entry point, tape, outcome, code identity, environment.

These are plain data classes over encoded values (codec nodes); nothing here imports
application code. :class:`Snapshot` reads sections lazily through :class:`SnapshotFile`.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from typing import Any

from replay.errors import CorruptSnapshotError
from replay.snapshot.format import DEFAULT_LIMITS, ReadLimits, Section, short_repr
from replay.snapshot.reader import SnapshotFile


def header_reasons(header: dict[str, Any]) -> list[str]:
    """The header's ``reasons`` as a list of short strings, whatever the file holds."""
    raw = header.get("reasons")
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    return [r if isinstance(r, str) else short_repr(r) for r in items]


@dataclasses.dataclass(frozen=True)
class Interaction:
    """One boundary interaction on the tape.

    Attributes:
        index: Position on the tape, from 0.
        channel: ``clock``, ``random``, ``env``, ``uuid``, ...
        op: The function asked, for example ``time.time`` or ``environ.get``.
        args: Encoded request arguments (a codec node of a tuple).
        result: Encoded answer (codec node); for ``random`` the raw words or bytes drawn.
        error: Encoded exception the call raised, or None.
        strand: The thread or task that made it: ``"0"`` for the entry point's, ``"0.1"``
            for the first one it started, and so on (format 1.2; older files: ``"0"``).
    """

    index: int
    channel: str
    op: str
    args: Any
    result: Any
    error: Any = None
    strand: str = "0"

    def to_record(self) -> list[Any]:
        """The msgpack record stored in the tape section."""
        return [self.channel, self.op, self.args, self.result, self.error]

    @classmethod
    def from_record(cls, index: int, record: Any, path: str, strand: str = "0") -> Interaction:
        """Build from a tape record; raises CorruptSnapshotError on a malformed one.

        Items after the fifth are ignored: a later minor version may append fields.
        """
        if not (isinstance(record, list) and len(record) >= 5 and isinstance(record[0], str)
                and isinstance(record[1], str)):
            raise CorruptSnapshotError(path, f"tape record {index} is malformed")
        return cls(index, record[0], record[1], record[2], record[3], record[4], strand)


class Snapshot:
    """An opened snapshot. Sections are read on first access and cached.

    Attributes:
        path: The file.
        header: The uncompressed summary map.
        version: (major, minor) of the file format.
        size_bytes: File size.

    Raises (on open and on section access):
        SnapshotError subclasses; see :class:`replay.snapshot.reader.SnapshotFile`.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS):
        self._file = SnapshotFile(path, limits)
        self.path = self._file.path
        self.header: dict[str, Any] = self._file.header
        self.version = self._file.version
        self.size_bytes = self._file.size_bytes
        self._cache: dict[int, list[Any]] = {}

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying file."""
        self._file.close()

    def _records(self, section: int) -> list[Any]:
        if section not in self._cache:
            self._cache[section] = list(self._file.iter_records(section))
        return self._cache[section]

    def _single(self, section: int) -> dict[str, Any]:
        records = self._records(section)
        name = Section.NAMES[section]
        if not records:
            why = " (the file was recovered from a damaged one)" if "recovered" in self.header else ""
            raise CorruptSnapshotError(self.path, f"the {name} section is missing{why}; it must hold exactly one map")
        if len(records) != 1 or not isinstance(records[0], dict):
            raise CorruptSnapshotError(self.path, f"the {name} section must hold exactly one map")
        return records[0]  # type: ignore[no-any-return]

    def has(self, section: int) -> bool:
        """True when the file holds records of ``section`` (from the index; reads nothing)."""
        return self._file.count(section) > 0

    @property
    def entry(self) -> dict[str, Any]:
        """Entry point: module, qualname, file, args/kwargs nodes, project root, kind."""
        return self._single(Section.ENTRY)

    @property
    def outcome(self) -> dict[str, Any]:
        """Outcome: ``kind`` ("return" or "exception"), value or exception, duration_ns."""
        return self._single(Section.OUTCOME)

    @property
    def environment(self) -> dict[str, Any]:
        """Interpreter, platform, libraries, time zone, hash seed, sys.path of the recording."""
        return self._single(Section.ENVIRONMENT)

    @property
    def tape(self) -> list[Interaction]:
        """All interactions in order, each with its strand."""
        runs = self.strand_runs()
        out = []
        strand, k = "0", 0
        for i, r in enumerate(self._records(Section.TAPE)):
            while k < len(runs) and runs[k][0] <= i:
                strand = runs[k][1]
                k += 1
            out.append(Interaction.from_record(i, r, self.path, strand))
        return out

    def strand_runs(self) -> list[tuple[int, str]]:
        """``(first tape index, strand id)`` runs of the strands section, in order.

        Raises:
            CorruptSnapshotError: a run is malformed or out of order.
        """
        runs: list[tuple[int, str]] = []
        for n, rec in enumerate(self._records(Section.STRANDS)):
            if not (isinstance(rec, list) and len(rec) >= 2 and isinstance(rec[0], int) and isinstance(rec[1], str)
                    and (not runs or rec[0] >= runs[-1][0])):
                raise CorruptSnapshotError(self.path, f"strands record {n} is malformed")
            runs.append((rec[0], rec[1]))
        return runs

    @property
    def strands(self) -> dict[str, dict[str, Any]]:
        """Threads and tasks started inside the recorded call: id -> kind, name, parent."""
        raw = self.header.get("strands")
        return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, dict)} if isinstance(raw, dict) else {}

    @property
    def tape_length(self) -> int:
        """Number of interactions, from the index (reads no frame)."""
        return self._file.count(Section.TAPE)

    def interaction(self, index: int) -> Interaction:
        """Interaction ``index`` of the tape, decompressing only the frame that holds it.

        Raises:
            IndexError: no such interaction.
            SnapshotError subclasses: the frame is damaged.
        """
        if index < 0:
            index += self.tape_length
        record = self._file.record(Section.TAPE, index)
        strand = "0"
        for first, s in self.strand_runs():
            if first > index:
                break
            strand = s
        return Interaction.from_record(index, record, self.path, strand)

    @property
    def file(self) -> SnapshotFile:
        """The low-level reader (frames, record positions, random access)."""
        return self._file

    @property
    def code_files(self) -> list[dict[str, Any]]:
        """Application source files: path (relative to the project root), module, sha256, size, source."""
        return [r for r in self._records(Section.CODE) if isinstance(r, dict)]

    def channel_counts(self) -> Counter[str]:
        """Interactions per channel."""
        return Counter(i.channel for i in self.tape)


def open_snapshot(path: str | os.PathLike[str], *, limits: ReadLimits = DEFAULT_LIMITS) -> Snapshot:
    """Open a snapshot file for reading.

    Args:
        path: The ``.rsnap`` file. Only the preamble, header and index are read eagerly.
        limits: Upper bounds applied while decoding untrusted input.

    Returns:
        A :class:`Snapshot`; use it as a context manager to close the file.

    Raises:
        SnapshotNotFoundError: ``path`` does not exist.
        NotASnapshotError: the file does not start with the magic signature.
        UnsupportedVersionError: the major version is not 1.
        CorruptSnapshotError, TruncatedSnapshotError, SnapshotLimitError: see the format.
    """
    return Snapshot(path, limits)
