"""replay: a deterministic replay debugger for production Python.

Capture a failing call in production (``@replay.capture``, ``with replay.recording()``)
into one ``.rsnap`` file, then replay it and verify candidate fixes against it
(``replay run``, ``replay verify``). This package is the headless core: importing it loads
neither textual nor rich.
"""

from __future__ import annotations

__version__ = "0.1.0"

import replay.capture as capture  # noqa: E402 - a callable module: @replay.capture works
from replay.capture import recording, stats  # noqa: E402
from replay.errors import ReplayError, SnapshotError  # noqa: E402

__all__ = ["ReplayError", "SnapshotError", "__version__", "capture", "recording", "stats"]
