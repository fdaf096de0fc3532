"""Cost of regenerating a trace, its size, and the time to reach any step of a long trace.

Issue 5's targets: at least 1,000,000 line events/s for application code, any step reached in
under 50 ms, memory bounded (no full trace held in RAM). The reference is the plain
``sys.settrace`` no-op tracer on the same program.

**Programs** (``benchmarks/trace_programs/`` and real libraries). Each is recorded once with
``replay record -o DIR -- python PROG ARGS`` (or ``-- -m MODULE ARGS``) in a scratch
directory, then its snapshot is replayed in three ways, each ``--repeats`` times:

* ``untraced``: ``run_replay(snapshot)``, no tracer;
* ``noop``: ``regenerate(..., backend="noop")``: a ``sys.settrace`` function that returns
  itself on every event and records nothing (the reference);
* ``traced``: ``regenerate(..., backend="auto")``, the real tracer (``settrace`` on 3.11,
  ``monitoring`` on 3.12+), writing the trace file. When ``replay/replayer/tracer.py``
  mentions ``REPLAY_PURE_TRACER`` (the C fast path ``replay.replayer._fastline`` can be
  switched off), a ``traced-pure`` row repeats it with ``REPLAY_PURE_TRACER=1``: ``traced``
  uses the C fast path when it is built (the first line says whether it is).

Times are ``outcome["duration_ns"]`` of the replay: the wall time of the replayed call alone
(process start, snapshot loading and writing the trace's tables are not in it). ``steps`` is
the real trace's step count (call, line, return and exception events of traced code; the
``line%`` column says how many are lines); ``events/s`` is steps / duration for the traced
and the noop runs alike (the noop tracer sees more events: it traces library code too, so
its figure is the speed at which a do-nothing tracer gets through the same work).
``x untraced`` is duration / untraced duration, ``ns/step`` (traced - untraced) / steps, and
``B/step`` the trace file's size / steps.

**Memory of the replay child**: every replay runs in a fresh subprocess of this benchmark (a
driver) whose only child is the replay process; the driver reports
``getrusage(RUSAGE_CHILDREN)``: ``ru_maxrss``, the peak resident set of that replay process
(interpreter, replay machinery, snapshot, the program's own data and, when tracing, the
recorder; ``RSS MB``), and its user + system time (``CPU s``, the whole process: start-up
and closing the trace included; less sensitive to the machine's load than ``ms``).
``+RSS`` is traced minus untraced: what tracing costs in memory. ``million.py`` is traced
once more at a tenth of its length, so the growth of the peak with the trace's length shows
(the recorder holds one chunk of steps, the live frames' values and about 40 bytes per
activation).

**Random access** on the long trace (``million.py``: >= 1,000,000 steps; ``--quick``: about
50,000) with ``TraceFile`` and ``TraceCursor`` in this process, over ``--samples`` random
steps (seeded): the open time; ``state(n)`` as the first read of a fresh ``TraceFile``
(cold: no chunk cached; the file itself is in the OS page cache, since it was just written),
on one long-lived ``TraceFile`` (its 16-chunk cache mostly misses) and again at once (warm);
``step(n)``; a diagnostic row repeating the long-lived reads with the cyclic garbage
collector off (the difference is collection pauses); cursor moves from a random step (step
into/over/out both ways, continue to a breakpoint on a rarely run line, go to the exception),
going to the position of another random step (40 samples, 10 with ``--quick``: one can walk
the whole trace) and the history of ``balance`` in ``main`` (scans the trace: 3 samples, 1
with ``--quick``). Rows print as they finish. Printed: median, p99 and max wall ms, and
the median CPU ms of this thread. Memory of this process: RSS before opening, the RSS peak
of each phase (reads, moves, history; the high-water mark is reset between phases through
``/proc/self/clear_refs``), and RSS after closing.

Usage: ``python benchmarks/bench_trace.py [--repeats R] [--samples S] [--quick]
[--only NAME,...|none] [--keep DIR]``. ``--quick`` (about a minute): smaller programs, 1
repeat, 40 samples, the shorter long trace. The full run takes several minutes (the tracer
runs at tens of thousands of events/s on the real libraries). Figures are wall-clock on this
machine and move with its load (printed before and after); medians of R repeats. Linux only
(``/proc``, ``ru_maxrss`` in KiB).
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import gc
import glob
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS_DIR = os.path.join(ROOT, "benchmarks", "trace_programs")
EVENTS_TARGET = 1_000_000  # line events/s for application code
STEP_TARGET_MS = 50.0  # any step reached in under this
REPLAY_TIMEOUT_S = 3600.0

# --------------------------------------------------------------------------- driver (subprocess)


def _driver(spec: dict[str, Any]) -> dict[str, Any]:
    """One replay, run in a fresh process so RUSAGE_CHILDREN sees only its replay child."""
    from replay.replayer.runner import run_replay
    from replay.replayer.traces import regenerate

    out: dict[str, Any] = {}
    if spec["mode"] == "untraced":
        run = run_replay(spec["snapshot"], timeout_s=REPLAY_TIMEOUT_S)
        if run.status != "ok":
            raise RuntimeError(f"replay {run.status}: {run.reason or run.output[-300:]}")
    else:
        result = regenerate(
            spec["snapshot"],
            refresh=True,
            backend=spec["backend"],
            directory=spec["dir"],
            include=spec["include"],
            timeout_s=REPLAY_TIMEOUT_S,
        )
        assert result.run is not None and result.run.trace is not None
        run, trace = result.run, result.run.trace
        out["steps"] = trace["steps"]
        out["truncated"] = trace["truncated"]
        out["size_bytes"] = os.path.getsize(result.path)
        out["path"] = result.path
        if spec["mode"] != "noop" and spec.get("kinds"):
            out["kinds"], out["tracer"], out["tracer_error"] = _kinds(result.path)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    out["maxrss_kb"] = usage.ru_maxrss  # Linux: KiB
    out["cpu_s"] = usage.ru_utime + usage.ru_stime  # the whole replay process
    out["duration_ns"] = run.outcome["duration_ns"]
    out["outcome"] = run.outcome.get("kind")
    out["diverged"] = bool(run.divergence)
    return out


def _kinds(path: str) -> tuple[list[int], str, str]:
    """Steps per kind (call, line, return, exception), and the tracer and the error that
    stopped it (empty if none) named in the trace header."""
    from replay.replayer.tracefile import TraceFile

    counts = [0, 0, 0, 0]
    with TraceFile(path) as trace:
        for k in range(len(trace.summaries)):
            kinds = trace.chunk(k).kind
            for kind in range(4):
                counts[kind] += kinds.count(kind)
        header = trace.header
        return counts, str(header.get("tracer", "?")), str(header.get("tracer_error") or "")


def replay_in_driver(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run :func:`_driver` in a subprocess; its result map, or ``{"error": why}``."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--driver", json.dumps(spec)],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail[:120]}
    return json.loads(lines[-1])


# --------------------------------------------------------------------------- programs


@dataclasses.dataclass
class Program:
    """A program to record and trace.

    ``argv(world, quick)`` gives what follows ``replay record -o DIR --``; ``include`` the
    globs of library files traced as application code; ``max_traced`` caps traced repeats.
    """

    name: str
    origin: str
    argv: Callable[[str, bool], list[str]]
    include: list[str] = dataclasses.field(default_factory=list)
    max_traced: int = 99


def _prog(name: str) -> str:
    return os.path.join(PROGRAMS_DIR, name)


def programs() -> list[Program]:
    def md(w: str, q: bool) -> list[str]:
        return ["-m", "markdown_it.cli.parse", os.path.join(w, "small.md" if q else "doc.md")]

    def sqlite(w: str, q: bool) -> list[str]:
        rows = os.path.join(w, "rows50.json" if q else "rows500.json")
        db = os.path.join(w, "db.sqlite")
        return ["-m", "sqlite_utils", "insert", db, "rows", rows, "--pk", "id"]

    def pygments(w: str, q: bool) -> list[str]:
        return ["python", _prog("highlight.py"), os.path.join(w, "source.py"), "1" if q else "40"]

    return [
        Program("loops", "ours: arithmetic loops, list building",
                lambda w, q: ["python", _prog("loops.py"), "10000" if q else "60000"]),
        Program("calls", "ours: recursion, small methods, objects",
                lambda w, q: ["python", _prog("calls.py"), "2000" if q else "10000"]),
        Program("difflib", "stdlib difflib: unified diff of two texts",
                lambda w, q: ["python", _prog("diff_texts.py"), "400" if q else "2000"],
                ["*/difflib.py"]),
        Program("pygments", "PyPI pygments: highlight Python as HTML", pygments, ["*/pygments/*"]),
        Program("markdown-it", "PyPI markdown-it-py CLI: render Markdown", md, ["*/markdown_it/*"]),
        Program("sqlite-utils", "PyPI sqlite-utils CLI: insert JSON rows", sqlite,
                ["*/sqlite_utils/*"]),
    ]


LONG = Program("million", "ours: orders and stock, >= 1M steps", lambda w, q: [], max_traced=1)


def long_argv(orders: int) -> list[str]:
    return ["python", _prog("million.py"), str(orders)]


def make_world(directory: str) -> None:
    """Input files of the real programs: a Python source, Markdown documents, JSON rows."""
    shutil.copyfile(difflib.__file__, os.path.join(directory, "source.py"))
    section = (
        "## Section {i}\n\nSome *emphasis*, **strong** text, `code {i}` and a "
        "[link](http://example.com/{i}).\n\n- item one\n- item _two_\n  - nested\n\n"
        "> quoted\n\n```python\nprint({i})\n```\n\n| a | b |\n|---|---|\n| {i} | 2 |\n\n"
    )
    with open(os.path.join(directory, "doc.md"), "w", encoding="utf-8") as fh:
        fh.write("".join(section.format(i=i) for i in range(2)))
    with open(os.path.join(directory, "small.md"), "w", encoding="utf-8") as fh:
        fh.write("# Title\n\nSome *text* and `code`.\n\n- one\n- two\n")
    for count in (50, 500):
        rows = [
            {"id": i, "name": f"n{i}", "value": i * 1.5, "tags": ["a", "b"][: i % 3]}
            for i in range(count)
        ]
        with open(os.path.join(directory, f"rows{count}.json"), "w", encoding="utf-8") as fh:
            json.dump(rows, fh)


def record(argv: list[str], world: str, out_dir: str) -> str:
    """Record one run with ``replay record``; the snapshot's path."""
    os.makedirs(out_dir)
    cli = "import sys; from replay.cli import main; sys.argv[0] = 'replay'; sys.exit(main())"
    proc = subprocess.run(
        [sys.executable, "-c", cli, "record", "-o", out_dir, "--", *argv],
        cwd=world,
        capture_output=True,
        text=True,
        check=False,
    )
    found = glob.glob(os.path.join(out_dir, "*.rsnap"))
    if not found:
        raise RuntimeError(f"recording {' '.join(argv)} failed: {proc.stderr.strip()[-300:]}")
    return found[0]


# --------------------------------------------------------------------------- measuring programs


@dataclasses.dataclass
class Figures:
    """Medians over repeats of one replay mode, or ``error``."""

    duration_ns: float = 0.0
    maxrss_kb: float = 0.0
    cpu_s: float = 0.0
    steps: int = 0
    size_bytes: int = 0
    kinds: list[int] = dataclasses.field(default_factory=list)
    tracer: str = ""
    path: str = ""
    error: str = ""
    note: str = ""


def measure(spec: dict[str, Any], repeats: int, env: dict[str, str] | None = None) -> Figures:
    runs = []
    for i in range(repeats):
        got = replay_in_driver({**spec, "kinds": i == 0}, env)
        if "error" in got:
            return Figures(error=got["error"])
        runs.append(got)
        if i < repeats - 1 and got.get("path"):
            os.remove(got["path"])
    first, last = runs[0], runs[-1]
    flags = (f"TRACER STOPPED: {first['tracer_error']}" if first.get("tracer_error") else "",
             "diverged" if first["diverged"] else "",
             "cut at max_steps" if first.get("truncated") else "",
             f"outcome {first['outcome']}" if first["outcome"] != "return" else "")
    return Figures(
        statistics.median(r["duration_ns"] for r in runs),
        statistics.median(r["maxrss_kb"] for r in runs),
        statistics.median(r["cpu_s"] for r in runs),
        first.get("steps", 0), first.get("size_bytes", 0), first.get("kinds", []),
        first.get("tracer", ""), last.get("path", ""), note=", ".join(x for x in flags if x),
    )


def tracer_variants() -> list[tuple[str, dict[str, str]]]:
    """``traced`` and, when the C fast path can be switched off, ``traced-pure``."""
    from replay.replayer import tracer

    with open(tracer.__file__, encoding="utf-8") as fh:
        pure_switch = "REPLAY_PURE_TRACER" in fh.read()
    return [("traced", {})] + (
        [("traced-pure", {"REPLAY_PURE_TRACER": "1"})] if pure_switch else []
    )


def measure_program(
    snapshot: str,
    include: list[str],
    repeats: int,
    traced_repeats: int,
    work: str,
    variants: list[tuple[str, dict[str, str]]],
) -> dict[str, Figures]:
    spec = {"snapshot": snapshot, "include": include, "dir": work}
    out = {
        "untraced": measure({**spec, "mode": "untraced"}, repeats),
        "noop": measure({**spec, "mode": "noop", "backend": "noop"}, repeats),
    }
    for name, env in variants:
        out[name] = measure({**spec, "mode": "traced", "backend": "auto"}, traced_repeats, env)
    return out


def _rate(steps: int, ns: float) -> str:
    return f"{steps / ns * 1e9:,.0f}" if ns > 0 and steps else "-"


def _row(name: str, mode: str, f: Figures, base: Figures, steps: int) -> str:
    """One line of the programs table (``steps``: the real trace's, for the noop rate)."""
    dash = "-"
    ms = f.duration_ns / 1e6
    slow = f"{f.duration_ns / base.duration_ns:10.1f}" if not base.error else f"{dash:>10}"
    rss = f"{f.maxrss_kb / 1024:7.1f}"
    if not mode.startswith("traced"):
        rate = _rate(steps, f.duration_ns) if mode == "noop" else dash
        return (f"{name:13} {mode:11} {'':>9} {'':>5} {ms:9,.1f} {rate:>11} {slow} {'':>8} {'':>6} "
                f"{rss} {'':>7} {f.cpu_s:6.2f}  {f.note}")
    line = f"{100 * f.kinds[1] / sum(f.kinds):5.1f}" if sum(f.kinds) else f"{dash:>5}"
    per, size, grow = f"{dash:>8}", f"{dash:>6}", f"{dash:>7}"
    if f.steps:
        size = f"{f.size_bytes / f.steps:6.1f}"
    if f.steps and not base.error:
        per = f"{(f.duration_ns - base.duration_ns) / f.steps:8,.0f}"
    if not base.error:
        grow = f"{(f.maxrss_kb - base.maxrss_kb) / 1024:7.1f}"
    note = ", ".join(x for x in (f"tracer {f.tracer}" if f.tracer else "", f.note) if x)
    rate = _rate(f.steps, f.duration_ns)
    return (f"{name:13} {mode:11} {f.steps:>9,} {line} {ms:9,.1f} {rate:>11} "
            f"{slow} {per} {size} {rss} {grow} {f.cpu_s:6.2f}  {note}")


def print_program_header() -> None:
    head = (f"{'program':13} {'mode':11} {'steps':>9} {'line%':>5} {'ms':>9} {'events/s':>11} "
            f"{'x untraced':>10} {'ns/step':>8} {'B/step':>6} {'RSS MB':>7} {'+RSS MB':>7} "
            f"{'CPU s':>6}  note")
    print(head)
    print("-" * len(head), flush=True)


def print_program_rows(prog: Program, figs: dict[str, Figures]) -> None:
    steps = figs.get("traced", Figures()).steps
    for mode, f in figs.items():
        if f.error:
            print(f"{prog.name:13} {mode:11} not measured: {f.error}")
        else:
            print(_row(prog.name, mode, f, figs["untraced"], steps))
    sys.stdout.flush()


# --------------------------------------------------------------------------- random access


@dataclasses.dataclass
class Timing:
    """Wall-clock samples of one operation (ms) and the CPU time this thread spent on them."""

    name: str
    samples: list[float] = dataclasses.field(default_factory=list)
    cpu: list[float] = dataclasses.field(default_factory=list)
    note: str = ""

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, timed; its result."""
        t0, c0 = time.perf_counter_ns(), time.thread_time_ns()
        got = fn(*args, **kwargs)
        c1, t1 = time.thread_time_ns(), time.perf_counter_ns()
        self.samples.append((t1 - t0) / 1e6)
        self.cpu.append((c1 - c0) / 1e6)
        return got

    def cells(self) -> str:
        s = sorted(self.samples)
        p99 = s[max(math.ceil(0.99 * len(s)) - 1, 0)]
        return (
            f"{self.name:42} {len(s):>7} {statistics.median(s):9.2f} {p99:9.2f} {s[-1]:9.2f} "
            f"{statistics.median(self.cpu):9.2f} {max(self.cpu):9.2f}  {self.note}"
        )


def _rss_kb(field: str = "VmRSS") -> int:
    """This process's ``VmRSS`` (or ``VmHWM``, its peak) in KiB, from /proc (Linux)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0); False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def random_access(path: str, samples: int, position_samples: int, history_samples: int,
                  report: Callable[[Timing], None], seed: int = 5) -> dict[str, Any]:
    """Time reads and cursor moves on the trace at ``path``; ``report`` gets each row when done.

    Returns:
        Memory figures of this process in KiB: ``rss_before``, ``rss_after`` and the RSS peak
        of each phase (``peak_reads``, ``peak_moves``, ``peak_history``; the process's peak
        so far when the high-water mark cannot be reset: ``peak_reset`` False).
    """
    from replay.replayer.cursor import Breakpoint, TraceCursor
    from replay.replayer.tracefile import TraceFile

    rng = random.Random(seed)
    mem: dict[str, Any] = {"rss_before": _rss_kb(), "peak_reset": _reset_peak()}
    with TraceFile(path) as probe:
        total = probe.steps
    picks = [rng.randrange(total) for _ in range(samples)]
    size = f"{total:,} steps, {os.path.getsize(path) / 2**20:.1f} MiB"
    opens = Timing("open TraceFile", note=size)
    cold = Timing("state(n), first read of a fresh TraceFile", note="cold: no chunk cached")
    shared = Timing("state(n), one long-lived TraceFile", note="random n")
    warm = Timing("state(n) again at once", note="warm: its chunk cached")
    steps = Timing("step(n), one long-lived TraceFile", note="random n")
    for n in picks:
        fresh = opens.run(TraceFile, path)
        cold.run(fresh.state, n)
        fresh.close()
    trace = TraceFile(path)
    for n in picks:
        shared.run(trace.state, n)
        warm.run(trace.state, n)
    for n in picks:
        steps.run(trace.step, n)
    for timing in (opens, cold, shared, warm, steps):
        report(timing)
    mem["peak_reads"] = _rss_kb("VmHWM")
    # Diagnostic: the same reads on a second long-lived file with the cyclic collector off,
    # to tell decoding time from the full collections the decoded chunks' objects trigger.
    timing = Timing("state(n), long-lived, gc disabled", note="diagnostic: no collector pauses")
    with TraceFile(path) as other:
        gc.disable()
        try:
            for n in picks:
                timing.run(other.state, n)
        finally:
            gc.enable()
    del other  # its chunk cache goes now, before the next phase's peak is taken
    report(timing)
    gc.collect()
    _reset_peak()
    with open(os.path.join(PROGRAMS_DIR, "million.py"), encoding="utf-8") as fh:
        rare = next(i for i, text in enumerate(fh, 1) if "item.stock += 50" in text)
    breakpoints = [Breakpoint("million.py", rare)]
    moves: list[tuple[str, Callable[[TraceCursor], Any], str]] = [
        ("cursor.step_into()", lambda c: c.step_into(), ""),
        ("cursor.step_into(back=True)", lambda c: c.step_into(back=True), ""),
        ("cursor.step_over()", lambda c: c.step_over(), ""),
        ("cursor.step_over(back=True)", lambda c: c.step_over(back=True), ""),
        ("cursor.step_out()", lambda c: c.step_out(), ""),
        ("cursor.step_out(back=True)", lambda c: c.step_out(back=True), ""),
        ("cursor.continue_() to a breakpoint", lambda c: c.continue_(breakpoints=breakpoints),
         f"million.py:{rare} (in restock: runs rarely)"),
        ("cursor.goto_exception()", lambda c: c.goto_exception(), "the last exception raised"),
    ]
    for name, move, note in moves:
        timing = Timing(name, note=note)
        for n in picks:
            cursor = TraceCursor(trace, n)
            timing.run(move, cursor)
        report(timing)
    # Positions of other random steps (whole-trace walks can take seconds: fewer samples).
    positions = [trace.position(rng.randrange(total)) for _ in range(position_samples)]
    timing = Timing("cursor.goto_position(random position)")
    for text in positions:
        cursor = TraceCursor(trace, 0)
        timing.run(cursor.goto_position, text)
    slowest = positions[timing.samples.index(max(timing.samples))]
    timing.note = f"slowest: {slowest}"
    report(timing)
    mem["peak_moves"] = _rss_kb("VmHWM")
    _reset_peak()
    timing = Timing("cursor.history('balance', function='main')")
    found = 0
    for n in picks[:history_samples]:
        cursor = TraceCursor(trace, n)
        found = len(timing.run(cursor.history, "balance", function="main"))
    timing.note = f"{found:,} changes (the default limit is 10,000)"
    report(timing)
    mem["peak_history"] = _rss_kb("VmHWM")
    trace.close()
    del trace, cursor
    gc.collect()
    mem["rss_after"] = _rss_kb()
    return mem


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3,
                        help="replays per mode; figures are medians (default 3)")
    parser.add_argument("--samples", type=int, default=200,
                        help="random steps for the access figures (default 200)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: small programs, 1 repeat, 40 samples, a shorter trace")
    parser.add_argument("--only", default="",
                        help="comma-separated programs (default: all; 'none': only the long trace)")
    parser.add_argument("--keep", default="", help="keep snapshots and traces in this directory")
    parser.add_argument("--driver", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.driver:
        print(json.dumps(_driver(json.loads(args.driver))))
        return
    if args.quick:
        args.repeats, args.samples = 1, 40
    chosen = programs()
    if args.only:
        chosen = [p for p in chosen if p.name in set(args.only.split(","))]
        if not chosen and args.only != "none":
            names = ", ".join(p.name for p in programs())
            parser.error(f"no program {args.only}; programs: {names}")
    started = time.perf_counter()
    work = args.keep or tempfile.mkdtemp(prefix="replay-bench-trace-")
    try:
        run(args, chosen, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"(ran {time.perf_counter() - started:.0f} s)")


def run(args: argparse.Namespace, chosen: list[Program], work: str) -> None:
    """Record and measure the programs, then the long trace; print the tables."""
    long_orders = 1_500 if args.quick else 31_000
    variants = tracer_variants()
    world = os.path.join(work, "world")
    os.makedirs(world, exist_ok=True)
    make_world(world)
    only = "" if len(variants) > 1 else " (tracer.py has no REPLAY_PURE_TRACER switch)"
    try:
        import replay.replayer._fastline  # noqa: F401
        fast = "built"
    except ImportError:
        fast = "not built: traced is the pure Python tracer"
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average before the run "
          f"{os.getloadavg()[0]:.2f}; tracer variants: {', '.join(v for v, _ in variants)}{only}; "
          f"C fast path (replay.replayer._fastline): {fast}")
    print(f"medians of {args.repeats} replays per mode (the long program: 1 traced replay); "
          "ms: the replayed call's wall time; RSS: peak RSS of the replay process; "
          "CPU s: its whole CPU time")
    print()
    print_program_header()
    results = []
    for prog in chosen:
        snap = record(prog.argv(world, args.quick), world, os.path.join(work, "snap-" + prog.name))
        figs = measure_program(snap, prog.include, args.repeats, min(args.repeats, prog.max_traced),
                               work, variants)
        results.append((prog, figs))
        print_program_rows(prog, figs)
        for f in figs.values():
            if f.path and os.path.exists(f.path):
                os.remove(f.path)
    # The long program: a tenth of it first (memory growth with length), then the full trace.
    tenth_snap = record(long_argv(long_orders // 10), world, os.path.join(work, "snap-tenth"))
    tenth = measure({"snapshot": tenth_snap, "include": [], "dir": work, "mode": "traced",
                     "backend": "auto"}, 1)
    if tenth.path:
        os.remove(tenth.path)
    long_snap = record(long_argv(long_orders), world, os.path.join(work, "snap-million"))
    long_figs = measure_program(long_snap, [], args.repeats, 1, work, variants)
    results.append((LONG, long_figs))
    print_program_rows(LONG, long_figs)
    print()
    traced = long_figs["traced"]
    if not traced.error and not tenth.error and traced.steps > tenth.steps:
        per_m = (traced.maxrss_kb - tenth.maxrss_kb) / 1024 / (traced.steps - tenth.steps) * 1e6
        print(f"replay process peak RSS tracing million.py: {tenth.maxrss_kb / 1024:.1f} MB at "
              f"{tenth.steps:,} steps, {traced.maxrss_kb / 1024:.1f} MB at {traced.steps:,} steps: "
              f"{per_m:+.1f} MB per million steps (untraced, full length: "
              f"{long_figs['untraced'].maxrss_kb / 1024:.1f} MB)")
    timings: list[Timing] = []
    mem: dict[str, Any] = {}
    if traced.error or not traced.path:
        print(f"random access not measured: the long trace failed: {traced.error}")
    else:
        print(f"random access in the {traced.steps:,}-step trace of million.py ({args.samples} "
              "random steps, seeded); wall ms, and CPU ms of this thread (median, max)")
        head = (f"{'operation':42} {'samples':>7} {'median':>9} {'p99':>9} {'max':>9} "
                f"{'cpu med':>9} {'cpu max':>9}  note")
        print(head)
        print("-" * len(head), flush=True)

        def report(timing: Timing) -> None:
            timings.append(timing)
            print(timing.cells(), flush=True)

        positions, histories = (10, 1) if args.quick else (40, 3)
        mem = random_access(traced.path, args.samples, positions, histories, report)
        peak = "peak" if mem["peak_reset"] else "peak of the process so far (could not reset it)"
        print(f"reader memory (this process, RSS): {mem['rss_before'] / 1024:.1f} MB before "
              f"opening; {peak} {mem['peak_reads'] / 1024:.1f} MB during the reads, "
              f"{mem['peak_moves'] / 1024:.1f} MB during the moves, "
              f"{mem['peak_history'] / 1024:.1f} MB during history; "
              f"{mem['rss_after'] / 1024:.1f} MB after closing and a collection (freed memory the "
              "allocator keeps)")
    print_summary(results, timings, mem)
    print(f"load average after the run {os.getloadavg()[0]:.2f}")


def print_summary(results: list[tuple[Program, dict[str, Figures]]], timings: list[Timing],
                  mem: dict[str, Any]) -> None:
    print()
    print(f"summary against the targets: >= {EVENTS_TARGET:,} events/s of application code; "
          f"any step reached in < {STEP_TARGET_MS:g} ms; memory bounded (no full trace in RAM)")
    head = (f"{'program':13} {'origin':44} {'traced ev/s':>12} {'noop ev/s':>12} "
            f"{'traced/noop':>11} {'+RSS MB':>7}  >= 1M/s")
    print(head)
    print("-" * len(head))
    for prog, figs in results:
        for mode, f in figs.items():
            if not mode.startswith("traced"):
                continue
            noop, base = figs["noop"], figs["untraced"]
            label = prog.name if mode == "traced" else f"  ({mode.removeprefix('traced-')})"
            if f.error or noop.error or base.error:
                print(f"{label:13} {prog.origin:44} not measured")
                continue
            rate = f.steps / f.duration_ns * 1e9
            print(f"{label:13} {prog.origin:44} {rate:12,.0f} "
                  f"{_rate(f.steps, noop.duration_ns):>12} "
                  f"{f.duration_ns / noop.duration_ns:11.1f} "
                  f"{(f.maxrss_kb - base.maxrss_kb) / 1024:7.1f}  "
                  f"{'yes' if rate >= EVENTS_TARGET else 'NO'}")
    if not timings:
        return
    reach = [t for t in timings
             if t.name.startswith(("state(n)", "step(n)")) and "gc" not in t.name]
    worst = max(reach, key=lambda t: max(t.samples))
    verdict = "meets" if max(worst.samples) < STEP_TARGET_MS else "MISSES"
    print(f"reaching a random step (state/step, {sum(len(t.samples) for t in reach)} reads): worst "
          f"{max(worst.samples):.1f} ms ({worst.name}): {verdict} the {STEP_TARGET_MS:g} ms target")
    over = [f"{t.name} (median {statistics.median(t.samples):,.1f}, max {max(t.samples):,.0f} ms)"
            for t in timings if max(t.samples) >= STEP_TARGET_MS]
    print(f"operations over {STEP_TARGET_MS:g} ms at least once: " + ("; ".join(over) or "none"))
    peak = max(mem["peak_reads"], mem["peak_moves"], mem["peak_history"])
    print(f"reader memory: RSS peak {peak / 1024:.1f} MB (from {mem['rss_before'] / 1024:.1f} MB "
          "before opening)")


if __name__ == "__main__":
    main()
