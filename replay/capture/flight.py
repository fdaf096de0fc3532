"""The production flight recorder: an opt-in trace of the application's own frames.

Normally production records only the tape and the trace is regenerated locally by replay.
When the code will not be available at replay time (a vendor's box, a deleted branch), a
captured call can also record its trace in production (``@replay.capture(trace=True)``):
the tracer of :mod:`replay.replayer.tracer` runs during the call, scoped to the project root,
and stops after a step budget; the trace is embedded in the snapshot (its trace sections) and
``replay trace``/``goto``/``history`` read it from there without replaying.

Cost: every line of application code pays the tracer (several times slower than untraced
code; see benchmarks/bench_trace.py), so use it on the calls you need, with a budget. Fail
open: if tracing cannot start (another tracer such as a debugger or coverage is active, or
the temp directory is not writable) the call runs untraced and the counter
``flight_recorder_skipped`` says so; nothing reaches the application.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from typing import Any, Final

from replay.capture.boundary import suspended
from replay.capture.recorder import count, log

DEFAULT_STEP_BUDGET: Final = 100_000
"""Steps a flight-recorded call may trace before tracing stops (the trace says it was cut)."""


class FlightRecorder:
    """A trace being recorded for one captured call. Create with :meth:`start`."""

    def __init__(self, recorder: Any, tracer: Any, directory: str):
        self._recorder = recorder
        self._directory = directory
        self._finished = False  # the trace file is written; whoever embeds it removes it
        self._tracer = tracer
        self._stopped = False

    @classmethod
    def start(cls, roots: list[str], max_steps: int) -> FlightRecorder | None:
        """Start tracing this thread's next calls; None (and a counted reason) if it cannot."""
        if not roots:
            count("flight_recorder_skipped")
            return None
        if sys.gettrace() is not None:  # never clobber a debugger or coverage
            count("flight_recorder_skipped")
            return None
        try:
            from replay.replayer.tracer import Scope, SettraceTracer, TraceRecorder

            with suspended():
                # The trace holds values in clear until it is redacted into the snapshot: it
                # lives in a directory only this user can read (mkdtemp: mode 0700).
                path = os.path.join(tempfile.mkdtemp(prefix="replay-flight-"), "trace.rtrace")
                recorder = TraceRecorder(path, Scope(roots), {"flight_recorder": True}, max_steps)
            tracer = SettraceTracer(recorder)
            recorder.header_backend = tracer.name
            tracer.start()
            return cls(recorder, tracer, os.path.dirname(path))
        except Exception:  # noqa: BLE001 - fail open
            count("flight_recorder_skipped")
            log.warning("replay: the flight recorder could not start", exc_info=True)
            return None

    def stop(self) -> None:
        """Stop tracing (idempotent; never raises)."""
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(Exception):
            self._tracer.stop()

    def finish(self, outcome: str) -> str | None:
        """Write the trace file; its path, or None if that failed (counted, logged)."""
        self.stop()
        try:
            with suspended():
                path = str(self._recorder.close({"outcome": outcome}, sources=False))
            self._finished = True
            return path
        except Exception:  # noqa: BLE001 - fail open
            count("capture_errors")
            log.warning("replay: could not write the flight recorder's trace", exc_info=True)
            self.discard()
            return None

    def discard(self) -> None:
        """Drop the trace unless it was finished (then :func:`remove` deletes it once embedded)."""
        self.stop()
        if self._finished:
            return
        with suspended(), contextlib.suppress(Exception):
            self._recorder.abort()
            shutil.rmtree(self._directory)


def remove(path: str | None) -> None:
    """Delete a finished trace file and its private directory once it is embedded (never raises)."""
    if path:
        with suspended(), contextlib.suppress(OSError):
            shutil.rmtree(os.path.dirname(path))
