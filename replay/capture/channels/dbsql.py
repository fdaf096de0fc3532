"""The ``db`` channel's rules: SQL classification, matching spec, plain data.

See :mod:`replay.capture.channels.db` for the channel itself.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from replay.capture.boundary import ChannelSpec, normalise_space, register_channel

CHANNEL: Final = "db"

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


# ------------------------------------------------------------------------------ set-up

MAX_SETUP: Final = 32  # set-up operations kept per connection (answers of adopting sessions' replays)
MAX_SETUP_ROWS: Final = 100  # rows of one kept set-up answer
MAX_CONNECT_CLOCK: Final = 4  # clock readings kept from just before a connect
_CONFIGURE: Final = frozenset({"PRAGMA", "SET", "SHOW"})
_FROM: Final = re.compile(r"\bFROM\b", re.I)


def _is_setup(op: str, request: Any) -> bool:
    """Whether an operation may be part of a connection's set-up: commit, rollback, a
    configuring statement (PRAGMA, SET, SHOW) or a SELECT without FROM (``SELECT version()``)."""
    if op in ("commit", "rollback"):
        return True
    if op != "execute" or not isinstance(request, tuple) or len(request) < 2 or not isinstance(request[1], str):
        return False
    word = statement_word(request[1])
    return word in _CONFIGURE or (word == "SELECT" and _FROM.search(request[1]) is None)
