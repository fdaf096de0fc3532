"""The C line tracer reads a line's names from the frame's fast locals (3.11, 3.12).

``_fastline.LocalTracer`` no longer copies every local into ``frame.f_locals`` at each line
(``PyFrame_FastToLocalsWithError``): it reads the names the previous line could have changed
straight from the frame's ``localsplus`` slots (replay/replayer/_fastline_src/fastlocals.c),
unwrapping cells as CPython's copy does. Each program here exercises a way that read could go
wrong (cells before and after ``MAKE_CELL``, an argument captured by a closure, a cell whose
value is itself a cell, free variables, ``del``, a program that uses ``locals()``, generator
and coroutine frames, a debugger-like write through ``f_locals`` + ``PyFrame_LocalsToFast``,
a class body) and is traced with the pure-Python tracer and with the C one, in every mode this
Python has: the settrace trampoline with the C ``LocalTracer``, the monitoring backend with it
(3.12+), and the C global tracer (no trampoline). The trace files must be byte-identical, the
program must compute what it computes untraced, and ``_fastline.locals_reads()`` must show
that the direct read really ran (on 3.13, where ``f_locals`` is a proxy, that it never runs).
Generator and coroutine frames keep reading ``f_locals`` (the order of its dict is part of
the trace); the ``suspending`` program checks that their traces stay identical all the same.
"""

from __future__ import annotations

import runpy
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from replay.replayer import tracer
from replay.replayer.tracefile import DELETED, TraceFile
from tests.unit.test_fastline import _assert_same_traces, _recorder, _use_c
from tests.unit.test_fastline_global import _pure

fastline = pytest.importorskip("replay.replayer._fastline", reason="the C extension is not built")

DIRECT = (3, 11) <= sys.version_info < (3, 13)
"""Whether this Python reads fast locals directly (3.13 keeps reading its f_locals proxy)."""

MODES = (["settrace"] + (["monitoring"] if sys.version_info >= (3, 12) else [])
         + (["global"] if getattr(tracer, "_GlobalTracer", None) is not None else []))
"""settrace / monitoring: that backend, with the pure closure or the C LocalTracer as line
tracer; global: everything pure (REPLAY_PURE_TRACER=1) or the default C global tracer."""

PROGRAMS = {
    "cells": """
        def captured_arg(n, box):
            def get():
                return n, list(box)
            n = n + 1  # the argument's cell, made by MAKE_CELL in the prologue, gets a new value
            box.append(n)  # a captured list, changed in place
            n += 10
            first = get()
            del box  # DELETE_DEREF: the cell is emptied (unbound)
            box = ["again"]
            return first, get()

        def late_cell():
            def read():
                return late
            try:
                read()
            except NameError:
                early = "unbound"
            late = 1  # the cell gets its first value
            late = [late]
            del late
            late = "back"
            return early, read()

        def cell_of_a_cell(c):  # the argument's value is itself a cell, and a closure keeps it
            def inner():
                return c
            value = c.cell_contents
            c = inner
            return value, inner() is inner

        def plain_cell_value(c):  # a cell object as the value of a plain local
            d = c
            d = d.cell_contents
            return d

        def counter():
            count = 0
            def bump(k):
                nonlocal count
                count += k  # a free variable rebound from inside
                seen = count
                return seen
            for i in range(5):
                bump(i)
            total = count
            return total

        def free_vars():
            items = []
            scale = 3
            def add(v):
                items.append(v * scale)  # free variables: one mutated, one read
                last = items[-1]
                return last
            for v in range(4):
                add(v)
            scale = 5
            add(1)
            return items

        def comprehension_cells(xs):  # 3.12 inlines the comprehension: MAKE_CELL in the body
            x = "outer"
            fns = [lambda: x for x in xs]
            got = [f() for f in fns]
            after = x
            return got, after

        def main():
            global RESULT
            cell = cell_of_a_cell.__code__  # any object: only its cell matters
            holder = (lambda: cell).__closure__[0]
            RESULT = (captured_arg(1, [0]), late_cell(), cell_of_a_cell(holder)[1],
                      plain_cell_value(holder) is cell, counter(), free_vars(), comprehension_cells("ab"))

        if __name__ == "__main__":
            main()
    """,
    "dels": """
        def dels(n):
            x = [n]
            y = x
            del x  # unbound: a deletion
            x = n * 2
            del x, y
            try:
                x
            except UnboundLocalError:
                gone = True
            x = "last"
            z = x + "!"
            return gone, z

        def main():
            global RESULT
            RESULT = [dels(k) for k in range(3)]

        if __name__ == "__main__":
            main()
    """,
    "uses_locals": """
        def uses_locals(n):
            a = n
            names = sorted(locals())  # locals() refreshes the frame's dict itself
            b = locals()["a"] + 1
            locals()["ghost"] = 7  # a name only the f_locals dict has (3.13: a snapshot's)
            c = a + b
            fresh = locals().get("c")
            extra = locals().get("ghost")  # 3.13: None (each locals() is a new snapshot)
            a = [a]
            a.append(c)
            return names, b, fresh, extra, a

        def main():
            global RESULT
            RESULT = [uses_locals(k) for k in range(2)]

        if __name__ == "__main__":
            main()
    """,
    "suspending": """
        def gen(n):
            total = 0
            keep = []
            def show():
                return keep
            for i in range(n):
                total += i
                got = yield total  # suspends: every name is compared
                if got:
                    total = got
                items = [total]
                items.append(i)
                keep.append(i)
            del items
            yield show()

        class Later:  # an awaitable without an event loop
            def __await__(self):
                value = yield "tick"
                return value

        async def coro(n):
            acc = []
            for i in range(n):
                v = await Later()
                acc.append(v)
                last = v * 2
            return acc, last

        def drive():
            g = gen(4)
            out = [next(g)]
            out.append(g.send(100))
            out.extend(g)
            c = coro(3)
            c.send(None)
            k = 0
            try:
                while True:
                    k += 1
                    c.send(k)
            except StopIteration as stop:
                res = stop.value
            return out, res

        def main():
            global RESULT
            RESULT = drive()

        if __name__ == "__main__":
            main()
    """,
    "poke": """
        import ctypes
        import sys

        def poke(name, value):  # what a debugger does to its caller's frame
            frame = sys._getframe(1)
            frame.f_locals[name] = value
            if sys.version_info < (3, 13):  # 3.13's f_locals proxy writes through
                ctypes.pythonapi.PyFrame_LocalsToFast(ctypes.py_object(frame), ctypes.c_int(0))
            del frame

        def victim():
            x = 1
            keep = ["kept"]
            def see():
                return keep
            poke("x", 99)
            shown = str(x)  # a call that loads x: x is compared here
            y = x + 1
            poke("keep", ["poked"])  # a cell variable, written through f_locals
            z = see()
            keep.append(y)
            return y, z

        def main():
            global RESULT
            RESULT = victim()

        if __name__ == "__main__":
            main()
    """,
    "class_body": """
        def make(k):
            base = [k]
            class Box:  # a class body: not a function's frame, so read through f_locals
                size = k
                items = list(base)
                items.append(size)
                del size
            box = Box()
            return box.items

        def main():
            global RESULT
            RESULT = [make(k) for k in range(3)]

        if __name__ == "__main__":
            main()
    """,
}

GHOST = 7 if sys.version_info < (3, 13) else None
EXPECTED = {
    "cells": (((12, [0, 2]), (12, ["again"])), ("unbound", "back"), True, True, 10, [0, 3, 6, 9, 5],
              (["b", "b"], "outer")),
    "dels": [(True, "last!"), (True, "last!"), (True, "last!")],
    "uses_locals": [(["a", "n"], 1, 1, GHOST, [0, 1]), (["a", "n"], 2, 3, GHOST, [1, 3])],
    "suspending": ([0, 101, 103, 106, [0, 1, 2, 3]], ([1, 2, 3], 6)),
    "poke": (100, ["poked", 100]),
    "class_body": [[0, 0], [1, 1], [2, 2]],
}

SUSPENDS = {"suspending"}
"""Programs with generators or coroutines: their frames' lines read f_locals (fastlocals.c)."""
UNUSUAL = {"class_body"}
"""Programs whose frames are not all function frames: some lines read f_locals."""


def _write(tmp_path: Path, name: str, source: str) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / f"{name}.py").write_text(textwrap.dedent(source))
    return app


def _run(app: Path, name: str, out: Path, mode: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Trace ``app/name.py`` as ``__main__`` into ``out`` in ``mode`` (see MODES), with the C
    line tracer when ``fast``; returns the module's globals."""
    with monkeypatch.context() as m:
        if mode == "global":
            if not fast:
                _pure(m)
            rec = tracer.TraceRecorder(str(out), tracer.Scope([str(app)]))
            tr: Any = tracer.SettraceTracer(rec)
            assert (tr._c_global() is not None) is fast
        else:
            # as tests/unit/test_fastline.py: the closure unless the C LocalTracer is patched in
            m.setattr(tracer, "_LocalTracer", None, raising=False)
            m.setattr(tracer, "_Changes", None, raising=False)
            if fast:
                _use_c(m)
            rec = tracer.TraceRecorder(str(out), tracer.Scope([str(app)]))
            tr = tracer.make_tracer(rec, mode)
        tr.start()
        try:
            module = runpy.run_path(str(app / f"{name}.py"), run_name="__main__")
        finally:
            tr.stop()
        rec.close()
    return module


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_direct_reads_record_what_f_locals_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  name: str, mode: str) -> None:
    app = _write(tmp_path, name, PROGRAMS[name])
    untraced = runpy.run_path(str(app / f"{name}.py"), run_name="__main__")["RESULT"]
    assert untraced == EXPECTED[name]
    _run(app, name, tmp_path / "warm.rtrace", mode, False, monkeypatch)  # one-time library work
    py = tmp_path / "py.rtrace"
    assert _run(app, name, py, mode, False, monkeypatch)["RESULT"] == untraced
    c = tmp_path / "c.rtrace"
    direct, via_f_locals = fastline.locals_reads()
    assert _run(app, name, c, mode, True, monkeypatch)["RESULT"] == untraced
    direct, via_f_locals = (a - b for a, b in zip(fastline.locals_reads(), (direct, via_f_locals), strict=True))
    _assert_same_traces(py, c)
    with TraceFile(c) as t:
        assert t.header["tracer_error"] is None
        assert t.steps > 20
    if DIRECT:
        assert direct > 10
        # every line of a plain function's frame is read directly; generator and coroutine
        # frames (their f_locals dict's order is walked at each resume) and class bodies are not
        assert (via_f_locals > 0) is (name in SUSPENDS | UNUSUAL)
    else:
        assert direct == 0 and via_f_locals > 0


def _changes_of(path: Path, name: str, qualname: str) -> list[Any]:
    """Every recorded change of the local ``name`` in the frames of ``qualname``: its node, or
    None for a deletion."""
    with TraceFile(path) as t:
        return [None if node is DELETED else node for s in t.iter_steps() if s.code.qualname == qualname
                for changed, node in t.changes(s.index) if changed == name]


def test_cells_are_recorded_by_their_contents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The values themselves, not only the same as the pure tracer's: a cell slot read as the
    cell object, or an emptied cell read as bound, shows here."""
    app = _write(tmp_path, "cells", PROGRAMS["cells"])
    out = tmp_path / "c.rtrace"
    _run(app, "cells", out, MODES[-1], True, monkeypatch)
    display = tracer.display
    # the argument's cell: its value at the call, then the cell's contents; del empties it
    assert _changes_of(out, "n", "captured_arg") == [1, 2, 12]
    assert _changes_of(out, "box", "captured_arg") == [display([0]), display([0, 2]), None, display(["again"])]
    assert _changes_of(out, "early", "late_cell") == [display("unbound")]
    assert _changes_of(out, "late", "late_cell") == [1, display([1]), None, display("back")]
    cell = (lambda: out).__closure__[0]  # type: ignore[union-attr]
    code = _changes_of.__code__  # nodes name the type only: any cell, any code object
    assert _changes_of(out, "c", "cell_of_a_cell")[0] == display(cell)  # a cell as the value
    assert _changes_of(out, "value", "cell_of_a_cell") == [display(code)]
    assert _changes_of(out, "d", "plain_cell_value") == [display(cell), display(code)]
    assert _changes_of(out, "count", "counter") == [0, 1, 3, 6, 10]  # rebound by bump, seen after it
    assert _changes_of(out, "count", "counter.<locals>.bump")[-1] == 10  # a free variable
    assert _changes_of(out, "after", "comprehension_cells") == [display("outer")]
    assert _changes_of(out, "got", "comprehension_cells") == [display(["b", "b"])]


STALE = """
    def stale(n):
        d = locals()  # the frame's f_locals dict, as it is now
        a = n + 1
        b = [a]
        seen = d.get("a")  # untraced: None, nothing refreshed the dict since locals()
        fresh = locals().get("a")
        return seen, fresh, b

    def main():
        global RESULT
        RESULT = stale(1)

    if __name__ == "__main__":
        main()
"""


@pytest.mark.parametrize("mode", [m for m in MODES if m != "settrace"])
def test_the_program_sees_its_locals_dict_as_untraced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      mode: str) -> None:
    """Without a trampoline (the C global tracer, the monitoring backend), the C tracer
    refreshes no frame's f_locals dict at its lines: a dict the program holds from an earlier
    ``locals()`` is as stale as untraced (the trampoline, and the pure closure reading
    frame.f_locals, refresh it at every event)."""
    app = _write(tmp_path, "stale", STALE)
    untraced = runpy.run_path(str(app / "stale.py"), run_name="__main__")["RESULT"]
    assert untraced == (None, 2, [2])
    out = tmp_path / "c.rtrace"
    assert _run(app, "stale", out, mode, True, monkeypatch)["RESULT"] == untraced
    assert _changes_of(out, "seen", "stale") == [None] and _changes_of(out, "fresh", "stale") == [2]
    # the dict itself as the program holds it: what locals() put there, nothing since
    assert _changes_of(out, "d", "stale") == [tracer.display({"n": 1})]


def test_a_cleared_frame_reads_as_unbound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``frame.clear()`` on a finished frame empties its slots: the C tracer records the
    deletion the closure reads from the emptied f_locals."""
    monkeypatch.setattr(tracer, "_LocalTracer", None, raising=False)
    results = []
    for tag, make in (("py", tracer.line_tracer),
                      ("c", lambda rec, ts, act: fastline.LocalTracer(rec, ts, act, tracer.display,
                                                                       tracer._IMMUTABLE, tracer.CHUNK_STEPS))):
        rec, ts, act = _recorder(tmp_path, tag)
        local = make(rec, ts, act)
        frame = act.frame
        frame.clear()
        act.line = 4  # a.append(2): ``a`` is checked
        del rec.changes[:]
        local(frame, "line", None)
        results.append(list(rec.changes))
        rec.abort()
    assert results[0] == results[1] == [(1, results[0][0][1], "a")]
