"""The value codec: Python values <-> msgpack-ready trees ("nodes"), and safe display.

A node is a msgpack-native primitive (None, bool, int in 64 bits, float, str, bytes) or a
list whose first item is a string tag (``["t", 1, 2]`` is the tuple ``(1, 2)``). Maps are
never used for values, so dict keys of any type, key order and set membership survive.
Every container or object node gets an id in pre-order; a later ``["@", id]`` refers back
to it, which keeps shared references and reference cycles.

Two profiles share the node language (DESIGN.md section 5):

* ``EXACT``: replay-critical values (entry arguments, tape answers, outcome). Nothing is cut;
  a value that cannot be represented becomes a ``["?", ...]`` placeholder and its reason is
  collected in :attr:`Encoder.lossy`, so the caller can mark the snapshot not replayable.
* ``DISPLAY``: values shown to people (locals). Strings, bytes and containers are cut to
  bounds, with the true sizes kept; depth is bounded.

Encoding never calls a value's ``__repr__``; it reads fields. Decoding rebuilds only types
a :class:`TypeResolver` allows; anything else becomes an inert :class:`Opaque`. Rendering
(:func:`render`) never imports anything.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import importlib
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
            if not v.isascii() and not _utf8_ok(v):
                return ["su", v.encode("utf-8", "surrogatepass")]  # lone surrogates (os.fsdecode)
            if not self.profile.exact and len(v) > self.profile.max_str:
                return ["S", v[: self.profile.max_str], len(v)]
            return v
        if cls is bytes:
            if not self.profile.exact and len(v) > self.profile.max_bytes:
                return ["B", v[: self.profile.max_bytes], len(v)]
            return v
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


# --------------------------------------------------------------------------- decoding


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


class TypeResolver:
    """Decides which recorded type paths may be turned back into classes.

    Allowed: builtins; modules whose top-level package is in ``app_packages`` (the
    application's own code, imported if needed); and modules already imported in this
    process (never imported because a file named them).

    Args:
        app_packages: Top-level module names of the application.
    """

    def __init__(self, app_packages: Iterable[str] = ()):
        self.app_packages = frozenset(app_packages)

    def is_application(self, path: str) -> bool:
        """True when ``path`` names a type of the application's own modules."""
        return path.partition(":")[0].split(".")[0] in self.app_packages

    def resolve(self, path: str) -> type | None:
        """Return the class for ``path`` or None when it is not allowed or not found."""
        if not isinstance(path, str):
            return None
        module_name, _, qualname = path.partition(":")
        module = sys.modules.get(module_name)
        if module is None and module_name.split(".")[0] in self.app_packages:
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
            return Opaque("?", repr(n)[:80], f"malformed node ({type(exc).__name__})")

    def _reserve(self, value: Any) -> int:
        self._refs.append(value)
        return len(self._refs) - 1

    def _dec_node(self, n: Any) -> Any:  # noqa: C901 - one dispatch table, kept flat
        if not isinstance(n, list):
            return n
        if not n or not isinstance(n[0], str):
            return Opaque("?", repr(n)[:80], "malformed node")
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
                cls = self.resolver.resolve(n[1])
                items = [self._dec(x) for x in n[2:]]
                ok = cls is not None and issubclass(cls, tuple) and hasattr(cls, "_make")
                value: Any = cls._make(items) if ok else Opaque(n[1], repr(tuple(items))[:200], "type not allowed")
            else:
                items = [self._dec(x) for x in n[1:]]
                value = tuple(items) if tag == "t" else frozenset(_hashable(x) for x in items)
            self._refs[slot] = value
            return value
        if tag == "ba":
            b = bytearray(n[1])
            self._reserve(b)
            return b
        if tag == "i":
            return int(n[1])
        if tag in ("S", "B"):
            return n[1]
        if tag == "su":
            return bytes(n[1]).decode("utf-8", "surrogatepass")
        return self._dec_value(tag, n)

    def _dec_value(self, tag: str, n: list[Any]) -> Any:  # noqa: C901
        if tag == "dt":  # the current class: replay's recording subclass once installed
            return _dt.datetime(*n[1:8], fold=n[8], tzinfo=self._tz(n[9]))
        if tag == "date":
            return _dt.date(*n[1:4])
        if tag == "time":
            return _dt.time(*n[1:5], fold=n[5], tzinfo=self._tz(n[6]))
        if tag == "td":
            return _dt.timedelta(days=n[1], seconds=n[2], microseconds=n[3])
        if tag == "dec":
            return decimal.Decimal(n[1])
        if tag == "uuid":
            return uuid.UUID(bytes=n[1])
        if tag == "c":
            return complex(n[1], n[2])
        if tag == "path":
            cls = getattr(pathlib, n[1], None) if n[1] in _PATH_CLASSES else None
            try:
                return cls(n[2]) if cls is not None else pathlib.PurePath(n[2])
            except NotImplementedError:  # a WindowsPath recorded on Windows, read elsewhere
                return (pathlib.PureWindowsPath if "Windows" in n[1] else pathlib.PurePosixPath)(n[2])
        if tag == "range":
            return range(self._dec(n[1]), self._dec(n[2]), self._dec(n[3]))
        if tag == "type":
            return self.resolver.resolve(n[1]) or Opaque(n[1], n[1], "type not allowed")
        if tag == "enum":
            cls = self.resolver.resolve(n[1])
            value = self._dec(n[2])
            if cls is None or not issubclass(cls, enum.Enum):
                return Opaque(n[1], repr(value)[:200], "type not allowed")
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
            import zoneinfo

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
            self._refs[slot] = Opaque(n[1], repr(fields)[:200], "type not allowed")
            return self._refs[slot]
        obj = cls.__new__(cls)
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
            exc.args = tuple(args)
            attrs = n[4]
            for i in range(0, len(attrs) - 1, 2):
                try:
                    setattr(exc, attrs[i], self._dec(attrs[i + 1]))
                except Exception:  # noqa: BLE001, S112 - read-only attributes are skipped
                    continue
        self._refs[slot] = exc
        return exc


def _hashable(value: Any) -> Any:
    try:
        hash(value)
    except TypeError:
        return Opaque(type_path(type(value)), "", "unhashable value used as a key")
    return value


def decode(node: Any, resolver: TypeResolver | None = None) -> Any:
    """Decode one node; see :class:`Decoder`."""
    return Decoder(resolver).decode(node)


# --------------------------------------------------------------------------- display


def _short(path: str) -> str:
    return path.rpartition(":")[2]


def render(node: Any, *, width: int = 300) -> str:
    """Render a node as Python-like text for people, without importing anything.

    Args:
        node: An encoded value (either profile), possibly malformed.
        width: Characters kept; longer output ends with an ellipsis.

    Returns:
        One line of printable text: control characters anywhere (values, type paths,
        field names) are escaped. Never raises.
    """
    try:
        text = _render(node, width)
    except RecursionError:
        text = "<nested too deeply>"
    except Exception:  # noqa: BLE001 - malformed nodes render as such
        text = "<malformed>"
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) <= width:
        return text
    return text[: width - 3] + "..." if width >= 3 else text[:width]


def _render(node: Any, width: int) -> str:  # noqa: C901 - mirrors the tag table
    if not isinstance(node, list):
        text = repr(node)
    elif not node or not isinstance(node[0], str):
        text = "<malformed>"
    else:
        tag, rest = node[0], node[1:]

        def seq(items: list[Any]) -> str:
            return ", ".join(render(x, width=width) for x in items)

        if tag == "l":
            text = f"[{seq(rest)}]"
        elif tag == "t":
            text = f"({seq(rest)}{',' if len(rest) == 1 else ''})"
        elif tag == "s":
            text = f"{{{seq(rest)}}}" if rest else "set()"
        elif tag == "f":
            text = f"frozenset({{{seq(rest)}}})"
        elif tag == "d":
            pairs = []
            for i in range(0, len(rest), 2):
                if isinstance(rest[i], list) and rest[i][:1] == ["+"]:
                    pairs.append(render(rest[i], width=width))
                    break
                pairs.append(f"{render(rest[i], width=width)}: {render(rest[i + 1] if i + 1 < len(rest) else None, width=width)}")
            text = "{" + ", ".join(pairs) + "}"
        elif tag == "+":
            text = f"... +{rest[0]} more"
        elif tag == "S":
            text = repr(rest[0]) + f"... ({rest[1]} chars)"
        elif tag == "B":
            text = repr(rest[0]) + f"... ({rest[1]} bytes)"
        elif tag == "i":
            text = str(rest[0])
        elif tag == "su":
            text = repr(bytes(rest[0]).decode("utf-8", "surrogatepass"))
        elif tag == "ba":
            text = f"bytearray({rest[0]!r})"
        elif tag == "@":
            text = f"<ref #{rest[0]}>"
        elif tag in ("dt", "date", "time", "td", "dec", "uuid", "c", "path", "range"):
            try:
                text = repr(Decoder().decode(node))
            except Exception:  # noqa: BLE001
                text = f"<bad {tag}>"
        elif tag == "type":
            text = f"<class {rest[0]}>"
        elif tag == "enum":
            text = f"<{_short(rest[0])}: {render(rest[1], width=width)}>"
        elif tag in ("dc", "obj"):
            fields = []
            for i in range(1, len(rest), 2):
                if isinstance(rest[i], list):
                    fields.append(render(rest[i], width=width))
                    break
                fields.append(f"{rest[i]}={render(rest[i + 1] if i + 1 < len(rest) else None, width=width)}")
            text = f"{_short(rest[0])}({', '.join(fields)})"
        elif tag == "nt":
            text = f"{_short(rest[0])}({seq(rest[1:])})"
        elif tag == "exc":
            text = f"{_short(rest[0])}({rest[2]!r})"
        elif tag == "?":
            text = f"<{_short(rest[0])}: {rest[2]}>"
        elif tag == "...":
            text = f"<{_short(rest[0])} ...>"
        else:
            text = f"<{tag}?>"
    return text

