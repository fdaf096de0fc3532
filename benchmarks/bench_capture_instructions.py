"""Capture cost in instructions: httpbin under waitress, counted by valgrind (deterministic).

DESIGN.md section 9 sets under 3% throughput loss with capture on-error. CPU time and
throughput on a shared 2-core VM move by several percent between identical runs
(bench_capture_load.py reports intervals of +-3-5% around its medians); instruction counts
do not move at all, so this benchmark tells where the per-request cost is and whether a
change removed some, to the instruction.

For each mode, a waitress server (``--server-threads``, default 2) serving httpbin (the real
third-party Flask app) runs under ``valgrind --tool=callgrind``, which counts every user-space
instruction the server process executes; a client (not counted) sends ``--warmup``
requests of the mix of bench_capture_load.py without failures (GET /get, /headers,
/anything?x=1, /uuid, /status/200, POST /post with a JSON body) on one keep-alive
connection, then ``--requests`` more; two runs per mode (warmup only, warmup + requests) and
the difference, divided by ``--requests``, is the cost per request, start-up excluded.

Modes: ``off`` (no replay import), ``idle`` (the interceptors installed, no middleware: what
the process's own clock and socket calls pay), ``error`` (ReplayWSGIMiddleware, the
production default: every request recorded, none failing, so nothing written), and with
``--always`` also ``always`` (a snapshot per request: encoding, redaction, compression and
the write on the writer thread, all counted).

The cyclic garbage collector is disabled in the server after start-up by default
(``--gc off``): a full collection every few thousand requests would land in one run's
window and not the other's and swamp the difference. ``--gc on`` keeps it (then use more
requests). The figures do not include cache or memory effects: the paired CPU rounds of
bench_capture_load.py measure those, with their noise.

Usage: ``python benchmarks/bench_capture_instructions.py [--requests N] [--warmup N]
[--modes off,idle,error] [--always] [--gc on|off] [--server-threads T]``. Needs valgrind (apt install valgrind);
takes about 2 minutes (4 with ``--always``).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

SERVER = """
import gc, os, sys, threading, logging
logging.disable(logging.WARNING)
mode, portfile, snaps, threads, keep_gc = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5] == "on"
import httpbin
from waitress.server import create_server
app = httpbin.app
if mode != "off":
    from replay.capture import interceptors
    interceptors.install()
if mode in ("error", "always"):
    from replay.capture.middleware import ReplayWSGIMiddleware
    app = ReplayWSGIMiddleware(app, on=mode, directory=snaps, rate_limit="off", rate_limit_per_failure="off")
inner = app

def outer(environ, start_response):  # the same in every mode: a way to stop the server
    if environ.get("PATH_INFO") == "/__quit":
        threading.Timer(0.3, lambda: os._exit(0)).start()
        start_response("200 OK", [("Content-Length", "0")])
        return [b""]
    return inner(environ, start_response)

if not keep_gc:
    gc.collect()
    gc.disable()
server = create_server(outer, host="127.0.0.1", port=0, threads=threads)
with open(portfile + ".tmp", "w") as f:
    f.write(str(server.socket.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
server.run()
"""

MIX = [("GET", "/get", None), ("GET", "/headers", None), ("GET", "/anything?x=1", None), ("GET", "/uuid", None),
       ("GET", "/status/200", None), ("POST", "/post", json.dumps({"qty": 3, "sku": "A-1"}))]


def drive(portfile: str, n: int, timeout: float = 600.0) -> None:
    """Send ``n`` requests of the mix (then /__quit) once the server has written its port."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(portfile):
        if time.monotonic() > deadline:
            raise RuntimeError("the server did not start (see its log)")
        time.sleep(0.1)
    with open(portfile) as f:
        port = int(f.read())
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    for i in range(n):
        method, path, body = MIX[i % len(MIX)]
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        response = conn.getresponse()
        response.read()
        if response.status >= 500:
            raise RuntimeError(f"{method} {path}: {response.status}")
    conn.request("GET", "/__quit")
    conn.getresponse().read()


def count(mode: str, n: int, args: argparse.Namespace, work: str) -> int:
    """Instructions the server process executed while serving ``n`` requests (and start-up)."""
    portfile = os.path.join(work, f"port-{mode}-{n}")
    log = os.path.join(work, f"valgrind-{mode}-{n}.log")
    with open(log, "w") as out:
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, "-c", SERVER, mode,
             portfile, os.path.join(work, "snaps"), str(args.server_threads), args.gc],
            stdout=out, stderr=subprocess.STDOUT)
        try:
            drive(portfile, n)
            server.wait(timeout=600)
        finally:
            if server.poll() is None:
                server.kill()
    with open(log) as f:
        found = re.search(r"Collected : (\d+)", f.read())
    if found is None:
        raise RuntimeError(f"no instruction count in {log}")
    return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=600, help="requests counted per mode (default 600)")
    parser.add_argument("--warmup", type=int, default=60, help="requests before counting (default 60)")
    parser.add_argument("--always", action="store_true", help="also measure on='always'")
    parser.add_argument("--modes", default="off,idle,error", help="modes to measure (default off,idle,error)")
    parser.add_argument("--gc", choices=("on", "off"), default="off", help="the server's cyclic GC (default off)")
    parser.add_argument("--server-threads", type=int, default=2, help="waitress threads (default 2)")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("bench_capture_instructions: valgrind is not installed (apt install valgrind)")
    modes = [m for m in args.modes.split(",") if m] + (["always"] if args.always else [])
    if "off" not in modes or not set(modes) <= {"off", "idle", "error", "always"}:
        parser.error(f"--modes {args.modes!r}: a list of off, idle, error, always, with off")
    per_request: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="replay-bench-instr-") as work:
        for mode in modes:
            start = time.monotonic()
            base = count(mode, args.warmup, args, work)
            total = count(mode, args.warmup + args.requests, args, work)
            per_request[mode] = (total - base) / args.requests
            print(f"{mode:7s} {per_request[mode] / 1000:9.1f}k instructions per request "
                  f"({time.monotonic() - start:.0f} s)", flush=True)
    off = per_request["off"]
    print(f"\nper request, {args.requests} requests after {args.warmup}, GC {args.gc}, "
          f"{args.server_threads} waitress threads; ratio to off:")
    for mode in modes:
        extra = per_request[mode] - off
        print(f"  {mode:7s} {per_request[mode] / 1000:9.1f}k  x{per_request[mode] / off:.4f}  ({extra / 1000:+.1f}k)")


if __name__ == "__main__":
    main()
