"""TUI benchmark: open a 1,000,000-step trace to its first screen, and move the cursor.

Records ``benchmarks/trace_programs/million.py`` (orders and stock, >= 1,000,000 steps) with
``replay record``, regenerates its trace once (cached, as a user's second open would be),
then drives the real app headless (Textual's ``run_test``, 120x40):

* **open**: from creating the app to the step screen drawn at step 0 (snapshot summary read,
  trace opened, first state decoded, every panel drawn); median and max of ``--opens`` runs.
* **move**: from the key (or ``goto``) until the app has written the frame that shows the
  new step (the first ``App._display`` call after the move was handled, i.e. the frame the
  terminal gets): ``goto`` random steps, and the keys n/s/o/N/S/O from random steps;
  median, 95th percentile and max of ``--moves`` samples each. Textual paints at most 60
  frames a second, so up to ~17 ms of each figure is waiting for the next frame.

Targets (issue 6): open under 1 s, any move under 50 ms.

Usage: python benchmarks/bench_tui.py [--orders N] [--opens 5] [--moves 100] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_trace import long_argv, make_world, record  # noqa: E402

from replay.replayer.traces import regenerate  # noqa: E402
from tui import build_app  # noqa: E402
from tui.screens.step import StepScreen  # noqa: E402


async def open_once(snapshot: str) -> tuple[float, int]:
    started = time.perf_counter()
    app = build_app(snapshot, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        while not (isinstance(app.screen, StepScreen) and app.screen.state is not None):
            await pilot.pause(0.001)
        await pilot.pause()
        elapsed = time.perf_counter() - started
        steps = app.session.trace.steps
    return elapsed, steps


async def moves(snapshot: str, samples: int, seed: int) -> dict[str, list[float]]:
    rng = random.Random(seed)
    out: dict[str, list[float]] = {"goto random step": [], "  of which the model and panels (refresh_view)": [],
                                   "n s o (forward)": [], "N S O (backward)": []}
    app = build_app(snapshot, start="step")
    frames: list[float] = []
    display = app._display

    def timed_display(screen, renderable):  # noqa: ANN001, ANN202 - wraps a private hook
        display(screen, renderable)
        if renderable is not None:
            frames.append(time.perf_counter())

    app._display = timed_display

    async def painted(after: float) -> float:
        deadline = after + 5
        while (not frames or frames[-1] < after) and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)
        if not frames or frames[-1] < after:
            raise RuntimeError("no frame was written within 5 s of a move")
        return next(f for f in frames if f >= after) - after

    async with app.run_test(size=(120, 40)) as pilot:
        while not (isinstance(app.screen, StepScreen) and app.screen.state is not None):
            await pilot.pause(0.01)
        screen = app.screen
        total = app.session.trace.steps
        for _ in range(samples):
            n = rng.randrange(total)
            await pilot.pause()
            t = time.perf_counter()
            screen.goto(n)  # synchronous: no frame can be written before it returns
            out["goto random step"].append(await painted(t))
            out["  of which the model and panels (refresh_view)"].append(screen.last_move_ms / 1000)
            for label, keys in (("n s o (forward)", "nso"), ("N S O (backward)", "NSO")):
                key = rng.choice(keys)
                await pilot.pause()
                before = screen.redraws
                t = time.perf_counter()
                pressing = asyncio.create_task(pilot.press(key))
                while screen.redraws == before and time.perf_counter() - t < 5:
                    await asyncio.sleep(0.0005)
                await pressing
                out[label].append(screen.redrawn_at - t + await painted(screen.redrawn_at))
    return out


def ms(values: list[float]) -> str:
    values = sorted(values)
    p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
    return f"median {statistics.median(values) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms   max {values[-1] * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=9000, help="orders million.py processes (9000: >= 1M steps)")
    parser.add_argument("--opens", type=int, default=5)
    parser.add_argument("--moves", type=int, default=100)
    parser.add_argument("--keep", default="", help="keep the snapshot and trace cache here")
    args = parser.parse_args()
    work = args.keep or tempfile.mkdtemp(prefix="replay-bench-tui-")
    os.makedirs(work, exist_ok=True)
    os.environ["REPLAY_TRACE_CACHE"] = os.path.join(work, "cache")
    world = os.path.join(work, "world")
    snap_dir = os.path.join(work, "snap")
    if os.path.isdir(snap_dir):
        snapshot = os.path.join(snap_dir, sorted(os.listdir(snap_dir))[0])
    else:
        os.makedirs(world, exist_ok=True)
        make_world(world)
        snapshot = record(long_argv(args.orders), world, snap_dir)
    t = time.perf_counter()
    result = regenerate(snapshot)
    print(f"trace: {result.source} in {time.perf_counter() - t:.1f} s, {os.path.getsize(result.path) / 2**20:.1f} MiB")
    opens = [asyncio.run(open_once(snapshot)) for _ in range(args.opens)]
    steps = opens[0][1]
    print(f"{steps:,} steps")
    print(f"open to the first step screen ({args.opens} runs): {ms([o[0] for o in opens])}")
    for label, values in asyncio.run(moves(snapshot, args.moves, 7)).items():
        print(f"move: {label:<18} ({len(values)} samples): {ms(values)}")
        if os.environ.get("BENCH_TUI_RAW"):
            print("   ", " ".join(f"{v * 1000:.0f}" for v in values))


if __name__ == "__main__":
    main()
