"""The ``db`` channel: sqlite3 and any PEP 249 (DB-API 2) driver.

Every connection opened while the interceptors are installed is a wrapper, wherever it is
opened (inside a recorded call, in an earlier call, at import), and so are the cursors it
makes. Each operation looks at the session active at that moment: none, the real driver
answers unrecorded; recording, the real driver answers and the answer is recorded;
replaying, the tape answers. Each database operation in a session is one interaction of
channel ``db``:

========================  =====================================  ==============================
op                        request (``args``)                     answer
========================  =====================================  ==============================
``connect``               ``(driver, db, kwargs)``               connection state (sqlite3)
``adopt``                 ``(driver, db)``                       ``{state, setup, clock}``
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
re-raised. Replay mode: no driver call is made inside the session at all (no
``sqlite3.connect`` of a file): connection and cursor objects answer from the tape.
``sqlite3.Row`` row factories get a real ``sqlite3.Cursor`` with the recorded column
names, from a private in-memory database.

Connections that outlive one recorded call (a pool, Django's ``CONN_MAX_AGE``, a
module-level connection): a web app's requests are separate recorded calls sharing
connections. The first time a session uses a connection it did not open, an ``adopt`` is
recorded before the operation; its answer holds the connection's state, its *set-up log*
and its *connect-time clock readings*:

* the set-up log: the connection's first operations, whoever made them, while they are
  set-up (commit, rollback, PRAGMA, SET, SHOW, a SELECT without FROM such as ``SELECT
  version()``), with their answers; at most 32 of them, closed at the first
  other operation or the first adoption. Django's ``PRAGMA foreign_keys = ON`` and
  SQLAlchemy's ``PRAGMA read_uncommitted`` are there.
* the clock readings the connecting thread made just before the original ``connect``
  (SQLAlchemy's pool stamps each new connection with ``time.time()``).

On replay (a fresh process) an ``adopt`` is consumed in one of two ways. If the code opens
a connection inside the call (Django, a pool: lazily), the ``adopt`` of the same driver and
database answers that ``connect`` (unless a recorded ``connect`` with the same arguments
comes first), and the fresh connection's set-up operations are answered from the set-up
log, in order, each reported (``reused`` per channel, and ``notes`` on the player); a
configuring statement (PRAGMA, SET, SHOW) the set-up log and the tape lack is answered
empty and counted as synthesized ``db.setup`` (a candidate that adds a PRAGMA is not a
divergence). The set-up phase ends at the first operation the tape answers; every other
mismatch is a divergence, as always. If the connection was opened before the call (at
import), the ``adopt`` is consumed at its first use in the call. The clock readings a
replay makes just before an ``adopt`` are matched with relaxed order (see
:class:`replay.replayer.tape.TapePlayer`). A connection opened outside any session is
named when a session adopts it (with that session's application roots).

SQLAlchemy times its compiled statements with ``perf_counter()`` for its echo log only;
whether a statement is compiled depends on the process's statement cache, so those two
readings are not recorded (see :func:`_unrecord_statement_timing`).

The generic wrapper (:func:`wrap_connect`, :func:`instrument`) uses only PEP 249 calls;
sqlite3 support is the same wrapper with sqlite3's extras (``conn.execute``,
``executescript``, ``row_factory``, ``text_factory``, ``isolation_level``,
``total_changes``, ``in_transaction``, ``with conn:`` as a transaction, ``backup``) on
top. ``psycopg``, ``psycopg2``, ``pymysql``, ``MySQLdb`` and ``mysql.connector`` are
instrumented when imported; :func:`instrument` does the same for any other driver module.
Outside a session the wrapper costs about 1 microsecond per statement (a trivial sqlite3
query: 0.9 us raw, 2.2 us wrapped).

Matching (:class:`~replay.capture.boundary.ChannelSpec` ``db``): the key is the operation,
database, SQL with white space collapsed and parameters; effects are writing statements
(INSERT, UPDATE, DELETE, REPLACE, CREATE, DROP, ALTER, ...; ``PRAGMA x = y``;
``executescript``) and commits; an effect's target is the operation, database and SQL
without parameters, so the same statement with other values is a changed effect.

Limits: a connection opened before the interceptors were installed (before the first
``@replay.capture``, middleware or recording in the process) is the driver's own object
and its queries are not recorded: the replay, which installs first, then diverges at its
first use ("asked db adopt"). On replay, code outside the call (imports) runs for real,
including a module-level ``connect`` (a missing sqlite file is created); inside the call
that connection is never used. Liveness checks a pool makes on an existing connection
(SQLAlchemy ``pool_pre_ping``, Django ``CONN_HEALTH_CHECKS``) are recorded but a fresh
replay connection does not make them: a divergence. Server-side cursors are fetched
whole; ``nextset``, ``sqlite3`` blobs, backups inside a call, ``iterdump`` and user
functions (which are never called on replay) are not replayed.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import sqlite3.dbapi2
import threading
from collections import deque
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final

from replay.capture import hooks
from replay.capture.boundary import (
    ACTIVE,
    CLOCK_STREAMS,
    STRAND,
    app_path,
    not_replayable,
    suspended,
)
from replay.capture.channels.dbconn import Connection, Cursor, _no_real
from replay.capture.channels.dbsql import (  # noqa: F401 - the channel's public names live here too
    _ATOMS,
    CHANNEL,
    MAX_CONNECT_CLOCK,
    SPEC,
    _full_description,
    _is_setup,
    _plain_option,
    _redact,
    is_write,
    plain_params,
    plain_sql,
    statement_word,
)

log = logging.getLogger("replay.capture")

DRIVERS: Final = ("psycopg", "psycopg2", "pymysql", "MySQLdb", "mysql.connector")

_real_sqlite_connect = sqlite3.connect
_WRAPPED_ATTR: Final = "__replay_db_wrapped__"


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
    """Wrap a DB-API ``connect`` so that its connections are recorded and replayed.

    Args:
        connect: The driver's real ``connect`` (any callable returning a PEP 249 connection).
        name: Driver name on the tape (``"psycopg"``).
        connection_class: The wrapper class (sqlite3 uses a subclass with its extras).
        db_of: ``db_of(args, kwargs, session) -> str``: the database's name on the tape
            (default: DSN or host/port/database, passwords masked). ``session`` is None
            for a connection opened outside any session (then it is named again, in
            the session that adopts it).

    Returns:
        A function with ``connect``'s signature that returns a :class:`Connection`
        (``connection_class``). In a session the ``connect`` is an interaction (on
        replay no real connection is opened: an ``adopt`` on the tape answers it when the
        recorded call used a connection opened earlier); outside one the real connection
        is opened and wrapped, so that a later recorded call that uses it records it.
    """
    if getattr(connect, _WRAPPED_ATTR, False):
        return connect

    def name_of(args: tuple[Any, ...], kwargs: dict[str, Any], session: Any) -> str:
        return db_of(args, kwargs, session) if db_of is not None else _generic_db(args, kwargs)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        s = ACTIVE.get()
        if s is None:
            return _unrecorded(connect, name, connection_class, name_of, args, kwargs)
        try:
            db = name_of(args, kwargs, s)
            options = {k: _plain_option(k, v) for k, v in sorted(kwargs.items())}
            request = (name, db, options)
        except Exception:  # noqa: BLE001 - fail open
            log.warning("replay: could not record a %s connect", name, exc_info=True)
            if not s.replaying:
                not_replayable(s, f"db connect ({name}): the request could not be recorded")
                return connect(*args, **kwargs)
            raise
        if s.replaying:
            adopt = _adopt_for_connect(s, name, db, request)
            if adopt is None:
                answer = s.call(CHANNEL, "connect", request, _no_real)
                conn = connection_class(name, db, None, s, answer)
            else:
                answer = s.answer(CHANNEL, "adopt", adopt)
                answer = answer if isinstance(answer, dict) else {}
                conn = connection_class(name, db, None, s, answer.get("state"))
                conn._serve_setup = deque(list(e) for e in answer.get("setup") or () if isinstance(e, list | tuple))
        else:
            try:
                with suspended():
                    real = connect(*args, **kwargs)
                    conn = connection_class(name, db, real, s)
                    answer = conn._capture_state()
                    conn._connect_clock = _clock_before(s)
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


def _clock_before(s: Any) -> list[list[Any]]:
    """Recording: ``[[op, ns], ...]``, the clock readings this strand made just before now.

    A pool or an ORM reads the clock as it opens a connection (SQLAlchemy stamps it with
    ``time.time()``). Kept with the connection, they answer the same readings made by a
    replay that opens its own connection where the recorded call adopted this one.
    """
    tape = getattr(s, "tape", None)
    if not isinstance(tape, list):
        return []
    runs = getattr(s, "runs", None) or [(0, "0")]
    start, strand = runs[-1]
    if strand != STRAND.get():
        return []
    out = []
    for record in reversed(tape[max(start, len(tape) - MAX_CONNECT_CLOCK):]):
        if not isinstance(record, tuple) or record[0] != "clock" or record[1] not in CLOCK_STREAMS:
            break
        out.append([record[1], record[3]])
    out.reverse()
    return out


def _unrecorded(connect: Callable[..., Any], name: str, connection_class: type[Connection],
                name_of: Callable[[tuple[Any, ...], dict[str, Any], Any], str],
                args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A connection opened outside any session: real, wrapped, named when a session adopts it."""
    real = connect(*args, **kwargs)
    try:
        conn = connection_class(name, "", real, None)
        conn._db_of = lambda session: name_of(args, kwargs, session)
        conn.exit_mode = _EXIT_MODES.get(name, connection_class.exit_mode)
    except Exception:  # noqa: BLE001 - fail open: the application gets the driver's connection
        log.warning("replay: could not wrap a %s connection", name, exc_info=True)
        return real
    return conn


def _adopt_for_connect(s: Any, driver: str, db: str, request: tuple[Any, ...]) -> Any:
    """Replay: the recorded ``adopt`` that answers this ``connect``, consumed, or None.

    The recorded call used a connection an earlier call (or start-up code) had opened; the
    replay, a fresh process, opens its own. An ``adopt`` of the same driver and database
    answers the ``connect`` unless a recorded ``connect`` with these arguments comes first.
    """
    adopt = s.peek(CHANNEL, "adopt", (driver, db))
    if adopt is None:
        return None
    connect = s.peek(CHANNEL, "connect", request)
    if connect is not None and connect.index < adopt.index:
        return None
    return s.find(CHANNEL, "adopt", (driver, db))


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
        return self._real.isolation_level if self._real is not None and not self._replaying(ACTIVE.get()) \
            else self._isolation_level

    @isolation_level.setter
    def isolation_level(self, value: Any) -> None:
        if self._real is not None and not self._replaying(ACTIVE.get()):
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
        if self._real is None or self._replaying(ACTIVE.get()):
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

    def backup(self, target: Any, **kwargs: Any) -> None:
        """``sqlite3.Connection.backup`` (``target`` may be a wrapper too). Not replayed: in a
        recorded call it runs unrecorded and makes the snapshot not replayable."""
        s = ACTIVE.get()
        if self._real is None or self._replaying(s):
            raise sqlite3.NotSupportedError("replay: sqlite3 backups are not replayed")
        if s is not None:
            not_replayable(s, "db backup: sqlite3 backups are not recorded")
        with suspended():
            self._real.backup(target.__dict__.get("_real", target) if isinstance(target, Connection) else target,
                              **kwargs)

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


_SQLITE_OPTIONS: Final = ("timeout", "detect_types", "isolation_level", "check_same_thread", "factory",
                           "cached_statements", "uri")


def _connect_sqlite(database: Any, *args: Any, **kwargs: Any) -> Any:
    # positional options of sqlite3.connect (timeout, detect_types, ...) become keywords on the tape
    if args:
        kwargs = {**dict(zip(_SQLITE_OPTIONS, args, strict=False)), **kwargs}
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
    for module in _SQLALCHEMY_TIMING:
        hooks.when_imported(module, _unrecord_statement_timing)


# SQLAlchemy stamps each compiled statement with perf_counter() and reads it again at execute,
# only for its echo log ("[generated in 0.0001s]", "[cached since 2.3s ago]"). Whether a
# statement is compiled depends on the process's statement cache: the recorded call (a later
# request) finds it compiled, the replay (a fresh process) compiles it. Those readings are
# not answers the application acts on, so they are left out of the tape.
_SQLALCHEMY_TIMING: Final = ("sqlalchemy.sql.compiler", "sqlalchemy.engine.default")


def _unrecord_statement_timing(module: ModuleType) -> None:
    from replay.capture.interceptors import REAL

    real = REAL["time.perf_counter"]

    def perf_counter() -> float:  # a new function: the interceptors' rebinding leaves it alone
        return real()  # type: ignore[no-any-return]

    if getattr(module, "perf_counter", None) is not None:
        module.perf_counter = perf_counter  # type: ignore[attr-defined]
