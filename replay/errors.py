"""The one exception tree of the project.

Everything raised on purpose derives from :class:`ReplayError`. Leaves also derive from the
matching built-in, so callers that only know the standard library still catch them. Each
error carries structured fields (path, offset, ...) besides its message; only the CLI turns
errors into exit codes.
"""

from __future__ import annotations

import os
from typing import Any


class ReplayError(Exception):
    """Root of every error this package raises on purpose."""


class SnapshotError(ReplayError):
    """Anything wrong with a snapshot file.

    Attributes:
        path: The file, as given by the caller.
        offset: Byte offset from the start of the file where the problem was found, or None
            when the problem is not tied to a position (for example a missing file).
    """

    def __init__(self, path: str | os.PathLike[str] | None, message: str, *, offset: int | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.offset = offset
        self.detail = message
        where = f" at byte {offset}" if offset is not None else ""
        super().__init__(f"{self.path or '<snapshot>'}{where}: {message}")


class SnapshotNotFoundError(SnapshotError, FileNotFoundError):
    """The snapshot path does not exist or is not a regular file."""


class NotASnapshotError(SnapshotError, ValueError):
    """The file does not start with the .rsnap magic signature."""


class UnsupportedVersionError(SnapshotError):
    """The file's major format version is not one this reader understands.

    Attributes:
        found: (major, minor) found in the file.
        supported: The major version this reader supports.
    """

    def __init__(self, path: str | os.PathLike[str] | None, found: tuple[int, int], supported: int):
        self.found = found
        self.supported = supported
        super().__init__(
            path,
            f"format version {found[0]}.{found[1]} is not supported "
            f"(this reader understands major version {supported})",
            offset=8,
        )


class CorruptSnapshotError(SnapshotError, ValueError):
    """A checksum, length or structure check failed."""


class TruncatedSnapshotError(CorruptSnapshotError):
    """The file ends in the middle of a structure."""


class SnapshotLimitError(SnapshotError):
    """A read limit (:class:`replay.snapshot.ReadLimits`) was exceeded, or memory ran out
    while unpacking records (then ``value`` and ``maximum`` are 0).

    Attributes:
        limit: Name of the limit.
        value: The value found in the file.
        maximum: The limit's value.
    """

    def __init__(
        self, path: str | os.PathLike[str] | None, limit: str, value: int, maximum: int, *, offset: int | None,
        detail: str | None = None,
    ):
        self.limit = limit
        self.value = value
        self.maximum = maximum
        super().__init__(path, detail or f"{limit} is {value}, over the limit of {maximum}", offset=offset)


class CaptureError(ReplayError):
    """The recorder cannot start or cannot encode what it must record.

    Never reaches application code: capture catches it and counts it.
    """


class EncodingError(CaptureError, ValueError):
    """A value cannot be encoded exactly where exactness is required."""


class ReplaySetupError(ReplayError):
    """A replay cannot start: the entry point or code cannot be loaded.

    Attributes:
        reason: A sentence saying exactly what is missing.
    """

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


class UsageError(ReplayError, ValueError):
    """A bad argument to a public API or the CLI."""


class DivergenceError(ReplayError):
    """Raised by :func:`replay.replayer.run_replay` callers that want an exception on divergence.

    Attributes:
        divergence: The :class:`replay.replayer.tape.Divergence` report.
    """

    def __init__(self, divergence: Any):
        self.divergence = divergence
        super().__init__(str(divergence))


class ReplayDiverged(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Unwinds the replayed program at the first divergence.

    A ``BaseException`` so that ``except Exception`` in application code cannot swallow it;
    the replay session records the divergence before raising, so even a bare ``except:``
    that swallows it does not hide the divergence from the verdict.
    """

    def __init__(self, divergence: Any):
        self.divergence = divergence
        super().__init__(str(divergence))
