"""Capture overhead per boundary call and replay cost per served interaction, per channel.

Both tables are printed by this one file (there is no separate ``bench_replay.py``).

**Capture** (DESIGN.md section 9: under 2 us per clock and urandom call). For each boundary
call this prints the median cost of one call:

* ``real``: the original function, measured before ``replay.capture.interceptors.install()``
  is called in this process;
* ``idle``: with the interceptors installed but no session active (every process that
  imports a captured module pays this on every call);
* ``recording``: inside an active recording (a fresh ``Recorder`` per repeat, set as
  ``replay.capture.boundary.ACTIVE``, so memory stays bounded);
* ``overhead``: recording minus real, and ``ratio``: recording / real.

Idle and recording repeats alternate, so drifting machine load hits both alike; ``real``
can only be measured before installation, in its own pass. The ``target`` column marks the
clock reads and the ``os.urandom`` draws (directly or through ``SystemRandom``, ``secrets``,
``uuid4``) against the 2 us budget; ``time.sleep(0)`` is listed but not marked: it really
sleeps (tens of us, with jitter larger than the budget).

**Replay**: for each row, one repeat's calls are recorded into a ``Recorder``; its tape is
packed with the snapshot format's msgpack options and unpacked again (so the records look
exactly like what a file gives), turned into ``Interaction`` objects and served by a
``TapePlayer`` (strict, then keyed matching; a fresh player per repeat) while the same calls
run again in this process, with the interceptors in replay mode. Printed: interactions per
call, ns per replayed call and ns per served interaction (the loop's time divided by the
interactions it consumed). The replay sandbox is not installed: this measures serving, not
isolation. A row whose replay diverges or fails is reported as not measured, with why.

Real counterparts: files live in a temporary directory outside the project; an HTTP server
(``tests/channels/http_server.py``, one connection per request) and a TCP echo server run
in a separate process on loopback, started before anything is installed; sqlite uses a
temporary database file (connected once per repeat inside the session, as a recorded call
would; ``INSERT`` rows are rolled back at close). Cheap calls run ``--calls`` times per
repeat, calls of some microseconds (files, sqlite, sockets, DNS, sleep) ``--calls / 10``,
expensive ones (subprocess, HTTP) only ``--few`` times (30): their medians are noisier.
Each row's timed repeats follow an untimed warm-up loop of the same calls (per phase).
``requests.get`` makes ~180 interactions per request (its proxy lookup reads every
environment variable, besides the HTTP exchange), so its per-interaction replay figure is
mostly env reads; ``http.client GET`` is the one-interaction HTTP row.

Usage: ``python benchmarks/bench_capture.py [--calls N] [--few F] [--repeats R] [--quick]
[--no-replay] [--only CHANNEL,...]``. Figures are medians of R repeats, in wall-clock ns
on this machine; they move with its load, so compare rows rather than machines. The
loop's own cost (calling an empty function) is subtracted from every figure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import http.client
import os
import platform
import random
import secrets
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import msgpack
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET_NS = 2_000  # the design's budget for clock and urandom calls
# The loop's own clock, kept before install() and inside a tuple: install() rebinds module-level
# names bound to replaced functions (this module's too), and a timer read inside the session
# would be recorded (or, on replay, served from the tape).
_TIMER = (time.perf_counter_ns,)

# --------------------------------------------------------------------------- real counterparts

_SERVER_SCRIPT = r"""
import socketserver, sys, threading
sys.path.insert(0, sys.argv[1])
from tests.channels.http_server import LoopbackServer

class Echo(socketserver.BaseRequestHandler):
    def handle(self):
        while True:
            data = self.request.recv(65536)
            if not data:
                return
            self.request.sendall(data)

class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

http_server = LoopbackServer().start()
echo = EchoServer(("127.0.0.1", 0), Echo)
threading.Thread(target=echo.serve_forever, daemon=True).start()
print(http_server.server_port, echo.server_address[1], flush=True)
sys.stdin.read()  # serve until the benchmark closes our stdin
"""


class World:
    """The real systems the calls talk to: temp files, sqlite file, servers in another process."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="replay-bench-")
        self.data = os.path.join(self.dir, "data.txt")
        self.out = os.path.join(self.dir, "out.txt")
        with open(self.data, "w", encoding="utf-8") as fh:
            fh.write("price,qty\n" + "".join(f"{i},{i * 3}\n" for i in range(60)))
        for i in range(8):
            with open(os.path.join(self.dir, f"f{i}.txt"), "w") as fh:
                fh.write(str(i))
        self.db = os.path.join(self.dir, "bench.sqlite")
        conn = sqlite3.connect(self.db)
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT, qty INTEGER)")
        conn.executemany("INSERT INTO t (name, qty) VALUES (?, ?)", [(f"item{i}", i) for i in range(20)])
        conn.commit()
        conn.close()
        self.server = subprocess.Popen([sys.executable, "-c", _SERVER_SCRIPT, ROOT], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True)
        assert self.server.stdout is not None
        http_port, echo_port = self.server.stdout.readline().split()
        self.http_port, self.echo_port = int(http_port), int(echo_port)
        self.url = f"http://127.0.0.1:{self.http_port}/json?q=1"

    def close(self) -> None:
        import shutil

        assert self.server.stdin is not None
        self.server.stdin.close()
        self.server.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


# --------------------------------------------------------------------------- the calls

CHEAP, MEDIUM, FEW = "cheap", "medium", "few"


def _forget_env() -> None:
    """Drop the session's env memo, so the next read is a first read (an interaction).

    Reads of a key after the first are answered from a per-session memo (see
    ``RecordedEnviron``); the "(first)" rows measure a recorded read, "(repeat)" a memo hit.
    The real rows pay the same call (no session: nothing to drop).
    """
    from replay.capture.boundary import ACTIVE

    s = ACTIVE.get()
    if s is not None:
        s.__dict__.pop("env_memo", None)


@dataclasses.dataclass
class Case:
    """One boundary call.

    ``call(ctx)`` is timed; ``enter()`` runs before each repeat's loop inside the same
    session (a connection, a client) and returns ``ctx``; ``leave(ctx)`` runs after it.
    """

    channel: str
    name: str
    call: Callable[[Any], object]
    size: str = CHEAP
    enter: Callable[[], Any] | None = None
    leave: Callable[[Any], object] | None = None
    target: bool = False


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _http_client_get(w: World) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", w.http_port, timeout=10)
    try:
        conn.request("GET", "/json?q=1")
        return conn.getresponse().read()
    finally:
        conn.close()


def _write_file(path: str) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("total=100\n")


def _read_file(path: str) -> str:
    with open(path, encoding="utf-8") as fh:
        return fh.read()


def cases(w: World) -> list[Case]:
    rng = random.Random()
    sysrng = random.SystemRandom()
    ping = b"ping-0123456789\n"
    return [
        Case("clock", "time.time()", lambda c: time.time(), target=True),
        Case("clock", "time.time_ns()", lambda c: time.time_ns(), target=True),
        Case("clock", "time.monotonic()", lambda c: time.monotonic(), target=True),
        Case("clock", "time.perf_counter_ns()", lambda c: time.perf_counter_ns(), target=True),
        Case("clock", "datetime.now()", lambda c: dt.datetime.now(), target=True),
        Case("clock", "datetime.now(utc)", lambda c: dt.datetime.now(dt.UTC), target=True),
        Case("clock", "date.today()", lambda c: dt.date.today(), target=True),
        Case("clock", "time.localtime()", lambda c: time.localtime(), target=True),
        Case("clock", 'time.strftime("%H")', lambda c: time.strftime("%H"), target=True),
        Case("clock", "time.process_time()", lambda c: time.process_time(), target=True),
        Case("clock", "time.sleep(0)", lambda c: time.sleep(0), MEDIUM),
        Case("random", "random.random()", lambda c: random.random()),
        Case("random", "random.randint(1, 6)", lambda c: random.randint(1, 6)),
        Case("random", "random.getrandbits(64)", lambda c: random.getrandbits(64)),
        Case("random", "Random() inst .random()", lambda c: rng.random()),
        Case("random", "os.urandom(16)", lambda c: os.urandom(16), target=True),
        Case("random", "SystemRandom().random()", lambda c: sysrng.random(), target=True),
        Case("random", "secrets.token_hex(8)", lambda c: secrets.token_hex(8), target=True),
        Case("random", "uuid.uuid4()", lambda c: uuid.uuid4(), target=True),
        Case("uuid", "uuid.uuid1()", lambda c: uuid.uuid1()),
        Case("env", "os.environ['PATH'] (first)", lambda c: (_forget_env(), os.environ["PATH"])),
        Case("env", "os.environ['PATH'] (repeat)", lambda c: os.environ["PATH"]),
        Case("env", "os.getenv('MISSING') (first)", lambda c: (_forget_env(), os.getenv("REPLAY_BENCH_MISSING"))),
        Case("host", "os.getpid()", lambda c: os.getpid()),
        Case("host", "os.getcwd()", lambda c: os.getcwd()),
        Case("host", "socket.gethostname()", lambda c: socket.gethostname()),
        Case("host", "platform.node()", lambda c: platform.node()),
        Case("file", "open+read+close (text)", lambda c: _read_file(w.data), MEDIUM),
        Case("file", "os.stat(file)", lambda c: os.stat(w.data), MEDIUM),
        Case("file", "os.listdir(dir)", lambda c: os.listdir(w.dir), MEDIUM),
        Case("file", "os.path.exists(file)", lambda c: os.path.exists(w.data), MEDIUM),
        Case("file", "open(w)+write+close (effect)", lambda c: _write_file(w.out), MEDIUM),
        Case("db", "execute(SELECT).fetchall()",
             lambda c: c.execute("SELECT id, name, qty FROM t WHERE qty < ?", (5,)).fetchall(), MEDIUM,
             enter=lambda: sqlite3.connect(w.db), leave=lambda c: c.close()),
        Case("db", "execute(INSERT) (effect)",
             lambda c: c.execute("INSERT INTO t (name, qty) VALUES (?, ?)", ("new", 7)), MEDIUM,
             enter=lambda: sqlite3.connect(w.db), leave=lambda c: c.close()),
        Case("socket", "sendall+recv (16 B echo)", lambda c: (c.sendall(ping), _recv_exactly(c, len(ping))), MEDIUM,
             enter=lambda: socket.create_connection(("127.0.0.1", w.echo_port), timeout=10),
             leave=lambda c: c.close()),
        Case("dns", 'getaddrinfo("localhost", 80)', lambda c: socket.getaddrinfo("localhost", 80), MEDIUM),
        Case("subprocess", 'subprocess.run(["true"])', lambda c: subprocess.run(["true"]), FEW),
        Case("http", "requests.get", lambda c: requests.get(w.url, timeout=10).content, FEW),
        Case("http", "http.client GET", lambda c: _http_client_get(w), FEW),
        Case("http", "httpx.Client().get", lambda c: c.get(w.url).content, FEW,
             enter=lambda: httpx.Client(timeout=10), leave=lambda c: c.close()),
    ]


# --------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Loop:
    ns_per_call: float
    interactions: int  # recorded or served by the timed loop


def run_loop(case: Case, calls: int, session_factory: Callable[[], Any] | None = None) -> Loop:
    """One repeat: enter, ``calls`` timed calls, leave; inside a fresh session when given."""
    from replay.capture.boundary import ACTIVE  # harmless before install: just the context var

    session = session_factory() if session_factory else None
    token = ACTIVE.set(session) if session is not None else None
    try:
        ctx = case.enter() if case.enter else None
        before = _interactions(session)
        fn = case.call
        loop = range(calls)
        clock = _TIMER[0]
        start = clock()
        for _ in loop:
            fn(ctx)
        elapsed = clock() - start
        after = _interactions(session)
        if case.leave:
            case.leave(ctx)
    finally:
        if token is not None:
            ACTIVE.reset(token)
    return Loop(elapsed / calls, after - before)


def _interactions(session: Any) -> int:
    if session is None:
        return 0
    if hasattr(session, "consumed"):
        return len(session.consumed)
    return len(session.tape)


def median_ns(case: Case, calls: int, repeats: int, session_factory: Callable[[], Any] | None = None) -> float:
    run_loop(case, min(calls, 50), session_factory)  # warm-up (caches, first connection), not timed
    return statistics.median(run_loop(case, calls, session_factory).ns_per_call for _ in range(repeats))


def idle_and_recording_ns(case: Case, calls: int, repeats: int, recorder: Callable[[], Any]) -> tuple[float, float]:
    """Medians of idle and recording repeats, alternated so drifting machine load hits both."""
    run_loop(case, min(calls, 50))
    run_loop(case, min(calls, 50), recorder)
    idle, recording = [], []
    for _ in range(repeats):
        idle.append(run_loop(case, calls).ns_per_call)
        recording.append(run_loop(case, calls, recorder).ns_per_call)
    return statistics.median(idle), statistics.median(recording)


def empty_loop_ns(calls: int, repeats: int) -> float:
    return median_ns(Case("-", "empty", lambda c: None), calls, repeats)


# --------------------------------------------------------------------------- replay


@dataclasses.dataclass
class ReplayRow:
    per_call: float  # interactions per call
    strict: float | str  # ns per call, or why not measured
    keyed: float | str


def _to_interactions(recorder: Any) -> list[Any]:
    """The recorder's tape as a snapshot file gives it: msgpack round trip, then Interaction."""
    from replay.snapshot.format import pack
    from replay.snapshot.model import Interaction

    records = msgpack.unpackb(pack(recorder.tape), raw=False, strict_map_key=True, use_list=True)
    runs = recorder.strand_records()
    out, strand, k = [], "0", 0
    for i, record in enumerate(records):
        while k < len(runs) and runs[k][0] <= i:
            strand = runs[k][1]
            k += 1
        out.append(Interaction.from_record(i, record, "<bench>", strand))
    return out


def measure_replay(case: Case, calls: int, repeats: int, empty: float) -> ReplayRow:
    from replay.capture.recorder import Recorder
    from replay.replayer.tape import TapePlayer
    from replay.snapshot.codec import TypeResolver

    holder: list[Any] = []

    def keep() -> Any:
        holder.append(Recorder())
        return holder[-1]

    recorded = run_loop(case, calls, keep)
    tape = _to_interactions(holder[-1])
    per_call = recorded.interactions / calls
    results: dict[str, float | str] = {}
    for mode in ("strict", "keyed"):
        samples = []
        why = ""
        for _ in range(repeats):
            player = TapePlayer(tape, mode, 12345, TypeResolver(trust_imported=True))
            try:
                loop = run_loop(case, calls, lambda p=player: p)
            except BaseException as exc:  # ReplayDiverged is a BaseException
                why = f"{type(exc).__name__}: {str(exc).splitlines()[0][:70] if str(exc) else ''}"
                break
            player.finish_strict()
            if player.divergence is not None:
                why = f"diverged: {player.divergence.reason[:70]}"
                break
            if loop.interactions != recorded.interactions:
                why = f"served {loop.interactions} of {recorded.interactions} interactions"
                break
            samples.append(loop.ns_per_call - empty)
        results[mode] = why or statistics.median(samples)
    return ReplayRow(per_call, results["strict"], results["keyed"])


# --------------------------------------------------------------------------- main


def _fmt(ns: float) -> str:
    return f"{ns:,.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=8_000, help="calls per repeat of cheap calls (default 8000)")
    parser.add_argument("--few", type=int, default=30, help="calls per repeat of subprocess/HTTP calls (default 30)")
    parser.add_argument("--repeats", type=int, default=15, help="repeats; figures are their medians (default 15)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1500 calls, 4 few, 3 repeats")
    parser.add_argument("--no-replay", action="store_true", help="skip the replay table")
    parser.add_argument("--only", default="", help="comma-separated channels to run (default: all)")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.few, args.repeats = 1_500, 4, 3
    sizes = {CHEAP: args.calls, MEDIUM: max(args.calls // 10, 1), FEW: args.few}

    started = time.perf_counter()
    load = os.getloadavg()[0]
    world = World()
    try:
        all_cases = cases(world)
        if args.only:
            wanted = set(args.only.split(","))
            all_cases = [c for c in all_cases if c.channel in wanted]
            if not all_cases:
                parser.error(f"no calls of channel(s) {args.only}; channels: "
                             + ", ".join(dict.fromkeys(c.channel for c in cases(world))))
        from replay.capture import interceptors

        if interceptors.is_installed():  # importing replay must not install anything
            raise SystemExit("replay's interceptors are already installed: real costs cannot be measured")
        gc.collect()
        gc.freeze()

        # Measure the real functions first, before anything is installed.
        empty = empty_loop_ns(args.calls, args.repeats)
        real = {c.name: median_ns(c, sizes[c.size], args.repeats) - empty for c in all_cases}

        from replay.capture.recorder import Recorder

        interceptors.install()
        idle, recording = {}, {}
        for c in all_cases:
            i, r = idle_and_recording_ns(c, sizes[c.size], args.repeats, Recorder)
            idle[c.name], recording[c.name] = i - empty, r - empty

        print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average before the run "
              f"{load:.2f} (other processes' load moves these figures)")
        print(f"capture overhead per boundary call: median of {args.repeats} repeats; calls per repeat: "
              f"{sizes[CHEAP]} cheap, {sizes[MEDIUM]} medium, {sizes[FEW]} few (subprocess, HTTP); ns")
        head = (f"{'channel':10} {'call':30} {'calls':>6} {'real':>10} {'idle':>10} {'recording':>10} "
                f"{'overhead':>10} {'ratio':>6}  target")
        print(head)
        print("-" * len(head))
        overheads = []
        for c in all_cases:
            over = recording[c.name] - real[c.name]
            overheads.append(over)
            ratio = recording[c.name] / real[c.name] if real[c.name] > 0 else float("nan")
            mark = ("ok <2us" if over < TARGET_NS else "OVER 2us") if c.target else ""
            print(f"{c.channel:10} {c.name:30} {sizes[c.size]:>6} {_fmt(real[c.name]):>10} {_fmt(idle[c.name]):>10} "
                  f"{_fmt(recording[c.name]):>10} {_fmt(over):>10} {ratio:6.1f}  {mark}")
        idles = [idle[c.name] - real[c.name] for c in all_cases if c.size == CHEAP]
        targets = [recording[c.name] - real[c.name] for c in all_cases if c.target]
        print(f"median overhead while recording: {_fmt(statistics.median(overheads))} ns over {len(overheads)} rows"
              + (f"; clock/urandom rows: median {_fmt(statistics.median(targets))}, max {_fmt(max(targets))} ns"
                 if targets else "")
              + (f"; median idle cost (cheap rows): {_fmt(statistics.median(idles))} ns" if idles else ""))

        if not args.no_replay:
            replay_repeats = max(3, args.repeats // 2)
            print()
            print(f"replay cost per served interaction: median of {replay_repeats} replays of one recorded repeat "
                  "(tape msgpack round-tripped); ns")
            head = (f"{'channel':10} {'call':30} {'inter/call':>10} {'strict/call':>12} {'strict/inter':>12} "
                    f"{'keyed/call':>12} {'keyed/inter':>12}")
            print(head)
            print("-" * len(head))
            served: dict[str, list[float]] = {"strict": [], "keyed": []}
            for c in all_cases:
                row = measure_replay(c, sizes[c.size], replay_repeats, empty)
                cells = []
                for mode, value in (("strict", row.strict), ("keyed", row.keyed)):
                    if isinstance(value, str):
                        cells.append(f"  not measured ({mode}): {value}")
                        continue
                    per = value / row.per_call if row.per_call else float("nan")
                    served[mode].append(per)
                    cells.append(f" {_fmt(value):>12} {_fmt(per):>12}")
                if all(not x.startswith("  not") for x in cells):
                    print(f"{c.channel:10} {c.name:30} {row.per_call:10.2f}" + "".join(cells))
                else:
                    print(f"{c.channel:10} {c.name:30} {row.per_call:10.2f}")
                    for x in cells:
                        print(" " * 42 + x.strip() if x.startswith("  not") else " " * 42 + "measured: " + x.strip())
            for mode, values in served.items():
                if values:
                    print(f"median {mode} cost per served interaction: {_fmt(statistics.median(values))} ns "
                          f"over {len(values)} rows")
    finally:
        world.close()
    print(f"(ran {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
