"""The time-travel cursor on small known programs: moves, value history, search, evaluation,
breakpoints, go-to-exception, threads, positions; and the safety of its expressions.

The general properties (every move from every step, against a reference model) are in
:mod:`tests.unit.test_cursor_properties`; these tests pin concrete answers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from replay.errors import UsageError
from replay.replayer.cursor import Breakpoint, TraceCursor
from replay.replayer.expr import ExprError, Expression
from replay.replayer.tracefile import Step, TraceFile
from tests.unit.cursor_programs import PRELUDE, Program, Reference, recorded


@contextmanager
def traced(body: str, *, args: tuple[int, int] = (0, 0), chunk: int = 3,
           max_steps: int | None = None) -> Iterator[TraceCursor]:
    """A cursor at step 0 of ``f0(*args)``; ``body`` is appended to the generated programs'
    prelude (``Box``, ``gen``, ``Guard``; ``spawn``, ``tape`` and ``cplib`` are injected)."""
    program = Program(PRELUDE + "\n\n" + body, args, False, chunk, 0, max_steps)
    with recorded(program) as path, TraceFile(path) as trace:
        yield TraceCursor(trace)


def line_of(cursor: TraceCursor, text: str) -> int:
    """Line number of the first source line that contains ``text`` (or is it, stripped)."""
    lines = cursor.trace.source_lines(cursor.trace.step(0).code.file)
    exact = [i for i, line in enumerate(lines, 1) if line.strip() == text]
    return exact[0] if exact else next(i for i, line in enumerate(lines, 1) if text in line)


def where(step: Step) -> tuple[str, str, int]:
    return step.kind, step.code.qualname, step.line


CALLS = """\
def f1(a, b):
    c = a + b
    return c * 2


def f0(a, b):
    x = f1(a, b)
    y = f1(x, 1)
    return x + y
"""


# --------------------------------------------------------------------------- moves


def test_step_over_into_and_out_both_ways() -> None:
    with traced(CALLS, args=(1, 2)) as cur:
        x_line, y_line = line_of(cur, "x = f1"), line_of(cur, "y = f1")
        ret_line = line_of(cur, "return x + y")
        assert where(cur.step) == ("call", "f0", x_line - 1)
        assert where(cur.step_into()) == ("line", "f0", x_line)
        assert where(cur.step_over()) == ("line", "f0", y_line)  # f1 ran in between
        assert where(cur.step_over(back=True)) == ("line", "f0", x_line)
        assert where(cur.step_into()) == ("call", "f1", line_of(cur, "def f1"))
        cur.step_into()
        assert where(cur.step_out()) == ("line", "f0", y_line)  # the caller's next step
        cur.goto(cur.index - 2)  # inside the first call of f1
        assert where(cur.step_out(back=True)) == ("line", "f0", x_line)  # the step that called
        assert where(cur.goto(-1)) == ("return", "f0", ret_line)
        assert where(cur.step_out()) == ("return", "f0", ret_line)  # the entry point: its return
        assert where(cur.step_out(back=True)) == ("call", "f0", x_line - 1)  # ... or its call
        assert cur.step_into(back=True).index == 0  # nothing before the first step
        assert cur.goto(-1).index == cur.step_into().index == cur.trace.steps - 1
        with pytest.raises(IndexError):
            cur.goto(cur.trace.steps)


def test_positions_name_calls_and_hits_and_find_their_steps() -> None:
    with traced(CALLS, args=(1, 2)) as cur:
        trace = cur.trace
        c_line = line_of(cur, "c = a + b")
        assert [trace.position(n) for n in range(trace.steps) if trace.step(n).line == c_line] == [
            f"0:f0#1/f1#1@{c_line}#1", f"0:f0#1/f1#2@{c_line}#1"]
        for n in range(trace.steps):
            assert cur.goto_position(trace.position(n)).index == n
        bad = ["f0#1@3#1", f"0:f0#1/f1#3@{c_line}#1", f"0:f0#1/f1#1@{c_line}#2",
               f"7:f0#1@{c_line}#1", "0:f0@1#1"]
        for text in bad:
            with pytest.raises(UsageError):
                trace.find_position(text)


# --------------------------------------------------------------------------- breakpoints


def test_breakpoints_stop_where_their_condition_holds_both_ways() -> None:
    body = """\
def f0(a, b):
    total = 0
    for i in range(5):
        total += i
    return total
"""
    with traced(body) as cur:
        line = line_of(cur, "total += i")
        file = cur.step.code.file
        bp = Breakpoint.parse(f"{file.rpartition('/')[2]}:{line} if i >= 2 and total > 0")
        assert cur.toggle_breakpoint(bp) is True
        assert cur.continue_().line == line and cur.evaluate("i") == 2 and cur.stopped_at == bp
        assert cur.continue_().line == line and cur.evaluate("i") == 3
        assert cur.continue_(back=True).line == line and cur.evaluate("i") == 2
        # none before: the first step; none at all: the last step
        assert cur.continue_(back=True).index == 0 and cur.stopped_at is None
        assert cur.continue_(breakpoints=[]).index == cur.trace.steps - 1
        assert cur.toggle_breakpoint(Breakpoint(bp.file, line)) is False and cur.breakpoints == []
        # a longer or shorter name of the same traced file is the same breakpoint
        assert "/" in file and cur.toggle_breakpoint(Breakpoint(bp.file, line)) is True
        assert cur.toggle_breakpoint(Breakpoint("sub/" + bp.file, line)) is True  # names no traced file
        assert cur.toggle_breakpoint(Breakpoint(file, line)) is False
        assert [b.file for b in cur.breakpoints] == ["sub/" + bp.file]
        cur.breakpoints.clear()
        with pytest.raises(UsageError, match="no traced file"):
            cur.continue_(breakpoints=[Breakpoint("elsewhere.py", line)])
        never = Breakpoint(file, line, "nowhere > 0")  # cannot be evaluated: never stops
        assert cur.continue_(back=True, breakpoints=[never]).index == 0


@pytest.mark.parametrize("text", [
    "prog.py", "prog.py:", ":12", "prog.py:twelve", "prog.py:12 if", "prog.py:12 if (",
    "prog.py:12 if __import__('os')", "prog.py:12 if x.__class__", "prog.py:12 if 2 ** 8 > x",
    "prog.py:12 if (x := 1)",
])
def test_breakpoint_parse_rejects_malformed_text_and_unsafe_conditions(text: str) -> None:
    with pytest.raises(UsageError):
        Breakpoint.parse(text)


def test_breakpoint_parse_and_str_round_trip() -> None:
    for text in ["app/shop.py:12", "shop.py:7 if order.total > 100", "C:/src/shop.py:3"]:
        bp = Breakpoint.parse(text)
        assert str(bp) == text and Breakpoint.parse(str(bp)) == bp
    assert Breakpoint.parse("C:/src/shop.py:3") == Breakpoint("C:/src/shop.py", 3)


# --------------------------------------------------------------------------- values


HISTORY = """\
def f0(a, b):
    total = 0
    items = []
    for i in range(3):
        total += i + 1
        items.append(total)
    total = 6
    del total
    total = 1
    return total
"""


@pytest.mark.parametrize("chunk", [1, 3, 4096])
def test_history_lists_each_change_with_old_new_and_the_line_that_made_it(chunk: int) -> None:
    with traced(HISTORY, chunk=chunk) as cur:
        add, append = line_of(cur, "total += i + 1"), line_of(cur, "items.append")
        got = [(c.function, c.old, c.new, c.line) for c in cur.history("total")]
        # total = 6 (unchanged) and del total are no changes
        assert got == [("f0", None, "0", line_of(cur, "total = 0")), ("f0", "0", "1", add),
                       ("f0", "1", "3", add), ("f0", "3", "6", add),
                       ("f0", "6", "1", line_of(cur, "total = 1"))]
        assert [(c.old, c.new, c.line) for c in cur.history("len(items)")] == [
            (None, "0", line_of(cur, "items = []")), ("0", "1", append), ("1", "2", append),
            ("2", "3", append)]
        assert cur.history("items[-1] * 2", function="f0", limit=2)[1].new == "6"
        assert cur.history("total", function="f1") == []
        for change in cur.history("total")[:4]:  # each change is seen at its step and not before
            assert str(cur.evaluate("total", change.step)) == change.new
            if change.old is not None:
                assert str(cur.evaluate("total", change.step - 1)) == change.old


def test_search_finds_values_inside_containers_and_objects() -> None:
    body = """\
def f0(a, b):
    box = Box("needle-7")
    box.w = [1, "hay", {"k": 41}]
    return box
"""
    with traced(body) as cur:
        hits = cur.search("needle")
        assert [(m.function, m.name) for m in hits][:2] == [("Box.__init__", "v"),
                                                            ("Box.__init__", "self")]
        assert any(m.function == "f0" and m.name == "box" for m in hits)
        assert [m.name for m in cur.search("41")] == ["box", "<return>"]  # after box.w = ...
        assert len(cur.search("needle", limit=1)) == 1
        assert cur.search("absent") == []


def test_evaluate_reads_recorded_values_only() -> None:
    with traced(HISTORY) as cur:
        cur.goto(-1)
        assert cur.evaluate("items") == [1, 3, 6]
        assert cur.evaluate("items[1] + total * 10") == 13
        assert cur.evaluate("sorted(items, )[::-1][0]") == 6
        for text in ["nowhere", "items[9]", "items.count", "len(total)"]:
            with pytest.raises(ExprError):
                cur.evaluate(text)
        with pytest.raises(ExprError, match="not defined"):
            cur.evaluate("total", 0)


# --------------------------------------------------------------------------- exceptions


@pytest.mark.parametrize("wrap", ["plain", "finally", "with", "caught-and-reraised"])
def test_goto_exception_lands_where_the_escaping_exception_was_raised(wrap: str) -> None:
    """Through a ``finally`` block or a context manager's ``__exit__`` too (their steps break
    the run of exception and return steps between the raise and the entry point), and
    through a handler that re-raises it with a bare ``raise``."""
    call = {
        "plain": "    x = f2(a)\n",
        "finally": "    try:\n        x = f2(a)\n    finally:\n        y = 1\n",
        "with": "    with Guard():\n        x = f2(a)\n",
        "caught-and-reraised": "    try:\n        x = f2(a)\n    except KeyError:\n        raise\n",
    }[wrap]
    body = f"""\
def f2(a):
    try:
        raise ValueError("caught, earlier")
    except ValueError:
        pass
    raise KeyError(a)


def f1(a):
{call}    return x


def f0(a, b):
    return f1(a) + 1
"""
    with traced(body, args=(5, 0)) as cur:
        step = cur.goto_exception()
        raised = ("exception", "f2", line_of(cur, "raise KeyError"))
        if wrap == "caught-and-reraised":  # 3.11 reports no exception event for a bare raise
            assert where(step) in (raised, ("exception", "f1", line_of(cur, "raise")))
        else:
            assert where(step) == raised
        assert cur.evaluate("a") == 5


def test_goto_exception_without_an_exception_is_a_usage_error() -> None:
    with traced(CALLS) as cur, pytest.raises(UsageError, match="no exception"):
        cur.goto_exception()


# --------------------------------------------------------------------------- threads, tape, cut


THREADS = """\
def f1(a, b):
    c = a + b
    return c


def f0(a, b):
    spawn(f1, a, 1)
    spawn(f1, a, 2)
    return a
"""


def test_each_thread_has_its_strand_and_its_positions_find_their_steps() -> None:
    """Two threads started one after the other (the OS may give both the same ident) are two
    threads of the trace, named by their strands."""
    with traced(THREADS, chunk=4096) as cur:
        trace = cur.trace
        roots = [a for a in trace.iter_activations() if a.code.qualname == "f1"]
        assert len({a.thread for a in roots}) == 2
        assert sorted(trace.threads[a.thread] for a in roots) == ["0.1", "0.2"]
        for n in range(trace.steps):
            assert trace.find_position(trace.position(n)) == n, trace.position(n)


def test_moves_stay_on_their_thread() -> None:
    with traced(THREADS) as cur:
        ref = Reference(cur.trace)
        spawn_line = line_of(cur, "spawn(f1, a, 1)")
        cur.goto(next(s.index for s in ref.steps if s.line == spawn_line and s.kind == "line"))
        assert where(cur.step_over()) == ("line", "f0", spawn_line + 1)  # over the other thread
        cur.goto(next(s.index for s in ref.steps if s.code.qualname == "f1"))
        assert cur.step.thread != 0
        assert where(cur.step_out()) == ("return", "f1", line_of(cur, "return c"))  # thread ends
        assert cur.step_into(back=True).thread == cur.step.thread


def test_interactions_after_the_step_budget_belong_to_no_step() -> None:
    body = """\
def f0(a, b):
    tape()
    for i in range(20):
        a += i
    tape()
    return a
"""
    with traced(body, chunk=4, max_steps=8) as cur:
        assert cur.trace.header["truncated"] and cur.trace.steps == 8
        assert cur.goto_interaction(0).index == 2  # the call step of the first tape()
        with pytest.raises(UsageError):
            cur.goto_interaction(1)
        assert all(a.call_step < cur.trace.steps for a in cur.trace.iter_activations())


def test_a_cut_trace_lists_no_call_beyond_its_last_step() -> None:
    body = """\
def f1(a):
    return a


def f0(a, b):
    x = 1
    y = f1(a)
    return y
"""
    # steps 0-2 are kept; the chunk that is cut (7 steps) also held the call of f1 (step 3)
    with traced(body, chunk=7, max_steps=3) as cur:
        assert cur.trace.steps == 3
        assert [a.code.qualname for a in cur.trace.iter_activations()] == ["f0"]


def test_a_library_generator_resumed_by_library_code_does_not_end_its_earlier_call_again() -> None:
    """``next(g)`` from the program is a traced library call; a later resume from inside
    another library function is not traced, and must not record a second return of it."""
    body = """\
def f0(a, b):
    g = cplib.numbers(3)
    x = next(g)
    y = cplib.take(g)
    return x + y
"""
    with traced(body, chunk=4096) as cur:
        trace = cur.trace
        steps = list(trace.iter_steps())
        for act in trace.iter_activations():  # an activation's steps are its own or deeper
            inside = steps[act.call_step:act.end_step + 1]
            assert all(s.depth > act.depth or s.frame == act.serial for s in inside), act
        cur.goto(next(s.index for s in trace.iter_steps() if s.line == line_of(cur, "x = next(g)")))
        assert where(cur.step_over()) == ("line", "f0", line_of(cur, "y = cplib.take(g)"))


# --------------------------------------------------------------------------- expressions


@pytest.mark.parametrize("text", [
    "open('x')", "getattr(a, 'b')", "eval('1')", "__import__('os')", "a.b()", "len(a, key=1)",
    "a.__class__", "a.__dict__", "a.b.__globals__", "(lambda: 1)()", "lambda: 1",
    "[x for x in a]", "{x for x in a}", "{x: 1 for x in a}", "sum(x for x in a)",
    "(a := 1)", "a ** 2", "2 ** 64", "a @ b", "a << 1", "f'{a}'", "len(*a)", "a if b else c",
    "{1: 2}", "{1}", "a = 1", "import os", "", "1 +",
])
def test_unsafe_or_malformed_expressions_are_rejected_when_compiled(text: str) -> None:
    with pytest.raises(ExprError):
        Expression(text)


def test_allowed_expressions_compile_and_name_what_they_read() -> None:
    expr = Expression("len(items) > 2 and not order.total % 5 == 0 or -x in (1, 2)")
    assert expr.names == {"items", "order", "x"}
    assert Expression("sorted(d)[::-1]").names == {"d"}
    big = Expression("'x' * 999_999 * 999_999")
    with pytest.raises(ExprError, match="too large"):
        big.evaluate({})


def _as_format_1(path: str, out: str) -> None:
    """Rewrite a trace with format 1 chunk records (changes as ``[step, serial, name(, node)]``
    tuples, keyframe inline), as the traces written before format 2 hold them."""
    from replay.replayer.tracer import TraceSection
    from replay.snapshot.reader import SnapshotFile
    from replay.snapshot.writer import SnapshotWriter

    with TraceFile(path) as trace, SnapshotFile(path) as raw:
        writer = SnapshotWriter(out, {**raw.header, "trace_format": 1})
        for section in sorted(raw.sections):
            for k, record in enumerate(raw.iter_records(section)):
                if section == TraceSection.STEPS:
                    ck = trace.chunk(k)
                    changes = [[ck.first + ck.c_step[c], ck.c_frame[c], ck.c_name[c], *(() if c in ck.deleted else (node,))]
                               for c, node in enumerate(ck.nodes())]
                    record = {key: value for key, value in record.items() if not key.startswith("c_")}
                    record.update(changes=changes, keyframe=ck.keyframe)
                writer.append(section, record)
        writer.close()


def test_traces_with_format_1_chunks_read_the_same(tmp_path) -> None:
    body = """
def f1(a):
    box = Box(a)
    box.v = [a]
    box.v.append(a)
    del box
    return a * 2

def f0(a, b):
    total = 0
    for i in range(4):
        total += f1(i)
    return total
"""
    with traced(body, chunk=5) as cursor:
        old = str(tmp_path / "old.trace")
        _as_format_1(cursor.trace.path, old)
        with TraceFile(old) as legacy:
            assert legacy.steps == cursor.trace.steps > 20
            for n in range(cursor.trace.steps):
                assert legacy.state(n) == cursor.trace.state(n)
                assert legacy.changes(n) == cursor.trace.changes(n)
            text = cursor.trace.position(cursor.trace.steps // 2)
            assert legacy.find_position(text) == cursor.trace.find_position(text) == cursor.trace.steps // 2
            assert TraceCursor(legacy).history("total") == cursor.history("total")
