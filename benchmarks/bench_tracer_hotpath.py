"""The trace recorder's per-line hot path: the Python ``local`` closure of
``tracer.line_tracer`` against the C ``LocalTracer`` (``replay.replayer._fastline``) and a
no-op ``sys.settrace`` tracer.

Issue 5's target is at least 1,000,000 line events/s for application code. This isolates the
settrace backend from the replay machinery: three programs run in this process with
``runpy.run_path``: ``hot.py`` (below: an arithmetic loop of ints and floats, the line hot
path alone) and ``benchmarks/trace_programs/loops.py`` and ``calls.py`` (the loop-heavy and
call-heavy programs ``bench_trace.py`` replays). Each is traced under

* ``noop``: a ``sys.settrace`` function that returns itself on every event and records
  nothing (``tracer.NoopTracer``); it traces library code too, so its figure is the speed at
  which a do-nothing tracer gets through the same work, in the real trace's steps;
* ``python``: ``SettraceTracer`` as with ``REPLAY_PURE_TRACER=1``: the pure-Python closure,
  display, chunk and change columns, no fingerprints (for the hooks tracer.py has);
* ``c-local``: the C ``LocalTracer`` as every in-scope frame's trace function, the C display
  (``_fastline.Display``), fingerprints and chunk columns, but the Python global trace
  function behind ``sys.settrace``'s trampoline, steps and changes as lists of tuples, the
  Python ``_returning`` and msgpack for the chunk's nodes (``_GlobalTracer``, ``_Steps``,
  ``_Changes``, ``_pack_nodes`` and ``_returning_c`` off: the C path before those existed;
  shown when tracer.py has them);
* ``c``: ``SettraceTracer`` as tracer.py makes it by default: the above with
  ``_fastline.GlobalTracer`` as the global trace function, installed with
  ``PyEval_SetTrace`` (no trampoline; call events and the common ``TraceRecorder.push`` in
  C), steps in a ``_fastline.Steps`` buffer, changes in a ``_fastline.Changes`` buffer,
  ``_fastline.Returning`` and the chunk's nodes packed by ``_fastline.pack_nodes``;

each writing a real trace file (a fresh ``TraceRecorder`` per run, in a temporary directory).
Printed per program and mode: the median steps/s over ``--repeats`` runs (wall time from
``start()`` to ``stop()``; closing the file is not in it), the slowdown against ``noop`` in wall
time and in this thread's CPU time (``cpu x noop``: steadier on a loaded machine), the share of that time spent in
``TraceRecorder.flush`` (writing chunks) and, with ``--split``, in ``tracer.display``
(encoding values other than ints and floats; timing it adds a little overhead), and the
steps/s without them: what is left is the tracer itself (CPython's trampoline, reading
``f_locals``, the step and change bookkeeping, call and return events in Python). Each
repeat checks that the C runs' trace files are byte-identical to the Python run's.

Usage: ``python benchmarks/bench_tracer_hotpath.py [--hot N] [--loops N] [--calls N]
[--repeats R] [--split] [--quick]``. ``--quick``: a quarter of each N and 3 repeats. Figures
are wall-clock on this machine and move with its load (printed before and after); the modes
alternate within each repeat, so load drifts hit them alike. The collector stays on, as in
a replay.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import runpy
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from replay.replayer import tracer

try:
    from replay.replayer import _fastline  # type: ignore[attr-defined]
except ImportError:  # not built: only the Python and no-op rows
    _fastline = None  # type: ignore[assignment]

PROGRAMS = Path(__file__).resolve().parent / "trace_programs"


def _c_line_tracer(rec: tracer.TraceRecorder, ts: Any, act: Any) -> Any:
    extra = (tracer.fingerprint, tracer._node_of) if getattr(tracer, "_display_fingerprint", None) else ()
    return _fastline.LocalTracer(rec, ts, act, tracer.display, tracer._IMMUTABLE, tracer.CHUNK_STEPS, *extra)


class _Noop:
    """``sys.settrace`` function returning itself (``tracer.NoopTracer`` when it exists)."""

    def __init__(self, rec: tracer.TraceRecorder):
        self.rec = rec

    def _trace(self, frame: Any, event: str, arg: Any) -> Any:
        return self._trace

    def start(self) -> None:
        sys.settrace(self._trace)

    def stop(self) -> None:
        sys.settrace(None)


def run_once(program: Path, n: int, mode: str, out: str, split: bool = False) -> dict[str, float]:
    """Trace ``program n`` once: steps recorded, wall seconds, seconds in flush and (``split``)
    in ``display``."""
    rec = tracer.TraceRecorder(out, tracer.Scope([str(program.parent)]))
    spent = {"flush": 0.0, "display": 0.0}
    real_flush = rec.flush

    def timed_flush() -> None:
        t0 = time.perf_counter()
        real_flush()
        spent["flush"] += time.perf_counter() - t0

    def timed_display(value: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return real_display(value)
        finally:
            spent["display"] += time.perf_counter() - t0

    rec.flush = timed_flush  # type: ignore[method-assign]
    hooks = ("line_tracer", "_LocalTracer", "_chunk_columns", "_change_columns", "_display_fingerprint", "display",
             "_snapshot_locals_c", "_add_hits", "_GlobalTracer", "_Steps", "_returning_c", "_Changes", "_pack_nodes")
    saved = {name: tracer.__dict__[name] for name in hooks if name in tracer.__dict__}
    if mode == "c-local":  # the C path as it was before GlobalTracer, Steps, Changes, ...
        for name in ("_GlobalTracer", "_Steps", "_returning_c", "_Changes", "_pack_nodes"):
            setattr(tracer, name, None)
    if mode in ("c", "c-local"):
        if getattr(tracer, "_LocalTracer", None) is None:  # a tracer.py that does not use it by itself
            tracer.line_tracer = _c_line_tracer
    else:  # tracer.py's pure mode (REPLAY_PURE_TRACER=1), for the hooks it has
        tracer._LocalTracer = None  # type: ignore[attr-defined]
        for name in ("_chunk_columns", "_change_columns", "_add_hits", "display"):
            if hasattr(tracer, name + "_py"):
                setattr(tracer, name, getattr(tracer, name + "_py"))
        for name in ("_display_fingerprint", "_snapshot_locals_c", "_GlobalTracer", "_Steps", "_returning_c", "_Changes",
                     "_pack_nodes"):
            if hasattr(tracer, name):
                setattr(tracer, name, None)
    real_display = tracer.display
    if split:
        tracer.display = timed_display
    try:
        tr: Any = getattr(tracer, "NoopTracer", _Noop)(rec) if mode == "noop" else tracer.SettraceTracer(rec)
        sys.argv = [str(program), str(n)]
        with contextlib.redirect_stdout(io.StringIO()):
            t0, c0 = time.perf_counter(), time.thread_time()
            tr.start()
            try:
                runpy.run_path(str(program), run_name="__main__")
            finally:
                tr.stop()
            wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
    finally:
        for name in hooks:
            if name in saved:
                setattr(tracer, name, saved[name])
            else:
                tracer.__dict__.pop(name, None)
    rec.close()
    return {"steps": rec.base, "wall": wall, "cpu": cpu, **spent}


HOT = """
import sys


def arithmetic(n):
    total = 0
    scale = 0.5
    for i in range(n):
        x = i * 3 + 1
        if x % 7 == 0:
            total -= x // 7
        total += x % 97
        scale = scale * 0.999 + 1.0
    return total, scale


if __name__ == "__main__":
    print(arithmetic(int(sys.argv[1])))
"""


def bench(program: Path, n: int, repeats: int, work: str, split: bool) -> None:
    modes = ["noop", "python"] + (["c"] if _fastline is not None else [])
    if getattr(tracer, "_GlobalTracer", None) is not None:
        modes.insert(2, "c-local")
    with contextlib.redirect_stdout(io.StringIO()):
        sys.argv = [str(program), str(n)]
        runpy.run_path(str(program), run_name="__main__")  # warm imports and caches, untraced
    runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    same = "-"
    for _ in range(repeats):
        for mode in modes:
            runs[mode].append(run_once(program, n, mode, os.path.join(work, f"{mode}.rtrace"), split))
        if "c" in modes:
            reference = Path(work, "python.rtrace").read_bytes()
            identical = all(Path(work, f"{m}.rtrace").read_bytes() == reference for m in modes if m.startswith("c"))
            same = "yes" if identical and same in ("-", "yes") else "NO"
    steps = int(runs["python"][0]["steps"])
    print(f"\n{program.name} {n}: {steps:,} steps")
    rest = "w/o flush+display/s" if split else "w/o flush/s"
    noop = statistics.median(r["wall"] for r in runs["noop"])
    noop_cpu = statistics.median(r["cpu"] for r in runs["noop"])
    print(f"  {'mode':8} {'steps/s':>12} {'x python':>9} {'x noop':>7} {'cpu x noop':>10} {'flush %':>8}"
          + (f" {'display %':>9}" if split else "") + f" {rest:>20}")
    base = statistics.median(r["wall"] for r in runs["python"])
    for mode in modes:
        wall = statistics.median(r["wall"] for r in runs[mode])
        flush = statistics.median(r["flush"] for r in runs[mode])
        shown = statistics.median(r["display"] for r in runs[mode])
        cpu = statistics.median(r["cpu"] for r in runs[mode])
        line = f"  {mode:8} {steps / wall:12,.0f} {base / wall:9.2f} {wall / noop:7.1f} {cpu / noop_cpu:10.1f}"
        if mode == "noop":
            line += f" {'-':>8}" + (f" {'-':>9}" if split else "") + f" {'-':>20}"
        else:
            line += f" {100 * flush / wall:7.0f}%" + (f" {100 * shown / wall:8.0f}%" if split else "")
            line += f" {steps / (wall - flush - shown):20,.0f}"
        print(line)
    if "c" in modes:
        print(f"  C traces byte-identical to the Python trace: {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hot", type=int, default=100_000, help="N for the arithmetic loop (5 steps per unit)")
    parser.add_argument("--loops", type=int, default=60_000, help="N for loops.py (about 8 steps per unit)")
    parser.add_argument("--calls", type=int, default=10_000, help="N for calls.py (about 30 steps per unit)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--split", action="store_true", help="also time display() (adds a little overhead)")
    parser.add_argument("--quick", action="store_true", help="a quarter of each N, 3 repeats")
    args = parser.parse_args()
    if args.quick:
        args.hot, args.loops, args.calls, args.repeats = 25_000, 15_000, 2_500, 3
    print(f"Python {sys.version.split()[0]}, C extension: {'built' if _fastline else 'NOT BUILT'}; "
          f"load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as work:
        hot = Path(work, "app", "hot.py")
        hot.parent.mkdir()
        hot.write_text(HOT)
        bench(hot, args.hot, args.repeats, work, args.split)
        bench(PROGRAMS / "loops.py", args.loops, args.repeats, work, args.split)
        bench(PROGRAMS / "calls.py", args.calls, args.repeats, work, args.split)
    print(f"\nload after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
