"""Capture overhead per boundary call, per channel (DESIGN.md section 9: under 2 us).

For each boundary function this prints the median cost of one call:

* ``real``: the original function, before replay is installed;
* ``idle``: with the interceptors installed but no recording active (every process that
  imports a captured module pays this on every call);
* ``recording``: inside an active recording (the call is appended to the tape);
* ``overhead``: recording minus real.

Usage: ``python benchmarks/bench_capture.py [--calls N] [--repeats R]``. Medians of R
repeats of N calls each; numbers are wall-clock ns on this machine and move with its load,
so compare ratios between rows rather than absolute values across machines.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import secrets
import statistics
import time
import uuid
from collections.abc import Callable

CASES: list[tuple[str, str, Callable[[], object]]] = [
    ("clock", "time.time()", lambda: time.time()),
    ("clock", "time.time_ns()", lambda: time.time_ns()),
    ("clock", "time.monotonic()", lambda: time.monotonic()),
    ("clock", "time.perf_counter_ns()", lambda: time.perf_counter_ns()),
    ("clock", "datetime.now()", lambda: dt.datetime.now()),
    ("clock", "datetime.now(utc)", lambda: dt.datetime.now(dt.UTC)),
    ("clock", "date.today()", lambda: dt.date.today()),
    ("random", "random.random()", lambda: random.random()),
    ("random", "random.randint(1, 6)", lambda: random.randint(1, 6)),
    ("random", "random.getrandbits(64)", lambda: random.getrandbits(64)),
    ("random", "os.urandom(16)", lambda: os.urandom(16)),
    ("random", "secrets.token_hex(8)", lambda: secrets.token_hex(8)),
    ("random", "uuid.uuid4()", lambda: uuid.uuid4()),
    ("uuid", "uuid.uuid1()", lambda: uuid.uuid1()),
    ("env", "os.environ['HOME']", lambda: os.environ["PATH"]),
    ("env", "os.getenv('MISSING')", lambda: os.getenv("REPLAY_BENCH_MISSING")),
]


def per_call_ns(fn: Callable[[], object], calls: int, repeats: int, setup: Callable[[], object] | None = None) -> float:
    """Median over ``repeats`` of (time for ``calls`` calls) / calls, in ns."""
    samples = []
    for _ in range(repeats):
        context = setup() if setup else None
        loop = range(calls)
        start = time.perf_counter_ns()
        for _ in loop:
            fn()
        elapsed = time.perf_counter_ns() - start
        if context is not None:
            context.__exit__(None, None, None)  # type: ignore[attr-defined]
        samples.append(elapsed / calls)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    # Measure the real functions first, before anything is installed.
    empty = per_call_ns(lambda: None, args.calls, args.repeats)
    real = {name: per_call_ns(fn, args.calls, args.repeats) - empty for _, name, fn in CASES}

    from replay.capture.boundary import ACTIVE
    from replay.capture.interceptors import install
    from replay.capture.recorder import Recorder

    install()
    idle = {name: per_call_ns(fn, args.calls, args.repeats) - empty for _, name, fn in CASES}

    class Active:
        def __init__(self) -> None:
            self.token = ACTIVE.set(Recorder())

        def __exit__(self, *exc: object) -> None:
            ACTIVE.reset(self.token)

    recording = {name: per_call_ns(fn, args.calls, args.repeats, setup=Active) - empty for _, name, fn in CASES}

    print(f"capture overhead per boundary call (median of {args.repeats} x {args.calls} calls, ns)")
    print(f"{'channel':8} {'call':24} {'real':>8} {'idle':>8} {'recording':>10} {'overhead':>9}")
    for channel, name, _ in CASES:
        print(f"{channel:8} {name:24} {real[name]:8.0f} {idle[name]:8.0f} {recording[name]:10.0f} "
              f"{recording[name] - real[name]:9.0f}")
    overheads = [recording[n] - real[n] for _, n, _ in CASES]
    idles = [idle[n] - real[n] for _, n, _ in CASES]
    print(f"median overhead while recording: {statistics.median(overheads):.0f} ns; "
          f"max {max(overheads):.0f} ns; median idle cost: {statistics.median(idles):.0f} ns")


if __name__ == "__main__":
    main()
