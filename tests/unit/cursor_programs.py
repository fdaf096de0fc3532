"""Random small Python programs, traced in-process, and a plain reference model of their traces.

Used by the cursor tests (:mod:`tests.unit.test_cursor_properties`, :mod:`tests.unit.test_cursor`).

* :func:`programs` draws a :class:`Program`: functions ``f0`` (the entry point) .. ``fK`` with a
  random call tree (``fi`` calls only ``fj`` with ``j > i``), loops of 1-3 iterations, int
  locals, a list mutated in place, a ``Box`` with attribute stores, ``del``, list
  comprehensions, library calls (``json.dumps``; a library generator resumed from the
  program, then from library code), a generator, a caught exception, a
  conditional ``KeyError`` that may escape the entry point on its way through ``except``
  (caught or re-raised), ``finally`` and ``with`` blocks, threads (``spawn``: a new thread
  with a strand of its own, joined at once, so the interleaving is fixed) and tape
  interactions (``tape()``). Sometimes the trace is cut by a step budget. A static step
  estimate keeps each trace under about 1,000 steps.
* :func:`recorded` writes the program, imports it and traces it with
  :class:`~replay.replayer.tracer.SettraceTracer` under a chosen ``CHUNK_STEPS`` (small
  chunks put many chunk boundaries and keyframes in a short trace).
* :class:`Reference` answers every cursor question from ``list(trace.iter_steps())``, the
  per-step ``trace.changes(n)`` and the activation table, with the plain definitions (linear
  scans, a forward replay of all changes from step 0); it never reads chunks or keyframes.
"""

from __future__ import annotations

import atexit
import contextvars
import dataclasses
import gc
import importlib.util
import itertools
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any
from unittest import mock

from hypothesis import strategies as st

import replay.replayer.tracer as tracer_mod
from replay.capture.boundary import STRAND
from replay.errors import UsageError
from replay.replayer.expr import ExprError, Expression, show
from replay.replayer.tracefile import DELETED, Step, TraceFile
from replay.replayer.tracer import Scope, SettraceTracer, TraceRecorder

MAX_ESTIMATE = 900
"""Most steps a program may be estimated to take (the estimate is an upper bound, roughly)."""
CHUNKS = (1, 2, 3, 5, 7, 16, 4096)
"""``CHUNK_STEPS`` values drawn: tiny chunks, and the default (one chunk)."""

_RARELY = st.sampled_from([False] * 9 + [True])
"""True one time in ten (Hypothesis favours the first element; an integer's 0 comes up far
more often than one in ten)."""

PRELUDE = '''\
import json


class Box:
    def __init__(self, v):
        self.v = v


def gen(n, k):
    for i in range(n):
        yield (i * k) % 97


class Guard:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False
'''
"""What every program starts with (their statements use ``Box``, ``gen`` and ``Guard``)."""


@dataclasses.dataclass(frozen=True)
class Program:
    """A generated program.

    Attributes:
        source: Module source; the entry point is ``f0(a, b)``.
        args: Arguments of the entry point.
        traced_import: Trace the module's execution (which calls ``f0`` at module level)
            instead of a call of ``f0`` from the test.
        chunk: ``CHUNK_STEPS`` while recording.
        estimate: Upper estimate of the steps of one call of ``f0``.
        max_steps: The recorder's step budget (None: unlimited).
        pure: Record with the pure-Python line tracer even where the C one (``_fastline``) is
            built.
    """

    source: str
    args: tuple[int, int]
    traced_import: bool
    chunk: int
    estimate: int
    max_steps: int | None = None
    pure: bool = False

    def __repr__(self) -> str:  # the source as lines, not one escaped string
        return (f"Program(args={self.args}, traced_import={self.traced_import}, "
                f"chunk={self.chunk}, estimate={self.estimate}, max_steps={self.max_steps}, "
                f"pure={self.pure}, source=\n{self.source})")


class _Builder:
    """Draws one function body at a time, bottom-up (callees first, so their cost is known)."""

    def __init__(self, draw: Callable[[Any], Any], n_funcs: int, threads: bool):
        self.draw = draw
        self.threads = threads
        self.n_funcs = n_funcs
        # The call tree: each fj (j > 0) is called by one fi with i < j, at fi's top level.
        self.children: dict[int, list[int]] = {i: [] for i in range(n_funcs)}
        for j in range(1, n_funcs):
            self.children[draw(st.integers(0, j - 1))].append(j)
        self.cost: dict[int, int] = {}
        self.returns_int: dict[int, bool] = {}
        self.counter = itertools.count()

    def expr(self, ints: list[str]) -> str:
        atoms = st.one_of(st.sampled_from(ints), st.integers(0, 9).map(str))
        terms = self.draw(st.lists(atoms, min_size=1, max_size=3))
        ops = [self.draw(st.sampled_from(["+", "-", "*"])) for _ in terms[1:]]
        text = terms[0]
        for op, term in zip(ops, terms[1:], strict=True):
            text += f" {op} {term}"
        return f"({text}) % 97" if len(terms) > 1 else text

    def function(self, i: int) -> str:
        self.budget = MAX_ESTIMATE
        scope = {"ints": ["a", "b"], "lst": False, "box": False}
        slots = [None] * self.draw(st.integers(1, 6)) + self.children[i]
        lines, cost = self.block(i, 1, 0, scope, self.draw(st.permutations(slots)))
        ret = self.draw(st.sampled_from(["int", "lst", "box"]))
        self.returns_int[i] = False
        if ret == "lst" and scope["lst"]:
            lines.append("    return lst")
        elif ret == "box" and scope["box"]:
            lines.append("    return box")
        else:
            lines.append(f"    return {self.expr(scope['ints'])}")
            self.returns_int[i] = True
        self.cost[i] = cost + 3  # call, return line, return
        return f"def f{i}(a, b):\n" + "\n".join(lines) + "\n"

    def block(self, i: int, indent: int, loop: int, scope: dict[str, Any],
              slots: list[int | None]) -> tuple[list[str], int]:
        """One statement per slot (a callee to call, or None: any statement) at ``indent``;
        ``loop``: enclosing loops. Returns lines and cost."""
        lines: list[str] = []
        total = 0
        for callee in slots:
            budget, saved = self.budget, {**scope, "ints": list(scope["ints"])}
            got, cost = self.statement(i, indent, loop, scope, callee)
            if cost > budget:  # too long: drop it, and the names it defined
                got, cost = [f"{'    ' * indent}pass"], 1
                scope.update(saved)
            self.budget = budget - cost
            lines += got
            total += cost
        return lines, total

    def statement(self, i: int, indent: int, loop: int, scope: dict[str, Any],  # noqa: C901
                  callee: int | None = None) -> tuple[list[str], int]:
        pad = "    " * indent
        ints: list[str] = scope["ints"]
        kinds = ["assign", "assign", "assign", "augassign", "list", "list", "box", "box", "comp",
                 "lib", "caught", "gen", "tape", "libgen"]
        callees = [j for j in range(i + 1, self.n_funcs) if j in self.cost]
        if callees:
            kinds += ["call", "trycall", "finally", "with"]
            if self.threads:
                kinds.append("thread")
        if loop < 2:
            kinds += ["loop", "loop"]
        if not loop and any(n.startswith("x") for n in ints):
            kinds.append("del")
        if self.draw(_RARELY):
            kinds = ["escape"]
        if callee is not None:
            kinds, callees = ["call", "call", "trycall", "finally", "with"], [callee]
        kind = self.draw(st.sampled_from(kinds))
        x = f"x{next(self.counter)}"
        if kind == "assign":
            out, cost = [f"{pad}{x} = {self.expr(ints)}"], 1
            ints.append(x)
        elif kind == "augassign":
            out, cost = [f"{pad}{self.draw(st.sampled_from(ints))} += {self.expr(ints)}"], 1
        elif kind == "list":
            if not scope["lst"]:
                scope["lst"] = True
                return [f"{pad}lst = [{self.expr(ints)}]"], 1
            how = self.draw(st.sampled_from(["lst.append({})", "lst[0] = {}", "lst += [{}]"]))
            out, cost = [pad + how.format(self.expr(ints))], 1
        elif kind == "box":
            if not scope["box"]:
                scope["box"] = True
                return [f"{pad}box = Box({self.expr(ints)})"], 5
            attr = self.draw(st.sampled_from(["v", "w"]))
            out, cost = [f"{pad}box.{attr} = {self.expr(ints)}"], 1
        elif kind == "comp":
            n = self.draw(st.integers(1, 3))
            out, cost = [f"{pad}{x} = [v * 2 + {self.expr(ints)} for v in range({n})]"], 4 + n
        elif kind == "lib":
            out, cost = [f"{pad}{x} = len(json.dumps([{self.expr(ints)}, {self.expr(ints)}]))"], 3
            ints.append(x)
        elif kind == "caught":
            out = [f"{pad}try:", f"{pad}    raise ValueError({self.expr(ints)})",
                   f"{pad}except ValueError as err:", f"{pad}    {x} = len(str(err))"]
            cost = 6
            ints.append(x)
        elif kind == "gen":
            n = self.draw(st.integers(1, 3))
            if self.draw(st.booleans()):
                out = [f"{pad}{x} = sum(gen({n}, {self.expr(ints)}))"]
                cost = 2 + 6 * (n + 1)
            else:
                g = f"g{next(self.counter)}"
                out = [f"{pad}{x} = 0", f"{pad}for {g} in gen({n}, {self.expr(ints)}):",
                       f"{pad}    {x} += {g}"]
                cost = 3 + 8 * (n + 1)
            ints.append(x)
        elif kind in ("call", "trycall", "finally", "with"):
            j = self.draw(st.sampled_from(callees))
            call = f"f{j}({self.expr(ints)}, {self.expr(ints)})"
            cost = self.cost[j] + 4
            if kind == "call":
                out = [f"{pad}{x} = {call}"]
            elif kind == "trycall":
                handler = self.draw(st.sampled_from([f"{x} = -1", "raise"]))  # caught, or re-raised
                out = [f"{pad}try:", f"{pad}    {x} = {call}", f"{pad}except LookupError:",
                       f"{pad}    {handler}"]
            elif kind == "finally":  # an escaping KeyError runs the finally block on its way out
                out = [f"{pad}try:", f"{pad}    {x} = {call}", f"{pad}finally:", f"{pad}    tape()"]
                cost += 4
            else:  # likewise Guard.__exit__
                out = [f"{pad}with Guard():", f"{pad}    {x} = {call}"]
                cost += 8
            if self.returns_int[j]:
                ints.append(x)
        elif kind == "loop":
            n = self.draw(st.integers(1, 3))
            body_scope = {**scope, "ints": list(ints)}
            slots = [None] * self.draw(st.integers(1, 3))
            body, body_cost = self.block(i, indent + 1, loop + 1, body_scope, slots)
            # Names a body assigned stay defined after the loop (it runs at least once).
            ints[:] = body_scope["ints"]
            scope["lst"], scope["box"] = body_scope["lst"], body_scope["box"]
            out = [f"{pad}for i{next(self.counter)} in range({n}):", *body]
            cost = n * (body_cost + 1) + 1
        elif kind == "libgen":
            # A library generator resumed from the program, then from library code, then run
            # to its end (one left suspended would be closed whenever the GC frees it).
            g = f"g{next(self.counter)}"
            out = [f"{pad}{g} = cplib.numbers({self.draw(st.integers(1, 3))})",
                   f"{pad}{x} = next({g})", f"{pad}{x} += cplib.take({g})", f"{pad}{x} += sum({g})"]
            cost = 4 + 2 + 4 + 8
            ints.append(x)
        elif kind == "tape":
            out, cost = [f"{pad}tape()"], 3
        elif kind == "thread":
            j = self.draw(st.sampled_from(callees))
            out = [f"{pad}spawn(f{j}, {self.expr(ints)}, {self.expr(ints)})"]
            cost = self.cost[j] + 4
        elif kind == "del":
            name = self.draw(st.sampled_from([n for n in ints if n.startswith("x")]))
            ints.remove(name)
            out, cost = [f"{pad}del {name}"], 1
        else:  # escape: a KeyError that may leave the entry point
            m = self.draw(st.integers(2, 5))
            out = [f"{pad}if ({self.expr(ints)}) % {m} == 1:",
                   f"{pad}    raise KeyError({self.expr(ints)})"]
            cost = 3
        return out, cost


@st.composite
def programs(draw: Callable[[Any], Any], chunks: tuple[int, ...] = CHUNKS, threads: bool = True,
             cut: bool = True) -> Program:
    """A :class:`Program` (see the module docstring).

    Args:
        chunks: ``CHUNK_STEPS`` values to draw from.
        threads: Allow ``spawn(fj, a, b)`` (runs ``fj`` in a new thread and waits for it).
        cut: Sometimes draw a ``max_steps`` (the trace is cut at a chunk boundary).
    """
    n_funcs = draw(st.integers(1, 5))
    builder = _Builder(draw, n_funcs, threads)
    funcs = [builder.function(i) for i in reversed(range(n_funcs))]
    traced_import = draw(st.booleans())
    args = (draw(st.integers(0, 20)), draw(st.integers(0, 20)))
    source = PRELUDE + "\n\n" + "\n\n".join(funcs)
    if traced_import:
        source += f"\n\nresult = f0({args[0]}, {args[1]})\n"
    estimate = builder.cost[0] + (3 * n_funcs + 20 if traced_import else 0)
    chunk = draw(st.sampled_from(chunks))
    max_steps = draw(st.integers(1, 120)) if cut and chunk < 100 and draw(_RARELY) else None
    return Program(source, args, traced_import, chunk, estimate, max_steps, draw(st.booleans()))


_recording: dict[str, Any] = {}  # the recorder and the tape() count of the recording under way


def tape() -> None:
    """``tape()`` for generated programs: the Nth call (from 0) links tape interaction N to
    the step that made it, as a replay's tape does when it serves an interaction. (A plain
    function without arguments or closure: a library call's locals are recorded.)"""
    _recording["rec"].link(_recording["tapes"])
    _recording["tapes"] += 1


class _Spawner:
    """``spawn(fn, a, b)`` for generated programs: run ``fn(a, b)`` in a new thread whose
    strand is ``0.N`` (the Nth spawn of the recording), and wait for it. Outside the code
    root, so the tracer sees one library call in the caller and a new root in the thread."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, fn: Callable[[int, int], Any], a: int, b: int) -> int:
        self.count += 1
        ctx = contextvars.copy_context()
        ctx.run(STRAND.set, f"0.{self.count}")

        def run() -> None:
            with suppress(LookupError):
                ctx.run(fn, a, b)

        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
        return 0


LIBRARY = '''\
def numbers(n):
    for i in range(n):
        yield i


def take(g):
    return next(g, -1)
'''
"""``cplib``, library code (outside the scope) that generated programs call as ``cplib.numbers``
and ``cplib.take``."""
_cplib: Any = None


def _library() -> Any:
    global _cplib
    if _cplib is None:
        spec = importlib.util.spec_from_file_location("cplib", scratch() / "lib" / "cplib.py")
        assert spec is not None and spec.loader is not None
        _cplib = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(_cplib)
    return _cplib


_scratch: Path | None = None
_serial = itertools.count()


def scratch() -> Path:
    """This process's code root for generated programs (removed at exit).

    One directory for all programs, never one per example: on some file systems a rmdir
    costs milliseconds, more than tracing a program.
    """
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="cursor-programs-"))
        (_scratch / "app").mkdir()
        (_scratch / "lib").mkdir()
        (_scratch / "lib" / "cplib.py").write_text(LIBRARY)
        atexit.register(shutil.rmtree, _scratch, ignore_errors=True)
    return _scratch


@contextmanager
def recorded(program: Program, chunk: int | None = None) -> Iterator[Path]:
    """Write ``program`` to ``app/prog_N.py`` under :func:`scratch`, import it as module
    ``prog`` (not entered in ``sys.modules``) and trace it in this process; yield the trace
    file's path, and remove both files afterwards.

    Args:
        program: The program.
        chunk: ``CHUNK_STEPS`` instead of ``program.chunk``.

    A ``LookupError`` escaping the entry point is expected (the generated ``KeyError``); any
    other exception is a bug of the generator and propagates.
    """
    root = scratch()
    n = next(_serial)
    src = root / "app" / f"prog_{n}.py"
    path = root / f"prog_{n}.rtrace"
    src.write_text(program.source)
    try:
        spec = importlib.util.spec_from_file_location("prog", src)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        module.spawn = _Spawner()  # type: ignore[attr-defined]
        module.cplib = _library()  # type: ignore[attr-defined]
        module.tape = tape  # type: ignore[attr-defined]
        with ExitStack() as patches:
            patch = patches.enter_context
            patch(mock.patch.object(tracer_mod, "CHUNK_STEPS", chunk or program.chunk))
            patch(mock.patch.object(sys, "dont_write_bytecode", True))
            if program.pure:
                patch(mock.patch.object(tracer_mod, "_LocalTracer", None))
                patch(mock.patch.object(tracer_mod, "_chunk_columns", tracer_mod._chunk_columns_py))
            scope = Scope([str(root)], exclude=["lib/*"])
            rec = TraceRecorder(str(path), scope, max_steps=program.max_steps or 10**9)
            _recording.update(rec=rec, tapes=0)
            tracer = SettraceTracer(rec)
            if not program.traced_import:
                spec.loader.exec_module(module)
            # The cyclic GC runs callbacks (gc.callbacks, weakref callbacks, generator closes)
            # whenever allocations add up, and the tracer records them as library calls of
            # whatever frame is running: off, so that a program's trace is always the same.
            patch(_gc_disabled())
            tracer.start()
            try:
                if program.traced_import:
                    spec.loader.exec_module(module)
                else:
                    module.f0(*program.args)
            except LookupError:
                pass
            finally:
                tracer.stop()
            with mock.patch.object(os, "fsync", lambda fd: None):  # durability is not tested here
                rec.close()
        yield path
    finally:
        src.unlink()
        path.unlink(missing_ok=True)


@contextmanager
def _gc_disabled() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------- reference model


@dataclasses.dataclass(frozen=True)
class RefFrame:
    """One frame of the reference call stack: activation serial, current line, locals."""

    serial: int
    line: int
    locals: dict[str, Any]


class Reference:
    """The answers of a trace computed the plain way (see the module docstring).

    Args:
        trace: The trace; read only through ``iter_steps``, ``changes``, ``iter_activations``,
            ``threads`` and ``codes``.

    Attributes:
        steps: Every step, in order.
        changes: ``changes[n]``: what step ``n`` changed.
        acts: Every activation, by serial.
        frames: ``frames[n]``: the call stack after step ``n``, outermost first (parent chain
            of the step's activation; locals from a forward replay of every change since
            step 0, except ``<return>`` and ``<exception>``, which the own frame shows at
            their step only; lines from each activation's latest step).
        positions: ``positions[n]``: the stable position of step ``n``.
    """

    def __init__(self, trace: TraceFile):
        self.trace = trace
        self.steps: list[Step] = list(trace.iter_steps())
        self.changes = [trace.changes(n) for n in range(len(self.steps))]
        self.acts = list(trace.iter_activations())
        self.first_step: dict[int, int] = {}
        self.last_step: dict[int, int] = {}
        for s in self.steps:
            self.first_step.setdefault(s.frame, s.index)
            self.last_step[s.frame] = s.index
        nth: dict[tuple[int, int, str], int] = {}
        self.nth: list[int] = []
        for act in self.acts:
            key = (act.parent, act.thread if act.parent < 0 else -1, act.code.qualname)
            nth[key] = nth.get(key, 0) + 1
            self.nth.append(nth[key])
        self.frames: list[tuple[RefFrame, ...]] = []
        self.positions: list[str] = []
        locals_of: dict[int, dict[str, Any]] = {}
        line_of: dict[int, int] = {}
        hits: dict[tuple[int, str, int], int] = {}
        for s in self.steps:
            own = locals_of.setdefault(s.frame, {})
            passing = {}  # <return>, <exception>: shown at their own step only
            for name, node in self.changes[s.index]:
                if name.startswith("<"):
                    passing[name] = node
                elif node is DELETED:
                    own.pop(name, None)
                else:
                    own[name] = node
            line_of[s.frame] = s.line
            key = (s.frame, s.kind, s.line)
            hits[key] = hits.get(key, 0) + 1
            chain = self.chain(s.frame)
            frames = [RefFrame(a, line_of[a], dict(locals_of[a])) for a in chain]
            frames[-1].locals.update(passing)
            self.frames.append(tuple(frames))
            path = "/".join(f"{self.acts[a].code.qualname}#{self.nth[a]}" for a in chain)
            suffix = "" if s.kind == "line" else f":{s.kind}"
            strand = trace.threads.get(s.thread, str(s.thread))
            self.positions.append(f"{strand}:{path}@{s.line}#{hits[key]}{suffix}")

    def __len__(self) -> int:
        return len(self.steps)

    def chain(self, serial: int) -> list[int]:
        """Serials from the root activation to ``serial`` (parent links)."""
        out = []
        while serial >= 0:
            out.append(serial)
            serial = self.acts[serial].parent
        return out[::-1]

    def locals(self, n: int) -> dict[str, Any]:
        """Locals of step ``n``'s own frame after the step."""
        return self.frames[n][-1].locals

    # ------------------------------------------------------------- moves

    def _find(self, start: int, back: bool, ok: Callable[[Step], bool]) -> int | None:
        rng = range(start, -1, -1) if back else range(start, len(self.steps))
        for i in rng:
            if ok(self.steps[i]):
                return i
        return None

    def _first(self, thread: int) -> int:
        return self._find(0, False, lambda s: s.thread == thread) or 0

    def _last(self, thread: int) -> int:
        found = self._find(len(self.steps) - 1, True, lambda s: s.thread == thread)
        return len(self.steps) - 1 if found is None else found

    def step_into(self, n: int, back: bool) -> int:
        here = self.steps[n]
        found = self._find(n - 1 if back else n + 1, back, lambda s: s.thread == here.thread)
        return n if found is None else found

    def step_over(self, n: int, back: bool) -> int:
        here = self.steps[n]
        found = self._find(n - 1 if back else n + 1, back,
                           lambda s: s.thread == here.thread and s.depth <= here.depth)
        return n if found is None else found

    def step_out(self, n: int, back: bool) -> int:
        here = self.steps[n]
        call = self.first_step[here.frame]

        def shallower(s: Step) -> bool:
            return s.thread == here.thread and s.depth < here.depth

        if back:
            found = self._find(call - 1, True, shallower)
            return call if found is None else found
        end = self.last_step[here.frame]
        if self.steps[end].kind != "return":  # the trace ended inside the call
            return self._last(here.thread)
        found = self._find(end + 1, False, shallower)
        return end if found is None else found

    def holds(self, condition: str | None, n: int) -> bool:
        """A breakpoint condition at step ``n`` (one that cannot be evaluated is false)."""
        if condition is None:
            return True
        try:
            return bool(Expression(condition).evaluate(self.locals(n)))
        except ExprError:
            return False

    def continue_(self, n: int, back: bool, breakpoints: list[Any]) -> tuple[int, Any]:
        """(step, breakpoint that stopped it or None) of a continue from ``n``.

        Raises:
            UsageError: no breakpoint names a traced file.
        """
        def at(bp: Any, code: Any) -> bool:
            named = code.file == bp.file or code.file.endswith("/" + bp.file)
            return bool(code.in_scope and named)

        if breakpoints and not any(at(bp, code) for bp in breakpoints for code in self.trace.codes):
            raise UsageError("no traced file matches")
        here = self.steps[n]
        rng = range(n - 1, -1, -1) if back else range(n + 1, len(self.steps))
        for i in rng:
            s = self.steps[i]
            if s.thread != here.thread or s.kind != "line":
                continue
            for bp in breakpoints:
                if at(bp, s.code) and s.line == bp.line and self.holds(bp.condition, i):
                    return i, bp
        return (self._first(here.thread) if back else self._last(here.thread)), None

    def goto_exception(self) -> int | None:
        """Where the exception that ended the run (else the last exception) was raised, or None
        when the trace has no exception step.

        From the last exception step, as long as the step before it on its thread is the
        return of a callee that unwound (a return step without ``<return>``), go to that
        callee's last exception step with the same ``<exception>`` value.
        """
        n = self._find(len(self.steps) - 1, True, lambda s: s.kind == "exception")
        if n is None:
            return None
        while True:
            here = self.steps[n]
            exc = dict(self.changes[n]).get("<exception>")
            prev = self._find(n - 1, True, lambda s: s.thread == here.thread)  # noqa: B023
            if prev is None:
                return n
            p = self.steps[prev]
            unwound = p.kind == "return" and "<return>" not in dict(self.changes[prev])
            if not unwound or p.depth != here.depth + 1:
                return n  # raised here, not passed on by a callee that unwound
            raised = [i for i in range(self.first_step[p.frame], prev)
                      if self.steps[i].frame == p.frame and self.steps[i].kind == "exception"
                      and dict(self.changes[i]).get("<exception>") == exc]
            if not raised:
                return n
            n = raised[-1]

    def step_of_interaction(self, index: int) -> int | None:
        """The call step of the ``index``-th ``tape()`` call (from 0), if the trace holds it."""
        calls = [a.call_step for a in self.acts if a.code.qualname == "tape"]
        return calls[index] if index < len(calls) else None

    # ------------------------------------------------------------- values

    def history(self, text: str, function: str | None = None) -> list[tuple[int, int, Any, str]]:
        """``(step, frame, old, new)`` of each change of an expression's value in a frame:
        evaluated after every step of that frame; a change is a defined value that differs
        from the frame's last defined value (``old`` None for the first one)."""
        expr = Expression(text)
        last: dict[int, str] = {}
        out = []
        for s in self.steps:
            qualname = s.code.qualname
            if function is not None and function not in (qualname, qualname.rpartition(".")[2]):
                continue
            scope = self.locals(s.index)
            if not expr.names.issubset(scope):
                continue
            try:
                value = show(expr.evaluate(scope))
            except ExprError:
                continue
            if value != last.get(s.frame):
                out.append((s.index, s.frame, last.get(s.frame), value))
                last[s.frame] = value
        return out

    def previous_line(self, n: int) -> int:
        """The line of the step before ``n`` of step ``n``'s frame (0 at its call step)."""
        frame = self.steps[n].frame
        for i in range(n - 1, self.first_step[frame] - 1, -1):
            if self.steps[i].frame == frame:
                return self.steps[i].line
        return 0
