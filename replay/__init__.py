"""replay: a deterministic replay debugger for production Python.

Capture a failing call in production (``@replay.capture``, ``with replay.recording()``)
into one ``.rsnap`` file, then replay it and verify candidate fixes against it
(``replay run``, ``replay verify``). This package is the headless core: importing it loads
neither textual nor rich.

``replay.capture`` (a callable module: ``@replay.capture`` works), ``replay.recording`` and
``replay.stats`` load the capture runtime on first use, so tools that only read snapshots
(the CLI, the TUI) do not load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay._lazy import lazy_attributes
from replay.errors import ReplayError, SnapshotError

if TYPE_CHECKING:
    import replay.capture as capture
    from replay.capture import recording, stats

__version__ = "0.1.0"

__all__ = ["ReplayError", "SnapshotError", "__version__", "capture", "recording", "stats"]
__getattr__ = lazy_attributes(__name__, {
    "capture": "replay.capture", "recording": "replay.capture", "stats": "replay.capture",
})
