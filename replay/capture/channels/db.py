"""The ``db`` channel: sqlite3 and any PEP 249 (DB-API 2) driver.

A connection opened while a session is active is a wrapper, and so are the cursors it
makes. Each database operation is one interaction of channel ``db``:

========================  =====================================  ==============================
op                        request (``args``)                     answer
========================  =====================================  ==============================
``connect``               ``(driver, db, kwargs)``               connection state (sqlite3)
``execute``               ``(db, sql, params)``                  ``{description, rowcount,``
``executemany``           ``(db, sql, [params, ...])``           ``lastrowid, rows}`` (+ state)
``executescript``         ``(db, script)`` (sqlite3)             same
``callproc``              ``(db, name, params)``                 same + ``out`` parameters
``commit`` / ``rollback``  ``(db,)``                             connection state (sqlite3)
``close``                 ``(db,)``                              None
========================  =====================================  ==============================

``db`` names the database without secrets: for sqlite3 the file path (relative paths as
given, absolute paths under an application root as ``<app>/...``), for other drivers the
DSN or the host/port/database keyword arguments with passwords masked. ``params`` are plain
data (sequences as lists, mappings as dicts, buffers as bytes). All result rows are
fetched eagerly at execute time, in both modes, so ``fetchone``/``fetchmany``/``fetchall``
and iteration are served from a buffer and the answer is complete on the tape.

Record mode: the real driver runs (with the session suspended, so its own sockets and
clock reads are not recorded twice), its answers are recorded and returned unchanged
(real row objects, real ``description``). Errors the driver raises are recorded and
re-raised. Replay mode: no driver call is made at all (no ``sqlite3.connect`` of a file):
connection and cursor objects answer from the tape. ``sqlite3.Row`` row factories get a
real ``sqlite3.Cursor`` with the recorded column names, from a private in-memory database.

The generic wrapper (:func:`wrap_connect`, :func:`instrument`) uses only PEP 249 calls;
sqlite3 support is the same wrapper with sqlite3's extras (``conn.execute``,
``executescript``, ``row_factory``, ``text_factory``, ``isolation_level``,
``total_changes``, ``in_transaction``, ``with conn:`` as a transaction) on top.
``psycopg``, ``psycopg2``, ``pymysql``, ``MySQLdb`` and ``mysql.connector`` are
instrumented when imported; :func:`instrument` does the same for any other driver module.

Matching (:class:`~replay.capture.boundary.ChannelSpec` ``db``): the key is the operation,
database, SQL with white space collapsed and parameters; effects are writing statements
(INSERT, UPDATE, DELETE, REPLACE, CREATE, DROP, ALTER, ...; ``PRAGMA x = y``;
``executescript``) and commits; an effect's target is the operation, database and SQL
without parameters, so the same statement with other values is a changed effect.

Limits: connections opened before the recorded call started are real connections and
their queries are not recorded; server-side cursors are fetched whole; ``nextset``,
``sqlite3`` blobs, backups, ``iterdump`` and user functions (which are never called on
replay) are not replayed.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sqlite3.dbapi2
import threading
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any, Final

from replay.capture import hooks
from replay.capture.boundary import (
    ACTIVE,
    ChannelSpec,
    app_path,
    normalise_space,
    not_replayable,
    register_channel,
    suspended,
)

log = logging.getLogger("replay.capture")

CHANNEL: Final = "db"
DRIVERS: Final = ("psycopg", "psycopg2", "pymysql", "MySQLdb", "mysql.connector")

_real_sqlite_connect = sqlite3.connect
_WRAPPED_ATTR: Final = "__replay_db_wrapped__"

# ------------------------------------------------------------------------------ SQL rules

_LEADING: Final = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)
_WORD: Final = re.compile(r"[A-Za-z_]+")
_WRITES: Final = frozenset({
    "INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT", "MERGE", "CREATE", "DROP", "ALTER", "TRUNCATE",
    "RENAME", "GRANT", "REVOKE", "VACUUM", "REINDEX", "COMMENT", "COPY", "COMMIT", "END",
})
_CTE_WRITE: Final = re.compile(r"\b(INSERT|UPDATE|DELETE|REPLACE|MERGE)\b", re.I)
_SQL_OPS: Final = frozenset({"execute", "executemany", "executescript", "callproc"})


def statement_word(sql: str) -> str:
    """The first keyword of an SQL statement (comments skipped), upper case; "" if none."""
    m = _WORD.match(sql, _LEADING.match(sql).end())  # type: ignore[union-attr]
    return m.group(0).upper() if m else ""


def is_write(sql: str) -> bool:
    """True when ``sql`` changes the database (or commits): INSERT, CREATE, ``PRAGMA a = b``, ..."""
    if not isinstance(sql, str):
        return False
    word = statement_word(sql)
    if word in _WRITES:
        return True
    if word == "WITH":
        return _CTE_WRITE.search(sql) is not None
    if word == "PRAGMA":
        return "=" in sql  # ``PRAGMA user_version = 3`` sets; ``PRAGMA table_info(t)`` reads
    return False


def _key(op: str, args: Any) -> Any:
    if op in _SQL_OPS and isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], str):
        return (op, args[0], normalise_space(args[1]), *args[2:])
    return (op, *args) if isinstance(args, tuple) else (op, args)


def _effect(op: str, args: Any) -> bool:
    if op in ("commit", "executescript", "callproc"):
        return True
    if op in ("execute", "executemany") and isinstance(args, tuple) and len(args) >= 2:
        return is_write(args[1])
    return False


def _target(op: str, args: Any) -> Any:
    if op in _SQL_OPS and isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], str):
        return (op, args[0], normalise_space(args[1]))
    return (op, *args) if isinstance(args, tuple) else (op, args)


SPEC: Final = register_channel(ChannelSpec(CHANNEL, key=_key, effect=_effect, target=_target))


# ------------------------------------------------------------------------------ plain data

_ATOMS: Final = (str, int, float, bool, type(None), bytes)
_SECRET: Final = re.compile(r"pass|pwd|secret|token|credential|api_?key", re.I)
_URL_PASSWORD: Final = re.compile(r"(//[^/:@\s]*:)[^@\s]*@")
_KV_PASSWORD: Final = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def _plain_value(value: Any) -> Any:
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    return value  # the codec encodes the rest (datetime, Decimal, ...) exactly or marks it lossy


def plain_sql(sql: Any) -> str:
    """A statement as text (psycopg ``sql.Composed`` and other objects by their ``str``)."""
    if isinstance(sql, str):
        return sql
    if isinstance(sql, bytes | bytearray | memoryview):
        return bytes(sql).decode("utf-8", "surrogateescape")
    return str(sql)


def plain_params(params: Any) -> Any:
    """A statement's parameters as plain data: a list (sequence) or a dict (mapping)."""
    if params is None:
        return []
    if isinstance(params, Mapping):
        return {k: _plain_value(v) for k, v in params.items()}
    if isinstance(params, str | bytes):
        return _plain_value(params)  # an invalid argument: recorded as given, the driver rejects it
    return [_plain_value(v) for v in params]


def _plain_option(name: str, value: Any) -> Any:
    if _SECRET.search(name):
        return "***"
    if isinstance(value, _ATOMS):
        return _redact(value) if isinstance(value, str) else value
    if isinstance(value, list | tuple):
        return [_plain_option(name, v) for v in value]
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return f"<{type(value).__module__}.{type(value).__qualname__}>"


def _redact(text: str) -> str:
    return _KV_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def _plain_description(description: Any) -> Any:
    """``description`` as plain data; a column with only a name (sqlite3) is just its name."""
    if description is None:
        return None
    out: list[Any] = []
    for col in description:
        try:
            items = list(col)[:7]
        except TypeError:
            items = [getattr(col, "name", str(col))]
        items += [None] * (7 - len(items))
        if all(v is None for v in items[1:]) and isinstance(items[0], str):
            out.append(items[0])
        else:
            out.append(tuple(v if isinstance(v, _ATOMS) else str(v) for v in items))
    return tuple(out)


def _full_description(description: Any) -> Any:
    if description is None:
        return None
    return tuple(c if isinstance(c, tuple) else (c, None, None, None, None, None, None) for c in description)


class Column(tuple):  # type: ignore[type-arg]
    """A replayed ``description`` entry of a non-sqlite driver: a 7-tuple with attributes."""

    __slots__ = ()

    name = property(lambda self: self[0])
    type_code = property(lambda self: self[1])
    display_size = property(lambda self: self[2])
    internal_size = property(lambda self: self[3])
    precision = property(lambda self: self[4])
    scale = property(lambda self: self[5])
    null_ok = property(lambda self: self[6])


# ------------------------------------------------------------------------------ wrappers

_NO_PARAMS: Final = object()


def _no_real() -> Any:
    raise RuntimeError("replay never calls the real database driver")


class Connection:
    """A DB-API connection while recording (around a real one) or replaying (tape only).

    Only PEP 249 calls are made on the real connection; attributes this class does not
    know are forwarded to it while recording (and missing during replay).
    """

    exit_mode = "txn"  # what ``with conn:`` does: "txn" (commit/rollback), "close", "txn+close"

    def __init__(self, driver: str, db: str, real: Any, session: Any, state: Any = None):
        self._driver = driver
        self._db = db
        self._real = real  # None during replay
        self._session = session
        self._closed = False
        self._set_state(state)

    # -- modes

    def _replaying(self, s: Any) -> bool:
        return self._real is None or (s is not None and s.replaying)

    def _set_state(self, state: Any) -> None:
        """Connection state carried by answers (sqlite3: changes, transaction)."""

    def _capture_state(self) -> Any:
        return None

    def _run(self, op: str, args: Callable[[], tuple[Any, ...]], real: Callable[[], Any],
             capture: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One operation in the current mode; returns ``(answer, real result)``.

        ``answer`` is None when the operation ran unrecorded (no session): the caller then
        reads the real objects directly. Record: ``real()`` then ``capture(result)`` run
        with the session suspended and the answer is recorded (or the error, re-raised).
        """
        s = ACTIVE.get()
        if self._replaying(s):
            session = s if s is not None else self._session
            answer = session.call(CHANNEL, op, args(), _no_real)
            if isinstance(answer, dict):
                self._set_state(answer.get("state"))
            return (answer if answer is not None else {}), None
        if s is None:
            return None, real()
        try:
            request = args()
        except Exception:  # noqa: BLE001 - fail open: run unrecorded, the snapshot says why
            log.warning("replay: could not record a database %s", op, exc_info=True)
            not_replayable(s, f"db {op}: the request could not be recorded")
            return None, real()
        try:
            with suspended():
                result = real()
                answer = capture(result)
        except Exception as exc:
            s.record(CHANNEL, op, request, None, exc)
            raise
        s.record(CHANNEL, op, request, answer)
        return (answer if answer is not None else {}), result

    def _state_answer(self, _result: Any = None) -> Any:
        state = self._capture_state()
        return None if state is None else {"state": state}

    # -- PEP 249

    def cursor(self, *args: Any, **kwargs: Any) -> Cursor:
        """A wrapped cursor (replay: a tape-served one; nothing is recorded)."""
        if self._real is None:
            return self._cursor_class(self, None)
        return self._cursor_class(self, self._real.cursor(*args, **kwargs))

    _cursor_class: type[Cursor]

    def commit(self) -> None:
        self._run("commit", lambda: (self._db,), lambda: self._real.commit(), self._state_answer)

    def rollback(self) -> None:
        self._run("rollback", lambda: (self._db,), lambda: self._real.rollback(), self._state_answer)

    def close(self) -> None:
        if self._closed:
            return  # closing twice is a no-op in every driver: not an interaction
        self._run("close", lambda: (self._db,), lambda: self._real.close(), lambda _r: None)
        self._closed = True

    # -- common extensions (sqlite3, psycopg 3)

    def execute(self, sql: Any, parameters: Any = _NO_PARAMS) -> Cursor:
        """``conn.execute``: a new cursor's ``execute`` (sqlite3, psycopg 3)."""
        return self.cursor().execute(sql, parameters)

    def executemany(self, sql: Any, seq_of_parameters: Any) -> Cursor:
        return self.cursor().executemany(sql, seq_of_parameters)

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if "txn" in self.exit_mode and not self._closed:
            if exc_type is None:
                self.commit()
            else:
                self.rollback()
        if "close" in self.exit_mode:
            self.close()

    def __getattr__(self, name: str) -> Any:
        real = self.__dict__.get("_real")
        if real is None:
            raise AttributeError(f"{name!r}: not available on a replayed {self.__dict__.get('_driver')} connection")
        return getattr(real, name)

    def __repr__(self) -> str:
        mode = "replayed" if self._real is None else "recorded"
        return f"<{mode} {self._driver} connection to {self._db!r}>"


class Cursor:
    """A DB-API cursor whose results are buffered (record) or served from the tape (replay)."""

    def __init__(self, conn: Connection, real: Any):
        self._conn = conn
        self._real = real
        self._rows: list[Any] | None = None  # buffered rows; None: read the real cursor
        self._pos = 0
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: Any = None
        self._out: Any = None
        self.arraysize = getattr(real, "arraysize", 1) if real is not None else 1

    @property
    def connection(self) -> Connection:
        return self._conn

    @property
    def description(self) -> Any:
        return self._real.description if self._rows is None and self._real is not None else self._description

    @property
    def rowcount(self) -> int:
        return self._real.rowcount if self._rows is None and self._real is not None else self._rowcount  # type: ignore[no-any-return]

    @property
    def lastrowid(self) -> Any:
        if self._rows is None and self._real is not None:
            return getattr(self._real, "lastrowid", None)
        return self._lastrowid

    # -- executing

    def _capture(self, _result: Any) -> dict[str, Any]:
        real = self._real
        description = real.description
        rows = list(real.fetchall()) if description is not None else []
        answer = {
            "description": _plain_description(description),
            "rowcount": real.rowcount,
            "lastrowid": getattr(real, "lastrowid", None),
            "rows": rows,
        }
        state = self._conn._capture_state()
        if state is not None:
            answer["state"] = state
        self._live_description = description
        return answer

    def _load(self, answer: dict[str, Any] | None) -> None:
        if answer is None:  # ran unrecorded: the real cursor answers
            self._rows = None
            return
        rows = answer.get("rows") or []
        self._rows = rows if isinstance(rows, list) else list(rows)
        self._pos = 0
        self._rowcount = answer.get("rowcount", -1)
        self._lastrowid = answer.get("lastrowid")
        self._out = answer.get("out")
        if self._real is not None:
            self._description = self.__dict__.pop("_live_description", answer.get("description"))
        else:
            self._description = self._replayed_description(answer.get("description"))

    def _replayed_description(self, description: Any) -> Any:
        if description is None:
            return None
        return tuple(Column(c) for c in _full_description(description))

    def execute(self, operation: Any, parameters: Any = _NO_PARAMS) -> Cursor:
        conn = self._conn
        given = parameters is not _NO_PARAMS
        answer, _ = conn._run(
            "execute",
            lambda: (conn._db, plain_sql(operation), plain_params(parameters if given else None)),
            lambda: self._real.execute(operation, parameters) if given else self._real.execute(operation),
            self._capture,
        )
        self._load(answer)
        return self

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Cursor:
        conn = self._conn
        seq = list(seq_of_parameters) if not isinstance(seq_of_parameters, list) else seq_of_parameters
        answer, _ = conn._run(
            "executemany",
            lambda: (conn._db, plain_sql(operation), [plain_params(p) for p in seq]),
            lambda: self._real.executemany(operation, seq),
            self._capture,
        )
        self._load(answer)
        return self

    def callproc(self, procname: Any, parameters: Any = _NO_PARAMS) -> Any:
        conn = self._conn
        given = parameters is not _NO_PARAMS

        def capture(result: Any) -> dict[str, Any]:
            answer = self._capture(result)
            answer["out"] = result
            return answer

        answer, result = conn._run(
            "callproc",
            lambda: (conn._db, procname, plain_params(parameters if given else None)),
            lambda: self._real.callproc(procname, parameters) if given else self._real.callproc(procname),
            capture,
        )
        self._load(answer)
        return self._out if answer is not None else result

    def setinputsizes(self, sizes: Any) -> None:
        if self._real is not None:
            self._real.setinputsizes(sizes)

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        if self._real is not None:
            self._real.setoutputsize(size, column) if column is not None else self._real.setoutputsize(size)

    # -- fetching

    def _row(self, raw: Any) -> Any:
        return raw

    def fetchone(self) -> Any:
        if self._rows is None:
            if self._real is None:
                return None
            row = self._real.fetchone()
            return None if row is None else self._row(row)
        if self._pos >= len(self._rows):
            return None
        row = self._rows[self._pos]
        self._pos += 1
        return self._row(row)

    def fetchmany(self, size: int | None = None) -> list[Any]:
        n = self.arraysize if size is None else size
        if self._rows is None:
            if self._real is None:
                return []
            return [self._row(r) for r in self._real.fetchmany(n)]
        rows = self._rows[self._pos:self._pos + max(n, 0)]
        self._pos += len(rows)
        return [self._row(r) for r in rows]

    def fetchall(self) -> list[Any]:
        if self._rows is None:
            return [] if self._real is None else [self._row(r) for r in self._real.fetchall()]
        rows = self._rows[self._pos:]
        self._pos = len(self._rows)
        return [self._row(r) for r in rows]

    def __iter__(self) -> Cursor:
        return self

    def __next__(self) -> Any:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    def close(self) -> None:
        if self._real is not None:
            with suspended():
                self._real.close()

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        real = self.__dict__.get("_real")
        if real is None:
            raise AttributeError(f"{name!r}: not available on a replayed database cursor")
        return getattr(real, name)


Connection._cursor_class = Cursor

# exit behaviour of ``with conn:`` per driver (PEP 249 leaves it open)
_EXIT_MODES: Final = {"psycopg": "txn+close", "psycopg2": "txn", "pymysql": "close", "MySQLdb": "close",
                      "mysql.connector": "close"}


def _generic_db(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    if args and isinstance(args[0], str | bytes):
        return _redact(os.fsdecode(args[0]))
    for name in ("dsn", "conninfo", "database", "dbname", "db", "host"):
        if isinstance(kwargs.get(name), str) and name in ("dsn", "conninfo"):
            return _redact(kwargs[name])
    parts = [f"{k}={kwargs[k]}" for k in ("host", "port", "unix_socket", "database", "dbname", "db", "user")
             if k in kwargs and isinstance(kwargs[k], _ATOMS)]
    return " ".join(parts)


def wrap_connect(connect: Callable[..., Any], name: str, *,
                 connection_class: type[Connection] = Connection,
                 db_of: Callable[[tuple[Any, ...], dict[str, Any], Any], str] | None = None) -> Callable[..., Any]:
    """Wrap a DB-API ``connect`` so connections opened in a session are recorded/replayed.

    Args:
        connect: The driver's real ``connect`` (any callable returning a PEP 249 connection).
        name: Driver name on the tape (``"psycopg"``).
        connection_class: The wrapper class (sqlite3 uses a subclass with its extras).
        db_of: ``db_of(args, kwargs, session) -> str``: the database's name on the tape
            (default: DSN or host/port/database, passwords masked).

    Returns:
        A function with ``connect``'s signature. Outside a session it is ``connect``
        itself plus one context-variable read.
    """
    if getattr(connect, _WRAPPED_ATTR, False):
        return connect

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        s = ACTIVE.get()
        if s is None:
            return connect(*args, **kwargs)
        try:
            db = db_of(args, kwargs, s) if db_of is not None else _generic_db(args, kwargs)
            options = {k: _plain_option(k, v) for k, v in sorted(kwargs.items())}
            request = (name, db, options)
        except Exception:  # noqa: BLE001 - fail open
            log.warning("replay: could not record a %s connect", name, exc_info=True)
            if not s.replaying:
                not_replayable(s, f"db connect ({name}): the request could not be recorded")
                return connect(*args, **kwargs)
            raise
        if s.replaying:
            answer = s.call(CHANNEL, "connect", request, _no_real)
            conn = connection_class(name, db, None, s, answer)
        else:
            try:
                with suspended():
                    real = connect(*args, **kwargs)
                    conn = connection_class(name, db, real, s)
                    answer = conn._capture_state()
            except Exception as exc:
                s.record(CHANNEL, "connect", request, None, exc)
                raise
            s.record(CHANNEL, "connect", request, answer)
        conn.exit_mode = _EXIT_MODES.get(name, connection_class.exit_mode)
        return conn

    wrapped.__name__ = getattr(connect, "__name__", "connect")
    wrapped.__qualname__ = getattr(connect, "__qualname__", "connect")
    wrapped.__doc__ = getattr(connect, "__doc__", None)
    wrapped.__wrapped__ = connect  # type: ignore[attr-defined]
    setattr(wrapped, _WRAPPED_ATTR, True)
    return wrapped


def instrument(module: ModuleType, name: str | None = None) -> None:
    """Wrap a DB-API driver module's ``connect`` (and its ``Connect`` alias) in place."""
    driver = name or module.__name__
    connect = getattr(module, "connect", None)
    if connect is None:
        raise AttributeError(f"{module.__name__} has no connect()")
    wrapped = wrap_connect(connect, driver)
    module.connect = wrapped  # type: ignore[attr-defined]
    if getattr(module, "Connect", None) is connect:
        module.Connect = wrapped  # type: ignore[attr-defined]


# ------------------------------------------------------------------------------ sqlite3


def _local(name: str) -> Callable[..., None]:
    """A sqlite3 connection method that only configures SQLite itself (user functions, hooks)."""

    def method(self: SqliteConnection, *args: Any, **kwargs: Any) -> None:
        if self._real is not None:
            getattr(self._real, name)(*args, **kwargs)

    method.__name__ = name
    return method


class SqliteConnection(Connection):
    """The wrapper of a ``sqlite3`` connection: the generic one plus sqlite3's extras."""

    def __init__(self, driver: str, db: str, real: Any, session: Any, state: Any = None):
        self.row_factory: Any = None
        self._text_factory: Any = str
        self._isolation_level: Any = ""
        self._total_changes = 0
        self._in_transaction = False
        super().__init__(driver, db, real, session, state)

    # isinstance(conn, sqlite3.Connection) holds, as code that dispatches on it expects
    __class__ = property(lambda self: sqlite3.Connection)  # type: ignore[assignment]

    def _set_state(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 3:
            self._total_changes, self._in_transaction, self._isolation_level = state

    def _capture_state(self) -> Any:
        real = self._real
        return (real.total_changes, real.in_transaction, real.isolation_level)

    @property
    def total_changes(self) -> int:
        return self._real.total_changes if self._real is not None and not self._replaying(ACTIVE.get()) \
            else self._total_changes  # type: ignore[no-any-return]

    @property
    def in_transaction(self) -> bool:
        return self._real.in_transaction if self._real is not None and not self._replaying(ACTIVE.get()) \
            else self._in_transaction  # type: ignore[no-any-return]

    @property
    def isolation_level(self) -> Any:
        return self._real.isolation_level if self._real is not None else self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        if self._real is not None:
            with suspended():
                self._real.isolation_level = value
        self._isolation_level = value

    @property
    def text_factory(self) -> Any:
        return self._real.text_factory if self._real is not None else self._text_factory

    @text_factory.setter
    def text_factory(self, value: Any) -> None:
        if self._real is not None:
            self._real.text_factory = value  # it changes what the recorded rows hold
        self._text_factory = value

    def cursor(self, factory: Any = None) -> Cursor:  # type: ignore[override]
        if self._real is None:
            return SqliteCursor(self, None)
        return SqliteCursor(self, self._real.cursor() if factory is None else self._real.cursor(factory))

    def executescript(self, sql_script: Any) -> Cursor:
        return self.cursor().executescript(sql_script)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.rollback()
                raise
        else:
            self.rollback()

    # user functions and hooks: set on the real connection; on replay SQLite never runs
    create_function = _local("create_function")
    create_aggregate = _local("create_aggregate")
    create_window_function = _local("create_window_function")
    create_collation = _local("create_collation")
    set_authorizer = _local("set_authorizer")
    set_progress_handler = _local("set_progress_handler")
    set_trace_callback = _local("set_trace_callback")
    enable_load_extension = _local("enable_load_extension")
    load_extension = _local("load_extension")


class SqliteCursor(Cursor):
    """The wrapper of a ``sqlite3`` cursor: row factories, ``executescript``."""

    def __init__(self, conn: Connection, real: Any):
        super().__init__(conn, real)
        self.row_factory = conn.row_factory  # type: ignore[attr-defined]

    __class__ = property(lambda self: sqlite3.Cursor)  # type: ignore[assignment]

    def _replayed_description(self, description: Any) -> Any:
        return _full_description(description)  # sqlite3 gives plain 7-tuples

    def executescript(self, sql_script: Any) -> Cursor:
        conn = self._conn
        answer, _ = conn._run(
            "executescript",
            lambda: (conn._db, plain_sql(sql_script)),
            lambda: self._real.executescript(sql_script),
            self._capture,
        )
        self._load(answer)
        return self

    def _row(self, raw: Any) -> Any:
        factory = self.row_factory
        if factory is None:
            return raw
        if isinstance(factory, type) and issubclass(factory, sqlite3.Row):
            return factory(_description_cursor(self.description), raw)
        return factory(self, raw)


_mem_lock = threading.Lock()
_mem: dict[str, Any] = {"conn": None, "cursors": {}}


def _description_cursor(description: Any) -> sqlite3.Cursor:
    """A real ``sqlite3.Cursor`` whose description has these column names (for ``sqlite3.Row``).

    It comes from a private in-memory database (no file), executing ``SELECT NULL AS "c"``.
    """
    names = tuple(str(c[0]) for c in description or ())
    with _mem_lock:
        cursors = _mem["cursors"]
        cur = cursors.get(names)
        if cur is None:
            with suspended():
                if _mem["conn"] is None:
                    _mem["conn"] = _real_sqlite_connect(":memory:", check_same_thread=False)
                if len(cursors) > 256:
                    cursors.clear()
                cols = ", ".join('NULL AS "{}"'.format(n.replace('"', '""')) for n in names) or "NULL"
                cur = _mem["conn"].execute(f"SELECT {cols}")
                cur.fetchall()
            cursors[names] = cur
        return cur  # type: ignore[no-any-return]


def _sqlite_db(args: tuple[Any, ...], kwargs: dict[str, Any], session: Any) -> str:
    database = args[0] if args else kwargs.get("database", "")
    if isinstance(database, bytes):
        database = os.fsdecode(database)
    database = os.fspath(database)
    if not database or database == ":memory:" or database.startswith("file:") or not os.path.isabs(database):
        return str(database)
    full = os.path.normpath(database)
    return app_path(full, getattr(session, "app_roots", ())) or full


_sqlite_connect = wrap_connect(_real_sqlite_connect, "sqlite3", connection_class=SqliteConnection,
                               db_of=_sqlite_db)


def _connect_sqlite(database: Any, *args: Any, **kwargs: Any) -> Any:
    # positional options of sqlite3.connect (timeout, detect_types, ...) become keywords on the tape
    if ACTIVE.get() is None:
        return _real_sqlite_connect(database, *args, **kwargs)
    names = ("timeout", "detect_types", "isolation_level", "check_same_thread", "factory",
             "cached_statements", "uri")
    kwargs = {**dict(zip(names, args, strict=False)), **kwargs}
    return _sqlite_connect(database, **kwargs)


_connect_sqlite.__name__ = "connect"
_connect_sqlite.__qualname__ = "connect"
_connect_sqlite.__doc__ = _real_sqlite_connect.__doc__
_connect_sqlite.__wrapped__ = _real_sqlite_connect  # type: ignore[attr-defined]
setattr(_connect_sqlite, _WRAPPED_ATTR, True)


def install() -> None:
    """Patch ``sqlite3.connect`` (and ``sqlite3.dbapi2.connect``); instrument drivers when imported."""
    from replay.capture.interceptors import replace

    if sqlite3.connect is not _connect_sqlite:
        replace(sqlite3, "connect", _connect_sqlite)
    if sqlite3.dbapi2.connect is not _connect_sqlite:
        sqlite3.dbapi2.connect = _connect_sqlite
    for driver in DRIVERS:
        hooks.when_imported(driver, instrument)
