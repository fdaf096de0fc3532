"""Capture overhead on a real WSGI app under load: httpbin behind the middleware, on loopback.

DESIGN.md section 9: under 3% throughput loss with capture on-error; report the cost of
always; a tape-only snapshot of a typical web request under 20 KB.

Servers run side by side, each in its own process: httpbin (the real third-party Flask app
from the package index) served by waitress (``--server-threads`` threads) on a loopback
port, with capture

* ``off``: the plain app, no middleware at all (nothing of replay imported);
* ``error``: ``ReplayWSGIMiddleware(httpbin.app)``, the production default: every request
  recorded, a snapshot per 5xx response or exception, within the default rate limits (5
  per 5 s in all, 1 per failure fingerprint per hour);
* ``error-unlimited``: the same with the rate limits off: every failing request's snapshot
  is encoded, redacted, compressed and written (the worst case of on-error);
* ``always``: ``on="always"``, rate limits off: a snapshot per request.

Snapshots are written by the background writer into a temporary directory (its spool cap
of 100 files stops the writing of later ones, not their encoding on the request thread).
The load is a fixed mix: GET /get, /headers, /anything?x=..., /uuid, /status/200 and POST
/post with a JSON body, plus ``--fail-rate`` (1% by default) GET /status/500, from
``--clients`` threads with one keep-alive ``http.client`` connection each.

How it measures, and why (a 3% difference is small next to this machine's noise):

* Pinning: with 2 or more CPUs, the servers run on the last CPU and the load generator on
  the others (``os.sched_setaffinity``), so the load generator never takes a server's CPU
  and a server's throughput is bounded by its own cost per request. Other processes of
  the machine still run anywhere.
* Server CPU is read from ``/proc/<pid>/task/*/schedstat`` (nanoseconds, every thread,
  the background writer included), not ``/proc/<pid>/stat`` (10 ms clock ticks: a 1-2%
  quantisation error on a run of a few seconds).
* Fresh server processes every round: a process's speed depends on its memory layout and
  hash seed, a bias of up to +-10% that lasts as long as the process.
* Throughput rounds: each round runs every mode alone for ``--duration`` seconds, back to
  back in a rotated order; the result is each mode's requests/s divided by off's *in the
  same round*, then the median over rounds, with a bootstrap 95% interval of that median
  (and the p50/p99 latency, and server CPU per request).
* Paired (lockstep) rounds: every client request goes to each server of ``--paired-modes``
  in turn, in an order rotated per request (no server is always first), so they are loaded
  alike and share whatever else the machine does at each moment; each server's CPU time
  per request is divided by off's within the round. This is the precise figure: the
  median ratio and its bootstrap interval are the capacity cost of capture. Besides the
  modes above, ``idle`` can be paired: httpbin with the interceptors installed and no
  middleware (what a process pays for importing and installing capture, on the server's
  own code too: waitress reads the clock and uses sockets through them).

Usage: ``python benchmarks/bench_capture_load.py [--duration S] [--rounds N]
[--paired-rounds N] [--paired-modes off,error] [--clients C] [--server-threads T]
[--fail-rate F] [--no-pin] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator

MODES = ("off", "error", "error-unlimited", "always")
IDLE = "idle"  # lockstep only: the interceptors installed, no middleware (what any importer pays)

SERVER = """
import os, socket, sys
import httpbin
import waitress

mode, threads = sys.argv[1], int(sys.argv[2])
app = httpbin.app
if mode == "idle":
    from replay.capture.interceptors import install
    install()
elif mode != "off":
    from replay.capture.middleware import ReplayWSGIMiddleware
    limits = {} if mode == "error" else {"rate_limit": "off", "rate_limit_per_failure": "off", "queue_size": 10_000}
    app = ReplayWSGIMiddleware(httpbin.app, on=mode.partition("-")[0], **limits)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(256)
print(sock.getsockname()[1], flush=True)
waitress.serve(app, sockets=[sock], threads=threads, _quiet=True, connection_limit=1000)
"""

LOADGEN = """
import http.client, json, sys, threading, time

port, clients, duration, fail_rate = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
body = json.dumps({"order": 17, "items": [{"sku": "pen", "qty": 2}], "note": "load"}).encode()
mix = [("GET", "/get?page=1", None), ("GET", "/headers", None), ("GET", "/anything?x=1&y=two", None),
       ("GET", "/uuid", None), ("GET", "/status/200", None), ("POST", "/post?src=bench", body)]
every = round(1 / fail_rate) if fail_rate > 0 else 0  # one failing request per `every`
latencies, errors, statuses = [], [0], {}
lock = threading.Lock()
deadline = time.perf_counter() + duration


def client(k):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    mine, i = [], k
    while time.perf_counter() < deadline:
        i += 1
        method, path, data = ("GET", "/status/500", None) if every and i % every == 0 else mix[i % len(mix)]
        headers = {"Content-Type": "application/json", "X-Request-Id": f"{k}-{i}"} if data else {"X-Request-Id": f"{k}-{i}"}
        t0 = time.perf_counter()
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            resp.read()
            status = resp.status
        except Exception:
            errors[0] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            continue
        mine.append(time.perf_counter() - t0)
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
    with lock:
        latencies.extend(mine)


start = time.perf_counter()
threads = [threading.Thread(target=client, args=(k * 7919,)) for k in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
elapsed = time.perf_counter() - start
latencies.sort()
n = len(latencies)
print(json.dumps({"requests": n, "rps": n / elapsed, "errors": errors[0], "statuses": statuses,
                  "p50_ms": 1000 * latencies[n // 2] if n else 0, "p99_ms": 1000 * latencies[int(n * 0.99)] if n else 0}))
"""

# Paired: every client sends each request to every server in turn, so all modes are loaded
# in lockstep and share whatever else the machine is doing at that moment; each server's CPU
# time per request is then compared within one run (robust to a busy or drifting machine).
# The order rotates with every request, so no server is always the first of a round trip.
PAIRED = """
import http.client, json, sys, threading, time

ports, clients, duration, fail_rate = [int(p) for p in sys.argv[1].split(",")], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
body = json.dumps({"order": 17, "items": [{"sku": "pen", "qty": 2}], "note": "load"}).encode()
mix = [("GET", "/get?page=1", None), ("GET", "/headers", None), ("GET", "/anything?x=1&y=two", None),
       ("GET", "/uuid", None), ("GET", "/status/200", None), ("POST", "/post?src=bench", body)]
every = round(1 / fail_rate) if fail_rate > 0 else 0
counts = [0] * len(ports)
lock = threading.Lock()
deadline = time.perf_counter() + duration


def client(k):
    conns = [http.client.HTTPConnection("127.0.0.1", p, timeout=30) for p in ports]
    mine, i = [0] * len(ports), k
    while time.perf_counter() < deadline:
        i += 1
        method, path, data = ("GET", "/status/500", None) if every and i % every == 0 else mix[i % len(mix)]
        headers = {"Content-Type": "application/json"} if data else {}
        first = i % len(conns)
        for j in list(range(first, len(conns))) + list(range(first)):
            conns[j].request(method, path, body=data, headers=headers)
            conns[j].getresponse().read()
            mine[j] += 1
    with lock:
        for j, n in enumerate(mine):
            counts[j] += n


threads = [threading.Thread(target=client, args=(k * 7919,)) for k in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts))
"""


def start_server(mode: str, threads: int, snaps: str, cpus: set[int] | None) -> tuple[subprocess.Popen[str], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    env["REPLAY_DIR"] = snaps
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mode, str(threads)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, preexec_fn=_pin(cpus))
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"the {mode} server did not start")
    return proc, int(line)


def _pin(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that runs the child (and every thread it starts) on ``cpus`` only."""
    return None if cpus is None else lambda: os.sched_setaffinity(0, cpus)


def cpu_s(pid: int) -> float:
    """CPU time the process has used so far (all its threads), in seconds.

    Nanosecond resolution from each thread's ``schedstat``; ``/proc/<pid>/stat`` (10 ms
    ticks) only where the kernel has no schedstat. A thread that ends between two readings
    takes its time with it: the servers' threads (waitress workers, the snapshot writer)
    live as long as the process.
    """
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
        for task in tasks:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError), \
                    open(f"/proc/{pid}/task/{task}/schedstat", encoding="ascii") as fh:
                total += int(fh.read().split()[0])
        return total / 1e9
    except (FileNotFoundError, ValueError, IndexError):
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(server: tuple[subprocess.Popen[str], int], args: argparse.Namespace, duration: float,
         cpus: set[int] | None) -> dict[str, float]:
    proc, port = server
    before = cpu_s(proc.pid)
    out = subprocess.run([sys.executable, "-c", LOADGEN, str(port), str(args.clients), str(duration),
                          str(args.fail_rate)], capture_output=True, text=True, check=True,
                         timeout=duration + 120, preexec_fn=_pin(cpus))
    res = json.loads(out.stdout)
    res["drain_s"] = settle(proc.pid)  # background snapshot writing counts as the mode's cost
    res["cpu_us"] = (cpu_s(proc.pid) - before) / max(res["requests"], 1) * 1e6
    return res


def settle(pid: int, idle: float = 0.05, limit: float = 60.0) -> float:
    """Wait until the server is idle (under 5% of a core over 0.2 s); the seconds waited.

    The background writer of the capturing modes may still be writing queued snapshots when
    the load stops; the next mode's run must not share the machine with that work.
    """
    start = time.perf_counter()
    while time.perf_counter() - start < limit:
        before = cpu_s(pid)
        time.sleep(0.2)
        if cpu_s(pid) - before <= idle * 0.2:
            break
    return time.perf_counter() - start


@contextlib.contextmanager
def running(modes: list[str], threads: int, tmp: str, round_no: int,
            cpus: set[int] | None) -> Iterator[dict[str, tuple[subprocess.Popen[str], int]]]:
    """One server process per mode for one round; stopped (queued snapshots flushed) after."""
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    try:
        for m in modes:
            servers[m] = start_server(m, threads, os.path.join(tmp, m, str(round_no)), cpus)
        yield servers
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGINT)  # the writer flushes queued snapshots at exit
        for proc, _ in servers.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def paired(servers: dict[str, tuple[subprocess.Popen[str], int]], args: argparse.Namespace,
           cpus: set[int] | None) -> dict[str, float]:
    """One lockstep run over all servers: CPU microseconds per request of each mode."""
    before = {m: cpu_s(proc.pid) for m, (proc, _) in servers.items()}
    ports = ",".join(str(port) for _, port in servers.values())
    out = subprocess.run([sys.executable, "-c", PAIRED, ports, str(args.clients), str(args.duration),
                          str(args.fail_rate)], capture_output=True, text=True, check=True,
                         timeout=args.duration + 120, preexec_fn=_pin(cpus))
    counts = json.loads(out.stdout)
    for proc, _ in servers.values():
        settle(proc.pid)
    return {m: (cpu_s(proc.pid) - before[m]) / max(n, 1) * 1e6 for (m, (proc, _)), n in zip(servers.items(), counts, strict=True)}


def cpu_split(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, load generator CPUs): the last CPU for the servers, the rest for the load."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run (default 4)")
    parser.add_argument("--rounds", type=int, default=4, help="throughput rounds (default 4; 0: none)")
    parser.add_argument("--paired-rounds", type=int, default=8, help="lockstep CPU rounds (default 8; 0: none)")
    parser.add_argument("--paired-modes", default="off,error",
                        help=f"servers of the lockstep rounds, off first (default off,error; any of "
                             f"{','.join(MODES)}, or {IDLE}: the interceptors installed, no middleware)")
    parser.add_argument("--clients", type=int, default=8, help="load generator threads (default 8)")
    parser.add_argument("--server-threads", type=int, default=4, help="waitress threads (default 4)")
    parser.add_argument("--fail-rate", type=float, default=0.01, help="share of GET /status/500 (default 0.01)")
    parser.add_argument("--no-pin", action="store_true", help="let servers and load generator share all CPUs")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s each (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.paired_rounds = 2.0, 2, 2
    lock_modes = [m.strip() for m in args.paired_modes.split(",") if m.strip()]
    if lock_modes[:1] != ["off"] or not set(lock_modes) <= {*MODES, IDLE} or len(set(lock_modes)) != len(lock_modes):
        parser.error(f"--paired-modes {args.paired_modes!r}: off first, then some of {', '.join((*MODES[1:], IDLE))}")
    server_cpus, load_cpus = cpu_split(not args.no_pin)
    print(f"servers on CPUs {sorted(server_cpus) if server_cpus else 'any'}, load generator on "
          f"{sorted(load_cpus) if load_cpus else 'any'}", file=sys.stderr)
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    lockstep: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        for r in range(max(args.rounds, args.paired_rounds)):
            modes = list(dict.fromkeys([*MODES, *lock_modes])) if r < args.rounds else lock_modes
            with running(modes, args.server_threads, tmp, r, server_cpus) as servers:
                for mode in modes:  # warm-up: imports, first snapshot (code identity, environment)
                    load(servers[mode], args, 1.0, load_cpus)
                if r < args.rounds:
                    for mode in MODES[r % len(MODES):] + MODES[:r % len(MODES)]:
                        res = load(servers[mode], args, args.duration, load_cpus)
                        results[mode].append(res)
                        print(f"round {r + 1} {mode:15} {res['rps']:8.0f} req/s  p50 {res['p50_ms']:6.2f} ms  "
                              f"p99 {res['p99_ms']:6.2f} ms  server CPU {res['cpu_us']:6.0f} us/request  "
                              f"errors {res['errors']}  idle after {res['drain_s']:.1f} s", file=sys.stderr)
                if r < args.paired_rounds:
                    lockstep.append(paired({m: servers[m] for m in lock_modes}, args, load_cpus))
                    print(f"paired round {r + 1}: " + "  ".join(f"{m} {v:.1f}" for m, v in lockstep[-1].items())
                          + " us CPU/request", file=sys.stderr)
        if args.rounds:
            report(results, args)
        report_paired(lockstep)
        sizes(tmp)


def spread(values: list[float], draws: int = 2000) -> tuple[float, float, float]:
    """The median of ``values`` and a bootstrap 95% interval of it (fixed seed: reproducible)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(draws))
    return statistics.median(values), medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    """Throughput rounds: medians, and each mode's ratios to off within the same round."""
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us")
    med = {m: {k: statistics.median(r[k] for r in results[m]) for k in keys} for m in MODES}
    print(f"httpbin behind waitress ({args.server_threads} threads), {args.clients} clients, {args.duration:g} s "
          f"x {args.rounds} rounds, {args.fail_rate:.1%} GET /status/500; medians; ratios to off within a round, "
          f"median [bootstrap 95% interval]")
    print(f"{'capture':15} {'req/s':>7} {'vs off':>22} {'p50 ms':>7} {'p99 ms':>7} {'CPU us/req':>10} {'vs off':>22}")
    for m in MODES:
        v = med[m]
        rps = spread([a["rps"] / b["rps"] for a, b in zip(results[m], results["off"], strict=True)])
        cpu = spread([a["cpu_us"] / b["cpu_us"] for a, b in zip(results[m], results["off"], strict=True)])
        print(f"{m:15} {v['rps']:7.0f} {_ratio(rps):>22} {v['p50_ms']:7.2f} {v['p99_ms']:7.2f} {v['cpu_us']:10.0f} "
              f"{_ratio(cpu):>22}")
    loss = {m: 1 - spread([a["rps"] / b["rps"] for a, b in zip(results[m], results["off"], strict=True)])[0]
            for m in MODES[1:]}
    print(f"throughput loss: on-error {loss['error']:.1%} (target under 3%), on-error without rate limits "
          f"{loss['error-unlimited']:.1%}, always {loss['always']:.1%}")


def report_paired(lockstep: list[dict[str, float]]) -> None:
    """Server CPU per request in lockstep runs: the ratio to off within each run, then the median."""
    if not lockstep:
        return
    print(f"paired (lockstep) server CPU per request, {len(lockstep)} rounds, ratio to off within each round, "
          f"median [bootstrap 95% interval] (min-max):")
    for m in lockstep[0]:
        ratios = [run[m] / run["off"] for run in lockstep]
        mid, low, high = spread(ratios)
        med = statistics.median(run[m] for run in lockstep)
        print(f"  {m:15} {med:7.1f} us  {_ratio((mid, low, high))} ({min(ratios):.3f}-{max(ratios):.3f})"
              f"  capacity loss {1 - 1 / mid:.1%} [{1 - 1 / low:.1%}, {1 - 1 / high:.1%}]")


def _ratio(value: tuple[float, float, float]) -> str:
    mid, low, high = value
    return f"x{mid:.3f} [{low:.3f}, {high:.3f}]"


def sizes(tmp: str) -> None:
    """Sizes of the snapshots the capture modes wrote: a failing request and a plain GET."""
    from replay.snapshot import open_snapshot

    for mode in MODES[1:]:
        files = glob.glob(os.path.join(tmp, mode, "**", "*.rsnap"), recursive=True)
        by_path: dict[str, list[int]] = {}
        for path in files[:400]:
            with open_snapshot(path) as snap:
                key = snap.entry["args"] and _path_of(snap)
                code = len(snap.code_files)
            if code:
                continue  # tape-only: no embedded sources (httpbin is a library: none are)
            by_path.setdefault(key, []).append(os.path.getsize(path))
        for key, values in sorted(by_path.items()):
            print(f"snapshot size ({mode}) {key:22} median {statistics.median(values) / 1024:6.1f} KiB "
                  f"over {len(values)} files (target under 20 KB)")
        print(f"snapshots written ({mode}): {len(files)}")


def _path_of(snap: object) -> str:
    from replay.snapshot.codec import decode

    request = decode(snap.entry["args"])[0]  # type: ignore[attr-defined]
    environ = request["environ"]
    return f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"


if __name__ == "__main__":
    main()
