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
then propagates into. What it saves: library code runs without line instrumentation, and
an application line costs one callback without settrace's trampoline (which copies the
frame's locals into a dict and back around every event).

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
of it may come straight from application code.
"""

from __future__ import annotations

import sys
import threading
from types import CodeType, FrameType
from typing import TYPE_CHECKING, Any, Final

from replay.errors import ReplaySetupError
from replay.replayer.tracer import _IMMUTABLE, CHUNK_STEPS, LINE, RETURN, TraceRecorder, display

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
        self._lines: dict[FrameType, Callable[[FrameType, int], None]] = {}
        self._threads: dict[int, _Thread | None] = {}
        self._before: dict[int, threading.Thread] = {}
        self._local: dict[CodeType, int] = {}
        self._offsets: dict[CodeType, dict[int, int | None]] = {}

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
        ev = _MON.events
        callbacks = {
            ev.PY_START: self._on_start, ev.PY_RESUME: self._on_start, ev.PY_THROW: self._on_throw,
            ev.LINE: self._line_callback(), ev.JUMP: self._on_jump,
            ev.PY_RETURN: self._on_return, ev.PY_YIELD: self._on_return, ev.PY_UNWIND: self._on_unwind,
            ev.RAISE: self._on_raise, ev.STOP_ITERATION: self._on_raise,
        }
        for event, callback in callbacks.items():
            _MON.register_callback(tool, event, callback)
        _MON.set_events(tool, _GLOBAL)

    def stop(self) -> None:
        """Stop tracing and free the tool id (frames still live stop being traced too)."""
        self._shutdown()
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
            ts = self._thread()
            if ts is None:
                return None
            if info.in_scope:
                act = rec.push(ts, info, frame)
                self._acts[frame] = (act, ts)
                self._lines[frame] = self._line_step(ts, act)
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
        frame = sys._getframe(1)
        step = self._lines.get(frame)
        if step is not None:
            step(frame, line)
        return None

    def _line_callback(self) -> Callable[[CodeType, int], Any]:
        """The LINE callback: find the frame's line step and run it."""
        lines_get = self._lines.get
        getframe = sys._getframe

        def on_line(code: CodeType, line: int) -> Any:
            frame = getframe(1)
            step = lines_get(frame)
            if step is not None:
                step(frame, line)
            return None

        return on_line

    def _line_step(self, ts: _Thread, act: Activation) -> Callable[[FrameType, int], None]:
        """A line step of ``act``: record the locals the previous line changed, then the step
        (the same logic as the settrace backend's line event)."""
        rec = self.rec
        steps = rec.steps
        append = steps.append
        effects = act.code.effects
        diff = rec.diff
        cid, serial, depth, thread = act.code.cid, act.serial, act.depth, ts.index
        values, nodes, changes = act.values, act.nodes, rec.changes
        values_get = values.get  # ``values`` itself doubles as the "missing" sentinel
        immutable = _IMMUTABLE

        def step(frame: FrameType, line: int) -> None:
            try:
                n = len(steps)
                effect = effects.get(act.line)
                act.line = line
                if effect is not None:
                    if effect[3]:  # the common case, inlined
                        loc = frame.f_locals
                        for name in effect[1]:  # same object, maybe mutated in place
                            value = loc.get(name, values)
                            if type(value) in immutable or value is not values_get(name, values):
                                continue
                            node = display(value)
                            if node != nodes.get(name):
                                nodes[name] = node
                                changes.append((rec.base + n, serial, name, node))
                        for name in effect[0]:  # rebound
                            value = loc.get(name, values)
                            if value is not values_get(name, values) and value is not values:
                                values[name] = value
                                cls = type(value)
                                node = nodes[name] = value if cls is float or (cls is int and -0x8000000000000000 <= value <= 0xFFFFFFFFFFFFFFFF) else display(value)
                                changes.append((rec.base + n, serial, name, node))
                    else:
                        diff(act, frame, effect, rec.base + n)
                append((LINE, cid, line, serial, depth, thread))
                if n >= CHUNK_STEPS - 1:
                    rec.flush()
                    if rec.stopped:
                        self._shutdown()
            except Exception as exc:  # noqa: BLE001 - a tracer bug must not change the program
                self._failed(exc)

        return step


__all__ = ["MonitoringTracer"]
