"""The ``sys.monitoring`` backend of the trace recorder (PEP 669, Python 3.12+).

It records the same steps and changes as :class:`~replay.replayer.tracer.SettraceTracer`:
since 3.12 CPython implements ``sys.settrace`` on these same events
(``Python/legacy_tracing.c``), so each settrace event has an exact counterpart here:

===============================  ============================  =============================
monitoring event                 settrace event                enabled for
===============================  ============================  =============================
PY_START, PY_RESUME, PY_THROW    ``call``                      every code (global)
LINE                             ``line``                      application code
JUMP backwards within one line   ``line`` (a loop on one line, application code
                                 an inlined comprehension)
PY_RETURN, PY_YIELD              ``return`` with the value     application code, library
                                                               code called from it
PY_UNWIND                        ``return`` with None          every code (global)
RAISE, STOP_ITERATION            ``exception``                 global / application code
===============================  ============================  =============================

RERAISE (a bare ``raise``, the end of a ``finally`` or ``with``) is no ``exception`` event
under settrace either: the exception is recorded where it was raised and in each frame it
then propagates into. The one known difference: a thread started with
``_thread.start_new_thread`` (not :class:`threading.Thread`) after :meth:`MonitoringTracer.start`
is traced here, while ``threading.settrace`` never reaches it.

What it saves: library code runs without line events (settrace instruments every line of
every code object and filters in C), and on 3.12 an application line skips settrace's
trampoline, which copies the frame's locals into a dict and back around every event. On
3.13 (no copy any more) an application line costs about what it costs under settrace.

The frame of an event is ``sys._getframe(1)`` in the callback; live activations are found
by frame, so an event of a frame that has none is ignored: a frame that started before
:meth:`MonitoringTracer.start`, a library frame not called directly by application code,
a thread that was running before :meth:`MonitoringTracer.start` (settrace does not trace
those either). Callbacks do not nest: CPython fires no event while one runs (so the values
the recorder encodes, even through application ``__repr__`` code, make no steps).

``sys.monitoring.DISABLE`` turns an event off at one code location for every later run,
so it is returned only where the answer can never change: PY_START and PY_RESUME of code
of this package (never traced, though the application code it calls is), and JUMPs that
go forwards or to another line. A library function's PY_START stays on: any later call
of it may come straight from application code. Disabled locations outlive the tool id
(CPython 3.12 and 3.13 keep them through ``free_tool_id`` and a new ``use_tool_id``), so
:meth:`MonitoringTracer.start` and :meth:`MonitoringTracer.stop` call
``sys.monitoring.restart_events()``: what an earlier user of the id disabled fires again
(other tools see their disabled events once more, and disable them again).
"""

from __future__ import annotations

import sys
import threading
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, Final

from replay.errors import ReplaySetupError
from replay.replayer.tracer import RETURN, TraceRecorder, line_tracer

if TYPE_CHECKING:
    from collections.abc import Callable

    from replay.replayer.tracer import Activation, _Thread

_MON: Any = None
if sys.version_info >= (3, 12):
    _MON = sys.monitoring

TOOL_NAME: Final = "replay-trace"


def _events(*names: str) -> int:
    return sum(getattr(_MON.events, n) for n in names) if _MON is not None else 0


_GLOBAL: Final = _events("PY_START", "PY_RESUME", "PY_THROW", "PY_UNWIND", "RAISE")
"""Events of every code object (the last three cannot be enabled per code object)."""
_APP: Final = _events("LINE", "JUMP", "PY_RETURN", "PY_YIELD", "STOP_ITERATION")
"""Events of application code objects (``set_local_events``)."""
_LIB: Final = _events("PY_RETURN", "PY_YIELD")
"""Events of library code objects once application code has called them directly."""


def _free_tool() -> int:
    """``sys.monitoring.DEBUGGER_ID`` if free, else the first free tool id.

    Raises:
        ReplaySetupError: Every tool id is taken (a debugger, a coverage tool, a profiler...).
    """
    candidates = [_MON.DEBUGGER_ID] + [i for i in range(6) if i != _MON.DEBUGGER_ID]
    for tool in candidates:
        if _MON.get_tool(tool) is None:
            return tool
    raise ReplaySetupError("cannot trace with sys.monitoring: every tool id is taken "
                           "(use the settrace backend)")


class MonitoringTracer:
    """The ``sys.monitoring`` backend (Python 3.12+): same steps as the settrace backend.

    Lines of in-scope code are traced; a library function called directly from traced code
    is one call step and one return step (its lines are not traced); code the application
    does not call directly is not traced at all. Threads started after :meth:`start` are
    traced; threads already running are not (as with settrace).

    Attributes:
        tool: The ``sys.monitoring`` tool id while tracing, else None.
        error: An exception the tracer itself raised in a callback (tracing then stopped and
            the program went on), else None.

    Not re-entrant: one instance traces once (``start`` then ``stop``).
    """

    name = "monitoring"

    def __init__(self, recorder: TraceRecorder):
        if _MON is None:
            raise ReplaySetupError("the monitoring tracer needs Python 3.12 or later (sys.monitoring)")
        self.rec = recorder
        self.tool: int | None = None
        self.error: BaseException | None = None
        self._acts: dict[FrameType, tuple[Activation, _Thread]] = {}
        self._lines: dict[FrameType, tuple[Any, ...]] = {}  # LINE callback state by frame
        self._threads: dict[int, _Thread | None] = {}
        self._before: dict[int, threading.Thread] = {}
        self._local: dict[CodeType, int] = {}
        self._offsets: dict[CodeType, dict[int, int | None]] = {}
        self._on_line: Callable[..., Any] = self._line_callback()

    # ------------------------------------------------------------- start / stop

    def start(self) -> None:
        """Trace from the next call on (this thread and threads started from now on).

        Raises:
            ReplaySetupError: No ``sys.monitoring`` tool id is free.
        """
        tool = _free_tool()
        _MON.use_tool_id(tool, TOOL_NAME)
        self.tool = tool
        me = threading.get_ident()
        self._before = {t.ident: t for t in threading.enumerate() if t.ident is not None and t.ident != me}
        self._on_line = self._line_callback()
        ev = _MON.events
        callbacks = {
            ev.PY_START: self._on_start, ev.PY_RESUME: self._on_start, ev.PY_THROW: self._on_throw,
            ev.LINE: self._on_line, ev.JUMP: self._on_jump,
            ev.PY_RETURN: self._on_return, ev.PY_YIELD: self._on_return, ev.PY_UNWIND: self._on_unwind,
            ev.RAISE: self._on_raise, ev.STOP_ITERATION: self._on_raise,
        }
        for event, callback in callbacks.items():
            _MON.register_callback(tool, event, callback)
        _MON.restart_events()  # locations an earlier user of this tool id disabled fire again
        self.rec.watch_gc()
        _MON.set_events(tool, _GLOBAL)

    def stop(self) -> None:
        """Stop tracing and free the tool id (frames still live stop being traced too)."""
        self._shutdown()
        self.rec.watch_gc(False)
        self.rec.stop_all()

    def _shutdown(self) -> None:
        """Switch every event off, unregister the callbacks and free the tool id (idempotent;
        callable from inside a callback)."""
        tool = self.tool
        if tool is None:
            return
        self.tool = None
        _MON.set_events(tool, 0)
        for code in self._local:
            _MON.set_local_events(tool, code, 0)
        for name in ("PY_START", "PY_RESUME", "PY_THROW", "LINE", "JUMP", "PY_RETURN", "PY_YIELD",
                     "PY_UNWIND", "RAISE", "STOP_ITERATION"):
            _MON.register_callback(tool, getattr(_MON.events, name), None)
        _MON.free_tool_id(tool)
        _MON.restart_events()  # leave no disabled locations to the next user of the tool id
        self._local.clear()
        self._acts.clear()
        self._lines.clear()

    def _failed(self, exc: BaseException) -> None:
        """A bug of the tracer: keep the program running, stop tracing, keep the error."""
        if self.error is None:
            self.error = exc
        self._shutdown()
        self.rec.stop_all()

    # ------------------------------------------------------------- helpers

    def _thread(self) -> _Thread | None:
        """This thread's recorder state, or None for a thread that ran before :meth:`start`."""
        ident = threading.get_ident()
        ts = self._threads.get(ident, False)
        if ts is False:
            before = self._before.get(ident)
            ts = None if before is not None and threading.current_thread() is before else self.rec.thread()
            self._threads[ident] = ts
        return ts  # type: ignore[return-value]

    def _watch(self, code: CodeType, events: int) -> None:
        """Enable ``events`` on ``code`` (once per code object)."""
        if self._local.get(code) != events and self.tool is not None:
            self._local[code] = events
            _MON.set_local_events(self.tool, code, events)

    def _line_of(self, code: CodeType, offset: int) -> int | None:
        """The line of the instruction at byte ``offset`` (None: no line)."""
        table = self._offsets.get(code)
        if table is None:
            table = self._offsets[code] = {}
            for start, end, line in code.co_lines():
                for off in range(start, end, 2):
                    table[off] = line
        return table.get(offset)

    # ------------------------------------------------------------- callbacks

    def _on_start(self, code: CodeType, offset: int) -> Any:
        """PY_START and PY_RESUME: a call, or a generator resumed (a new activation)."""
        return self._enter(code, sys._getframe(1))

    def _on_throw(self, code: CodeType, offset: int, exc: BaseException) -> Any:
        """PY_THROW: ``gen.throw()`` or ``close()`` resumes a generator (settrace's ``call``)."""
        self._enter(code, sys._getframe(1))  # never DISABLE: PY_THROW cannot be disabled

    def _enter(self, code: CodeType, frame: FrameType) -> Any:
        """Start an activation of ``frame`` if it is traced; DISABLE for code never traced."""
        try:
            rec = self.rec
            info = rec.codes.get(code) or rec.code(code)
            if not info.in_scope and not info.lib:
                return _MON.DISABLE  # this package: never traced, whoever calls it
            if rec.stopped:
                self._shutdown()
                return None
            if rec.in_gc:  # see TraceRecorder.watch_gc
                return None
            ts = self._thread()
            if ts is None:
                return None
            if info.in_scope:
                act = rec.push(ts, info, frame)
                self._acts[frame] = (act, ts)
                self._lines[frame] = self._line_state(ts, act)
                self._watch(code, _APP)
                return None
            stack = ts.stack
            if not stack or frame.f_back is not stack[-1].frame or not stack[-1].code.in_scope:
                return None
            self._acts[frame] = (rec.push(ts, info, frame), ts)
            self._watch(code, _LIB)
        except Exception as exc:  # noqa: BLE001 - a tracer bug must not change the program
            self._failed(exc)
        return None

    def _on_return(self, code: CodeType, offset: int, value: Any) -> Any:
        """PY_RETURN and PY_YIELD: the activation ends with ``value``."""
        frame = sys._getframe(1)
        entry = self._acts.pop(frame, None)
        if entry is None:  # not DISABLE: the next run of this code may be traced
            return None
        try:
            self._lines.pop(frame, None)
            self.rec.pop(entry[1], entry[0], RETURN, frame.f_lineno, value)
            if self.rec.stopped:
                self._shutdown()
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
        return None

    def _on_unwind(self, code: CodeType, offset: int, exc: BaseException) -> Any:
        """PY_UNWIND: an exception leaves the frame (a return step without a value)."""
        frame = sys._getframe(1)
        entry = self._acts.pop(frame, None)
        if entry is None:
            return None
        try:
            self._lines.pop(frame, None)
            self.rec.pop(entry[1], entry[0], RETURN, frame.f_lineno, None)
            if self.rec.stopped:
                self._shutdown()
        except Exception as error:  # noqa: BLE001
            self._failed(error)
        return None

    def _on_raise(self, code: CodeType, offset: int, exc: BaseException) -> Any:
        """RAISE (raised here or propagated into this frame) and STOP_ITERATION: an exception step."""
        frame = sys._getframe(1)
        entry = self._acts.get(frame)
        if entry is None or not entry[0].code.in_scope:
            return None
        try:
            self.rec.exception(entry[1], entry[0], frame.f_lineno, exc)
            if self.rec.stopped:
                self._shutdown()
        except Exception as error:  # noqa: BLE001
            self._failed(error)
        return None

    def _on_jump(self, code: CodeType, src: int, dest: int) -> Any:
        """JUMP: settrace reports a backward jump within one line as a new line event."""
        if dest > src:
            return _MON.DISABLE
        line = self._line_of(code, dest)
        if line is None or line != self._line_of(code, src):
            return _MON.DISABLE  # another line: the LINE event reports it
        self._on_line(code, line, 2)
        return None

    def _line_callback(self) -> Callable[..., Any]:
        """The LINE callback: the frame's settrace local tracer (:func:`line_tracer`) does the
        step, so both backends record lines with one piece of code."""
        rec = self.rec
        states_get = self._lines.get
        getframe = sys._getframe
        tracer = self

        def on_line(code: CodeType, line: int, up: int = 1) -> Any:
            frame = getframe(up)
            local = states_get(frame)
            if local is None:  # a frame that is not traced (see the module docstring)
                return None
            try:
                local(frame, "line", None)  # frame.f_lineno == line in LINE and JUMP callbacks
                if rec.error is not None:
                    tracer._failed(rec.error)
                elif rec.stopped:
                    tracer._shutdown()
            except Exception as exc:  # noqa: BLE001 - a tracer bug must not change the program
                tracer._failed(exc)
            return None

        return on_line

    def _line_state(self, ts: _Thread, act: Activation) -> Any:
        """The per-frame line tracer of ``act`` (shared with the settrace backend)."""
        return line_tracer(self.rec, ts, act)


__all__ = ["MonitoringTracer"]
