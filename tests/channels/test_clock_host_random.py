"""Clock (calendar functions, CPU clocks, sleep, asyncio loop time), random generators and host facts.

Each program is recorded in a fresh process and replayed in another. The recorded functions
return what they read, so a baseline replay that reproduces the return value (strict mode:
every interaction asked in order) proves the tape served exactly the recorded answers. Where
the replaying process would see the same answer for real (same machine, same second), the
recording runs under libfaketime, or the test changes the world in between.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path

import pytest

from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
needs_faketime = pytest.mark.skipif(not os.path.exists(FAKETIME_LIB), reason="libfaketime is not installed")


def faketime(offset: str) -> dict[str, str]:
    """Environment that runs the recording process with its clocks moved by ``offset``."""
    return {"LD_PRELOAD": FAKETIME_LIB, "FAKETIME": offset}


def tape_of(snap: Path) -> list[tuple[str, str, object, object]]:
    with open_snapshot(snap) as s:
        return [(i.channel, i.op, i.args, i.result) for i in s.tape]


def outcome_of(snap: Path) -> object:
    with open_snapshot(snap) as s:
        return decode(s.outcome["value"])


# ----------------------------------------------------------------------------- clock

CALENDAR_APP = """
import time, replay
from time import localtime as early_localtime

@replay.capture(on="always")
def calendar():
    return {
        "localtime": tuple(time.localtime()), "gmtime": tuple(time.gmtime()), "ctime": time.ctime(),
        "asctime": time.asctime(), "strftime": time.strftime("%Y-%m-%d %H:%M:%S"),
        "early": tuple(early_localtime()), "none_arg": tuple(time.gmtime(None)),
        # with a time argument: pure functions, nothing recorded
        "pure": [tuple(time.gmtime(86400)), time.ctime(0.5), time.asctime(time.gmtime(0)),
                 time.strftime("%Y", time.gmtime(0)), tuple(time.localtime(3600))],
        "cpu": [time.process_time(), time.process_time_ns(), time.thread_time(), time.thread_time_ns()],
    }
"""


@needs_faketime
def test_calendar_functions_and_cpu_clocks_are_served_from_the_tape(app):
    app.write("cal.py", CALENDAR_APP)
    # Recorded 1000 days ago: a replay reading the real clock would see another date.
    snap = app.record("import cal; cal.calendar()", env={**faketime("-1000d"), "TZ": "Asia/Kolkata"})
    tape = tape_of(snap)
    assert [op for _, op, _, _ in tape] == [
        "time.localtime", "time.gmtime", "time.ctime", "time.asctime", "time.strftime", "time.localtime",
        "time.gmtime", "time.process_time", "time.process_time_ns", "time.thread_time", "time.thread_time_ns",
    ]
    assert {ch for ch, _, _, _ in tape} == {"clock"}
    out = outcome_of(snap)
    assert isinstance(out, dict)
    # Each result is the real function computed on the recorded wall-clock reading.
    secs = [r // 1_000_000_000 for _, op, _, r in tape[:7]]
    assert abs(secs[0] - (time.time() - 1000 * 86400)) < 120
    saved_tz = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Kolkata"
    time.tzset()
    try:
        assert out["localtime"] == tuple(time.localtime(secs[0]))
        assert out["gmtime"] == tuple(time.gmtime(secs[1]))
        assert out["ctime"] == time.ctime(secs[2])
        assert out["asctime"] == time.asctime(time.localtime(secs[3]))
        assert out["strftime"] == time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(secs[4]))
        assert out["early"] == tuple(time.localtime(secs[5]))
        assert out["none_arg"] == tuple(time.gmtime(secs[6]))
        assert out["pure"][1] == time.ctime(0.5) == "Thu Jan  1 05:30:00 1970"
    finally:
        if saved_tz is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = saved_tz
        time.tzset()
    assert out["pure"][3] == "1970"
    assert out["cpu"][1] == tape[8][3] and out["cpu"][3] == tape[10][3]
    assert out["cpu"][0] == tape[7][3] / 1e9

    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


SLEEP_APP = """
import time, replay
from time import sleep as early_sleep

@replay.capture(on="always")
def nap():
    t0 = time.monotonic()
    time.sleep(2)
    early_sleep(0.05)
    time.sleep(0)
    for bad in (-1, "x"):
        try:
            time.sleep(bad)
        except (ValueError, TypeError) as exc:
            last = type(exc).__name__
    return round(time.monotonic() - t0, 3) >= 2.05, last
"""


def test_sleep_is_recorded_and_not_slept_on_replay(app):
    app.write("nap.py", SLEEP_APP)
    snap = app.record("import nap; nap.nap()")
    tape = tape_of(snap)
    assert [(op, args) for _, op, args, _ in tape] == [
        ("time.monotonic", ["t"]), ("time.sleep", ["t", 2]), ("time.sleep", ["t", 0.05]),
        ("time.sleep", ["t", 0]), ("time.monotonic", ["t"]),
    ]
    assert outcome_of(snap) == (True, "TypeError")
    t0 = time.monotonic()
    result = reproduce(snap)
    wall = time.monotonic() - t0
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert result.baseline is not None
    assert result.baseline.outcome["duration_ns"] < 500_000_000  # the recorded call took 2.05 s
    assert wall < 2.0


LOOP_APP = """
import asyncio, time, replay

@replay.capture(on="always")
async def tick():
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await asyncio.sleep(0.3)
    t1 = loop.time()
    await asyncio.wait_for(asyncio.sleep(0.1), timeout=5)
    t2 = loop.time()
    return t0 > 10**6, t1 - t0 >= 0.3, t2 - t1 >= 0.1, round(t2 - t0, 1)

@replay.capture(on="always")
def sync_entry():
    async def inner():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(0.2)
        return loop.time() - t0 >= 0.2
    return asyncio.run(inner())
"""


@needs_faketime
def test_asyncio_loop_time_is_recorded_and_replay_timers_follow_the_recorded_clock(app):
    app.write("ticks.py", LOOP_APP)
    # libfaketime moves CLOCK_MONOTONIC too: recorded loop readings are ~1.6e9 s while the
    # replaying process's monotonic clock is much smaller; timers set from served readings
    # would wait for decades if the loop's scheduler read the real clock.
    snap = app.record("import asyncio, ticks; asyncio.run(ticks.tick())", env=faketime("-1000d"))
    tape = tape_of(snap)
    # only the code's own reads (t0, call_later of each sleep, wait_for's call_later, t1, t2);
    # the scheduler's reads are not on the tape
    assert [op for _, op, _, _ in tape] == ["loop.time"] * 6
    readings = [r for _, _, _, r in tape]
    assert readings == sorted(readings) and readings[0] > 10**15
    recorded = outcome_of(snap)
    assert recorded[:3] == (True, True, True)
    t0 = time.monotonic()
    result = reproduce(snap, timeout_s=30)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert time.monotonic() - t0 < 15
    # a loop run by a recorded synchronous call: the scheduler runs inside the session
    snap2 = app.record("import ticks; ticks.sync_entry()", env=faketime("-1000d"))
    assert [op for ch, op, _, _ in tape_of(snap2) if ch == "clock"] == ["loop.time"] * 3
    result2 = reproduce(snap2, timeout_s=30)
    assert result2.verdict is Verdict.REPRODUCED, result2.reason


# ----------------------------------------------------------------------------- random

RANDOM_APP = """
import random
RNG = random.Random()           # seeded from the system before replay is even imported
SEEDED = random.Random(7)       # seeded at import, and drawn from before the recorded call
SEEDED.random()
import copy, secrets, uuid
import replay

class Sub(random.Random):
    pass

@replay.capture(on="always")
def draw():
    out = {}
    out["module_rng"] = [RNG.random(), RNG.getrandbits(40)]
    out["seeded_before"] = SEEDED.random()
    out["seeded_here"] = [random.Random(42).random(), random.Random(42).getrandbits(64)]
    r = random.Random()
    out["fresh"] = r.random()
    r.seed(5)
    out["reseeded"] = r.random()
    r.seed(None)
    out["reseeded_system"] = r.random()
    out["sub"] = Sub().random()
    out["sub_seeded"] = Sub(9).random()
    random.seed(1234)
    out["hidden_seeded"] = random.random()
    random.seed()
    out["hidden_system"] = random.random()
    c = random.Random()
    c.setstate(RNG.getstate())
    out["restored"] = c.random()
    out["copied"] = copy.deepcopy(RNG).random()
    out["system"] = [random.SystemRandom().random(), secrets.token_bytes(4), secrets.token_hex(4),
                     secrets.token_urlsafe(4), secrets.randbelow(10**6), secrets.choice("abcdefgh"),
                     str(uuid.uuid4())]
    return out
"""


def test_system_seeded_generators_are_recorded_and_seeded_ones_are_not(app):
    app.write("draws.py", RANDOM_APP)
    snap = app.record("import draws; draws.draw()")
    tape = tape_of(snap)
    words = [(op, args) for ch, op, args, _ in tape if ch == "random" and op != "os.urandom"]
    # RNG x2, SEEDED (seeded before the call), fresh r, r after seed(None), Sub(), hidden after seed()
    assert words == [("random.random", ["t"]), ("random.getrandbits", ["t", 40])] + [("random.random", ["t"])] * 5
    assert [op for ch, op, _, _ in tape if ch == "random.state"] == ["random.getstate"] * 2
    assert sum(1 for ch, op, _, _ in tape if op == "os.urandom") >= 7
    out = outcome_of(snap)
    assert isinstance(out, dict)
    # explicitly seeded in the call: the real generator's values
    assert out["seeded_here"] == [random.Random(42).random(), random.Random(42).getrandbits(64)]
    assert out["reseeded"] == random.Random(5).random()
    assert out["sub_seeded"] == random.Random(9).random()
    assert out["hidden_seeded"] == random.Random(1234).random()
    # SEEDED was drawn from before the call: its second value, recorded
    second = random.Random(7)
    second.random()
    assert out["seeded_before"] == second.random()
    # a copy of the recorded generator continues its stream
    assert out["restored"] == out["copied"]

    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason

    # A candidate that seeds its own generators gets the seeded values, and the recorded
    # system-seeded draws still reach the same places (nothing synthesized).
    cand_src = RANDOM_APP.replace(
        '    out["module_rng"] = [RNG.random(), RNG.getrandbits(40)]',
        '    mine = random.Random(2024)\n'
        '    out["cand"] = [mine.random(), mine.random(), random.Random(42).random()]\n'
        '    out["module_rng"] = [RNG.random(), RNG.getrandbits(40)]')
    cand = app.candidate("cand", {"draws.py": cand_src})
    res = verify(snap, [str(cand)])
    assert res.verdict is Verdict.CHANGED, res.reason
    assert res.synthesized == {}
    mine = random.Random(2024)
    expected = [mine.random(), mine.random(), random.Random(42).random()]
    assert len(res.changes) == 1 and res.changes[0][0].startswith("['cand']")
    assert res.changes[0][2] == repr(expected) or all(repr(v) in res.changes[0][2] for v in expected)


def test_a_candidate_drawing_more_from_a_system_seeded_generator_gets_synthesized_words(app):
    app.write("dice.py", """
        import random, replay
        RNG = random.Random()
        @replay.capture(on="always")
        def roll():
            return RNG.getrandbits(32)
    """)
    snap = app.record("import dice; dice.roll()")
    cand = app.candidate("cand", {"dice.py": """
        import random, replay
        RNG = random.Random()
        @replay.capture(on="always")
        def roll():
            first = RNG.getrandbits(32)
            RNG.random()
            return first
    """})
    res = verify(snap, [str(cand)])
    assert res.verdict is Verdict.UNCHANGED, res.reason
    assert res.synthesized.get("random.mt") == 2


HASH_APP = """
import replay
@replay.capture(on="always")
def names():
    return sorted({"a", "b", "c"})
"""


def test_unknown_hash_seed_is_warned_about_and_a_set_one_is_not(app):
    app.write("names.py", HASH_APP)
    warning = "random hash seed"
    snap = app.record("import names; names.names()", env={"PYTHONHASHSEED": "random"})
    with open_snapshot(snap) as s:
        assert s.header["hash_seed"] is None
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert any(warning in w for w in result.warnings), result.warnings
    snap2 = app.record("import names; names.names()", env={"PYTHONHASHSEED": "123"})
    result2 = reproduce(snap2)
    assert result2.verdict is Verdict.REPRODUCED, result2.reason
    assert not any(warning in w for w in result2.warnings), result2.warnings


# ------------------------------------------------------------------------------ host

HOST_APP = """
import os, pathlib, platform, socket, replay
from os import getpid as early_getpid

GONE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "work")

@replay.capture(on="always")
def facts():
    out = {
        "pid": os.getpid(), "ppid": os.getppid(), "early_pid": early_getpid(), "host": socket.gethostname(),
        "node": platform.node(), "system": platform.system(), "release": platform.release(),
        "version": platform.version(), "machine": platform.machine(), "processor": platform.processor(),
        "uname": tuple(platform.uname()), "uname_processor": platform.uname().processor,
        "platform": platform.platform(), "terse": platform.platform(terse=True),
        "os_uname": tuple(os.uname()), "nodename": os.uname().nodename,
    }
    start = os.getcwd()
    os.chdir(GONE)
    out["cwd"] = [start, os.getcwdb(), str(pathlib.Path.cwd()), os.path.abspath("x.txt")]
    os.chdir(start)
    out["back"] = os.getcwd()
    try:
        os.chdir(os.path.join(GONE, "missing"))
    except FileNotFoundError as exc:
        out["chdir_error"] = [type(exc).__name__, exc.errno, exc.filename.endswith("/work/missing")]
    return out
"""


def test_host_facts_are_recorded_and_served(app):
    app.write("host.py", HOST_APP)
    work = app.root / "work"
    work.mkdir()
    snap = app.record("import host; host.facts()")
    tape = tape_of(snap)
    assert {ch for ch, _, _, _ in tape} == {"host"}
    ops = [(op, args) for _, op, args, _ in tape]
    assert ops == [
        ("os.getpid", ["t"]), ("os.getppid", ["t"]), ("os.getpid", ["t"]), ("socket.gethostname", ["t"]),
        ("platform.node", ["t"]), ("platform.system", ["t"]), ("platform.release", ["t"]),
        ("platform.version", ["t"]), ("platform.machine", ["t"]), ("platform.processor", ["t"]),
        ("platform.uname", ["t"]), ("platform.uname", ["t"]),
        ("platform.platform", ["t", False, False]), ("platform.platform", ["t", False, True]),
        ("os.uname", ["t"]), ("os.uname", ["t"]),
        ("os.getcwd", ["t"]), ("os.chdir", ["t", "<app>/work"]),
        # readings after a chdir carry the number of chdirs made so far
        ("os.getcwdb", ["t", 1]), ("os.getcwd", ["t", 1]), ("os.getcwd", ["t", 1]),
        ("os.chdir", ["t", "<app>"]), ("os.getcwd", ["t", 2]), ("os.chdir", ["t", "<app>/work/missing"]),
    ]
    cwd_answers = [r for _, op, _, r in tape if op.startswith("os.getcwd")]
    assert cwd_answers[0] == ["t", str(app.root), "<app>"]
    assert cwd_answers[1] == ["t", os.fsencode(work), "<app>/work"]
    out = outcome_of(snap)
    assert isinstance(out, dict)
    assert out["pid"] == out["early_pid"] != os.getpid()
    assert out["host"] == out["node"] == out["nodename"] == socket_hostname()
    assert out["uname"][5] == out["processor"] == out["uname_processor"]
    assert out["cwd"] == [str(app.root), os.fsencode(work), str(work), str(work / "x.txt")]
    assert out["back"] == str(app.root) and out["chdir_error"] == ["FileNotFoundError", 2, True]
    # The replay runs in another process, in a temporary directory, and must not really
    # change directory: the recorded one is gone (a real chdir would raise).
    shutil.rmtree(work)
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


def socket_hostname() -> str:
    import socket

    return socket.gethostname()


PID_APP = """
import os, socket, replay
@replay.capture(on="always")
def who():
    return {"pid": os.getpid(), "host": socket.gethostname()}
"""


def test_candidate_asking_host_facts_more_often_gets_the_recorded_answers(app):
    app.write("who.py", PID_APP)
    snap = app.record("import who; who.who()")
    recorded = outcome_of(snap)
    assert isinstance(recorded, dict)
    cand = app.candidate("cand", {"who.py": """
        import os, socket, replay
        @replay.capture(on="always")
        def who():
            return {"pid": os.getpid(), "host": socket.gethostname(),
                    "again": [os.getpid(), os.getpid(), socket.gethostname()]}
    """})
    res = verify(snap, [str(cand)])
    assert res.verdict is Verdict.CHANGED, res.reason
    assert res.changes == [("['again']", "(missing)", repr([recorded["pid"], recorded["pid"], recorded["host"]]))] \
        or (len(res.changes) == 1 and str(recorded["pid"]) in res.changes[0][2])
    # a host fact the recording never asked for is not invented
    cand2 = app.candidate("cand2", {"who.py": PID_APP.replace('"host": socket.gethostname()',
                                                              '"host": socket.gethostname(), "m": __import__("platform").machine()')})
    res2 = verify(snap, [str(cand2)])
    assert res2.verdict is Verdict.DIVERGED, res2.reason
    assert res2.divergence is not None and res2.divergence["op"] == "platform.machine"


CWD_APP = """
import os, replay
HERE = os.path.dirname(os.path.abspath(__file__))
@replay.capture(on="always")
def where():
    before = os.getcwd()
    os.chdir(os.path.join(HERE, "sub"))
    inside = os.getcwd()
    os.chdir(HERE)
    return before, inside
"""


def test_candidate_reading_the_working_directory_only_after_chdir_gets_the_later_reading(app):
    app.write("where.py", CWD_APP)
    (app.root / "sub").mkdir()
    snap = app.record("import where; where.where()")
    assert outcome_of(snap) == (str(app.root), str(app.root / "sub"))
    cand = app.candidate("cand", {"where.py": """
        import os, replay
        HERE = os.path.dirname(os.path.abspath(__file__))
        @replay.capture(on="always")
        def where():
            os.chdir(os.path.join(HERE, "sub"))  # the candidate's own copy: <app>/sub, as recorded
            inside = os.getcwd()
            os.chdir(HERE)
            return None, inside
    """})
    res = verify(snap, [str(cand)])
    assert res.verdict is Verdict.CHANGED, res.reason
    assert [c[0] for c in res.changes] == ["[0]"]  # only `before` changed: `inside` is the recorded reading
