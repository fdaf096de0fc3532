"""Time travel over a trace: a cursor that steps both ways, breakpoints, value history, search.

:class:`TraceCursor` holds a position (a step number) in a :class:`TraceFile` and moves it
the way a debugger does, in both directions: step into / over / out, continue to a line
breakpoint (optionally conditional), go to the exception, to a step, to a stable position, or
to the step that made tape interaction K. Moves stay on the thread of the current step.
Reverse moves are the mirror images (gdb's ``reverse-step``, ``reverse-next``,
``reverse-finish``, ``reverse-continue``; rr and WinDbg TTD use the same model).

Every move reads only the chunks it passes; stepping over or out of a call jumps over it
through the activation table, so its cost does not depend on the size of the call.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from replay.errors import UsageError
from replay.replayer.expr import ExprError, Expression, show
from replay.replayer.tracefile import DELETED, CodeInfo, State, Step, TraceFile
from replay.replayer.tracer import EXCEPTION, EXCEPTION_NAME, LINE, RETURN, RETURN_NAME


@dataclasses.dataclass(frozen=True)
class Breakpoint:
    """A line breakpoint.

    Attributes:
        file: File as the trace names it (relative to the code root), or a suffix of it.
        line: Line number.
        condition: Expression over the frame's locals (see :mod:`replay.replayer.expr`); the
            breakpoint stops only where it is true. An expression that cannot be evaluated at
            a step (a name not yet defined) does not stop there.
    """

    file: str
    line: int
    condition: str | None = None

    @classmethod
    def parse(cls, text: str) -> Breakpoint:
        """``FILE:LINE`` or ``FILE:LINE if CONDITION``.

        Raises:
            UsageError: malformed text or an expression that is not allowed.
        """
        where, _, condition = text.partition(" if ")
        file, _, line = where.strip().rpartition(":")
        if not file or not line.isdigit():
            raise UsageError(f"breakpoint {text!r}: expected FILE:LINE [if CONDITION]")
        bp = cls(file, int(line), condition.strip() or None)
        if bp.condition:
            try:
                Expression(bp.condition)
            except ExprError as exc:
                raise UsageError(f"breakpoint {text!r}: {exc}") from None
        return bp

    def __str__(self) -> str:
        return f"{self.file}:{self.line}" + (f" if {self.condition}" if self.condition else "")


@dataclasses.dataclass(frozen=True)
class Change:
    """One change of a watched expression's value.

    Attributes:
        step: First step at which the new value is seen.
        frame: Activation serial of the frame it was evaluated in.
        function: That frame's qualified name.
        old: The previous value as text (``None`` when the frame first had a value: a new call).
        new: The new value as text.
        line: The line whose execution changed it (the frame's previous line), or 0 if unknown.
    """

    step: int
    frame: int
    function: str
    old: str | None
    new: str
    line: int


@dataclasses.dataclass(frozen=True)
class Match:
    """A search hit: at ``step``, local ``name`` of frame ``frame`` took a value matching the text."""

    step: int
    frame: int
    function: str
    name: str
    value: str


class TraceCursor:
    """A position in a trace, moved like a debugger in both directions.

    Args:
        trace: The trace.
        step: Starting step.

    Attributes:
        trace: The trace.
        index: Current step number.
        breakpoints: Line breakpoints used by :meth:`continue_`.
        stopped_at: The breakpoint the last :meth:`continue_` stopped at, or None.
    """

    def __init__(self, trace: TraceFile, step: int = 0):
        if trace.steps == 0:
            raise UsageError(f"{trace.path}: the trace has no steps")
        self.trace = trace
        self.index = 0
        self.breakpoints: list[Breakpoint] = []
        self.stopped_at: Breakpoint | None = None
        self.goto(step)

    # ------------------------------------------------------------- where

    @property
    def step(self) -> Step:
        """The current step."""
        return self.trace.step(self.index)

    def state(self) -> State:
        """The state at the current step (call stack with locals, position)."""
        return self.trace.state(self.index)

    @property
    def position(self) -> str:
        """The current stable position (see :meth:`TraceFile.position`)."""
        return self.trace.position(self.index)

    # ------------------------------------------------------------- jumps

    def goto(self, n: int) -> Step:
        """Go to step ``n`` (negative counts from the end).

        Raises:
            IndexError: no such step.
        """
        step = self.trace.step(n)
        self.index = step.index
        return step

    def goto_position(self, text: str) -> Step:
        """Go to a stable position string.

        Raises:
            UsageError: malformed, or not in this trace.
        """
        return self.goto(self.trace.find_position(text))

    def goto_interaction(self, index: int) -> Step:
        """Go to the step that made tape interaction ``index``.

        Raises:
            UsageError: this replay never asked for that interaction.
        """
        n = self.trace.step_of_interaction(index)
        if n is None:
            raise UsageError(f"tape interaction #{index} was not asked for in this replay")
        return self.goto(n)

    def goto_exception(self) -> Step:
        """Go to where the exception that ended the run was raised; else the last exception.

        From the last exception step, while the step before it on its thread is the return
        of a callee that unwound (a return step without ``<return>``), go to that callee's
        last exception step with the same ``<exception>`` value. This follows the exception
        through ``finally`` blocks, ``__exit__`` calls and handlers that re-raise it, whose
        steps come between a callee's exception step and its return.

        Raises:
            UsageError: no exception was raised in the trace.
        """
        trace = self.trace
        last = None
        for k in range(len(trace.summaries) - 1, -1, -1):
            if not trace.summaries[k][4]:
                continue
            ck = trace.chunk(k)
            for j in range(ck.n - 1, -1, -1):
                if ck.kind[j] == EXCEPTION:
                    last = ck.first + j
                    break
            if last is not None:
                break
        if last is None:
            raise UsageError("no exception was raised in this trace")
        n = last
        while True:
            here = trace.step(n)
            exc = dict(trace.changes(n)).get(EXCEPTION_NAME)
            prev = next((i for i, *_ in self._scan(n - 1, True, here.thread)), None)
            if prev is None:
                break
            callee = trace.step(prev)
            unwound = callee.kind == "return" and all(name != RETURN_NAME for name, _ in trace.changes(prev))
            if not unwound or callee.depth != here.depth + 1:
                break  # raised here, not passed on by a callee
            call = trace.activation(callee.frame).call_step
            raised = None
            for i, _depth, frame, kind in self._scan(prev - 1, True, here.thread):
                if i < call:
                    break
                if frame == callee.frame and kind == EXCEPTION and dict(trace.changes(i)).get(EXCEPTION_NAME) == exc:
                    raised = i
                    break
            if raised is None:
                break
            n = raised
        return self.goto(n)

    # ------------------------------------------------------------- steps

    def _scan(self, start: int, back: bool, thread: int) -> Iterator[tuple[int, int, int, int]]:
        """Yield (step, depth, frame, kind) of ``thread`` from ``start`` onwards (or backwards)."""
        trace = self.trace
        n = start
        while 0 <= n < trace.steps:
            ck = trace.chunk(trace.chunk_index(n))
            j = n - ck.first
            rng = range(j, -1, -1) if back else range(j, ck.n)
            for i in rng:
                if ck.thread[i] == thread:
                    yield ck.first + i, ck.depth[i], ck.frame[i], ck.kind[i]
            n = ck.first - 1 if back else ck.first + ck.n

    def _level(self, start: int, back: bool, depth: int, thread: int) -> int | None:
        """First step from ``start`` (inclusive) at depth <= ``depth``, jumping over deeper calls."""
        trace = self.trace
        n = start
        while 0 <= n < trace.steps:
            moved = False
            for i, d, frame, _ in self._scan(n, back, thread):
                if d <= depth:
                    return i
                act = trace.activation(frame)
                target = act.call_step - 1 if back else act.end_step + 1
                if (not back and act.end_step < 0) or target == i:
                    continue  # a call the trace ended inside: walk it step by step
                n = target
                moved = True
                break
            if not moved:
                return None
        return None

    def step_into(self, back: bool = False) -> Step:
        """The next (or previous) step of this thread, entering calls."""
        here = self.step
        for i, *_ in self._scan(self.index + (-1 if back else 1), back, here.thread):
            return self.goto(i)
        return here

    def step_over(self, back: bool = False) -> Step:
        """The next (or previous) step of this frame or its callers, jumping over calls."""
        here = self.step
        found = self._level(self.index + (-1 if back else 1), back, here.depth, here.thread)
        return here if found is None else self.goto(found)

    def step_out(self, back: bool = False) -> Step:
        """Forward: the first step after this frame returned (in its caller). Back: the
        caller's step that made this call. At the entry point: its return (or its call)."""
        here = self.step
        act = self.trace.activation(here.frame)
        if back:
            found = self._level(act.call_step - 1, True, here.depth - 1, here.thread)
            return self.goto(act.call_step if found is None else found)
        if act.end_step < 0:
            return self.goto(self._last_of(here.thread))
        found = self._level(act.end_step + 1, False, here.depth - 1, here.thread)
        return self.goto(act.end_step if found is None else found)

    def _last_of(self, thread: int) -> int:
        for i, *_ in self._scan(self.trace.steps - 1, True, thread):
            return i
        return self.index

    # ------------------------------------------------------------- breakpoints

    def toggle_breakpoint(self, bp: Breakpoint) -> bool:
        """Add the breakpoint, or remove it if one is set at that file and line; True if added.

        ``prog.py:12`` and ``app/prog.py:12`` are the same breakpoint when both name the same
        traced files.
        """
        files = self._files(bp.file)
        for old in self.breakpoints:
            if old.line == bp.line and (old.file == bp.file or (files and self._files(old.file) == files)):
                self.breakpoints.remove(old)
                return False
        self.breakpoints.append(bp)
        return True

    def _codes(self, file: str) -> list[CodeInfo]:
        """Traced application code of the files a breakpoint's file names (it or its tail)."""
        return [c for c in self.trace.codes if c.in_scope and (c.file == file or c.file.endswith("/" + file))]

    def _files(self, file: str) -> set[str]:
        return {c.file for c in self._codes(file)}

    def _keys(self, breakpoints: list[Breakpoint]) -> dict[int, list[Breakpoint]]:
        keys: dict[int, list[Breakpoint]] = {}
        for bp in breakpoints:
            for code in self._codes(bp.file):
                keys.setdefault(code.id << 24 | bp.line, []).append(bp)
        return keys

    def continue_(self, back: bool = False, breakpoints: list[Breakpoint] | None = None,
                  progress: Callable[[int], None] | None = None) -> Step:
        """Run forward (or backward) to the next line breakpoint whose condition holds.

        Stops at the last (first) step of the thread when none is hit; :attr:`stopped_at`
        says which breakpoint stopped it, or None.

        Args:
            back: Reverse continue.
            breakpoints: Breakpoints to use instead of :attr:`breakpoints`.
            progress: Called with each step number reached as chunks are scanned.

        Raises:
            UsageError: a breakpoint names no traced file.
        """
        bps = self.breakpoints if breakpoints is None else breakpoints
        keys = self._keys(bps)
        if bps and not keys:
            raise UsageError(f"no traced file matches {', '.join(str(b) for b in bps)}")
        here = self.step
        trace = self.trace
        self.stopped_at = None
        conditions: dict[str, Expression] = {b.condition: Expression(b.condition) for b in bps if b.condition}
        k = trace.chunk_index(self.index)
        wanted = set(keys)
        while 0 <= k < len(trace.summaries):
            summary = trace.summaries[k]
            if wanted.isdisjoint(summary[3]):
                k += -1 if back else 1
                continue
            ck = trace.chunk(k)
            rng = range(ck.n - 1, -1, -1) if back else range(ck.n)
            for j in rng:
                n = ck.first + j
                if (n <= self.index) if not back else (n >= self.index):
                    continue
                if ck.thread[j] != here.thread or ck.kind[j] != LINE:
                    continue
                hit = keys.get(ck.code[j] << 24 | ck.line[j])
                if hit is None:
                    continue
                for bp in hit:
                    if bp.condition and not self._holds(conditions[bp.condition], n):
                        continue
                    self.stopped_at = bp
                    return self.goto(n)
            if progress is not None:
                progress(ck.first)
            k += -1 if back else 1
        if back:
            for i, *_ in self._scan(0, False, here.thread):
                return self.goto(i)
            return here
        return self.goto(self._last_of(here.thread))

    def _holds(self, expr: Expression, n: int) -> bool:
        try:
            return bool(expr.evaluate(self.trace.state(n).frame.locals))
        except ExprError:
            return False

    # ------------------------------------------------------------- values

    def evaluate(self, text: str, n: int | None = None) -> Any:
        """Evaluate an expression in the frame of step ``n`` (default: the current step).

        Raises:
            ExprError: not allowed, or not defined there.
        """
        state = self.trace.state(self.index if n is None else n)
        return Expression(text).evaluate(state.frame.locals)

    def history(self, text: str, *, function: str | None = None, limit: int = 10_000,
                progress: Callable[[int], None] | None = None) -> list[Change]:
        """Every step where an expression's value changed ("when did ``order.total`` change?").

        The expression is evaluated in each frame where the locals it reads change (all
        functions, or only ``function``, a qualified name or its last part). A new call that
        defines it starts with ``old`` None. Chunks where none of its names change are skipped.

        Args:
            text: The expression.
            function: Restrict to frames of this function.
            limit: Most changes returned.
            progress: Called with each step number reached as chunks are scanned.

        Raises:
            ExprError: the expression is not allowed.
        """
        expr = Expression(text)
        names = expr.names
        trace = self.trace
        scopes: dict[int, dict[str, Any]] = {}
        last: dict[int, str] = {}
        out: list[Change] = []
        for k, summary in enumerate(trace.summaries):
            if names.isdisjoint(summary[5]):
                continue
            ck = trace.chunk(k)
            for serial, _line, flat, _hits in ck.keyframe:  # frames live since before the chunk
                if serial not in scopes:
                    scope = {n: v for n, v in zip(flat[::2], flat[1::2], strict=False) if n in names}
                    scopes[serial] = scope
                    if scope and self._wanted(serial, function):
                        value = self._value(expr, scope)
                        if value is not None:
                            last[serial] = value
            c_name, c_frame, c_step = ck.c_name, ck.c_frame, ck.c_step
            at = -1
            touched: set[int] = set()
            for c in range(len(c_name)):
                name = c_name[c]
                if name not in names:
                    continue
                if c_step[c] != at:
                    if touched and self._settle(expr, ck, ck.first + at, touched, scopes, last, function, out, limit):
                        return out
                    at = c_step[c]
                    touched = set()
                serial = c_frame[c]
                scope = scopes.setdefault(serial, {})
                node = ck.node(c)
                if node is DELETED:
                    scope.pop(name, None)
                else:
                    scope[name] = node
                touched.add(serial)
            if touched and self._settle(expr, ck, ck.first + at, touched, scopes, last, function, out, limit):
                return out
            if progress is not None:
                progress(ck.first + ck.n)
        return out

    def _settle(self, expr: Expression, ck: Any, n: int, touched: set[int], scopes: dict[int, dict[str, Any]],
                last: dict[int, str], function: str | None, out: list[Change], limit: int) -> bool:
        """Record the changes of the expression's value that step ``n`` made in the frames
        ``touched``; True when ``out`` reached ``limit``."""
        for serial in sorted(touched):
            if not self._wanted(serial, function):
                continue
            value = self._value(expr, scopes[serial])
            if value is None or value == last.get(serial):
                continue
            old = last.get(serial)
            last[serial] = value
            act = self.trace.activation(serial)
            out.append(Change(n, serial, act.code.qualname, old, value, self._previous_line(ck, n, serial)))
            if len(out) >= limit:
                return True
        return False

    def _wanted(self, serial: int, function: str | None) -> bool:
        if function is None:
            return True
        qualname = self.trace.activation(serial).code.qualname
        return qualname == function or qualname.rpartition(".")[2] == function

    @staticmethod
    def _value(expr: Expression, scope: dict[str, Any]) -> str | None:
        if not expr.names.issubset(scope):
            return None
        try:
            return show(expr.evaluate(scope))
        except ExprError:
            return None

    @staticmethod
    def _previous_line(ck: Any, n: int, serial: int) -> int:
        for j in range(n - ck.first - 1, -1, -1):
            if ck.frame[j] == serial and ck.kind[j] != RETURN:
                return int(ck.line[j])
        for frame, line, _locals, _hits in ck.keyframe:  # its last step is in an earlier chunk
            if frame == serial:
                return int(line)
        return 0

    def search(self, text: str, *, limit: int = 100, progress: Callable[[int], None] | None = None) -> list[Match]:
        """Steps where a local took a value whose text contains ``text`` (case-sensitive).

        Args:
            text: Substring to look for in the rendered values (``42`` finds the int 42, and
                ``"abc"`` inside a list, an object's field, ...).
            limit: Most matches returned.
            progress: Called with each step number reached.
        """
        from replay.snapshot.rendering import render

        out: list[Match] = []
        trace = self.trace
        for k in range(len(trace.summaries)):
            ck = trace.chunk(k)
            nodes = ck.nodes()
            for c, node in enumerate(nodes):
                if node is DELETED:
                    continue
                if shows(node, text):
                    serial = ck.c_frame[c]
                    out.append(Match(ck.first + ck.c_step[c], serial, trace.activation(serial).code.qualname,
                                     ck.c_name[c], render(node, width=200)))
                    if len(out) >= limit:
                        return out
            if progress is not None:
                progress(ck.first + ck.n)
        return out


def shows(node: Any, text: str) -> bool:
    """True if the rendered value of ``node`` contains ``text`` (what :meth:`TraceCursor.search`
    matches: a string's characters, a number's repr, else the one-line rendering)."""
    from replay.snapshot.rendering import render

    if isinstance(node, str):
        return text in node
    if isinstance(node, int | float) and not isinstance(node, bool):
        return text in repr(node)
    return text in render(node, width=10_000)


__all__ = ["DELETED", "Breakpoint", "Change", "Match", "TraceCursor", "shows"]
