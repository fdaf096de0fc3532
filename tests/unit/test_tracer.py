"""The tracer and the trace file: scope, per-line effects, hostile values, budget, corrupt files."""

from __future__ import annotations

import gc
import importlib.util
import sys
import textwrap
import threading

import pytest

from replay.errors import CorruptSnapshotError, SnapshotError
from replay.replayer.cursor import TraceCursor
from replay.replayer.tracefile import DELETED, TraceFile
from replay.replayer.tracer import Scope, SettraceTracer, TraceRecorder, TraceSection, line_effects
from replay.snapshot.codec import render
from replay.snapshot.writer import SnapshotWriter


def load(tmp_path, source, name="prog"):
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trace_call(tmp_path, fn, *args, max_steps=1_000_000, **kwargs):
    out = tmp_path / "t.rtrace"
    rec = TraceRecorder(str(out), Scope([str(tmp_path)]), max_steps=max_steps)
    tracer = SettraceTracer(rec)
    result = error = None
    tracer.start()
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the traced program's own failure
        error = exc
    finally:
        tracer.stop()
    rec.close()
    return TraceFile(str(out)), result, error


def test_line_effects_name_what_each_line_can_change(tmp_path):
    mod = load(tmp_path, """
        def f(items, obj):
            n = 0
            if n > 1:
                pass
            items.append(n)
            obj.total = n
            n += 1
            return n
    """)
    fx = line_effects(mod.f.__code__)
    first = mod.f.__code__.co_firstlineno
    assert fx[first + 1][0] == ("n",)  # n = 0: rebinds n, nothing to re-encode
    assert first + 2 not in fx and first + 3 not in fx  # a comparison and pass change nothing
    assert set(fx[first + 4][1]) >= {"items", "n"}  # a call: loaded objects may be mutated
    assert "obj" in fx[first + 5][1]  # an attribute store mutates obj
    assert fx[first + 6][1] == ("n",)  # in-place operator: n may be mutated in place
    assert first + 7 not in fx


def test_scope_keeps_libraries_and_replay_itself_out(tmp_path):
    scope = Scope([str(tmp_path)], include=["*/json/*"], exclude=["skip_*.py"])
    assert scope.contains(str(tmp_path / "app.py"))
    assert not scope.contains(str(tmp_path / "skip_me.py"))
    assert not scope.contains(str(tmp_path / ".venv" / "lib" / "python3.11" / "site-packages" / "x.py"))
    import json

    import replay.replayer.tracer as tracer_module

    assert scope.contains(json.__file__)  # included explicitly
    assert not scope.contains(tracer_module.__file__)
    assert not scope.contains("<string>")
    assert scope.relative(str(tmp_path / "pkg" / "m.py")) == "pkg/m.py"


def test_in_place_mutations_rebinds_and_deletions_are_recorded(tmp_path):
    mod = load(tmp_path, """
        class Box:
            def __init__(self):
                self.n = 0

        def f():
            xs = []
            box = Box()
            for i in range(3):
                xs.append(i)
                box.n += i
            tmp = 5
            del tmp
            xs += [9]
            return xs, box.n
    """)
    trace, result, _ = trace_call(tmp_path, mod.f)
    assert result == ([0, 1, 2, 9], 3)
    cursor = TraceCursor(trace)
    assert [c.new for c in cursor.history("xs")] == ["[]", "[0]", "[0, 1]", "[0, 1, 2]", "[0, 1, 2, 9]"]
    assert [c.new for c in cursor.history("box.n")] == ["0", "1", "3"]
    deleted = [(s.index, name) for s in trace.iter_steps() for name, node in trace.changes(s.index) if node is DELETED]
    assert [name for _, name in deleted] == ["tmp"]
    cursor.goto(-1)
    assert render(cursor.state().frame.locals["<return>"]) == "([0, 1, 2, 9], 3)"


def test_a_collection_while_the_gc_watch_is_installed_leaves_tracing_on(tmp_path):
    # Regression: the start callback went in first and binding the stop one allocates, so a
    # collection in between set ``in_gc`` for good and the traced call recorded nothing.
    # A threshold of 1 makes that allocation collect every time.
    stuck = 0
    for _ in range(20):
        rec = TraceRecorder(str(tmp_path / "t.rtrace"), Scope([str(tmp_path)]))
        old = gc.get_threshold()
        gc.set_threshold(1)
        try:
            rec.watch_gc()
        finally:
            gc.set_threshold(*old)
        stuck += rec.in_gc
        rec.watch_gc(False)
        rec.abort()
    assert stuck == 0


def test_hostile_values_never_break_the_traced_program(tmp_path):
    mod = load(tmp_path, """
        class Hostile:
            def __repr__(self):
                raise RuntimeError("repr")
            def __eq__(self, other):
                raise RuntimeError("eq")
            __hash__ = object.__hash__
            def __getattr__(self, name):
                raise RuntimeError("getattr " + name)

        class Prop:
            @property
            def value(self):
                raise RuntimeError("property")

        def f():
            h = Hostile()
            p = Prop()
            big = "x" * 1_000_000
            deep = []
            cur = deep
            for _ in range(500):
                cur.append([])
                cur = cur[0]
            loop = []
            loop.append(loop)
            return len(big), type(h).__name__
    """)
    trace, result, error = trace_call(tmp_path, mod.f)
    assert error is None and result == (1_000_000, "Hostile")
    state = TraceCursor(trace, -1).state()
    assert render(state.frame.locals["big"]).startswith("'xxxx")
    assert len(render(state.frame.locals["big"], width=10_000)) < 1_000
    assert "loop" in state.frame.locals and "deep" in state.frame.locals


def test_generators_threads_and_the_exception_path(tmp_path):
    mod = load(tmp_path, """
        import threading

        def gen(n):
            for i in range(n):
                yield i * 2

        def worker(out):
            out.append(sum(gen(3)))

        def f():
            out = []
            t = threading.Thread(target=worker, args=(out,))
            t.start()
            t.join()
            try:
                raise KeyError("inner")
            except KeyError:
                pass
            return out
    """)
    trace, result, _ = trace_call(tmp_path, mod.f)
    assert result == [6]
    threads = {s.thread for s in trace.iter_steps()}
    assert threads == {0, 1}
    gen_calls = [s for s in trace.iter_steps() if s.code.qualname == "gen" and s.kind == "call"]
    assert len(gen_calls) == 4  # one activation per resume (3 values, then exhaustion)
    worker_step = next(s for s in trace.iter_steps() if s.code.qualname == "worker" and s.kind == "line")
    cursor = TraceCursor(trace, worker_step.index)
    cursor.step_into()
    assert cursor.step.thread == 1  # moves stay on the worker's thread
    assert trace.position(worker_step.index).startswith(trace.threads[1] + ":worker#1@")
    caught = [s for s in trace.iter_steps() if s.kind == "exception"]
    assert [s.code.qualname for s in caught] == ["f"]


def test_the_step_budget_cuts_the_trace_exactly(tmp_path, monkeypatch):
    monkeypatch.setattr("replay.replayer.tracer.CHUNK_STEPS", 64)
    mod = load(tmp_path, """
        def f(n):
            total = 0
            for i in range(n):
                total += i
            return total
    """)
    trace, result, _ = trace_call(tmp_path, mod.f, 10_000, max_steps=100)
    assert result == sum(range(10_000))  # the program ran to the end, untraced after the budget
    assert trace.steps == 100 and trace.header["truncated"] is True
    assert trace.activation(0).end_step == -1  # still running when the trace was cut
    cursor = TraceCursor(trace)
    cursor.step_out()
    assert cursor.index == 99


def test_module_level_code_shows_data_not_imports(tmp_path):
    source = "import json\nVALUE = 3\nITEMS = [VALUE]\ndef helper():\n    return 1\nITEMS.append(helper())\n"
    (tmp_path / "modprog.py").write_text(source)
    spec = importlib.util.spec_from_file_location("modprog", tmp_path / "modprog.py")
    module = importlib.util.module_from_spec(spec)
    trace, _, error = trace_call(tmp_path, spec.loader.exec_module, module)
    assert error is None
    state = TraceCursor(trace, -1).state()
    root = state.frames[0]
    assert root.code.qualname == "<module>"
    assert set(root.locals) == {"VALUE", "ITEMS", "<return>"} or set(root.locals) == {"VALUE", "ITEMS"}
    assert render(root.locals["ITEMS"]) == "[3, 1]"


def test_files_that_are_not_traces_or_are_corrupt_raise_snapshot_errors(tmp_path):
    plain = tmp_path / "plain.rsnap"
    with SnapshotWriter(str(plain), {"kind": "x"}) as w:
        w.append(1, {"module": "m", "qualname": "f"})
    with pytest.raises(SnapshotError, match="no trace"):
        TraceFile(str(plain))
    bad = tmp_path / "bad.rtrace"
    with SnapshotWriter(str(bad), {"kind": "trace", "steps": 1, "activations": 0}) as w:
        w.append(TraceSection.CODES, ["f.py", "f", 1, True, "f"])
        w.append(TraceSection.STEPS, {"first": 0, "n": 1, "kind": b"\x01", "code": b"\x00", "line": b"",
                                      "frame": b"", "depth": b"", "thread": b"", "changes": [], "keyframe": []})
        w.append(TraceSection.CHUNKS, [0, 1, [0], [], 0, [], 0, 0])
    trace = TraceFile(str(bad))
    with pytest.raises(CorruptSnapshotError, match="column"):
        trace.step(0)


def test_tracing_leaves_no_tracer_behind(tmp_path):
    mod = load(tmp_path, "def f():\n    return 1\n")
    before = sys.gettrace()
    trace_call(tmp_path, mod.f)
    assert sys.gettrace() is before
    assert threading.gettrace() is None


def test_a_tracer_bug_stops_tracing_not_the_program(tmp_path, monkeypatch):
    import replay.replayer.tracer as tracer_module

    real = tracer_module.display

    def broken(value):
        if isinstance(value, list):
            raise RuntimeError("tracer bug")
        return real(value)

    monkeypatch.setattr(tracer_module, "display", broken)
    mod = load(tmp_path, """
        def f(n):
            total = 0
            items = []
            for i in range(n):
                items.append(i)
                total += i
            return total
    """)
    trace, result, error = trace_call(tmp_path, mod.f, 5)
    assert error is None and result == 10
    assert trace.header["tracer_error"] == "RuntimeError: tracer bug"
    assert trace.steps < 5
