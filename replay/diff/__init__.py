"""Trace diff: two runs of a snapshot aligned by call tree, UI-free.

:func:`diff_traces` aligns two traces (:class:`~replay.replayer.tracefile.TraceFile`) and
returns a :class:`TraceDiff` that the CLI (``replay diff``) and the TUI's diff screen read;
:mod:`replay.diff.render` turns one into text or JSON. See docs/diff.md.
"""

from replay.diff.align import (
    CHANGED,
    ONLY_A,
    ONLY_B,
    SAME,
    STATUS_NAMES,
    DiffCancelledError,
    DiffRow,
    TraceDiff,
    diff_traces,
)
from replay.diff.outcome import OutcomeDifference

__all__ = [
    "CHANGED", "ONLY_A", "ONLY_B", "SAME", "STATUS_NAMES", "DiffCancelledError", "DiffRow", "OutcomeDifference",
    "TraceDiff", "diff_traces",
]
