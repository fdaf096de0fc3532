"""The C global trace function (``replay.replayer._fastline.GlobalTracer``) against the Python one.

``SettraceTracer`` installs ``GlobalTracer`` when the extension is built: call events, the
activation table and the frame's first locals are handled in C (``rec.push`` only for a
thread's root call and a library function's first call), and line, return and exception events
reach each frame's ``LocalTracer`` from C, without ``sys.settrace``'s trampoline. Each program of
tests/unit/test_fastline.py is traced in this process with the pure-Python path (the Python
global function and ``local`` closure, as with ``REPLAY_PURE_TRACER=1`` for the tracer) and with
the default C path; the two trace files must be byte-identical. Then what only the global
tracer does: it is really the one installed, a program that saves and restores the trace
function keeps being traced, new threads install it, a failure in it stops tracing (never the
program), a BaseException from the recorder reaches the program as from the trampoline.
"""

from __future__ import annotations

import runpy
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from replay.replayer import tracer
from replay.replayer.tracefile import TraceFile
from tests.unit.test_fastline import (
    PROGRAMS,
    THREADED,
    _assert_same_traces,
    _changed,
    _threads_view,
    _write,
    spawning_app,
    switching,
)

fastline = pytest.importorskip("replay.replayer._fastline", reason="the C extension is not built")
pytestmark = pytest.mark.skipif(getattr(tracer, "_GlobalTracer", None) is None,
                                reason="REPLAY_PURE_TRACER=1: the C global tracer is off")


def _pure(m: pytest.MonkeyPatch) -> None:
    """tracer.py as with ``REPLAY_PURE_TRACER=1``: every ``_fastline`` hook off."""
    for name in ("_LocalTracer", "_GlobalTracer", "_Steps", "_Changes", "_pack_nodes", "_display_fingerprint",
                 "_snapshot_locals_c", "_returning_c"):
        m.setattr(tracer, name, None)
    for name in ("_chunk_columns", "_change_columns", "_add_hits", "display"):
        m.setattr(tracer, name, getattr(tracer, name + "_py"))


def _trace(app: Path, name: str, out: Path, fast: bool, monkeypatch: pytest.MonkeyPatch,
           max_steps: int = tracer.DEFAULT_MAX_STEPS) -> tuple[Path, Any]:
    """Trace ``app/name.py`` as ``__main__`` into ``out``: the default C path, or (``fast``
    False) pure Python. Also returns the module's globals."""
    with monkeypatch.context() as m:
        if not fast:
            _pure(m)
        rec = tracer.TraceRecorder(str(out), tracer.Scope([str(app)]), max_steps=max_steps)
        tr = tracer.SettraceTracer(rec)
        assert (tr._c_global() is not None) is fast
        tr.start()
        try:
            module = runpy.run_path(str(app / f"{name}.py"), run_name="__main__")
        finally:
            tr.stop()
        rec.close()
    return out, module


SAVE_RESTORE = """
    import untraced

    def inner(k):
        v = [k]
        v.append(k * 2)
        return sum(v)

    def untraced_part(k):
        return inner(k) + 1  # called while the program has tracing off: no steps

    def main():
        total = 0
        for k in range(5):
            total += inner(k)
        total += untraced.call(untraced_part, 7)
        for k in range(5):  # the calls from here on are traced again
            total += inner(k)
        return total

    if __name__ == "__main__":
        RESULT = main()
"""

UNTRACED = """
    import sys

    def call(fn, *args):  # a library function: one call step and one return step
        saved = sys.gettrace()
        sys.settrace(None)
        try:
            return fn(*args)
        finally:
            sys.settrace(saved)
"""

PROGRAMS_HERE = {**PROGRAMS, "save_restore": SAVE_RESTORE}


def _write_here(tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    if name in PROGRAMS:
        return _write(tmp_path, name)
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / f"{name}.py").write_text(textwrap.dedent(PROGRAMS_HERE[name]))
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "untraced.py").write_text(textwrap.dedent(UNTRACED))
    monkeypatch.syspath_prepend(str(tmp_path / "lib"))
    return app


@pytest.mark.parametrize("name", sorted(PROGRAMS_HERE))
def test_traces_are_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    app = _write_here(tmp_path, name, monkeypatch)
    runpy.run_path(str(app / f"{name}.py"), run_name="__main__")  # warm: imports, caches
    _trace(app, name, tmp_path / "warm.rtrace", False, monkeypatch)  # one-time library work
    py, _ = _trace(app, name, tmp_path / "py.rtrace", False, monkeypatch)
    c, module = _trace(app, name, tmp_path / "c.rtrace", True, monkeypatch)
    _assert_same_traces(py, c)
    with TraceFile(c) as t:
        assert t.header["tracer_error"] is None
        assert {"call", "line", "return"} <= {s.kind for s in t.iter_steps()}
        if name == "save_restore":
            assert module["RESULT"] == 30 + 22 + 30
            names = [s.code.qualname for s in t.iter_steps() if s.kind == "call"]
            assert names.count("inner") == 10 and "call" in names and "untraced_part" not in names


def test_cut_trace_is_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _write(tmp_path, "loops")
    runpy.run_path(str(app / "loops.py"), run_name="__main__")
    py, _ = _trace(app, "loops", tmp_path / "py.rtrace", False, monkeypatch, max_steps=5000)
    c, _ = _trace(app, "loops", tmp_path / "c.rtrace", True, monkeypatch, max_steps=5000)
    _assert_same_traces(py, c)
    with TraceFile(c) as t:
        assert t.header["truncated"] is True and t.steps == 5000


def test_threads_install_it_and_record_the_same_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = spawning_app(tmp_path, "threaded", THREADED, monkeypatch)
    with switching(1e-5):
        py, _ = _trace(app, "threaded", tmp_path / "py.rtrace", False, monkeypatch)
        c, _ = _trace(app, "threaded", tmp_path / "c.rtrace", True, monkeypatch)
    steps_py, changes_py = _threads_view(py)
    steps_c, changes_c = _threads_view(c)
    assert len(steps_c) == 4 and all(len(s) > 900 for s in steps_c[1:])
    assert (steps_py, changes_py) == (steps_c, changes_c)
    assert _changed(py, "i") == _changed(c, "i") == [300, 300, 300]


RAISING = """
    import spawn

    class Refused(Exception):
        pass

    def check(n):
        if n % 3 == 0:
            raise Refused(n)  # an exception step: rec.exception, Python code, in every mode
        return n

    def work(k):
        spawn.ready()
        kept = 0
        for i in range(200):
            try:
                kept += check(i)
            except Refused:
                kept -= 1
        return kept

    def main():
        spawn.run_all(work, 3)

    if __name__ == "__main__":
        main()
"""


@pytest.mark.parametrize("fast", [False, True], ids=["pure", "c"])
def test_threads_keep_each_change_on_their_own_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     fast: bool) -> None:
    """Events that run Python code in the middle (exceptions, pure mode: all of them) while the
    threads switch every microsecond: no other thread's step takes the number their changes
    were recorded under (TraceRecorder.gate)."""
    app = spawning_app(tmp_path, "raising", RAISING, monkeypatch)
    with switching(1e-6):
        out, _ = _trace(app, "raising", tmp_path / "t.rtrace", fast, monkeypatch)
    assert _changed(out, "i") == [200, 200, 200]
    assert _changed(out, "<exception>") == [2 * 67] * 3  # raised in check, propagated into work
    steps, _ = _threads_view(out)
    assert all(s == steps[1] for s in steps[2:])


PROBE = """
    import sys

    def probe(seen):
        frame = sys._getframe()
        seen.append((type(sys.gettrace()).__name__, type(frame.f_trace).__name__))
        return frame
"""


def _probe_app(tmp_path: Path) -> dict[str, Any]:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / "probe.py").write_text(textwrap.dedent(PROBE))
    return runpy.run_path(str(app / "probe.py"))


def test_it_is_the_trace_function_installed(tmp_path: Path) -> None:
    """Not the trampoline: sys.gettrace() is the GlobalTracer itself, on this thread and on a
    thread started while tracing, and a traced frame's f_trace is its LocalTracer."""
    module = _probe_app(tmp_path)
    rec = tracer.TraceRecorder(str(tmp_path / "p.rtrace"), tracer.Scope([str(tmp_path / "app")]))
    tr = tracer.SettraceTracer(rec)
    seen: list[Any] = []
    tr.start()
    try:
        module["probe"](seen)
        worker = threading.Thread(target=module["probe"], args=(seen,))
        worker.start()
        worker.join()
    finally:
        tr.stop()
    rec.close()
    assert seen == [("GlobalTracer", "LocalTracer")] * 2
    assert sys.gettrace() is None


def test_a_failure_in_it_stops_tracing_not_the_program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = _write(tmp_path, "calls")
    module = runpy.run_path(str(app / "calls.py"))
    rec = tracer.TraceRecorder(str(tmp_path / "f.rtrace"), tracer.Scope([str(app)]))
    real = rec.code

    def code(c: Any) -> Any:
        if c.co_name == "fib":  # the first sight of this code fails, in the call event
            raise RuntimeError("recorder bug")
        return real(c)

    monkeypatch.setattr(rec, "code", code)
    expected = module["main"]()
    tr = tracer.SettraceTracer(rec)
    tr.start()
    try:
        got = module["main"]()  # runs to its end: nothing reaches the program
    finally:
        tr.stop()
    rec.close()
    assert got == expected
    with TraceFile(tmp_path / "f.rtrace") as t:
        assert t.header["tracer_error"] == "RuntimeError: recorder bug"
        called = [s.code.qualname for s in t.iter_steps() if s.kind == "call"]
        assert called[0] == "main" and "fib" not in called  # traced up to the failure, not after


@pytest.mark.parametrize("fast", [True, False])
def test_a_base_exception_reaches_the_program_as_from_the_trampoline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    """KeyboardInterrupt raised by the recorder during a call event: raised in the called
    frame, and tracing is off on this thread afterwards (what sys.settrace's trampoline does
    with the Python global function)."""
    module = _probe_app(tmp_path)
    if not fast:
        _pure(monkeypatch)
    rec = tracer.TraceRecorder(str(tmp_path / "k.rtrace"), tracer.Scope([str(tmp_path / "app")]))
    real = rec.code

    def code(c: Any) -> Any:
        if c.co_name == "probe":
            raise KeyboardInterrupt
        return real(c)

    monkeypatch.setattr(rec, "code", code)
    tr = tracer.SettraceTracer(rec)
    tr.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            module["probe"]([])
        assert sys.gettrace() is None
    finally:
        tr.stop()
    rec.abort()


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    rec = tracer.TraceRecorder(str(tmp_path / "b.rtrace"), tracer.Scope([str(tmp_path)]))
    args = tracer._local_arguments()
    with pytest.raises(AttributeError):
        fastline.GlobalTracer(object(), *args)  # no codes, steps, ...
    with pytest.raises(ValueError):
        fastline.GlobalTracer(rec, args[0], args[1], 0)
    with pytest.raises(TypeError):
        fastline.GlobalTracer(rec, *args, activation=tracer.Activation, snapshot=())
    g = fastline.GlobalTracer(rec, *args)
    with pytest.raises(TypeError):
        g(sys._getframe(), "call")
    with pytest.raises(TypeError):
        g(object(), "call", None)
    assert g(sys._getframe(), "line", None) is None  # only call events install it
    rec.abort()


def test_returning_in_c_is_the_python_function(tmp_path: Path) -> None:
    """At every return event of the programs (returns, yields, awaits, exceptions unwinding)
    the C ``Returning`` says what ``tracer._returning`` says."""
    answers: list[tuple[bool, bool]] = []

    def probe(frame: Any, event: str, arg: Any) -> Any:
        if event == "return":
            answers.append((tracer._returning_c(frame), tracer._returning(frame)))
        return probe

    for name in ("exceptions", "generators", "calls"):
        app = _write(tmp_path, name)
        sys.settrace(probe)
        try:
            runpy.run_path(str(app / f"{name}.py"), run_name="__main__")
        finally:
            sys.settrace(None)
    assert len(answers) > 500
    assert all(c is py for c, py in answers)
    assert {py for _, py in answers} == {True, False}  # both kinds were met
    assert tracer._returning_c(None) is False
    with pytest.raises(TypeError):
        tracer._returning_c(object())
    with pytest.raises(ValueError):
        fastline.Returning([256], 0, 0)


def test_steps_behave_as_the_list_of_tuples_they_replace() -> None:
    steps, reference = fastline.Steps(), []
    rows = [(k % 4, k, k * 7 % 1000, k // 3, k % 5, k % 2) for k in range(3000)]  # past its first growth
    for row in rows:
        steps.append(row)
        reference.append(row)
    assert len(steps) == len(reference) and bool(steps)
    assert list(steps) == reference and steps[5] == reference[5] and steps[-1] == reference[-1]
    assert steps[10:20] == reference[10:20] and steps[::-700] == reference[::-700]
    assert [steps[i][5] for i in range(len(steps) - 1, len(steps) - 64, -1)] == [r[5] for r in reference[-1:-64:-1]]
    del steps[2500:]
    del reference[2500:]
    del steps[-1]
    del reference[-1]
    del steps[100:100]
    assert list(steps) == reference
    steps.append((3, 2**32 - 1, 0, 0, 0, 0))  # the largest u32
    assert steps[-1] == (3, 2**32 - 1, 0, 0, 0, 0)
    steps.clear()
    assert len(steps) == 0 and not steps and list(steps) == []
    with pytest.raises(IndexError):
        steps[0]  # noqa: B018
    for bad, error in (((256, 0, 0, 0, 0, 0), OverflowError), ((0, 2**32, 0, 0, 0, 0), OverflowError),
                       ((0, -1, 0, 0, 0, 0), OverflowError), ((0, None, 0, 0, 0, 0), TypeError),
                       ((0, 0, 0), TypeError), ([0, 0, 0, 0, 0, 0], TypeError)):
        with pytest.raises(error):
            steps.append(bad)  # what array("B") and array("I") refuse at flush, refused at once
    assert len(steps) == 0
    with pytest.raises(TypeError):
        steps[0] = (0, 0, 0, 0, 0, 0)
    with pytest.raises(TypeError):
        del steps[::2]


def test_chunk_columns_reads_steps_as_it_reads_the_list() -> None:
    rows = [(k % 4, k % 9, k * 7 % 50, k // 3, k % 5, k % 2) for k in range(500)]
    steps = fastline.Steps()
    for row in rows:
        steps.append(row)
    assert fastline.chunk_columns(steps, tracer.EXCEPTION) == fastline.chunk_columns(rows, tracer.EXCEPTION)
    assert fastline.chunk_columns(steps, tracer.EXCEPTION) == tracer._chunk_columns_py(steps, tracer.EXCEPTION)
