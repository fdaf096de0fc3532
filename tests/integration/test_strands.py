"""Threads and asyncio tasks: each strand's interactions attributed to it, replayed in order
within it whatever the interleaving, and concurrent requests in one process get separate tapes."""

from __future__ import annotations

import glob

import pytest

from replay.snapshot import open_snapshot
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration

THREADS = """
import concurrent.futures, os, random, threading, time
import replay

@replay.capture(on="always")
def fan_out(n):
    out = {}
    def worker(i):
        time.sleep(0.001 * (n - i))        # finish in reverse order of start
        out[i] = (time.time_ns(), random.random(), os.environ.get("HOME"))
    threads = [threading.Thread(target=worker, args=(i,), name=f"w{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        pooled = list(pool.map(lambda i: time.monotonic_ns() % 1000 + i, range(4)))
    return sorted(out.items()), pooled
"""


def test_threads_and_pool_work_items_get_their_own_strands_and_replay(app):
    app.write("fan.py", THREADS)
    snap = app.record("import fan; fan.fan_out(3)")
    with open_snapshot(snap) as s:
        strands = {i.strand for i in s.tape}
        kinds = {v["kind"] for v in s.strands.values()}
        by_strand = {}
        for i in s.tape:
            if i.op != "time.sleep":
                by_strand.setdefault(i.strand, []).append(i.op)
    assert {"0.1", "0.2", "0.3", "0.4", "0.7"} <= strands  # 3 threads, 4 pool items (0.4 .. 0.7)
    assert kinds == {"thread", "pool"}
    assert by_strand["0.1"] == ["time.time_ns", "random.random", "environ.get"]
    for _ in range(2):  # the threads interleave differently on each replay
        result = reproduce(snap)
        assert result.verdict is Verdict.REPRODUCED, result.reason


ASYNC = """
import asyncio, random, time
import replay

@replay.capture(on="always")
async def gather(n):
    async def one(i):
        await asyncio.sleep(0.002 * (n - i))
        return i, time.time_ns(), random.getrandbits(16)
    return await asyncio.gather(*(one(i) for i in range(n)))
"""


def test_asyncio_tasks_get_their_own_strands_and_replay(app):
    app.write("gat.py", ASYNC)
    snap = app.record("import asyncio, gat; asyncio.run(gat.gather(3))")
    with open_snapshot(snap) as s:
        assert {v["kind"] for v in s.strands.values()} == {"task"}
        assert {i.strand for i in s.tape if i.op != "loop.time"} >= {"0.1", "0.2", "0.3"}
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    # a candidate that starts the tasks in another order is matched without a divergence
    cand = app.candidate("cand", {"gat.py": ASYNC.replace("for i in range(n)", "for i in reversed(range(n))")
                                  .replace("return await asyncio.gather", "return sorted(await asyncio.gather")
                                  .replace("range(n))))", "range(n)))))")})
    result = verify(snap, [str(cand)])
    assert result.verdict in (Verdict.UNCHANGED, Verdict.CHANGED), result.reason


CONCURRENT = """
import asyncio, os, threading, time
import replay

@replay.capture(on="always")
def handle(name):
    time.sleep(0.01)
    return name, os.environ.get("REQ_" + name), time.time_ns()

@replay.capture(on="always")
async def ahandle(name):
    await asyncio.sleep(0.01)
    return name, os.environ.get("AREQ_" + name), time.time_ns()

def run_threads():
    ts = [threading.Thread(target=handle, args=(n,)) for n in ("a", "b", "c")]
    for t in ts: t.start()
    for t in ts: t.join()

async def run_tasks():
    await asyncio.gather(*(ahandle(n) for n in ("x", "y")))
"""


def test_concurrent_requests_in_one_process_get_separate_tapes(app):
    app.write("conc.py", CONCURRENT)
    from tests.conftest import run_recording

    run_recording(app.root, "import asyncio, conc; conc.run_threads(); asyncio.run(conc.run_tasks())",
                  snap_dir=app.snaps, env={"REQ_a": "1", "REQ_b": "2", "REQ_c": "3", "AREQ_x": "9", "AREQ_y": "8"})
    snaps = sorted(glob.glob(str(app.snaps / "*.rsnap")))
    assert len(snaps) == 5
    for path in snaps:
        with open_snapshot(path) as s:
            (name,) = s.entry and __import__("replay.snapshot.codec", fromlist=["decode"]).decode(s.entry["args"])
            reads = [i for i in s.tape if i.channel == "env"]
            assert len(reads) == 1, f"{path} holds another request's interactions"
            assert name in repr(reads[0].args)
            assert {i.strand for i in s.tape} == {"0"}
        assert reproduce(path).verdict is Verdict.REPRODUCED
