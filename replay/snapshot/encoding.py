"""Encoding Python values into codec nodes (see :mod:`replay.snapshot.codec`).

Never calls a value's ``__repr__``: fields are read. Values that cannot be represented
become ``["?", ...]`` placeholders, with the reason collected in :attr:`Encoder.lossy`
under the exact profile.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import pathlib
import sys
import uuid
from collections.abc import Iterable
from typing import Any, Final

_PATH_CLASSES: Final = frozenset({"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"})
# Nodes with these tags are containers/objects that take an id (in pre-order).
_ID_TAGS: Final = frozenset({"l", "t", "d", "s", "f", "ba", "dc", "nt", "obj", "exc"})
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1

# The real classes, captured at import: capture later replaces datetime.datetime and
# datetime.date by subclasses, and those must still encode as the standard types.
_DATETIME: Final = _dt.datetime
_DATE: Final = _dt.date


@dataclasses.dataclass(frozen=True)
class Profile:
    """Bounds applied while encoding.

    Attributes:
        exact: True for replay-critical values: nothing is cut.
        max_depth: Deepest nesting encoded; deeper values become placeholders.
        max_str: Characters kept of a string (display only).
        max_bytes: Bytes kept of a bytes value (display only).
        max_items: Items kept of a container (display only).
    """

    exact: bool
    max_depth: int
    max_str: int = 0
    max_bytes: int = 0
    max_items: int = 0


EXACT: Final = Profile(exact=True, max_depth=200)
DISPLAY: Final = Profile(exact=False, max_depth=6, max_str=200, max_bytes=64, max_items=20)


def type_path(cls: type) -> str:
    """Return ``"module:qualname"`` for a class, the form stored in nodes."""
    return f"{cls.__module__}:{cls.__qualname__}"


def _address_repr(value: Any) -> str:
    cls = type(value)
    return f"<{cls.__module__}.{cls.__qualname__} object>"


class Encoder:
    """Encode Python values into nodes under one :class:`Profile`.

    One encoder per top-level value set that should share references (for example all
    arguments of one call). Not thread-safe.

    Attributes:
        lossy: Reasons why some value could not be represented exactly, in order found.
    """

    def __init__(self, profile: Profile = EXACT):
        self.profile = profile
        self.lossy: list[str] = []
        self._ids: dict[int, int] = {}
        self._keep: list[Any] = []  # keeps encoded objects alive so id() stays unique

    def encode(self, value: Any) -> Any:
        """Return the node for ``value``."""
        return self._enc(value, 0)

    def _placeholder(self, value: Any, reason: str) -> list[Any]:
        path = type_path(type(value))
        if self.profile.exact:
            self.lossy.append(f"{path}: {reason}")
        return ["?", path, _address_repr(value), reason]

    def _register(self, value: Any) -> list[Any] | None:
        key = id(value)
        ref = self._ids.get(key)
        if ref is not None:
            return ["@", ref]
        self._ids[key] = len(self._ids)
        self._keep.append(value)
        return None

    def _items(self, values: Iterable[Any], depth: int, size: int) -> list[Any]:
        out: list[Any] = []
        limit = self.profile.max_items if not self.profile.exact else -1
        for n, item in enumerate(values):
            if n == limit:
                out.append(["+", size - n])
                break
            out.append(self._enc(item, depth + 1))
        return out

    def _enc(self, v: Any, depth: int) -> Any:  # noqa: C901 - one dispatch table, kept flat
        cls = type(v)
        if v is None or cls is bool or cls is float:
            return v
        if cls is int:
            return v if _INT64_MIN <= v <= _UINT64_MAX else ["i", str(v)]
        if cls is str:
            if not self.profile.exact and len(v) > self.profile.max_str:
                cut = v[: self.profile.max_str]
                if not cut.isascii() and not _utf8_ok(cut):  # shown, not rebuilt: escape surrogates
                    cut = cut.encode("utf-8", "backslashreplace").decode("utf-8")
                return ["S", cut, len(v)]
            if not v.isascii() and not _utf8_ok(v):
                return ["su", v.encode("utf-8", "surrogatepass")]  # lone surrogates (os.fsdecode)
            return v
        if cls is bytes:
            if not self.profile.exact and len(v) > self.profile.max_bytes:
                return ["B", v[: self.profile.max_bytes], len(v)]
            return v
        if cls is bytearray and not self.profile.exact and len(v) > self.profile.max_bytes:
            return ["B", bytes(v[: self.profile.max_bytes]), len(v)]  # before numbering, like bytes
        if depth >= self.profile.max_depth:
            if self.profile.exact:
                return self._placeholder(v, f"nested deeper than {self.profile.max_depth}")
            return ["...", type_path(cls)]
        if cls in (list, tuple, set, frozenset, dict, bytearray):
            ref = self._register(v)
            if ref is not None:
                return ref
            if cls is list:
                return ["l", *self._items(v, depth, len(v))]
            if cls is tuple:
                return ["t", *self._items(v, depth, len(v))]
            if cls is dict:
                return ["d", *self._dict_items(v, depth)]
            if cls is bytearray:
                return ["ba", bytes(v)]
            return ["s" if cls is set else "f", *self._items(_stable(v), depth, len(v))]
        return self._enc_other(v, cls, depth)

    def _dict_items(self, d: dict[Any, Any], depth: int) -> list[Any]:
        out: list[Any] = []
        limit = self.profile.max_items if not self.profile.exact else -1
        for n, (k, val) in enumerate(d.items()):
            if n == limit:
                out.append(["+", len(d) - n])
                break
            out.append(self._enc(k, depth + 1))
            out.append(self._enc(val, depth + 1))
        return out

    def _enc_other(self, v: Any, cls: type, depth: int) -> Any:  # noqa: C901
        if isinstance(v, enum.Enum):
            return ["enum", type_path(cls), self._enc(v.value, depth + 1)]
        if isinstance(v, bool):
            return bool(v)
        if isinstance(v, _DATETIME):
            return ["dt", v.year, v.month, v.day, v.hour, v.minute, v.second, v.microsecond,
                    v.fold, self._tz(v.tzinfo, v)]
        if isinstance(v, _DATE):
            return ["date", v.year, v.month, v.day]
        if isinstance(v, _dt.time):
            return ["time", v.hour, v.minute, v.second, v.microsecond, v.fold, self._tz(v.tzinfo, v)]
        if isinstance(v, _dt.timedelta):
            return ["td", v.days, v.seconds, v.microseconds]
        if isinstance(v, decimal.Decimal):
            return ["dec", str(v)]
        if isinstance(v, uuid.UUID):
            return ["uuid", v.bytes]
        if isinstance(v, complex):
            return ["c", v.real, v.imag]
        if isinstance(v, pathlib.PurePath):
            return ["path", cls.__name__, str(v)]
        if isinstance(v, range):
            return ["range", self._enc(v.start, depth), self._enc(v.stop, depth), self._enc(v.step, depth)]
        if isinstance(v, type):
            return ["type", type_path(v)]
        if isinstance(v, tuple) and hasattr(cls, "_fields"):
            ref = self._register(v)
            return ref or ["nt", type_path(cls), *self._items(v, depth, len(v))]
        if isinstance(v, BaseException):
            return self._exception(v, cls, depth)
        if dataclasses.is_dataclass(v):
            ref = self._register(v)
            if ref is not None:
                return ref
            node: list[Any] = ["dc", type_path(cls)]
            for f in dataclasses.fields(v):
                node.append(f.name)
                node.append(self._enc(getattr(v, f.name, None), depth + 1))
            return node
        if isinstance(v, int | float | str | bytes):  # subclasses of primitives
            return self._placeholder(v, "subclass of a built-in value type")
        return self._plain_object(v, cls, depth)

    def _tz(self, tz: Any, owner: Any) -> Any:
        if tz is None:
            return None
        if isinstance(tz, _dt.timezone):
            off = tz.utcoffset(None)
            name = tz.tzname(None)
            return ["tz", off.days * 86400 + off.seconds, off.microseconds,
                    None if name == _dt.timezone(off).tzname(None) else name]
        key = getattr(tz, "key", None)
        if isinstance(key, str) and type(tz).__module__ == "zoneinfo":
            return ["zi", key]
        return self._placeholder(tz, "tzinfo that is neither datetime.timezone nor zoneinfo")

    def _exception(self, v: BaseException, cls: type, depth: int) -> Any:
        ref = self._register(v)
        if ref is not None:
            return ref
        try:
            message = str(v)
        except Exception:  # noqa: BLE001 - a broken __str__ must not stop encoding
            message = _address_repr(v)
        args = [self._enc(a, depth + 1) for a in v.args]  # before attrs: the decoder's order
        attrs: list[Any] = []
        for name, val in getattr(v, "__dict__", {}).items():
            if not name.startswith("__"):
                attrs.append(name)
                attrs.append(self._enc(val, depth + 1))
        if isinstance(v, OSError):  # slots outside args: OSError(2, "msg", "path").args == (2, "msg")
            for name in ("filename", "filename2"):
                val = getattr(v, name, None)
                if val is not None:
                    attrs.append(name)
                    attrs.append(self._enc(val, depth + 1))
        return ["exc", type_path(cls), args, message, attrs]

    def _plain_object(self, v: Any, cls: type, depth: int) -> Any:
        if not _is_plain_class(cls):
            return self._placeholder(v, "an operating-system resource or a type implemented in C")
        fields = getattr(v, "__dict__", None)
        slots = _slot_names(cls)
        if (fields is None and not slots) or cls.__module__ == "builtins":
            return self._placeholder(v, "no fields to record (not a plain object)")
        ref = self._register(v)
        if ref is not None:
            return ref
        node: list[Any] = ["obj", type_path(cls)]
        items = list(fields.items()) if isinstance(fields, dict) else []
        items += [(s, getattr(v, s)) for s in slots if hasattr(v, s)]
        limit = self.profile.max_items if not self.profile.exact else -1
        for n, (name, val) in enumerate(items):
            if n == limit:
                node.append(["+", len(items) - n])
                break
            node.append(name)
            node.append(self._enc(val, depth + 1))
        return node


def _slot_names(cls: type) -> list[str]:
    names: list[str] = []
    for klass in cls.__mro__:
        slots = klass.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        names.extend(s for s in slots if s not in ("__dict__", "__weakref__"))
    return names


def _stable(values: Iterable[Any]) -> list[Any]:
    """Sets in a stable order where the items allow it (so equal sets encode equally)."""
    items = list(values)
    try:
        return sorted(items)
    except Exception:  # noqa: BLE001 - unorderable (TypeError) or signalling (Decimal NaN)
        return items


_HEAPTYPE: Final = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set for classes defined in Python
# Classes whose instances are live resources, not data, wherever they are implemented.
_RESOURCE_TYPES: Final = (
    ("io", "IOBase"), ("socket", "socket"), ("threading", "Thread"), ("subprocess", "Popen"),
    ("asyncio", "AbstractEventLoop"), ("selectors", "BaseSelector"), ("ssl", "SSLContext"),
    ("logging", "Logger"), ("logging", "Handler"), ("types", "ModuleType"),
)


def _is_plain_class(cls: type) -> bool:
    """True for classes defined in Python whose instances are data, not resources."""
    for base in cls.__mro__[:-1]:
        if not base.__flags__ & _HEAPTYPE:
            return False
    for module_name, name in _RESOURCE_TYPES:
        module = sys.modules.get(module_name)
        resource = getattr(module, name, None) if module is not None else None
        if isinstance(resource, type) and issubclass(cls, resource):
            return False
    return True


def _utf8_ok(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode(value: Any, profile: Profile = EXACT) -> Any:
    """Encode one value; see :class:`Encoder`. Lossy reasons are discarded."""
    return Encoder(profile).encode(value)


