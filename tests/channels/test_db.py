"""The db channel: sqlite3 and the generic DB-API 2 wrapper, recorded and replayed for real.

Databases are real sqlite files (and, for the generic wrapper, a small pure-Python PEP 249
driver storing its data in a JSON file). Each program is recorded in a fresh process and
replayed in another; the database is deleted or changed between the two, so a replay that
reproduces the recorded outcome proves the answers came from the tape, and the file's
state afterwards proves the replay did not touch it.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from replay.capture.channels import db as dbchannel
from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration


def make_db(path, people=(("Ada", "ada@example.org"), ("Grace", "grace@example.org"), ("Linus", None))):
    """A real sqlite database (written by the test process, unrecorded)."""
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, email TEXT, photo BLOB, score REAL);
        CREATE TABLE log (id INTEGER PRIMARY KEY, msg TEXT);
    """)
    conn.executemany("INSERT INTO people (name, email, photo, score) VALUES (?, ?, ?, ?)",
                     [(n, e, bytes([i, 0, 255]), i + 0.5) for i, (n, e) in enumerate(people)])
    conn.commit()
    conn.close()


def rows_of(path, sql):
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


SHOP = """
import sqlite3
import replay

@replay.capture(on="always")
def session(path):
    out = {}
    conn = sqlite3.connect(path, timeout=5.0)
    out["isinstance"] = isinstance(conn, sqlite3.Connection)
    cur = conn.cursor()
    cur.execute("SELECT id, name, email FROM people WHERE id >= ? ORDER BY id", (2,))
    out["description"] = [d[0] for d in cur.description]
    out["one"] = cur.fetchone()
    out["rest"] = cur.fetchall()
    out["after_end"] = cur.fetchone()
    out["iterated"] = [row for row in conn.execute("SELECT name, photo, score, email FROM people ORDER BY id")]
    cur.arraysize = 2
    cur.execute("SELECT name FROM people ORDER BY name")
    out["many"] = (cur.fetchmany(), cur.fetchmany(5))
    conn.row_factory = sqlite3.Row
    row = conn.execute("SELECT name AS who, score FROM people WHERE name = :n", {"n": "Grace"}).fetchone()
    out["row"] = (type(row).__name__, row["who"], row["score"], row.keys(), tuple(row))
    conn.row_factory = None
    ins = conn.execute("INSERT INTO log (msg) VALUES (?)", ("first",))
    out["insert"] = (ins.lastrowid, ins.rowcount, conn.in_transaction)
    many = conn.executemany("INSERT INTO log (msg) VALUES (?)", (("m%d" % i,) for i in range(3)))
    out["executemany"] = many.rowcount
    conn.commit()
    conn.execute("INSERT INTO log (msg) VALUES ('rolled back')")
    conn.rollback()
    out["after_rollback"] = conn.execute("SELECT count(*) FROM log").fetchone()
    with conn:
        conn.execute("UPDATE people SET score = score * 2 WHERE name = ?", ("Ada",))
    out["in_with"] = conn.execute("SELECT score FROM people WHERE name = 'Ada'").fetchone()
    try:
        with conn:
            conn.execute("INSERT INTO people (name) VALUES (?)", ("Ada",))
    except sqlite3.IntegrityError as exc:
        out["integrity"] = (type(exc).__name__, str(exc), exc.sqlite_errorname)
    try:
        conn.execute("SELECT nope FROM people")
    except sqlite3.OperationalError as exc:
        out["operational"] = str(exc)
    out["changes"] = (conn.total_changes, conn.in_transaction, conn.isolation_level)
    conn.close()
    return out

@replay.capture(on="always")
def add_duplicate(path):
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO people (name) VALUES (?)", ("Grace",))
    conn.commit()
"""

EXPECTED = {
    "isinstance": True,
    "description": ["id", "name", "email"],
    "one": (2, "Grace", "grace@example.org"),
    "rest": [(3, "Linus", None)],
    "after_end": None,
    "iterated": [("Ada", b"\x00\x00\xff", 0.5, "ada@example.org"), ("Grace", b"\x01\x00\xff", 1.5, "grace@example.org"),
                 ("Linus", b"\x02\x00\xff", 2.5, None)],
    "many": ([("Ada",), ("Grace",)], [("Linus",)]),
    "row": ("Row", "Grace", 1.5, ["who", "score"], ("Grace", 1.5)),
    "insert": (1, 1, True),
    "executemany": 3,
    "after_rollback": (4,),
    "in_with": (1.0,),
    "integrity": ("IntegrityError", "UNIQUE constraint failed: people.name", "SQLITE_CONSTRAINT_UNIQUE"),
    "operational": "no such column: nope",
    "changes": (6, False, ""),
}


def test_sqlite_program_is_recorded_and_replayed_from_the_tape_alone(app, tmp_path):
    path = tmp_path / "shop.db"
    make_db(path)
    app.write("shop.py", SHOP)
    snap = app.record(f"import shop; shop.session({str(path)!r})")
    with open_snapshot(snap) as s:
        assert s.header["replayable"], s.header["reasons"]
        assert decode(s.outcome["value"]) == EXPECTED
        db = [i for i in s.tape if i.channel == "db"]
        ops = [i.op for i in db]
    assert ops[0] == "connect" and ops[-1] == "close"
    assert ops.count("commit") == 2 and ops.count("rollback") == 2 and "executemany" in ops
    assert db[0].args == ["t", "sqlite3", str(path), ["d", "timeout", 5.0]]
    assert db[1].args == ["t", str(path), "SELECT id, name, email FROM people WHERE id >= ? ORDER BY id", ["l", 2]]
    assert sum(1 for i in db if i.error is not None) == 2  # the IntegrityError and the OperationalError
    recorded_log = rows_of(path, "SELECT msg FROM log ORDER BY id")
    assert recorded_log == [("first",), ("m0",), ("m1",), ("m2",)]

    assert reproduce(snap).verdict is Verdict.REPRODUCED

    # The database changes under the replay: it still sees the recorded answers and writes nothing.
    path.unlink()
    make_db(path, people=(("Zed", None),))
    before = path.read_bytes()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert path.read_bytes() == before
    assert rows_of(path, "SELECT count(*) FROM log") == [(0,)]

    # The database is gone: replay needs no file, and does not create one.
    path.unlink()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert not path.exists()
    assert result.baseline.blocked == []


def test_an_uncaught_integrity_error_is_replayed(app, tmp_path):
    path = tmp_path / "shop.db"
    make_db(path)
    app.write("shop.py", SHOP)
    snap = app.record(f"import shop\ntry:\n    shop.add_duplicate({str(path)!r})\nexcept Exception:\n    pass")
    with open_snapshot(snap) as s:
        assert s.header["exception_type"] == "sqlite3:IntegrityError"
        assert s.header["exception_message"] == "UNIQUE constraint failed: people.name"
        errors = [i for i in s.tape if i.error is not None]
    assert len(errors) == 1 and errors[0].op == "execute"
    path.unlink()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert "IntegrityError" in result.observed
    assert not path.exists()


KVDB = '''
"""A tiny pure-Python PEP 249 driver: one table kv(key, value) kept in a JSON file."""
import collections, json, os, re

apilevel, threadsafety, paramstyle = "2.0", 1, "qmark"
Column = collections.namedtuple("Column", "name type_code display_size internal_size precision scale null_ok")

class Error(Exception): pass
class IntegrityError(Error): pass

def connect(path, user=None, password=None):
    if password != "s3cret":
        raise Error("bad password")
    return Connection(path)

class Connection:
    def __init__(self, path):
        self.path = path
        self.data = json.load(open(path)) if os.path.exists(path) else {}
        self.pending = dict(self.data)
    def cursor(self):
        return Cursor(self)
    def commit(self):
        self.data = dict(self.pending)
        with open(self.path, "w") as fh:
            json.dump(self.data, fh)
    def rollback(self):
        self.pending = dict(self.data)
    def close(self):
        self.pending = None

class Cursor:
    arraysize = 1
    def __init__(self, conn):
        self.conn, self.description, self.rowcount, self._rows = conn, None, -1, []
    def execute(self, sql, params=()):
        words = sql.split()
        if words[0].upper() == "SELECT":
            keys = sorted(self.conn.pending) if "WHERE" not in sql.upper() else [params[0]]
            self._rows = [(k, self.conn.pending[k]) for k in keys if k in self.conn.pending]
            self.description = (Column("key", "STRING", None, None, None, None, False),
                                Column("value", "STRING", None, None, None, None, True))
            self.rowcount = len(self._rows)
        elif words[0].upper() == "INSERT":
            if params[0] in self.conn.pending:
                raise IntegrityError("duplicate key %r" % params[0])
            self.conn.pending[params[0]] = params[1]
            self.description, self._rows, self.rowcount = None, [], 1
        else:
            raise Error("unsupported statement")
    def executemany(self, sql, seq):
        for params in seq:
            self.execute(sql, params)
    def fetchone(self):
        return self._rows.pop(0) if self._rows else None
    def fetchmany(self, size=None):
        out, self._rows = self._rows[:size or self.arraysize], self._rows[size or self.arraysize:]
        return out
    def fetchall(self):
        out, self._rows = self._rows, []
        return out
    def close(self):
        pass
'''

KV_APP = """
import kvdb, replay
from replay.capture.channels import db
db.instrument(kvdb)

@replay.capture(on="always")
def work(path):
    conn = kvdb.connect(path, user="me", password="s3cret")
    cur = conn.cursor()
    cur.execute("SELECT key, value FROM kv WHERE key = ?", ["colour"])
    found = cur.fetchone()
    names = [d.name for d in cur.description]
    cur.execute("INSERT INTO kv VALUES (?, ?)", ("size", "XL"))
    inserted = cur.rowcount
    try:
        cur.execute("INSERT INTO kv VALUES (?, ?)", ("colour", "red"))
    except kvdb.IntegrityError as exc:
        dup = str(exc)
    conn.commit()
    cur.execute("SELECT key, value FROM kv")
    everything = [row for row in cur]
    with conn:
        cur.execute("INSERT INTO kv VALUES (?, ?)", ("shape", "round"))
    conn.close()
    return found, names, inserted, dup, everything
"""


def test_generic_dbapi_wrapper_serves_a_pure_python_driver(app, tmp_path):
    store = tmp_path / "kv.json"
    store.write_text(json.dumps({"colour": "blue"}))
    app.write("kvdb.py", KVDB)
    app.write("kvapp.py", KV_APP)
    snap = app.record(f"import kvapp; kvapp.work({str(store)!r})")
    expected = (("colour", "blue"), ["key", "value"], 1, "duplicate key 'colour'",
                [("colour", "blue"), ("size", "XL")])
    with open_snapshot(snap) as s:
        assert decode(s.outcome["value"]) == expected
        tape = [(i.op, i.args) for i in s.tape if i.channel == "db"]
    assert tape[0] == ("connect", ["t", "kvdb", str(store), ["d", "password", "***", "user", "me"]])
    assert [op for op, _ in tape] == ["connect", "execute", "execute", "execute", "commit", "execute", "execute",
                                      "commit", "close"]
    assert "s3cret" not in snap.read_bytes().decode("latin-1")
    assert json.loads(store.read_text()) == {"colour": "blue", "size": "XL", "shape": "round"}

    store.unlink()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert not store.exists()  # the replayed commits wrote nothing


SQLITE_UTILS_APP = """
import replay
from sqlite_utils import Database

@replay.capture(on="always")
def dogs(path):
    db = Database(path)
    db.table("dogs").insert({"id": 1, "name": "Cleo", "age": 4}, pk="id")
    db.table("dogs").insert_all([{"id": 2, "name": "Pancakes", "age": 2}, {"id": 3, "name": "Rex", "age": 7}])
    older = list(db.table("dogs").rows_where("age > ?", [3], order_by="id"))
    return older, db.table("dogs").count, db.table_names()
"""


def test_sqlite_utils_program_is_recorded_and_replayed(app, tmp_path):
    path = tmp_path / "dogs.db"
    app.write("kennel.py", SQLITE_UTILS_APP)
    snap = app.record(f"import kennel; kennel.dogs({str(path)!r})")
    expected = ([{"id": 1, "name": "Cleo", "age": 4}, {"id": 3, "name": "Rex", "age": 7}], 3, ["dogs"])
    with open_snapshot(snap) as s:
        assert s.header["replayable"], s.header["reasons"]
        assert decode(s.outcome["value"]) == expected
        sql = [i.args[2] for i in s.tape if i.channel == "db" and i.op == "execute"]
    assert any(q.startswith("INSERT INTO [dogs]") or q.startswith("INSERT INTO \"dogs\"") for q in sql), sql
    assert any("age > ?" in q for q in sql)
    assert rows_of(path, "SELECT name FROM dogs ORDER BY id") == [("Cleo",), ("Pancakes",), ("Rex",)]

    path.unlink()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert not path.exists()


REPORT = """
import sqlite3, replay

@replay.capture(on="always")
def report(path):
    conn = sqlite3.connect(path)
    first = conn.execute("SELECT name FROM people WHERE id = ?", (1,)).fetchone()
    total = conn.execute("SELECT count(*) FROM people").fetchone()
    conn.execute("INSERT INTO log (msg) VALUES (?)", ("seen " + first[0],))
    conn.commit()
    conn.close()
    return first[0], total[0]
"""


def test_candidates_are_matched_by_statement_and_parameters(app, tmp_path):
    path = tmp_path / "people.db"
    make_db(path)
    app.write("report.py", REPORT)
    snap = app.record(f"import report; report.report({str(path)!r})")
    path.unlink()  # no candidate may need it

    # Same queries in another order, white space changed: matched, same result and effects.
    reordered = app.candidate("reordered", {"report.py": REPORT.replace(
        '    first = conn.execute("SELECT name FROM people WHERE id = ?", (1,)).fetchone()\n'
        '    total = conn.execute("SELECT count(*) FROM people").fetchone()\n',
        '    total = conn.execute("SELECT count(*)\\n  FROM   people").fetchone()\n'
        '    first = conn.execute("SELECT name FROM people WHERE id = ?", (1,)).fetchone()\n')})
    result = verify(snap, [str(reordered)])
    assert result.verdict is Verdict.UNCHANGED, result.reason
    assert result.effects == [] and result.unconsumed == []

    # The same INSERT with other values: a changed effect, not a divergence.
    changed = app.candidate("changed", {"report.py": REPORT.replace('"seen "', '"visited "')})
    result = verify(snap, [str(changed)])
    assert result.verdict is Verdict.CHANGED, result.reason
    assert result.divergence is None
    [effect] = result.effects
    assert effect["status"] == "changed" and effect["op"] == "execute"
    assert "seen Ada" in effect["recorded"] and "visited Ada" in effect["asked"]
    assert any("seen Ada" in str(d) and "visited Ada" in str(d) for d in effect["diff"])
    assert not path.exists()


def test_a_candidate_running_a_new_query_diverges_with_the_sql_in_the_report(app, tmp_path):
    path = tmp_path / "people.db"
    make_db(path)
    app.write("report.py", REPORT)
    snap = app.record(f"import report; report.report({str(path)!r})")
    path.unlink()
    # A new query: nothing recorded answers it.
    new_query = app.candidate("new_query", {"report.py": REPORT.replace(
        "    conn.commit()\n",
        '    conn.execute("SELECT email FROM people WHERE id = ?", (1,)).fetchone()\n    conn.commit()\n')})
    result = verify(snap, [str(new_query)])
    assert result.verdict is Verdict.DIVERGED, result.reason
    assert result.divergence["channel"] == "db" and result.divergence["op"] == "execute"
    assert "SELECT email FROM people WHERE id = ?" in result.divergence["asked"]
    assert any("SELECT name FROM people WHERE id = ?" in c or "INSERT" in c or "count" in c
               for c in result.divergence["candidates"])
    assert any("report.py" in line for line in result.divergence["stack"])
    assert not path.exists()


def test_channel_rules():
    spec = dbchannel.SPEC
    select = ("x.db", "SELECT  a\n FROM t WHERE b = ?", [1])
    assert spec.key("execute", select) == ("execute", "x.db", "SELECT a FROM t WHERE b = ?", [1])
    assert not spec.effect("execute", select)
    assert not spec.effect("execute", ("x.db", "PRAGMA table_info(t)", []))
    assert spec.effect("execute", ("x.db", "PRAGMA user_version = 3", []))
    assert spec.effect("execute", ("x.db", "  -- note\n/* c */ insert into t values (?)", [2]))
    assert spec.effect("execute", ("x.db", "WITH s AS (SELECT 1) DELETE FROM t", []))
    assert not spec.effect("execute", ("x.db", "WITH s AS (SELECT 1) SELECT * FROM s", []))
    for word in ("UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER"):
        assert spec.effect("execute", ("x.db", f"{word} x", []))
    assert spec.effect("executescript", ("x.db", "SELECT 1;"))
    assert spec.effect("commit", ("x.db",)) and not spec.effect("rollback", ("x.db",))
    insert = ("x.db", "INSERT INTO t VALUES (?)", [1])
    assert spec.target("execute", insert) == spec.target("execute", ("x.db", "INSERT  INTO t VALUES (?)", [2]))
    assert dbchannel.plain_params((1, bytearray(b"a"), memoryview(b"b"))) == [1, b"a", b"b"]
    assert dbchannel.plain_params({"a": 1}) == {"a": 1} and dbchannel.plain_params(None) == []
    assert dbchannel._redact("postgresql://bob:hunter2@db/app") == "postgresql://bob:***@db/app"
    assert dbchannel._redact("host=db password='x y' user=bob") == "host=db password=*** user=bob"


def test_no_session_means_the_real_driver_answers_unrecorded():
    """Outside a session a connection is wrapped (a later recorded call may adopt it) but
    the real driver answers everything: real cursors' rows, real errors, real state."""
    dbchannel.install()
    conn = sqlite3.connect(":memory:")
    assert isinstance(conn, sqlite3.Connection) and conn._real.__class__ is sqlite3.Connection
    conn.execute("CREATE TABLE t (a)")
    conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    cur = conn.execute("SELECT a FROM t ORDER BY a")
    assert cur._rows is None and cur.fetchall() == [(1,), (2,)]  # read from the real cursor
    assert (conn.total_changes, conn.in_transaction) == (2, True)
    with pytest.raises(sqlite3.OperationalError, match="no such table"):
        conn.execute("SELECT * FROM missing")
    conn.close()
