"""Each channel recorded in a real process and replayed in another (clock, random, env, uuid).

The recorded functions return what they read, so a replay that reproduces the return value
proves the tape served exactly the recorded answers: the real clock, generator and
environment of the replaying process all differ from the recording's.
"""

from __future__ import annotations

import pytest

from replay.snapshot import open_snapshot
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration

CLOCK_APP = """
import time
from time import time as early_bound_time  # bound before replay installs its interceptors
import datetime as dt
from datetime import datetime, date, timezone
import replay

@replay.capture(on="always")
def read_clocks():
    return [
        time.time(), time.time_ns(), time.monotonic(), time.monotonic_ns(),
        time.perf_counter(), time.perf_counter_ns(), early_bound_time(),
        datetime.now(), datetime.now(timezone.utc), datetime.utcnow(), datetime.today(),
        date.today(), dt.datetime.now(dt.timezone(dt.timedelta(hours=5, minutes=30))),
        isinstance(datetime.now(), dt.datetime), isinstance(dt.datetime(2020, 1, 1), datetime),
    ]
"""


def test_clock_channel_records_every_clock_and_replays_it(app):
    app.write("clocks.py", CLOCK_APP)
    snap = app.record("import clocks; clocks.read_clocks()")
    with open_snapshot(snap) as s:
        ops = [i.op for i in s.tape]
        assert all(i.channel == "clock" for i in s.tape)
    assert ops == [
        "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns", "time.perf_counter",
        "time.perf_counter_ns", "time.time", "datetime.now", "datetime.now", "datetime.utcnow",
        "datetime.today", "date.today", "datetime.now", "datetime.now",
    ]
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


def test_clock_reading_matches_unrecorded_semantics(app):
    # time.time() computed from the recorded ns equals what the process saw; datetime.now()
    # floors to microseconds as CPython does.
    app.write("clocks.py", """
        import time, replay
        from datetime import datetime, timezone
        @replay.capture(on="always")
        def pair():
            return time.time_ns(), datetime.now(timezone.utc)
    """)
    snap = app.record("import clocks; clocks.pair()")
    with open_snapshot(snap) as s:
        ns_then = [i.result for i in s.tape]
        from replay.snapshot.codec import decode

        ns, now = decode(s.outcome["value"])
    assert ns == ns_then[0]
    assert now.microsecond == (ns_then[1] // 1000) % 1_000_000
    assert int(now.timestamp()) == ns_then[1] // 1_000_000_000


RANDOM_APP = """
import os, random, secrets, uuid
from random import random as early_random
import replay

@replay.capture(on="always")
def draw():
    deck = list(range(10))
    random.shuffle(deck)
    return [
        random.random(), random.randint(1, 6), random.choice("abcdef"), deck,
        random.uniform(0, 16), random.gauss(0, 1), random.getrandbits(100), random.randbytes(5),
        random.sample(range(100), 3), early_random(), os.urandom(8), secrets.token_hex(8),
        secrets.randbelow(1000), uuid.uuid4(), uuid.uuid1(),
    ]
"""


def test_random_channel_replays_module_functions_urandom_secrets_and_uuids(app):
    app.write("draws.py", RANDOM_APP)
    snap = app.record("import draws; draws.draw()")
    with open_snapshot(snap) as s:
        channels = {(i.channel, i.op) for i in s.tape}
    assert ("random", "random.random") in channels
    assert ("random", "random.getrandbits") in channels
    assert ("random", "os.urandom") in channels
    assert ("uuid", "uuid.uuid1") in channels
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


def test_recorded_random_values_equal_what_the_generator_gives_unrecorded(app):
    # With a fixed seed, the recorded process must see the same numbers as an unrecorded one.
    app.write("seeded.py", """
        import random, replay
        def draws():
            random.seed(1234)
            return [random.random(), random.randint(0, 10**30), random.getrandbits(77), random.choice(range(999))]
        recorded = replay.capture(on="always")(draws)
    """)
    proc_plain = __import__("tests.conftest", fromlist=["run_recording"]).run_recording(
        app.root, "import seeded; print(repr(seeded.draws()))", snap_dir=app.snaps)
    proc_rec = __import__("tests.conftest", fromlist=["run_recording"]).run_recording(
        app.root, "import seeded; print(repr(seeded.recorded()))", snap_dir=app.snaps)
    assert proc_plain.stdout == proc_rec.stdout


def test_candidate_calling_a_different_random_function_draws_the_same_numbers(app):
    app.write("dice.py", """
        import random, replay
        @replay.capture(on="always")
        def roll():
            return random.randint(1, 6), random.random()
    """)
    snap = app.record("import dice; dice.roll()")
    # choice() and randint() both draw _randbelow(6); uniform(0, 1) is random() scaled by 1.
    candidate = app.candidate("cand", {"dice.py": """
        import random, replay
        @replay.capture(on="always")
        def roll():
            return random.choice([1, 2, 3, 4, 5, 6]), random.uniform(0, 1)
    """})
    result = verify(snap, [str(candidate)])
    assert result.verdict is Verdict.UNCHANGED, result.reason
    assert result.synthesized == {}


def test_candidate_needing_more_randomness_gets_synthesized_values(app):
    app.write("dice.py", """
        import random, replay
        @replay.capture(on="always")
        def roll():
            return random.randint(1, 6)
    """)
    snap = app.record("import dice; dice.roll()")
    candidate = app.candidate("cand", {"dice.py": """
        import random, replay
        @replay.capture(on="always")
        def roll():
            first = random.randint(1, 6)
            random.random(); random.random()
            return first
    """})
    result = verify(snap, [str(candidate)])
    assert result.verdict is Verdict.UNCHANGED, result.reason
    assert result.synthesized.get("random.mt", 0) >= 1


ENV_APP = """
import os, replay
@replay.capture(on="always")
def settings():
    return [os.environ["REGION"], os.getenv("NOT_SET_ANYWHERE"), "REGION" in os.environ,
            os.environ.get("TIER", "free"), os.getenv("API_TOKEN")]
"""


def test_env_channel_records_reads_and_missing_keys(app):
    app.write("cfg.py", ENV_APP)
    snap = app.record("import cfg; cfg.settings()", env={"REGION": "eu-west", "API_TOKEN": "tok-123"})
    with open_snapshot(snap) as s:
        ops = [(i.op, i.args) for i in s.tape]
        assert all(i.channel == "env" for i in s.tape)
        env = s.environment
    assert ("environ.get", ["t", "REGION"]) in ops
    assert ("environ.get", ["t", "NOT_SET_ANYWHERE"]) in ops
    assert "API_TOKEN" in env["environ_withheld"] and "API_TOKEN" not in env["environ"]
    # REGION is not set in the replaying process: the answer must come from the tape.
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


def test_candidate_reading_a_new_variable_is_answered_from_the_recorded_environment(app):
    app.write("cfg.py", ENV_APP)
    snap = app.record("import cfg; cfg.settings()", env={"REGION": "eu", "CURRENCY": "EUR", "DB_PASSWORD": "x"})
    cand = app.candidate("cand", {"cfg.py": ENV_APP.replace('os.getenv("API_TOKEN")]', 'os.getenv("API_TOKEN"), os.environ["CURRENCY"]]')})
    result = verify(snap, [str(cand)])
    assert result.verdict is Verdict.CHANGED, result.reason
    assert result.from_environment == 1
    assert any("'EUR'" in new for _, _, new in result.changes)
    # A secret-looking variable the original never read is not in the snapshot: divergence.
    cand2 = app.candidate("cand2", {"cfg.py": ENV_APP.replace('os.getenv("API_TOKEN")]', 'os.environ["DB_PASSWORD"]]')})
    result2 = verify(snap, [str(cand2)])
    assert result2.verdict is Verdict.DIVERGED
    assert result2.divergence["op"] == "environ.get" and "DB_PASSWORD" in result2.divergence["asked"]


def test_baseline_that_asks_differently_is_not_reproducible_and_names_the_divergence(app, tmp_path):
    # The program decides from a file read below the file channel (os.open/os.read are not
    # recorded) whether to read the clock.
    flag = tmp_path / "flag"
    flag.write_text("1")
    app.write("flaky.py", f"""
        import os, time, replay
        @replay.capture(on="always")
        def work():
            fd = os.open({str(flag)!r}, os.O_RDONLY)
            extra = os.read(fd, 1) == b"1"
            os.close(fd)
            a = time.time()
            return (a, time.time()) if extra else (a,)
    """)
    snap = app.record("import flaky; flaky.work()")
    flag.write_text("0")
    result = reproduce(snap)
    assert result.verdict is Verdict.NOT_REPRODUCIBLE
    assert result.divergence is not None
    assert result.divergence["index"] == 1
    assert "time.time" in result.divergence["recorded"]
    assert "ended without asking" in result.divergence["reason"]
