"""The terminal UI (Textual) of the replay debugger: ``replay tui SNAP [--code DIR]``.

Depends on :mod:`replay`; nothing in :mod:`replay` imports it (a test checks).
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app"]


def build_app(path: str, *, code_dirs: list[str] | None = None, start: str = "summary", **trace_options: Any) -> Any:
    """The app for ``path`` (a snapshot or trace file), not yet running: the CLI and the tests use it.

    Args:
        path: A ``.rsnap`` snapshot or a ``.rtrace`` trace file.
        code_dirs: Candidate code for the diff and verify screens.
        start: ``summary`` or ``step``.
        trace_options: Passed to :func:`replay.replayer.traces.open_trace`.
    """
    from tui.app import ReplayApp
    from tui.session import TraceSession

    return ReplayApp(TraceSession(path, code_dirs=code_dirs, trace_options=trace_options), start=start)
