"""Properties of traces and of the time-travel cursor over random programs (Hypothesis).

Programs come from :func:`tests.unit.cursor_programs.programs` (random call trees, loops,
list and attribute mutation, ``del``, comprehensions, generators, library calls, caught,
re-raised and escaping exceptions, ``finally`` and ``with``, threads, tape interactions,
step budgets), traced in-process by the C or the pure-Python line tracer with tiny
``CHUNK_STEPS``, so that short traces cross many chunk boundaries and keyframes. Every answer
is compared with :class:`~tests.unit.cursor_programs.Reference`, which uses only the plain
list of steps, ``changes(n)`` and the activation table.

* The state at any step (frames, lines, locals, changed names, position) equals a forward
  replay of every change from step 0; recording with another chunk size changes nothing.
* The activation table agrees with the steps; every position finds its step again.
* Step into / over / out both ways, continue to (conditional) breakpoints both ways,
  go-to-exception and go-to-interaction land where the plain definitions say, from every
  start step.
* ``history``, ``search`` and ``evaluate`` agree with the reference.
* A state machine drives one cursor with random moves and checks the same after each.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from replay.errors import UsageError
from replay.replayer.cursor import Breakpoint, TraceCursor, shows
from replay.replayer.expr import ExprError, Expression, show
from replay.replayer.tracefile import Step, TraceFile
from replay.snapshot.rendering import render
from tests.unit.cursor_programs import Program, Reference, programs, recorded

# No "explain" phase: it re-runs failing examples under its own sys.settrace, which the
# recordings replace.
PHASES = [Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink]


def props(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, phases=PHASES,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextmanager
def traced(program: Program, chunk: int | None = None) -> Iterator[tuple[TraceFile, Reference]]:
    """The program's trace and its reference model."""
    with recorded(program, chunk) as path, TraceFile(path) as trace:
        yield trace, Reference(trace)


def starts(data: st.DataObject, trace: TraceFile, limit: int = 150) -> list[int]:
    """Every step of a short trace; else chunk edges, the ends and a drawn sample."""
    n = trace.steps
    if n <= limit:
        return list(range(n))
    firsts = [int(s[0]) for s in trace.summaries]
    edges = {0, n - 1, *firsts, *(f - 1 for f in firsts[1:])}
    drawn = data.draw(st.lists(st.integers(0, n - 1), min_size=limit // 2, max_size=limit // 2))
    return sorted(edges | set(drawn))


def names_of(ref: Reference) -> list[str]:
    """Local names the trace changed (those an expression can name)."""
    return sorted({name for changes in ref.changes for name, _ in changes if name.isidentifier()})


def expressions(ref: Reference) -> st.SearchStrategy[str]:
    """Expressions over the trace's locals: many defined somewhere, some never."""
    names = names_of(ref) or ["a"]
    one = st.sampled_from(names)
    return st.one_of(
        one,
        st.builds("{} > {}".format, one, st.integers(0, 60)),
        st.builds("{} % 3 == {}".format, one, st.integers(0, 2)),
        st.builds("{} + {}".format, one, one),
        st.builds("len({})".format, one),
        st.builds("{}.v".format, one),
        st.builds("{}[0]".format, one),
        st.just("nowhere > 1"),
    )


def breakpoints(ref: Reference, file: str) -> st.SearchStrategy[list[Breakpoint]]:
    lines = sorted({s.line for s in ref.steps if s.kind == "line"} | {1, 9999})
    # The full name, a suffix of it (matches), a shorter name that is no suffix (never matches).
    suffixes = [file, file.rpartition("/")[2], file.rpartition("/")[2][1:]]
    bp = st.builds(Breakpoint, st.sampled_from(suffixes),
                   st.sampled_from(lines), st.none() | expressions(ref))
    return st.lists(bp, max_size=3)


def same_value(a: Any, b: Any) -> bool:
    return show(a) == show(b) and type(a) is type(b)


# --------------------------------------------------------------------------- recording


@pytest.mark.parametrize("pure", [False, True])
def test_small_chunk_steps_take_effect(pure: bool) -> None:
    """Patching ``CHUNK_STEPS`` changes the chunking, with either line tracer (the tests below
    rely on it)."""
    source = "def f0(a, b):\n    t = 0\n    for i in range(40):\n        t += i\n    return t\n"
    program = Program(source, (0, 0), False, 7, 0, pure=pure)
    with traced(program) as (trace, ref):
        sizes = [int(s[1]) for s in trace.summaries]
        assert sum(sizes) == trace.steps == len(ref) > 80
        assert all(n >= 7 for n in sizes[:-1]) and max(sizes) <= 8  # a call step may overflow
        assert len(sizes) >= trace.steps // 8
        assert [int(s[0]) for s in trace.summaries] == [sum(sizes[:k]) for k in range(len(sizes))]
    with traced(program, chunk=4096) as (trace, _):
        assert len(trace.summaries) == 1


@props(60)
@given(programs(chunks=(1, 2, 3, 7), cut=False))
def test_chunking_does_not_change_the_trace(program: Program) -> None:
    """The same program recorded with tiny chunks and with one chunk: equal steps, changes,
    activations and states at every step."""
    with traced(program) as (small, ref_small), traced(program, chunk=4096) as (big, ref_big):
        assert len(big.summaries) == 1
        assert small.steps == big.steps
        def key(s: Step) -> tuple[Any, ...]:
            return s.kind, s.code.qualname, s.code.in_scope, s.line, s.frame, s.depth, s.thread

        assert [key(s) for s in ref_small.steps] == [key(s) for s in ref_big.steps]
        assert ref_small.changes == ref_big.changes
        assert [(a.parent, a.call_step, a.end_step, a.depth, a.nth) for a in ref_small.acts] == \
               [(a.parent, a.call_step, a.end_step, a.depth, a.nth) for a in ref_big.acts]
        for n in range(small.steps):
            a, b = small.state(n), big.state(n)
            assert a.position == b.position, n
            assert [(f.serial, f.line, f.locals, f.changed) for f in a.frames] == \
                   [(f.serial, f.line, f.locals, f.changed) for f in b.frames], n


# --------------------------------------------------------------------------- state


@props(80)
@given(programs())
def test_state_is_the_forward_replay_of_changes(program: Program) -> None:
    """``state(n)`` (keyframe + chunk walk) equals the plain forward replay, at every step;
    ``position(n)`` is the reference position and finds ``n`` again."""
    with traced(program) as (trace, ref):
        for n, step in enumerate(ref.steps):
            state = trace.state(n)
            assert state.step == step
            assert [f.serial for f in state.frames] == [f.serial for f in ref.frames[n]], n
            assert [f.line for f in state.frames] == [f.line for f in ref.frames[n]], n
            assert [f.locals for f in state.frames] == [f.locals for f in ref.frames[n]], n
            assert state.frame.changed == {name for name, _ in ref.changes[n]}, n
            assert all(not f.changed for f in state.frames[:-1])
            assert state.position == ref.positions[n]
            assert trace.find_position(ref.positions[n]) == n, ref.positions[n]
        assert len(set(ref.positions)) == len(ref)


@props(60)
@given(programs())
def test_activation_table_agrees_with_steps(program: Program) -> None:
    """Each activation starts at a call step of its own, ends at its return step (or -1 when
    a cut trace ended inside it) and sits under its parent; no activation lies past the cut."""
    with traced(program) as (trace, ref):
        assert trace.activations == len(ref.acts)
        assert [a.serial for a in ref.acts] == sorted(ref.first_step)
        for act in ref.acts:
            call = ref.steps[act.call_step]
            assert act.call_step == ref.first_step[act.serial]
            assert (call.kind, call.frame, call.code) == ("call", act.serial, act.code)
            assert call.depth == act.depth
            last = ref.steps[ref.last_step[act.serial]]
            if act.end_step >= 0:
                assert (act.end_step, last.kind) == (last.index, "return")
            else:  # in-process traces end every call unless cut
                assert trace.header["truncated"] and last.kind != "return"
            assert len(ref.chain(act.serial)) == act.depth + 1
            end = act.end_step if act.end_step >= 0 else len(ref) - 1
            # between its call and its end, its thread runs it or what it called
            inside = [s for s in ref.steps[act.call_step:end + 1] if s.thread == act.thread]
            assert all(s.depth > act.depth or s.frame == act.serial for s in inside), act
            if act.parent >= 0:
                parent = ref.acts[act.parent]
                assert parent.call_step < act.call_step
                assert parent.end_step < 0 or 0 <= act.end_step < parent.end_step
        for step in ref.steps:
            assert len(ref.frames[step.index]) == step.depth + 1
            assert step.code == ref.acts[step.frame].code
        if program.max_steps is not None and trace.header["truncated"]:
            assert trace.steps == program.max_steps


# --------------------------------------------------------------------------- moves


@props(80)
@given(programs(), st.data())
def test_moves_match_reference(program: Program, data: st.DataObject) -> None:
    """Step into / over / out, both ways, from every start (or a sample and the chunk edges)."""
    with traced(program) as (trace, ref):
        cursor = TraceCursor(trace)
        for n in starts(data, trace):
            for back in (False, True):
                for name in ("step_into", "step_over", "step_out"):
                    cursor.goto(n)
                    got = getattr(cursor, name)(back=back)
                    want = getattr(ref, name)(n, back)
                    assert (got.index, cursor.index) == (want, want), (name, back, n)


@props(60)
@given(programs(), st.data())
def test_continue_matches_reference(program: Program, data: st.DataObject) -> None:
    """Continue both ways to drawn (conditional) breakpoints; stopped_at says which."""
    with traced(program) as (trace, ref):
        file = ref.steps[0].code.file
        bps = data.draw(breakpoints(ref, file))
        cursor = TraceCursor(trace)
        for n in starts(data, trace, limit=40):
            for back in (False, True):
                cursor.goto(n)
                try:
                    want, bp = ref.continue_(n, back, bps)
                except UsageError:
                    with pytest.raises(UsageError):
                        cursor.continue_(back=back, breakpoints=bps)
                    assert cursor.index == n
                    continue
                got = cursor.continue_(back=back, breakpoints=bps)
                assert (got.index, cursor.stopped_at) == (want, bp), (n, back)


@props(60)
@given(programs())
def test_goto_exception_matches_reference(program: Program) -> None:
    with traced(program) as (trace, ref):
        cursor = TraceCursor(trace, -1)
        want = ref.goto_exception()
        if want is None:
            with pytest.raises(UsageError):
                cursor.goto_exception()
            assert cursor.index == trace.steps - 1
        else:
            assert cursor.goto_exception().index == want


@props(60)
@given(programs())
def test_interactions_link_to_the_steps_that_made_them(program: Program) -> None:
    """Interaction K (the Kth ``tape()`` call) belongs to that call's step, in both directions;
    interactions made after a cut belong to no step."""
    with traced(program) as (trace, ref):
        cursor = TraceCursor(trace)
        made = sum(1 for a in ref.acts if a.code.qualname == "tape")
        for k in range(made + 3):
            want = ref.step_of_interaction(k)
            assert trace.step_of_interaction(k) == want, k
            if want is None:
                with pytest.raises(UsageError):
                    cursor.goto_interaction(k)
            else:
                assert cursor.goto_interaction(k).index == want
                assert k in trace.interactions_of(want)
        assert all(0 <= n < trace.steps for n, _ in trace.links)


# --------------------------------------------------------------------------- values


@props(80)
@given(programs(), st.data())
def test_history_matches_reference(program: Program, data: st.DataObject) -> None:
    """Each change: the value evaluated over the reference locals of its frame after the step
    (``new``), the frame's last defined value before it (``old``), at the step where it
    changed; no change missing; ``line`` is the frame's previous line."""
    with traced(program) as (trace, ref):
        text = data.draw(expressions(ref))
        qualnames = sorted({a.code.qualname for a in ref.acts})
        short = [q.rpartition(".")[2] for q in qualnames]
        function = data.draw(st.none() | st.sampled_from(qualnames) | st.sampled_from(short))
        got = TraceCursor(trace).history(text, function=function)
        want = ref.history(text, function)
        assert [(c.step, c.frame, c.old, c.new) for c in got] == want
        for c in got:
            assert c.function == ref.acts[c.frame].code.qualname
            assert c.line == ref.previous_line(c.step), c


@props(60)
@given(programs(), st.data())
def test_search_matches_reference(program: Program, data: st.DataObject) -> None:
    with traced(program) as (trace, ref):
        rendered = [render(node, width=10_000) for changes in ref.changes for _, node in changes]
        pieces = [r[i:i + 3] for r in rendered[:50] for i in (0, 1)] or ["x"]
        text = data.draw(st.sampled_from(pieces) | st.text("0123456789[]'B", min_size=1, max_size=2))
        limit = data.draw(st.integers(1, 200))
        want = []
        for step in ref.steps:
            for name, node in ref.changes[step.index]:
                if not isinstance(node, list | str | int | float | bool | type(None)):
                    continue  # DELETED
                if shows(node, text):
                    shown = render(node, width=200)
                    want.append((step.index, step.frame, step.code.qualname, name, shown))
        got = TraceCursor(trace).search(text, limit=limit)
        assert [(m.step, m.frame, m.function, m.name, m.value) for m in got] == want[:limit]


@props(60)
@given(programs(), st.data())
def test_evaluate_matches_reference(program: Program, data: st.DataObject) -> None:
    with traced(program) as (trace, ref):
        cursor = TraceCursor(trace)
        for _ in range(10):
            n = data.draw(st.integers(0, trace.steps - 1))
            text = data.draw(expressions(ref))
            try:
                want: Any = Expression(text).evaluate(ref.locals(n))
            except ExprError:
                with pytest.raises(ExprError):
                    cursor.evaluate(text, n)
                continue
            assert same_value(cursor.evaluate(text, n), want)
            cursor.goto(n)
            assert same_value(cursor.evaluate(text), want)


# --------------------------------------------------------------------------- state machine


class CursorMachine(RuleBasedStateMachine):
    """One cursor moved at random over one program's trace; after every move it must be where
    the reference says, and its state must be the reference state."""

    def __init__(self) -> None:
        super().__init__()
        self.files = ExitStack()
        self.trace: TraceFile | None = None
        self.ref: Reference
        self.cursor: TraceCursor
        self.expected = 0
        self.seen: dict[str, int] = {}
        self.bps: list[Breakpoint] = []

    @initialize(program=programs(), start=st.integers(0, 10_000))
    def load(self, program: Program, start: int) -> None:
        path = self.files.enter_context(recorded(program))
        self.trace = self.files.enter_context(TraceFile(path))
        self.ref = Reference(self.trace)
        self.expected = start % self.trace.steps
        self.cursor = TraceCursor(self.trace, self.expected)

    def teardown(self) -> None:
        self.files.close()

    @rule(name=st.sampled_from(["step_into", "step_over", "step_out"]), back=st.booleans())
    def move(self, name: str, back: bool) -> None:
        self.expected = getattr(self.ref, name)(self.expected, back)
        assert getattr(self.cursor, name)(back=back).index == self.expected

    @rule(data=st.data())
    def goto(self, data: st.DataObject) -> None:
        steps = len(self.ref)
        n = data.draw(st.integers(-steps, steps - 1))
        self.expected = n % steps
        assert self.cursor.goto(n).index == self.expected

    @precondition(lambda self: bool(self.seen))
    @rule(data=st.data())
    def goto_seen_position(self, data: st.DataObject) -> None:
        position = data.draw(st.sampled_from(sorted(self.seen)))
        self.expected = self.seen[position]
        assert self.cursor.goto_position(position).index == self.expected

    @rule(data=st.data())
    def toggle_breakpoint(self, data: st.DataObject) -> None:
        bp = data.draw(breakpoints(self.ref, self.ref.steps[0].code.file).filter(bool)).pop()
        added = self.cursor.toggle_breakpoint(bp)
        files = {c.file for c in self.cursor.trace.codes
                 if c.in_scope and (c.file == bp.file or c.file.endswith("/" + bp.file))}

        def same(b: Breakpoint) -> bool:  # the same line of the same traced files
            named = {c.file for c in self.cursor.trace.codes
                     if c.in_scope and (c.file == b.file or c.file.endswith("/" + b.file))}
            return b.line == bp.line and (b.file == bp.file or bool(files) and named == files)

        kept = [b for b in self.bps if not same(b)]
        assert added == (len(kept) == len(self.bps))
        self.bps = kept if not added else [*self.bps, bp]
        assert self.cursor.breakpoints == self.bps

    @rule(back=st.booleans())
    def continue_(self, back: bool) -> None:
        try:
            self.expected, bp = self.ref.continue_(self.expected, back, self.bps)
        except UsageError:
            with pytest.raises(UsageError):
                self.cursor.continue_(back=back)
            return
        assert self.cursor.continue_(back=back).index == self.expected
        assert self.cursor.stopped_at == bp

    @rule()
    def goto_exception(self) -> None:
        want = self.ref.goto_exception()
        if want is None:
            with pytest.raises(UsageError):
                self.cursor.goto_exception()
        else:
            self.expected = want
            assert self.cursor.goto_exception().index == want

    @precondition(lambda self: self.trace is not None and self.expected not in (
        self.ref.step_into(self.expected, True), self.ref.step_into(self.expected, False)))
    @rule(forward_first=st.booleans())
    def there_and_back(self, forward_first: bool) -> None:
        """Step into one way then the other (not at either end of the thread): back at the same
        step with an equal state."""
        before = self.cursor.state()
        self.cursor.step_into(back=not forward_first)
        self.cursor.step_into(back=forward_first)
        assert self.cursor.index == self.expected
        assert self.cursor.state() == before

    @invariant()
    def agrees_with_reference(self) -> None:
        if self.trace is None:
            return
        n = self.expected
        assert self.cursor.index == n
        state = self.cursor.state()
        assert state.step == self.ref.steps[n]
        assert [(f.serial, f.line, f.locals) for f in state.frames] == \
               [(f.serial, f.line, f.locals) for f in self.ref.frames[n]]
        assert self.cursor.position == state.position == self.ref.positions[n]
        self.seen[state.position] = n
        for position, m in self.seen.items():
            assert self.trace.find_position(position) == m


CursorMachine.TestCase.settings = settings(
    max_examples=25, stateful_step_count=30, deadline=None, phases=PHASES,
    suppress_health_check=[HealthCheck.too_slow])
test_cursor_machine = CursorMachine.TestCase
