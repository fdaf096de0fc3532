"""Decoding codec nodes back into Python values, allowing only known types.

A :class:`TypeResolver` decides which recorded type paths may become classes; everything
else becomes an inert :class:`Opaque`. Decoding never raises on malformed input.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import importlib
import os
import pathlib
import re
import sys
import uuid
import zoneinfo
from collections.abc import Iterable
from typing import Any, Final

from replay.snapshot.encoding import _PATH_CLASSES, _is_plain_class, type_path
from replay.snapshot.format import short_repr


@dataclasses.dataclass(frozen=True)
class Opaque:
    """An inert stand-in for a value that was not or could not be rebuilt.

    Attributes:
        type_path: ``"module:qualname"`` of the original value's type.
        text: A short description (never produced by the original's ``__repr__``).
        reason: Why it is a placeholder.
    """

    type_path: str
    text: str
    reason: str

    def __repr__(self) -> str:
        return f"<opaque {self.type_path}: {self.reason}>"


_STDLIB: frozenset[str] = frozenset(sys.stdlib_module_names)


class TypeResolver:
    """Decides which recorded type paths may be turned back into classes (the allowlist).

    Allowed: classes of the standard library and builtins, but only from modules already
    imported (a file never causes an import of them); classes of the application's own
    packages (``app_packages``) and of explicitly configured ``modules`` (both imported if
    needed: the user named them). With ``trust_imported`` (the replay child, which already
    runs the application's code) any module the application itself imported is allowed.
    Everything else decodes to an inert :class:`Opaque`.

    Args:
        app_packages: Top-level module names of the application.
        modules: Further allowed modules or packages (``"semver"``, ``"pkg.sub"``).
        trust_imported: Allow classes of every module already in ``sys.modules``.
    """

    def __init__(self, app_packages: Iterable[str] = (), modules: Iterable[str] = (), *,
                 trust_imported: bool = False):
        self.app_packages = frozenset(app_packages)
        self.modules = tuple(m for m in modules if m)
        self.trust_imported = trust_imported

    def is_application(self, path: str) -> bool:
        """True when ``path`` names a type of the application's own modules."""
        return path.partition(":")[0].split(".")[0] in self.app_packages

    def _configured(self, module_name: str) -> bool:
        return module_name.split(".")[0] in self.app_packages or any(
            module_name == m or module_name.startswith(m + ".") for m in self.modules)

    def allowed(self, module_name: str) -> bool:
        """True when classes of ``module_name`` may be rebuilt."""
        return (self._configured(module_name) or module_name.split(".")[0] in _STDLIB
                or (self.trust_imported and module_name in sys.modules))

    def resolve(self, path: str) -> type | None:
        """Return the class for ``path`` or None when it is not allowed or not found."""
        if not isinstance(path, str):
            return None
        module_name, _, qualname = path.partition(":")
        if not self.allowed(module_name):
            return None
        module = sys.modules.get(module_name)
        if module is None and self._configured(module_name):
            try:
                module = importlib.import_module(module_name)
            except Exception:  # noqa: BLE001 - unresolvable means placeholder, never a crash
                return None
        if module is None:
            return None
        obj: Any = module
        for part in qualname.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                return None
        return obj if isinstance(obj, type) else None


class _Pending:
    """Marks an id whose immutable container is still being built."""


class Decoder:
    """Rebuild Python values from nodes.

    Args:
        resolver: Which recorded types may be rebuilt.
    """

    def __init__(self, resolver: TypeResolver | None = None):
        self.resolver = resolver or TypeResolver()
        self._refs: list[Any] = []

    def decode(self, node: Any) -> Any:
        """Return the value for ``node``; unknown or disallowed types become :class:`Opaque`.

        Never raises: a malformed node (from a damaged or hostile file) or one nested
        deeper than the interpreter allows becomes an :class:`Opaque` as well.
        """
        try:
            return self._dec(node)
        except RecursionError:
            return Opaque("?", "", "nested too deeply to rebuild")

    def _dec(self, n: Any) -> Any:
        try:
            return self._dec_node(n)
        except RecursionError:
            raise
        except Exception as exc:  # noqa: BLE001 - malformed input never escapes as a crash
            return Opaque("?", short_repr(n), f"malformed node ({type(exc).__name__})")

    def _reserve(self, value: Any) -> int:
        self._refs.append(value)
        return len(self._refs) - 1

    def _dec_node(self, n: Any) -> Any:  # noqa: C901 - one dispatch table, kept flat
        if not isinstance(n, list):
            return n
        if not n or not isinstance(n[0], str):
            return Opaque("?", short_repr(n), "malformed node")
        tag = n[0]
        if tag == "@":
            ref = self._refs[n[1]] if isinstance(n[1], int) and 0 <= n[1] < len(self._refs) else None
            if ref is None or isinstance(ref, _Pending):
                return Opaque("?", "", "reference cycle through an immutable value")
            return ref
        if tag == "l":
            out: list[Any] = []
            self._reserve(out)
            out.extend(self._dec(x) for x in n[1:])
            return out
        if tag == "d":
            d: dict[Any, Any] = {}
            self._reserve(d)
            it = iter(n[1:])
            for k in it:
                key = self._dec(k)  # key first: reference ids are numbered in pre-order
                d[_hashable(key)] = self._dec(next(it, None))
            return d
        if tag == "s":
            s: set[Any] = set()
            self._reserve(s)
            s.update(_hashable(self._dec(x)) for x in n[1:])
            return s
        if tag in ("t", "f", "nt"):
            slot = self._reserve(_Pending())
            if tag == "nt":
                nt_cls: Any = self.resolver.resolve(n[1])
                items = [self._dec(x) for x in n[2:]]
                ok = nt_cls is not None and issubclass(nt_cls, tuple) and hasattr(nt_cls, "_make")
                value: Any = nt_cls._make(items) if ok else Opaque(n[1], short_repr(tuple(items)), "type not allowed")
            else:
                items = [self._dec(x) for x in n[1:]]
                value = tuple(items) if tag == "t" else frozenset(_hashable(x) for x in items)
            self._refs[slot] = value
            return value
        if tag == "ba":
            if type(n[1]) is not bytes:  # bytearray(int) would allocate that many bytes
                raise TypeError("bytearray payload is not bytes")
            b = bytearray(n[1])
            self._reserve(b)
            return b
        if tag == "i":
            return int(n[1])
        if tag in ("S", "B"):
            return n[1]
        if tag == "su":
            if type(n[1]) is not bytes:
                raise TypeError("surrogate string payload is not bytes")
            return n[1].decode("utf-8", "surrogatepass")
        return self._dec_value(tag, n)

    def _dec_value(self, tag: str, n: list[Any]) -> Any:  # noqa: C901
        if tag == "dt":  # the current class: replay's recording subclass once installed
            year, month, day, hour, minute, second, micro = n[1:8]
            return _DATETIME(year, month, day, hour, minute, second, micro, fold=n[8], tzinfo=self._tz(n[9]))
        if tag == "date":
            return _DATE(*n[1:4])
        if tag == "time":
            hour, minute, second, micro = n[1:5]
            return _dt.time(hour, minute, second, micro, fold=n[5], tzinfo=self._tz(n[6]))
        if tag == "td":
            return _dt.timedelta(days=n[1], seconds=n[2], microseconds=n[3])
        if tag == "dec":
            return decimal.Decimal(n[1])
        if tag == "uuid":
            return uuid.UUID(bytes=n[1])
        if tag == "c":
            return complex(n[1], n[2])
        if tag == "path":
            name = n[1] if n[1] in _PATH_CLASSES else "PurePath"
            # A concrete path of the other OS family (WindowsPath read on Linux) cannot be
            # instantiated here: rebuild its pure counterpart instead.
            if name in ("WindowsPath", "PosixPath") and name != type(pathlib.Path()).__name__:
                name = "Pure" + name
            return getattr(pathlib, name)(n[2])
        if tag == "range":
            return range(self._dec(n[1]), self._dec(n[2]), self._dec(n[3]))
        if tag == "type":
            return self.resolver.resolve(n[1]) or Opaque(n[1], n[1], "type not allowed")
        if tag == "enum":
            cls = self.resolver.resolve(n[1])
            value = self._dec(n[2])
            if cls is None or not issubclass(cls, enum.Enum):
                return Opaque(n[1], short_repr(value), "type not allowed")
            return cls(value)
        if tag in ("dc", "obj"):
            return self._object(n)
        if tag == "exc":
            return self._exception(n)
        if tag == "?":
            return Opaque(n[1], n[2], n[3])
        if tag in ("+", "..."):
            return Opaque(str(n[1]), "", "cut for display")
        return Opaque("?", tag, f"unknown node tag {tag!r}")

    def _tz(self, n: Any) -> Any:
        if n is None:
            return None
        if n[0] == "tz":
            off = _dt.timedelta(seconds=n[1], microseconds=n[2])
            return _dt.timezone(off, n[3]) if n[3] is not None else _dt.timezone(off)
        if n[0] == "zi":
            if not _zone_available(n[1]):
                raise ValueError(f"time zone {n[1]!r:.80} is not known on this machine")
            try:
                return zoneinfo.ZoneInfo(n[1])
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"time zone {n[1]!r} is not known on this machine") from None
        return None

    def _object(self, n: list[Any]) -> Any:
        cls = self.resolver.resolve(n[1])
        if cls is not None and not (
            dataclasses.is_dataclass(cls) if n[0] == "dc" else self.resolver.is_application(n[1]) and _is_plain_class(cls)
        ):
            cls = None  # only dataclasses, and plain objects of the application, are rebuilt
        if cls is None:
            slot = self._reserve(None)
            fields = {n[i]: self._dec(n[i + 1]) for i in range(2, len(n) - 1, 2)}
            self._refs[slot] = Opaque(n[1], short_repr(fields), "type not allowed")
            return self._refs[slot]
        obj: Any = object.__new__(cls)  # plain objects and dataclasses: no __init__, no side effects
        self._reserve(obj)
        for i in range(2, len(n) - 1, 2):
            object.__setattr__(obj, n[i], self._dec(n[i + 1]))
        return obj

    def _exception(self, n: list[Any]) -> Any:
        cls = self.resolver.resolve(n[1])
        slot = self._reserve(_Pending())
        args = [self._dec(a) for a in n[2]]
        if cls is None or not issubclass(cls, BaseException):
            exc: Any = Opaque(n[1], n[3], "exception type not allowed")
        else:
            exc = cls.__new__(cls)
            if issubclass(cls, OSError) and 2 <= len(args) <= 5:
                try:  # OSError.__new__ fills errno, strerror and filename from the arguments
                    exc = cls.__new__(cls, *args)
                except Exception:  # noqa: BLE001 - odd arguments: keep the plain instance
                    exc = cls.__new__(cls)
            exc.args = tuple(args)
            attrs = n[4]
            for i in range(0, len(attrs) - 1, 2):
                try:
                    setattr(exc, attrs[i], self._dec(attrs[i + 1]))
                except Exception:  # noqa: BLE001, S112 - read-only attributes are skipped
                    continue
        self._refs[slot] = exc
        return exc


def _builtin(cls: type) -> type:
    """The first class of ``cls``'s MRO that is not a heap type: the C class itself, even
    after replay's interceptors replaced ``datetime.date``/``datetime.datetime`` by
    subclasses (decoded values must be plain dates, whose repr says ``datetime.date``)."""
    heap = 1 << 9  # Py_TPFLAGS_HEAPTYPE
    return next((c for c in cls.__mro__ if not c.__flags__ & heap), cls)


_DATE: Final = _builtin(_dt.date)
_DATETIME: Final = _builtin(_dt.datetime)

_ZONE_KEY = re.compile(r"[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*")


def _zone_available(key: Any) -> bool:
    """True when ``key`` names a zone file on the time zone path (or tzdata is loaded).

    Checked first because ZoneInfo falls back to importing ``tzdata`` through
    importlib.resources for unknown keys: a file must not make the reader import.
    """
    if not isinstance(key, str) or len(key) > 255 or not _ZONE_KEY.fullmatch(key):
        return False
    if "tzdata" in sys.modules:
        return True
    return any(os.path.isfile(os.path.join(base, *key.split("/"))) for base in zoneinfo.TZPATH)


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return Opaque(type_path(type(value)), "", "unhashable value used as a key")
    return value


def decode(node: Any, resolver: TypeResolver | None = None) -> Any:
    """Decode one node; see :class:`Decoder`."""
    return Decoder(resolver).decode(node)


