"""Time of ``diff_traces`` on two 1,000,000-step traces that differ in one value.

Two small loop programs are traced in this process (the settrace tracer, as the unit tests
do), each twice: A as it is, B with one iteration (the middle one) computing a different
value, so that a handful of rows differ (``a vs b``), and C with one extra statement in
the middle iteration (``a vs c``: an insertion, so the call tree is walked, not compared
whole). Then
``diff_traces(A, A)`` and ``diff_traces(A, B)`` are timed (best of ``--repeats``) and the
rows, the differing blocks and the peak RSS of this process are printed.

* ``calls``: every iteration calls a function (6 steps and one activation per iteration):
  the call-tree walk at its most expensive;
* ``flat``: a loop without calls (3 steps per iteration) in one activation.

Usage: ``python benchmarks/bench_diff.py [--steps N] [--repeats R]``.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from replay.diff import diff_traces
from replay.replayer.tracefile import TraceFile
from replay.replayer.tracer import Scope, SettraceTracer, TraceRecorder

PROGRAMS = {
    "calls": ("""\
def step(i, k):
    return i * k


def main(n, odd, extra=-1):
    last = 0
    for i in range(n):
        last = step(i, 3 if i != odd else 4)
        if i == extra:
            step(0, 0)
    return last
""", 6),
    "flat": ("""\
def main(n, odd, extra=-1):
    last = 0
    for i in range(n):
        last = i if i != odd else -i
        if i == extra:
            last = 0
    return last
""", 3),
}


def record(root: Path, name: str, source: str, n: int, odd: int, extra: int = -1) -> Path:
    """Trace ``main(n, odd, extra)`` of ``source`` into ``root/NAME.rtrace``."""
    src = root / f"{name}.py"
    src.write_text(source)
    spec = importlib.util.spec_from_file_location(name, src)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = root / f"{name}.rtrace"
    rec = TraceRecorder(str(path), Scope([str(root)]), max_steps=10**9)
    tracer = SettraceTracer(rec)
    gc.disable()
    tracer.start()
    try:
        module.main(n, odd, extra)
    finally:
        tracer.stop()
        gc.enable()
    rec.close()
    return path


def best(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000, help="Steps per trace (about).")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(f"{'program':<8} {'steps':>10} {'calls':>8} {'case':<8} {'rows':>10} {'blocks':>6} {'s':>7} {'rows/s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, (source, per_iter) in PROGRAMS.items():
            n = args.steps // per_iter
            pa = record(root, f"{name}_a", source, n, -1)
            pb = record(root, f"{name}_b", source, n, n // 2)
            pc = record(root, f"{name}_c", source, n, -1, n // 2)
            with TraceFile(pa) as a, TraceFile(pb) as b, TraceFile(pc) as c:
                for case, other in (("a vs a", a), ("a vs b", b), ("a vs c", c)):
                    secs, diff = best(lambda other=other: diff_traces(a, other), args.repeats)
                    print(f"{name:<8} {a.steps:>10,} {a.activations:>8,} {case:<8} {len(diff):>10,} "
                          f"{len(diff.block_starts):>6} {secs:>7.2f} {len(diff) / secs:>10,.0f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB (tracing included)")


if __name__ == "__main__":
    main()
