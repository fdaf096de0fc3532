"""Capture overhead on a real WSGI app under load: httpbin behind the middleware, on loopback.

DESIGN.md section 9: under 3% throughput loss with capture on-error; report the cost of
always; a tape-only snapshot of a typical web request under 20 KB.

Three servers run side by side, each in its own process: httpbin (the real third-party
Flask app from the package index) served by waitress (``--server-threads`` threads) on a
loopback port, with capture

* ``off``: the plain app, no middleware at all;
* ``error``: ``ReplayWSGIMiddleware(httpbin.app)``, the production default: every request
  recorded, a snapshot per 5xx response or exception, within the default rate limits (5
  per 5 s in all, 1 per failure fingerprint per hour);
* ``error-unlimited``: the same with the rate limits off: every failing request's snapshot
  is encoded, redacted, compressed and written (the worst case of on-error);
* ``always``: ``on="always"``, rate limits off: a snapshot per request.

Snapshots are written by the background writer into a temporary directory (its spool cap
of 100 files stops the writing of later ones, not their encoding on the request thread).

A load generator runs in a separate process: ``--clients`` threads, each with one
keep-alive ``http.client`` connection, sending a fixed mix of requests for ``--duration``
seconds: GET /get, /headers, /anything?x=..., /uuid, /status/200 and POST /post with a
JSON body, plus ``--fail-rate`` (1% by default) GET /status/500. It prints requests/s and
the p50/p99 latency of that run. Runs are interleaved (each round runs every mode once, in
a rotated order) and the table gives the median of ``--rounds`` rounds with the ratios to
``off``. Load generator and servers share the machine's cores, so absolute figures move
with the load of the machine; the ratios from one invocation are the result.

Usage: ``python benchmarks/bench_capture_load.py [--duration S] [--rounds N] [--clients C]
[--server-threads T] [--fail-rate F] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

MODES = ("off", "error", "error-unlimited", "always")

SERVER = """
import os, socket, sys
import httpbin
import waitress

mode, threads = sys.argv[1], int(sys.argv[2])
app = httpbin.app
if mode != "off":
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
        for j, conn in enumerate(conns):
            conn.request(method, path, body=data, headers=headers)
            conn.getresponse().read()
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


def start_server(mode: str, threads: int, snaps: str) -> tuple[subprocess.Popen[str], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
    env["REPLAY_DIR"] = snaps
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mode, str(threads)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.strip().isdigit():
        proc.kill()
        raise SystemExit(f"the {mode} server did not start")
    return proc, int(line)


def cpu_s(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used so far, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load(server: tuple[subprocess.Popen[str], int], clients: int, duration: float, fail_rate: float) -> dict[str, float]:
    proc, port = server
    before = cpu_s(proc.pid)
    out = subprocess.run([sys.executable, "-c", LOADGEN, str(port), str(clients), str(duration), str(fail_rate)],
                         capture_output=True, text=True, check=True, timeout=duration + 120)
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
def running(threads: int, tmp: str, round_no: int) -> Iterator[dict[str, tuple[subprocess.Popen[str], int]]]:
    """One server process per mode for one round; stopped (queued snapshots flushed) after."""
    servers: dict[str, tuple[subprocess.Popen[str], int]] = {}
    try:
        for m in MODES:
            servers[m] = start_server(m, threads, os.path.join(tmp, m, str(round_no)))
        yield servers
    finally:
        for proc, _ in servers.values():
            proc.send_signal(signal.SIGINT)  # the writer flushes queued snapshots at exit
        for proc, _ in servers.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def paired(servers: dict[str, tuple[subprocess.Popen[str], int]], clients: int, duration: float,
           fail_rate: float) -> dict[str, float]:
    """One lockstep run over all servers: CPU microseconds per request of each mode."""
    before = {m: cpu_s(proc.pid) for m, (proc, _) in servers.items()}
    ports = ",".join(str(port) for _, port in servers.values())
    out = subprocess.run([sys.executable, "-c", PAIRED, ports, str(clients), str(duration), str(fail_rate)],
                         capture_output=True, text=True, check=True, timeout=duration + 120)
    counts = json.loads(out.stdout)
    for proc, _ in servers.values():
        settle(proc.pid)
    return {m: (cpu_s(proc.pid) - before[m]) / max(n, 1) * 1e6 for (m, (proc, _)), n in zip(servers.items(), counts, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--clients", type=int, default=8, help="load generator threads (default 8)")
    parser.add_argument("--server-threads", type=int, default=4, help="waitress threads (default 4)")
    parser.add_argument("--fail-rate", type=float, default=0.01, help="share of GET /status/500 (default 0.01)")
    parser.add_argument("--paired-rounds", type=int, default=5, help="lockstep CPU rounds (default 5; 0: none)")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 2 s (a smoke run)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.rounds, args.paired_rounds = 2.0, 2, 2
    results: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    lockstep: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        # Fresh server processes every round: a process's speed depends on its memory layout
        # and hash seed, a bias of up to +-10% that lasts as long as the process (measured:
        # two processes of one mode differed that much for a whole run). Restarting them
        # each round turns that bias into noise the medians average out.
        for r in range(max(args.rounds, args.paired_rounds)):
            with running(args.server_threads, tmp, r) as servers:
                for mode in MODES:  # warm-up: imports, first snapshot (code identity, environment)
                    load(servers[mode], args.clients, 1.0, args.fail_rate)
                if r < args.rounds:
                    order = MODES[r % len(MODES):] + MODES[:r % len(MODES)]
                    for mode in order:
                        res = load(servers[mode], args.clients, args.duration, args.fail_rate)
                        results[mode].append(res)
                        print(f"round {r + 1} {mode:15} {res['rps']:8.0f} req/s  p50 {res['p50_ms']:6.2f} ms  "
                              f"p99 {res['p99_ms']:6.2f} ms  server CPU {res['cpu_us']:6.0f} us/request  "
                              f"errors {res['errors']}  idle after {res['drain_s']:.1f} s", file=sys.stderr)
                if r < args.paired_rounds:
                    lockstep.append(paired(servers, args.clients, args.duration, args.fail_rate))
                    print(f"paired round {r + 1}: " + "  ".join(f"{m} {v:.0f}" for m, v in lockstep[-1].items())
                          + " us CPU/request", file=sys.stderr)
        report(results, args)
        report_paired(lockstep)
        sizes(tmp)


def report(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    keys = ("rps", "p50_ms", "p99_ms", "cpu_us")
    med = {m: {k: statistics.median(r[k] for r in results[m]) for k in keys} for m in MODES}
    print(f"httpbin behind waitress ({args.server_threads} threads), {args.clients} clients, {args.duration:g} s "
          f"x {args.rounds} rounds, {args.fail_rate:.1%} GET /status/500; medians")
    print(f"{'capture':15} {'req/s':>9} {'vs off':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99 vs off':>11} "
          f"{'CPU us/req':>11} {'vs off':>8}")
    base = med["off"]
    for m in MODES:
        v = med[m]
        print(f"{m:15} {v['rps']:9.0f} {v['rps'] / base['rps']:8.3f} {v['p50_ms']:8.2f} {v['p99_ms']:8.2f} "
              f"{v['p99_ms'] / base['p99_ms']:11.3f} {v['cpu_us']:11.0f} {v['cpu_us'] / base['cpu_us']:8.3f}")
    loss = {m: f"{1 - med[m]['rps'] / base['rps']:.1%}" for m in MODES[1:]}
    print(f"throughput loss: on-error {loss['error']} (target under 3%), on-error without rate limits "
          f"{loss['error-unlimited']}, always {loss['always']}")


def report_paired(lockstep: list[dict[str, float]]) -> None:
    """Server CPU per request in lockstep runs: the ratio to off within each run, then the median."""
    if not lockstep:
        return
    print(f"paired (lockstep) server CPU per request, median of {len(lockstep)} runs, ratio to off within each run:")
    for m in MODES:
        ratios = [run[m] / run["off"] for run in lockstep]
        med = statistics.median(run[m] for run in lockstep)
        print(f"  {m:15} {med:6.0f} us  x{statistics.median(ratios):.3f} (runs {min(ratios):.3f}-{max(ratios):.3f})"
              f"  capacity loss {1 - 1 / statistics.median(ratios):.1%}")


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
