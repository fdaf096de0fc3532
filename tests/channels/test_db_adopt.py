"""Database connections that outlive one recorded call: adopted connections.

A web app keeps its connections across requests (a module-level connection, a pool,
Django's CONN_MAX_AGE); each request is one recorded call. A call that uses a connection
it did not open records an ``adopt`` before its first operation. Replay, a fresh process,
either opens a connection inside the call (the ``adopt`` answers that ``connect``, and the
fresh connection's set-up statements are answered from the set-up recorded with the
``adopt``) or opened one at import (the ``adopt`` is consumed at its first use). Recorded in
fresh processes on real sqlite files; the database is deleted or changed before replay.
"""

from __future__ import annotations

import sqlite3

import pytest

import replay
from replay.capture.boundary import ACTIVE
from replay.capture.channels import db as dbchannel
from replay.capture.recorder import Recorder
from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify
from tests.channels.test_db import make_db, rows_of

# A connection opened lazily by the first call and kept (what a pool or Django does).
LAZY = """
import sqlite3
import replay

PATH = {path!r}
_conn = None


def connection():
    global _conn
    if _conn is None:
        _conn = sqlite3.connect(PATH)
        _conn.execute("PRAGMA foreign_keys = ON")
        _conn.execute("PRAGMA busy_timeout = 2500")  # answers a row: (2500,)
    return _conn


@replay.capture(on="error")
def score_share(name):
    conn = connection()
    row = conn.execute("SELECT score, (SELECT sum(score) FROM people) FROM people WHERE name = ?", (name,)).fetchone()
    conn.execute("INSERT INTO log (msg) VALUES (?)", ("share " + name,))
    conn.commit()
    return round(row[0] / (row[1] - 3 * row[0]), 3)  # Grace: 1.5 / (4.5 - 4.5)
"""

LAZY_FIX = ("    return round(row[0] / (row[1] - 3 * row[0]), 3)  # Grace: 1.5 / (4.5 - 4.5)\n",
            "    rest = row[1] - 3 * row[0]\n    return round(row[0] / rest, 3) if rest else None\n")

# A connection opened at import, outside any recorded call (after the capture decorator
# installed the interceptors), used by every call.
AT_IMPORT = """
import sqlite3
import replay


@replay.capture(on="always")
def names(min_score):
    rows = DB.execute("SELECT name FROM people WHERE score >= ? ORDER BY id", (min_score,)).fetchall()
    DB.execute("INSERT INTO log (msg) VALUES (?)", ("listed",))
    DB.commit()
    return [r[0] for r in rows], DB.total_changes


DB = sqlite3.connect({path!r}, check_same_thread=False)
DB.execute("PRAGMA foreign_keys = ON")
"""


def _db_ops(snap):
    with open_snapshot(snap) as s:
        return [i for i in s.tape if i.channel == "db"]


def test_a_reused_connection_is_adopted_and_its_setup_replays_from_the_tape(app, tmp_path):
    path = tmp_path / "people.db"
    make_db(path)
    app.write("lazy.py", LAZY.format(path=str(path)))
    # the first call opens the connection (and succeeds: not written); the second reuses it and fails
    snap = app.record("import lazy\nlazy.score_share('Ada')\ntry:\n    lazy.score_share('Grace')\n"
                      "except ZeroDivisionError:\n    pass")
    db = _db_ops(snap)
    assert [i.op for i in db] == ["adopt", "execute", "execute", "commit"]
    adopt = db[0]
    assert adopt.args == ["t", "sqlite3", str(path)]
    answer = decode(adopt.result)
    assert answer["state"][0] == 1  # total_changes: the first call's INSERT
    setup = [(op, request[1], entry.get("rows") if isinstance(entry, dict) else None)
             for op, request, entry in answer["setup"]]
    assert setup == [("execute", "PRAGMA foreign_keys = ON", []), ("execute", "PRAGMA busy_timeout = 2500", [(2500,)])]
    with open_snapshot(snap) as s:
        assert s.header["exception_type"] == "builtins:ZeroDivisionError"

    path.unlink()
    run = reproduce(snap)
    assert run.verdict is Verdict.REPRODUCED, run.reason
    assert run.baseline.reused == {"db": 2}  # the two PRAGMAs, from the adopt's recorded set-up
    assert run.baseline.blocked == [] and not path.exists()

    fixed = app.candidate("fixed", {"lazy.py": LAZY.format(path=str(path)).replace(*LAZY_FIX)})
    result = verify(snap, [str(fixed)])
    assert result.verdict is Verdict.FIXED, result.reason
    assert not path.exists()


def test_a_new_setup_pragma_is_answered_empty_and_reported_other_changes_still_diverge(app, tmp_path):
    path = tmp_path / "people.db"
    make_db(path)
    source = LAZY.format(path=str(path))
    app.write("lazy.py", source)
    snap = app.record("import lazy\nlazy.score_share('Ada')\ntry:\n    lazy.score_share('Grace')\n"
                      "except ZeroDivisionError:\n    pass")
    path.unlink()
    # A fix that also configures the connection differently: the new PRAGMA is set-up
    # the recording never ran; it is answered empty and counted, not a divergence.
    wal = app.candidate("wal", {"lazy.py": source.replace(*LAZY_FIX).replace(
        '        _conn.execute("PRAGMA busy_timeout = 2500")',
        '        _conn.execute("PRAGMA busy_timeout = 2500")\n        _conn.execute("PRAGMA cache_size = -4000")')})
    result = verify(snap, [str(wal)])
    assert result.verdict is Verdict.FIXED, result.reason
    assert result.synthesized == {"db.setup": 1}
    # A statement that is not set-up is matched against the tape as always: a divergence.
    probe = app.candidate("probe", {"lazy.py": source.replace(
        '        _conn.execute("PRAGMA busy_timeout = 2500")',
        '        _conn.execute("PRAGMA busy_timeout = 2500")\n'
        '        _conn.execute("SELECT count(*) FROM people").fetchone()')})
    result = verify(snap, [str(probe)])
    assert result.verdict is Verdict.DIVERGED, result.reason
    assert "SELECT count(*) FROM people" in result.divergence["asked"]
    assert not path.exists()


def test_a_connection_opened_at_import_is_recorded_and_never_queried_on_replay(app, tmp_path):
    path = tmp_path / "people.db"
    make_db(path)
    app.write("listing.py", AT_IMPORT.format(path=str(path)))
    snap = app.record("import listing\nlisting.names(1.0)")
    db = _db_ops(snap)
    assert [i.op for i in db] == ["adopt", "execute", "execute", "commit"]
    assert decode(db[0].result)["setup"][0][1][1] == "PRAGMA foreign_keys = ON"  # run outside any call, kept
    with open_snapshot(snap) as s:
        assert s.header["replayable"], s.header["reasons"]
        assert decode(s.outcome["value"]) == (["Grace", "Linus"], 1)
    assert rows_of(path, "SELECT msg FROM log") == [("listed",)]

    # The replay imports the module, which opens the (changed) database for real outside
    # the call; inside the call every answer comes from the tape and nothing is written.
    path.unlink()
    make_db(path, people=(("Zed", None),))
    before = path.read_bytes()
    run = reproduce(snap)
    assert run.verdict is Verdict.REPRODUCED, run.reason
    assert path.read_bytes() == before and rows_of(path, "SELECT count(*) FROM log") == [(0,)]
    assert run.baseline.reused == {} and run.baseline.blocked == []


def test_outside_a_session_connections_pass_through_and_sessions_adopt_them_once(tmp_path):
    replay.capture(lambda: None)  # installs the interceptors in this process
    path = tmp_path / "people.db"
    make_db(path)
    conn = sqlite3.connect(str(path), check_same_thread=False)
    assert isinstance(conn, sqlite3.Connection) and isinstance(conn, dbchannel.SqliteConnection)
    assert conn.execute("PRAGMA busy_timeout = 100").fetchone() == (100,)
    assert conn.execute("SELECT name FROM people WHERE id = 1").fetchone() == ("Ada",)  # ends the set-up log
    conn.execute("PRAGMA cache_size = -2000")  # after the set-up: not kept
    first, second = Recorder(app_roots=[str(tmp_path)]), Recorder(app_roots=[str(tmp_path)])
    for rec in (first, second, first):
        token = ACTIVE.set(rec)
        try:
            assert conn.execute("SELECT count(*) FROM people").fetchone() == (3,)
        finally:
            ACTIVE.reset(token)
    assert [r[1] for r in first.tape] == ["adopt", "execute", "execute"]  # adopted once per session
    assert [r[1] for r in second.tape] == ["adopt", "execute"]
    adopt = decode(list(first.tape[0][2])), decode(first.tape[0][3])  # as read back from a file
    assert adopt[0] == ("sqlite3", "<app>/people.db")  # named as the adopting session names it
    assert [e[1][1] for e in adopt[1]["setup"]] == ["PRAGMA busy_timeout = 100"]
    # a backup to a plain connection still works through the wrapper
    target = sqlite3.connect(":memory:")
    conn.backup(target)
    assert target.execute("SELECT count(*) FROM people").fetchone() == (3,)
    conn.close()


def test_setup_rules():
    assert dbchannel._is_setup("execute", ("x", "PRAGMA foreign_keys = ON", []))
    assert dbchannel._is_setup("execute", ("x", "SET TIME ZONE 'UTC'", []))
    assert dbchannel._is_setup("execute", ("x", "show standard_conforming_strings", []))
    assert dbchannel._is_setup("execute", ("x", "SELECT version()", []))
    assert dbchannel._is_setup("commit", ("x",)) and dbchannel._is_setup("rollback", ("x",))
    assert not dbchannel._is_setup("execute", ("x", "SELECT 1 FROM people", []))
    assert not dbchannel._is_setup("execute", ("x", "INSERT INTO t VALUES (1)", []))
    assert not dbchannel._is_setup("executescript", ("x", "PRAGMA a = 1;"))


@pytest.mark.parametrize("how", ["reused", "empty", "bogus"])
def test_served_aside_is_counted_and_noted(how):
    from replay.replayer.tape import TapePlayer
    from replay.snapshot.codec import TypeResolver

    player = TapePlayer([], "strict", 1, TypeResolver([]))
    if how == "bogus":
        with pytest.raises(ValueError, match="expected 'reused' or 'empty'"):
            player.served_aside("db", "execute", ("x", "PRAGMA a", []), how)
        return
    player.served_aside("db", "execute", ("x.db", "PRAGMA a", []), how)
    assert (player.reused, player.synthesized) == (({"db": 1}, {}) if how == "reused" else ({}, {"db.setup": 1}))
    assert player.notes and "PRAGMA a" in player.notes[0]


def _player(*records):
    from replay.replayer.tape import TapePlayer
    from replay.snapshot.codec import Encoder, TypeResolver
    from replay.snapshot.model import Interaction

    tape = [Interaction(i, channel, op, Encoder().encode(args), Encoder().encode(result))
            for i, (channel, op, args, result) in enumerate(records)]
    return TapePlayer(tape, "strict", 1, TypeResolver([]))


ADOPT = ("db", "adopt", ("sqlite3", "x.db"), {"state": None, "setup": [], "clock": [["time.time", 5]]})
SELECT = ("db", "execute", ("x.db", "SELECT 1 FROM t", []), {"rows": [(1,)]})


def test_strict_clock_order_is_relaxed_only_just_before_an_adopt():
    from replay.errors import ReplayDiverged

    # Django: the recorded request read the monotonic clock at its start (a connection
    # existed), the view then read the wall clock; the replay reads the wall clock first and
    # the monotonic clock as it opens its connection.
    player = _player(("clock", "time.monotonic", (), 10), ("clock", "time.time", (), 20), ADOPT, SELECT)
    assert player.clock_ns("time.time", None) == 20 and player.clock_ns("time.monotonic", None) == 10
    assert player.find("db", "adopt", ("sqlite3", "x.db")).index == 2
    assert player.notes == [] and player.divergence is None

    # SQLAlchemy: the replay's pool stamps its new connection; the reading recorded when
    # the original connection was opened (kept with the adopt) answers it, once.
    player = _player(ADOPT, SELECT)
    assert player.clock_ns("time.time", None) == 5 and player.reused == {"clock": 1}
    assert "opened" in player.notes[0]
    with pytest.raises(ReplayDiverged):
        player.clock_ns("time.time", None)

    # A reading the replay never asks for (the old connection's age check) is passed over.
    player = _player(("clock", "time.monotonic", (), 10), ADOPT, SELECT)
    assert player.find("db", "adopt", ("sqlite3", "x.db")).index == 1
    player.find("db", "execute", ("x.db", "SELECT 1 FROM t", []))
    player.finish_strict()
    assert player.divergence is None and player.unconsumed() == [] and "not asked" in player.notes[0]

    # Anywhere else the order of clock readings stays strict.
    player = _player(("clock", "time.monotonic", (), 10), ("clock", "time.time", (), 20), SELECT)
    with pytest.raises(ReplayDiverged):
        player.clock_ns("time.time", None)
