"""The ``db`` channel's connection and cursor wrappers (any PEP 249 driver).

See :mod:`replay.capture.channels.db` for what they record and replay, and how a
connection opened by one recorded call is adopted by another.
"""

from __future__ import annotations

import logging
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final

from replay.capture.boundary import ACTIVE, not_replayable, suspended
from replay.capture.channels.dbsql import (
    _CONFIGURE,
    CHANNEL,
    MAX_SETUP,
    MAX_SETUP_ROWS,
    SPEC,
    Column,
    _full_description,
    _is_setup,
    _plain_description,
    plain_params,
    plain_sql,
    statement_word,
)

log = logging.getLogger("replay.capture")

# ------------------------------------------------------------------------------ wrappers

_NO_PARAMS: Final = object()
def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _no_real() -> Any:
    raise RuntimeError("replay never calls the real database driver")


class Connection:
    """A DB-API connection: passes through, records or replays, per operation.

    Every connection opened while the interceptors are installed is one of these, wherever
    it was opened. Each operation asks for the session active at that moment (see the
    module docstring): none, the real driver answers; recording, the answer is recorded;
    replaying, the tape answers. Only PEP 249 calls are made on the real connection;
    attributes this class does not know are forwarded to it (and are missing on a replayed
    connection, which has none).
    """

    exit_mode = "txn"  # what ``with conn:`` does: "txn" (commit/rollback), "close", "txn+close"

    def __init__(self, driver: str, db: str, real: Any, session: Any, state: Any = None):
        self._driver = driver
        self._db = db
        self._real = real  # None during replay
        self._session = session
        self._closed = False
        # sessions that know this connection (opened it or adopted it): weak, a pooled
        # connection must not keep a finished recording's tape alive
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._last_session: Any = None  # weakref of the last session seen (the fast path)
        if session is not None:
            self._sessions.add(session)
            self._last_session = weakref.ref(session)
        self._db_of: Callable[[Any], str] | None = None  # the db name, computed in the adopting session
        self._setup: list[list[Any]] | None = [] if real is not None else None  # the set-up log, while open
        self._setup_done: list[list[Any]] = []  # the set-up log, closed
        self._serve_setup: deque[list[Any]] | None = None  # replay: an adopted connection's set-up to serve
        self._connect_clock: list[list[Any]] = []  # recording: clock readings just before the connect
        self._set_state(state)

    # -- modes

    def _replaying(self, s: Any) -> bool:
        return self._real is None or (s is not None and s.replaying)

    def _set_state(self, state: Any) -> None:
        """Connection state carried by answers (sqlite3: changes, transaction)."""

    def _capture_state(self) -> Any:
        return None

    def _known(self, s: Any) -> bool:
        last = self._last_session
        if last is not None and last() is s:
            return True
        if s in self._sessions:
            self._last_session = weakref.ref(s)
            return True
        return False

    def _adopt(self, s: Any) -> None:
        """First use in a session that did not open this connection: an ``adopt`` interaction.

        Recording: ``adopt(driver, db)`` answered with the connection's state and its
        set-up log. Replay: the recorded ``adopt`` is consumed (or the replay diverges).
        """
        self._sessions.add(s)
        self._last_session = weakref.ref(s)
        if self._db_of is not None:  # opened outside any session: name it as this session does
            try:
                self._db = self._db_of(s)
            except Exception:  # noqa: BLE001 - keep the name computed at connect
                log.warning("replay: could not name an adopted database", exc_info=True)
            self._db_of = None
        request = (self._driver, self._db)
        if s.replaying:
            answer = s.call(CHANNEL, "adopt", request, _no_real)
            if isinstance(answer, dict):
                self._set_state(answer.get("state"))
            return
        self._close_setup()
        try:
            with suspended():
                state = self._capture_state()
        except Exception:  # noqa: BLE001 - a closed connection has no state; the operation will say why
            state = None
        s.record(CHANNEL, "adopt", request, {"state": state, "setup": self._setup_done, "clock": self._connect_clock})

    def _close_setup(self) -> None:
        if self._setup is not None:
            self._setup_done, self._setup = self._setup, None

    def _log_setup(self, op: str, request: tuple[Any, ...], answer: Any) -> None:
        """Keep a set-up operation's answer (recording), or close the log at the first other one."""
        log_ = self._setup
        if log_ is None:
            return
        if _is_setup(op, request) and len(log_) < MAX_SETUP and (
                not isinstance(answer, dict) or len(answer.get("rows") or ()) <= MAX_SETUP_ROWS):
            log_.append([op, request, answer])
        else:
            self._close_setup()

    def _aside(self, s: Any, op: str, request: tuple[Any, ...]) -> Any:
        """Replay: the answer to a set-up operation of a connection whose ``connect`` the tape
        has as an ``adopt``, or None (the tape answers; the set-up phase ends).

        The fresh connection repeats the original one's set-up: the next entry of the
        recorded set-up log answers it (its recorded answer). A configuring statement
        (PRAGMA, SET, SHOW) that neither the log nor the tape has gets an empty answer.
        Both are reported on the player (``notes``), never silently.
        """
        pending = self._serve_setup
        if pending is None or not _is_setup(op, request):
            self._serve_setup = None
            return None
        aside = getattr(s, "served_aside", None)
        key = repr(SPEC.key(op, request))
        if pending and repr(SPEC.key(pending[0][0], _as_tuple(pending[0][1]))) == key and pending[0][0] == op:
            answer = pending.popleft()[2]
            if aside is not None:
                aside(CHANNEL, op, request, "reused")
            return {k: v for k, v in answer.items() if k != "state"} if isinstance(answer, dict) else {}
        if op == "execute" and statement_word(request[1]) in _CONFIGURE and s.peek(CHANNEL, op, request) is None:
            if aside is not None:
                aside(CHANNEL, op, request, "empty")
            return {"description": None, "rowcount": -1, "lastrowid": None, "rows": []}
        self._serve_setup = None
        return None

    def _run(self, op: str, args: Callable[[], tuple[Any, ...]], real: Callable[[], Any],
             capture: Callable[[Any], Any]) -> tuple[Any, Any]:
        """One operation in the current mode; returns ``(answer, real result)``.

        ``answer`` is None when the operation ran unrecorded (no session, set-up log
        closed): the caller then reads the real objects directly. Record: ``real()`` then
        ``capture(result)`` run with the session suspended and the answer is recorded (or
        the error, re-raised).
        """
        s = ACTIVE.get()
        if self._replaying(s):
            session = s if s is not None else self._session
            if not self._known(session):
                self._adopt(session)
            request = args()
            answer = self._aside(session, op, request) if self._serve_setup is not None else None
            if answer is None:
                answer = session.call(CHANNEL, op, request, _no_real)
                if isinstance(answer, dict):
                    self._set_state(answer.get("state"))
            return (answer if answer is not None else {}), None
        if s is None:
            if self._setup is None:
                return None, real()
            return self._run_setup(op, args, real, capture)
        try:
            if not self._known(s):
                self._adopt(s)
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
            self._close_setup()
            s.record(CHANNEL, op, request, None, exc)
            raise
        if self._setup is not None:
            self._log_setup(op, request, answer)
        s.record(CHANNEL, op, request, answer)
        return (answer if answer is not None else {}), result

    def _run_setup(self, op: str, args: Callable[[], tuple[Any, ...]], real: Callable[[], Any],
                   capture: Callable[[Any], Any]) -> tuple[Any, Any]:
        """No session, set-up log open: run for real and keep a set-up operation's answer."""
        try:
            request = args()
        except Exception:  # noqa: BLE001 - an odd request: no set-up log (adopting sessions replay less)
            self._close_setup()
            return None, real()
        if not _is_setup(op, request):
            self._close_setup()
            return None, real()
        try:
            result = real()
            answer = capture(result)
        except Exception:
            self._close_setup()
            raise
        self._log_setup(op, request, answer)
        return (answer if answer is not None else {}), result

    def _state_answer(self, _result: Any = None) -> Any:
        state = self._capture_state()
        return None if state is None else {"state": state}


    # -- PEP 249

    def cursor(self, *args: Any, **kwargs: Any) -> Cursor:
        """A wrapped cursor (replay: a tape-served one; nothing is recorded)."""
        if self._real is None or self._replaying(ACTIVE.get()):
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
        mode = "replayed" if self._real is None else "live"
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
        live = self.__dict__.pop("_live_description", _NO_PARAMS)  # the real cursor's, when it ran
        self._description = live if live is not _NO_PARAMS else self._replayed_description(answer.get("description"))

    def _replayed_description(self, description: Any) -> Any:
        if description is None:
            return None
        return tuple(Column(c) for c in _full_description(description))

    def execute(self, operation: Any, parameters: Any = _NO_PARAMS) -> Cursor:
        conn = self._conn
        given = parameters is not _NO_PARAMS
        if conn._setup is None and self._real is not None and ACTIVE.get() is None:
            # the unrecorded path, kept short: most statements of a process run outside any call
            self._real.execute(operation, parameters) if given else self._real.execute(operation)
            self._rows = None
            return self
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
