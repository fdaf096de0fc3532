"""The tracer backends: exact steps of small programs (settrace on every version, monitoring on
3.12+), and the ``sys.monitoring`` backend recording the same steps and changes as settrace.

The programs are in ``trace_programs.py``: application code for these tests (the scope is
this directory). Lines are given relative to a function's ``def`` line.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from replay.errors import ReplaySetupError
from replay.replayer.tracefile import DELETED, TraceFile
from replay.replayer.tracer import Scope, TraceRecorder, make_tracer

from . import trace_programs as tp

HERE = Path(__file__).resolve().parent
HAS_MONITORING = hasattr(sys, "monitoring")
BACKENDS = ["settrace", "monitoring"] if HAS_MONITORING else ["settrace"]
needs_monitoring = pytest.mark.skipif(not HAS_MONITORING, reason="sys.monitoring is Python 3.12+")


class Row(NamedTuple):
    kind: str
    qualname: str
    line: int
    depth: int
    thread: int
    frame: int
    changes: dict[str, Any]


def record(tmp_path: Path, backend: str, fn: Any, *args: Any, max_steps: int = 1_000_000,
           start: bool = True) -> tuple[list[Row], Any, Any]:
    """Trace ``fn(*args)`` with ``backend``; return (rows, tracer, result or exception).

    With ``start=False`` the program starts the tracer itself (it gets the tracer as first
    argument).
    """
    path = tmp_path / f"{backend}.rtrace"
    rec = TraceRecorder(str(path), Scope([str(HERE)]), max_steps=max_steps)
    tracer = make_tracer(rec, backend)
    if start:
        tracer.start()
    else:
        args = (tracer, *args)
    try:
        result = fn(*args)
    except Exception as exc:  # noqa: BLE001 - the traced program's own failure
        result = exc
    finally:
        tracer.stop()
    rec.close()
    with TraceFile(str(path)) as trace:
        rows = [Row(s.kind, s.code.qualname, s.line, s.depth, s.thread, s.frame, dict(trace.changes(s.index)))
                for s in trace.iter_steps()]
    return rows, tracer, result


def relative(rows: list[Row], fn: Any, qualname: str | None = None) -> list[tuple[Any, ...]]:
    """(kind, line - def line, changes) of the rows of ``fn``."""
    first = fn.__code__.co_firstlineno
    name = qualname or fn.__qualname__
    return [(r.kind, r.line - first, r.changes) for r in rows if r.qualname == name]


def error_node(exc_type: str, message: str) -> list[Any]:
    return ["exc", f"builtins:{exc_type}", [message], message, []]


# ----------------------------------------------------------------- exact steps, every backend


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_five_line_function_steps_line_by_line(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.five_lines, 3)
    assert result == 3
    assert {r.depth for r in rows} == {0} and {r.frame for r in rows} == {0}
    # a change is reported at the step after the line that made it; total += 0 keeps
    # the same int object (no change)
    assert relative(rows, tp.five_lines) == [
        ("call", 0, {"n": 3}),
        ("line", 1, {}),
        ("line", 2, {"total": 0}),
        ("line", 3, {"i": 0}),
        ("line", 2, {}),
        ("line", 3, {"i": 1}),
        ("line", 2, {"total": 1}),
        ("line", 3, {"i": 2}),
        ("line", 2, {"total": 3}),
        ("line", 4, {}),
        ("return", 4, {"<return>": 3}),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_nested_calls_have_depths_and_one_activation_each(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.sum_squares, 2)
    assert result == 1
    calls = [(r.qualname, r.depth, r.frame) for r in rows if r.kind == "call"]
    assert calls == [("sum_squares", 0, 0), ("square", 1, 1), ("square", 1, 2)]
    first = tp.square.__code__.co_firstlineno
    square = [(r.kind, r.line - first, r.changes) for r in rows if r.frame == 2]
    assert square == [("call", 0, {"x": 1}), ("line", 1, {}), ("return", 1, {"<return>": 1})]
    assert rows[-1] == Row("return", "sum_squares", tp.sum_squares.__code__.co_firstlineno + 4, 0, 0, 0,
                           {"<return>": 1})


@pytest.mark.parametrize("backend", BACKENDS)
def test_exceptions_are_steps_where_raised_and_where_they_propagate(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.caught)
    assert result == "too big: 5"
    error = error_node("ValueError", "too big: 5")
    assert relative(rows, tp.fail) == [
        ("call", 0, {"x": 5}), ("line", 1, {}), ("line", 2, {}),
        ("exception", 2, {"<exception>": error}),
        ("return", 2, {}),  # unwound: no <return>
    ]
    assert relative(rows, tp.caught) == [
        ("call", 0, {}), ("line", 1, {}), ("line", 2, {}),
        ("exception", 2, {"<exception>": error}),  # propagated into the caller
        ("line", 3, {}),  # ``exc`` is not bound yet (never shown as a placeholder)
        ("line", 4, {"exc": error}),
        ("line", 5, {"exc": DELETED, "message": "too big: 5"}),
        ("return", 5, {"<return>": "too big: 5"}),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_escaping_exception_unwinds_every_frame_without_return_values(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.escaping)
    assert isinstance(result, ValueError)
    assert [(r.kind, r.qualname, r.depth) for r in rows if r.kind in ("exception", "return")] == [
        ("return", "fail", 1), ("exception", "fail", 1), ("return", "fail", 1),
        ("exception", "escaping", 0), ("return", "escaping", 0),
    ]
    assert "<return>" not in rows[-1].changes
    assert rows[-2].changes == {"<exception>": error_node("ValueError", "too big: 7")}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bare_raise_and_finally_add_no_exception_step(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.reraising)
    assert isinstance(result, ValueError)
    assert relative(rows, tp.reraising) == [
        ("call", 0, {}), ("line", 1, {}), ("line", 2, {}),
        ("exception", 2, {"<exception>": error_node("ValueError", "too big: 3")}),
        ("line", 3, {}), ("line", 4, {}), ("line", 5, {"note": "seen"}),
        ("line", 7, {}),  # the finally block; the re-raise itself is no step
        ("return", 7, {"note": "finally"}),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_generator_resume_is_an_activation_and_each_yield_a_return(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.use_generator)
    assert result == ([3, 2, 1], 2)
    gen = [(r.kind, r.frame, r.changes.get("<return>", "-")) for r in rows
           if r.qualname == "countdown" and r.kind in ("call", "return")]
    serials = sorted({f for _, f, _ in gen})
    first = tp.countdown.__code__.co_firstlineno
    starts = [r.line - first for r in rows if r.qualname == "countdown" and r.kind == "call"]
    returned = [v for k, _, v in gen if k == "return"]
    if sys.version_info >= (3, 13):
        # close() of a generator paused outside any try block finishes it without running
        # its frame: no activation
        assert len(serials) == 5 and starts == [0, 2, 2, 2, 0]
        assert returned == [3, 2, 1, None, 2]
    else:
        assert len(serials) == 6 and starts == [0, 2, 2, 2, 0, 2]  # close() throws GeneratorExit in
        assert returned[:5] == [3, 2, 1, None, 2]
        closing = [r for r in rows if r.frame == serials[-1]]
        assert [r.kind for r in closing] == ["call", "exception", "return"]
        assert closing[1].changes["<exception>"][1] == "builtins:GeneratorExit"
    assert all(r.depth == 1 for r in rows if r.qualname == "countdown")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_library_function_is_one_call_and_one_return(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.library_call)
    assert result is True
    assert [(r.kind, r.qualname, r.depth) for r in rows if r.qualname != "library_call"] == [
        ("call", "dumps", 1), ("return", "dumps", 1), ("call", "loads", 1), ("return", "loads", 1),
    ]
    dumps_return = next(r for r in rows if r.qualname == "dumps" and r.kind == "return")
    assert dumps_return.changes == {"<return>": '{"a": [1, 2], "b": null}'}


@pytest.mark.parametrize("backend", BACKENDS)
def test_application_callbacks_from_library_code_are_traced_below_it(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.library_callback)
    assert result == '{"s": [1, 3]}'
    assert [(r.kind, r.qualname, r.depth) for r in rows if r.kind != "line"] == [
        ("call", "library_callback", 0), ("call", "dumps", 1), ("call", "_default", 2),
        ("return", "_default", 2), ("return", "dumps", 1), ("return", "library_callback", 0),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_loop_on_one_line_is_a_line_step_per_pass(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.lambdas_and_comprehensions, [3, 1, 2])
    assert result[-1] == 12
    own = relative(rows, tp.lambdas_and_comprehensions)
    loop = [changes for kind, line, changes in own if line == 6]  # for x in xs: total += x
    assert [c.get("total") for c in loop] == [6, 9, 10, 12]
    assert not any(isinstance(c.get("doubled"), list) and c["doubled"][:1] == ["d"] for _, _, c in own)
    keys = [r for r in rows if r.qualname == "as_key"]
    assert {r.depth for r in keys} == {1}  # called by sorted() (C) straight from the app frame


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_thread_started_while_tracing_is_traced_on_its_own_index(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.threaded)
    assert result == [5]
    worker = [r for r in rows if r.thread == 1]
    assert worker[0][:4] == ("call", "_worker", tp._worker.__code__.co_firstlineno, 0)
    assert worker[-1].kind == "return" and worker[-1].qualname == "_worker"
    assert {r.qualname for r in worker} == {"_worker", "sum_squares", "square"}
    assert {r.thread for r in rows if r.qualname == "threaded"} == {0}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_thread_running_before_start_is_not_traced(tmp_path, backend):
    go = threading.Event()
    out: list[int] = []
    t = threading.Thread(target=tp.waiting_worker, args=(go, out))
    t.start()

    def program():
        go.set()
        t.join()
        return tp.square(3)

    rows, _, result = record(tmp_path, backend, program)
    assert result == 9 and out == [1]
    assert {r.thread for r in rows} == {0}
    assert "sum_squares" not in {r.qualname for r in rows}


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_frame_that_starts_tracing_is_not_traced(tmp_path, backend):
    rows, _, result = record(tmp_path, backend, tp.begin_inside, True, start=False)
    assert result == 5
    # the outer begin_inside frame was running before start(): its later lines, its
    # return and the call to stop() make no steps, although its code is traced
    assert [(r.kind, r.qualname, r.depth) for r in rows] == [
        ("call", "begin_inside", 0), ("line", "begin_inside", 0), ("line", "begin_inside", 0),
        ("call", "square", 1), ("line", "square", 1), ("return", "square", 1),
        ("return", "begin_inside", 0),
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_step_budget_stops_tracing(tmp_path, backend, monkeypatch):
    monkeypatch.setattr("replay.replayer.tracer.CHUNK_STEPS", 64)
    rows, tracer, result = record(tmp_path, backend, tp.loop_heavy, 5_000, max_steps=100)
    assert result == tp.loop_heavy(5_000)  # the program ran to the end, untraced after the budget
    assert len(rows) == 100
    assert tracer.rec.truncated and tracer.rec.stopped


# ----------------------------------------------------------------- the monitoring backend


def compare_key(rows: list[Row]) -> dict[int, list[tuple[Any, ...]]]:
    """Steps per thread, activation serials renumbered per thread in order of first use
    (threads interleave differently from run to run)."""
    per_thread: dict[int, list[tuple[Any, ...]]] = {}
    serials: dict[tuple[int, int], int] = {}
    for r in rows:
        key = (r.thread, r.frame)
        if key not in serials:
            serials[key] = sum(1 for t, _ in serials if t == r.thread)
        row = (r.kind, r.qualname, r.line, r.depth, serials[key], r.changes)
        per_thread.setdefault(r.thread, []).append(row)
    return per_thread


PARITY = [*tp.PROGRAMS, "library_callback", "library_generator", "library_raises", "thrown", "run_async",
          "import_module"]


@needs_monitoring
@pytest.mark.parametrize("name", PARITY)
def test_monitoring_records_the_same_steps_and_changes_as_settrace(tmp_path, name):
    fn = tp.PROGRAMS.get(name) or getattr(tp, name)
    expected, _, first = record(tmp_path, "settrace", fn)
    got, tracer, second = record(tmp_path, "monitoring", fn)
    assert tracer.error is None
    assert repr(second) == repr(first)
    assert len(got) == len(expected) > 3
    if name == "threaded":
        assert compare_key(got) == compare_key(expected)
    else:
        # one thread: the exact same rows, serials included. No normalisation is needed:
        # since 3.12 settrace itself runs on sys.monitoring events (comprehensions are
        # inlined for both, one-line loops are a line step per pass for both).
        for i, (a, b) in enumerate(zip(got, expected, strict=True)):
            assert a == b, f"step {i}"


@needs_monitoring
def test_monitoring_frees_its_tool_id_and_can_trace_again(tmp_path):
    first, tracer, _ = record(tmp_path, "monitoring", tp.nested, 3)
    assert tracer.tool is None
    assert all(sys.monitoring.get_tool(i) != "replay-trace" for i in range(6))
    (tmp_path / "again").mkdir()
    again, _, _ = record(tmp_path / "again", "monitoring", tp.nested, 3)
    assert again == first


@needs_monitoring
def test_monitoring_uses_another_tool_id_when_the_debugger_id_is_taken(tmp_path):
    mon = sys.monitoring
    free = [i for i in range(6) if mon.get_tool(i) is None]
    if mon.DEBUGGER_ID not in free:
        pytest.skip("the debugger tool id is in use")
    mon.use_tool_id(mon.DEBUGGER_ID, "someone else")
    try:
        rows, tracer, result = record(tmp_path, "monitoring", tp.five_lines, 2)
        assert result == 1 and len(rows) == 9
        assert mon.get_tool(mon.DEBUGGER_ID) == "someone else"
        for i in free:
            if mon.get_tool(i) is None:
                mon.use_tool_id(i, "someone else")
        rec = TraceRecorder(str(tmp_path / "none.rtrace"), Scope([str(HERE)]))
        with pytest.raises(ReplaySetupError, match="tool id"):
            make_tracer(rec, "monitoring").start()
        rec.abort()
    finally:
        for i in free:
            if mon.get_tool(i) == "someone else":
                mon.free_tool_id(i)


@needs_monitoring
def test_monitoring_callbacks_do_not_nest(tmp_path, monkeypatch):
    """Application code run while the tracer encodes a value (here: forced) makes no steps."""
    import replay.replayer.tracer as monitoring  # the line tracer both backends share

    real = monitoring.display
    calls = []

    def display(value):
        calls.append(tp.square(2))  # application code, inside a callback
        return real(value)

    expected, _, _ = record(tmp_path, "monitoring", tp.mutate, 3)
    monkeypatch.setattr(monitoring, "display", display)
    got, _, result = record(tmp_path, "monitoring", tp.mutate, 3)
    assert calls and result == 3
    assert got == expected


@needs_monitoring
def test_a_tracer_bug_stops_tracing_but_not_the_program(tmp_path, monkeypatch):
    import replay.replayer.tracer as monitoring  # the line tracer both backends share

    real = monitoring.display

    def broken(value):
        if isinstance(value, list):
            raise RuntimeError("tracer bug")
        return real(value)

    monkeypatch.setattr(monitoring, "display", broken)
    rows, tracer, result = record(tmp_path, "monitoring", tp.mutate, 3)
    assert result == 3
    assert isinstance(tracer.error, RuntimeError) and tracer.tool is None
    assert [r.kind for r in rows] == ["call", "line"]  # encoding ``items`` at the next line failed


@pytest.mark.parametrize("backend", BACKENDS)
def test_code_the_collector_runs_makes_no_steps(tmp_path, backend):
    rows, tracer, result = record(tmp_path, backend, tp.collect_garbage)
    assert result == (2, True)  # both callbacks ran, inside gc.collect()
    called = [r.qualname for r in rows if r.kind == "call"]
    assert called == ["collect_garbage", "finalize.__init__"]
    assert not tracer.rec.in_gc and tracer.rec._gc_start not in __import__("gc").callbacks
