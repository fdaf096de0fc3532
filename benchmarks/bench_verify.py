"""Wall time of ``replay verify`` on 100 snapshots of the sample service, with -j 1 and -j 2.

The corpus is built from the six checked-in sample snapshots (sample_snapshots/snapshots),
copied round-robin into ``--count`` files (recording new ones needs libfaketime and gives
the same work per snapshot). Each snapshot costs two replays (the baseline against the
recorded sources, then the candidate sample_snapshots/fixes/correct), driven by
:func:`replay.verify.batch.run_batch` exactly as the CLI drives them: past two snapshots the
replays are forked from warm fork servers (:mod:`replay.replayer.forkserver`); ``--fresh``
also times the same corpus with a new interpreter per replay. For each ``-j`` the best and
median of ``--repeats`` runs are printed with the cost per snapshot and the CPU time used
(this process and its children; on a shared machine CPU time divided by the cores is the
wall time an idle machine would show), then a breakdown of one replay (interpreter
start-up, imports of the replay child, the rest; and one forked replay).

Bytecode: an installed package has its ``.pyc`` files (pip compiles them). A checkout run
with ``PYTHONDONTWRITEBYTECODE=1`` has none, and then every replay process compiles the
replay package's sources again. ``--bytecode compile`` (default) compiles the package first,
as an install would; ``--bytecode as-is`` measures the checkout as it is.

Target (DESIGN.md section 9): 100 snapshots in under 30 s on 2 cores.

Usage: ``python benchmarks/bench_verify.py [--count N] [--jobs 1,2] [--repeats R] [--fresh]``.
"""

from __future__ import annotations

import argparse
import compileall
import glob
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import replay
from replay.replayer.forkserver import ForkServerPool
from replay.replayer.runner import run_replay
from replay.verify.batch import (
    Candidate,
    collect_snapshots,
    default_jobs,
    prepare_candidate,
    run_batch,
)

REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "sample_snapshots"


def build_corpus(directory: Path, count: int) -> None:
    """``count`` copies of the sample snapshots, ``NNN-<scenario>.rsnap``."""
    samples = sorted(glob.glob(str(SAMPLES / "snapshots" / "*" / "*.rsnap")))
    for i in range(count):
        src = samples[i % len(samples)]
        shutil.copyfile(src, directory / f"{i:03d}-{Path(src).parent.name}.rsnap")


def cpu_seconds() -> float:
    """User + system CPU time of this process and its waited-for children, in seconds."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_command(argv: list[str], runs: int = 5) -> float:
    """Median wall time of a command, in seconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def median_replay_s(snapshot: str, server: ForkServerPool | None, runs: int = 5) -> float:
    """Median wall time of one baseline replay, in seconds."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run_replay(snapshot, mode="strict", server=server)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def breakdown(snapshot: str) -> None:
    """Where one replay's time goes (medians of 5)."""
    bare = time_command([sys.executable, "-c", "pass"])
    imports = time_command([sys.executable, "-P", "-c", "import replay.replayer.child"])
    fresh = median_replay_s(snapshot, None)
    with ForkServerPool() as pool:
        run_replay(snapshot, server=pool)  # start the server
        forked = median_replay_s(snapshot, pool)
    print("\none replay (median of 5):")
    print(f"  interpreter start-up        {bare * 1000:7.1f} ms")
    print(f"  + imports of the child      {(imports - bare) * 1000:7.1f} ms")
    print(f"  + the replay itself         {(fresh - imports) * 1000:7.1f} ms  (snapshot, sources, tape, call, result)")
    print(f"  = one fresh replay          {fresh * 1000:7.1f} ms;  a verdict needs two")
    print(f"  one forked replay           {forked * 1000:7.1f} ms  (from a warm fork server)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100, help="snapshots in the corpus")
    parser.add_argument("--jobs", default="1,2", help="comma-separated -j values")
    parser.add_argument("--repeats", type=int, default=1, help="runs per -j (median and best printed)")
    parser.add_argument("--fresh", action="store_true", help="also time a new interpreter per replay")
    parser.add_argument("--bytecode", choices=("compile", "as-is"), default="compile",
                        help="compile the replay package's .pyc files first, as an install does (default)")
    parser.add_argument("--no-breakdown", action="store_true", help="skip the per-replay breakdown")
    args = parser.parse_args()
    jobs_list = [int(j) for j in args.jobs.split(",")]
    if args.bytecode == "compile":
        compileall.compile_dir(os.path.dirname(replay.__file__), quiet=1)
    print(f"python {sys.version.split()[0]}, {default_jobs()} cores available, load average "
          f"{os.getloadavg()[0]:.1f}; {args.count} snapshots, candidate sample_snapshots/fixes/correct; "
          f"bytecode {args.bytecode}")
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp:
        corpus = Path(tmp) / "corpus"
        corpus.mkdir()
        build_corpus(corpus, args.count)
        items = collect_snapshots([str(corpus)], tmp)
        roots = prepare_candidate(Candidate((str(SAMPLES / "fixes" / "correct"),)), items, tmp)
        print(f"{'replays':>7} {'jobs':>4} {'best s':>8} {'median s':>9} {'per snapshot':>13} {'CPU s':>7} "
              f"{'CPU/cores s':>12}  verdicts")
        for fork_server in [True, False] if args.fresh else [True]:
            for jobs in jobs_list:
                walls, cpus = [], []
                verdicts: Counter[str] = Counter()
                for _ in range(args.repeats):
                    cpu0 = cpu_seconds()
                    report = run_batch(items, roots, jobs=jobs, fork_server=fork_server)
                    cpus.append(cpu_seconds() - cpu0)
                    walls.append(report.wall_time_s)
                    verdicts = Counter(o.label for o in report.outcomes)
                    if report.fork_server.get("fallbacks"):
                        verdicts["(fresh fallbacks)"] = report.fork_server["fallbacks"]
                best, median, cpu = min(walls), statistics.median(walls), statistics.median(cpus)
                print(f"{'forked' if fork_server else 'fresh':>7} {jobs:>4} {best:8.2f} {median:9.2f} "
                      f"{median / args.count * 1000:10.0f} ms {cpu:7.1f} {cpu / min(jobs, default_jobs()):12.1f}  "
                      f"{dict(sorted(verdicts.items()))}")
        if not args.no_breakdown:
            breakdown(items[0].path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
