"""Regenerating the trace: a tracer that records every step of the application's own code.

Production records only the tape; replay re-executes the entry point and this tracer writes
what ran: *steps* (call, line, return, exception), the locals each step changed (display
profile, :mod:`replay.snapshot.codec`), the activations (one per call or generator resume)
and links from steps to the tape interactions they made. The result is a trace file read by
:class:`replay.replayer.tracefile.TraceFile` (layout: docs/time-travel.md).

Speed comes from not looking at what cannot have changed. Each code object is analysed
once (:func:`replay.replayer.scope.line_effects`): for each line, which local names its bytecode stores, and
whether it calls, yields or stores into an object. At a step only the names the previous
line of that frame could have changed are compared (by identity), and objects that a call or
an item/attribute store could have mutated in place are re-encoded and compared by node.
A line that stores nothing costs one dict lookup.

Backends: ``sys.settrace`` (every version; the only one on 3.11) and ``sys.monitoring``
(3.12+, :mod:`replay.replayer.monitoring`). Both feed the same :class:`TraceRecorder`. With
the C extension (``replay.replayer._fastline``) the settrace backend's hot path is C end to
end: ``GlobalTracer`` (installed with ``PyEval_SetTrace``), ``LocalTracer``, ``Steps``;
``REPLAY_PURE_TRACER=1`` runs the same logic in Python (byte-identical traces).

Memory: steps are buffered per chunk (:data:`CHUNK_STEPS`) and written compressed as each
chunk fills; what stays in memory is the live frames and 40 bytes per activation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import decimal
import dis
import enum
import functools
import gc
import os
import pathlib
import sys
import threading
import uuid
from array import array
from collections import Counter
from collections.abc import Callable
from types import CodeType, FrameType, MemberDescriptorType, WrapperDescriptorType
from typing import Any, Final

import msgpack

from replay.capture.boundary import PACKAGE_DIR, STRAND, suspended
from replay.replayer.scope import LineEffect, Scope, line_effects
from replay.snapshot.encoding import (
    _DATE,
    _DATETIME,
    _HEAPTYPE,
    DISPLAY,
    Encoder,
    _is_plain_class,
    _slot_names,
)
from replay.snapshot.format import Section
from replay.snapshot.writer import SnapshotWriter

CALL: Final = 0
LINE: Final = 1
RETURN: Final = 2
EXCEPTION: Final = 3
KIND_NAMES: Final = ("call", "line", "return", "exception")

CHUNK_STEPS: Final = 4096
"""Steps per chunk record: the unit of reading (reaching a step decodes one chunk)."""
CALL_BLOCK: Final = 8192
"""Activations per activation-table record."""
DEFAULT_MAX_STEPS: Final = 20_000_000
"""Steps after which tracing stops (the trace says it was cut)."""

TRACE_FORMAT: Final = 2
"""Chunk record layout: 1 held ``changes`` as a list of tuples and an inline ``keyframe``; 2
holds the changes as columns and packs the nodes and the keyframe separately (read lazily)."""
RETURN_NAME: Final = "<return>"
EXCEPTION_NAME: Final = "<exception>"


class TraceSection:
    """Section ids of trace data (format 1.3; a trace file or a snapshot's trace)."""

    STEPS: Final = Section.TRACE_STEPS  # one record per chunk of steps
    CHUNKS: Final = Section.TRACE_CHUNKS  # one summary per chunk, read whole at open
    CALLS: Final = Section.TRACE_CALLS  # activation table, CALL_BLOCK activations per record
    CODES: Final = Section.TRACE_CODES  # one record per code id
    LINKS: Final = Section.TRACE_LINKS  # [step, tape index] per interaction served
    SOURCES: Final = Section.TRACE_SOURCES  # [file, source] of traced application files
    THREADS: Final = Section.TRACE_THREADS  # [thread index, strand id]


_IMMUTABLE: Final = frozenset({int, float, bool, type(None), str, bytes, complex, range, type})
_MISSING: Final = object()


class _Code:
    __slots__ = ("cid", "in_scope", "effects", "qualname", "module_level", "lib")

    def __init__(self, cid: int, in_scope: bool, effects: dict[int, LineEffect], qualname: str,
                 module_level: bool, lib: bool):
        self.cid = cid
        self.in_scope = in_scope
        self.effects = effects
        self.qualname = qualname
        self.module_level = module_level
        self.lib = lib


class Activation:
    """One live call (or generator resume) being traced.

    Attributes:
        serial: Activation number, from 0 in call order.
        code: The code's :class:`_Code`.
        frame: The live frame.
        depth: Traced activations below it on its thread's stack.
        thread: Thread index.
        nodes: Current encoded locals, by name.
        values: The objects last seen, by name (identity comparison).
        fps: ``(fingerprint, node)`` by name for mutable locals: the :func:`fingerprint` of the
            value taken when ``node`` was made. While ``nodes[name]`` is that very node and
            the value's fingerprint is unchanged, re-encoding is skipped (a writer of
            ``nodes`` that keeps no fingerprints only leaves a stale pair, never a wrong one).
        kids: Calls made so far, by qualname (for the ``#n`` of positions).
        hits: Steps so far by ``kind << 24 | line`` (up to the last written chunk).
        line: The line of the frame's last step.
    """

    __slots__ = ("serial", "code", "frame", "depth", "thread", "nodes", "values", "fps", "kids", "hits", "line")

    def __init__(self, serial: int, code: _Code, frame: FrameType, depth: int, thread: int):
        self.serial = serial
        self.code = code
        self.frame = frame
        self.depth = depth
        self.thread = thread
        self.nodes: dict[str, Any] = {}
        self.values: dict[str, Any] = {}
        self.fps: dict[str, tuple[bytes, Any]] = {}
        self.kids: dict[str, int] = {}
        self.hits: dict[int, int] = {}
        self.line = 0


class _Thread:
    __slots__ = ("index", "stack", "roots", "strand")

    def __init__(self, index: int, strand: str):
        self.index = index
        self.stack: list[Activation] = []
        self.roots: dict[str, int] = {}
        self.strand = strand  # STRAND of its root calls (its record may add "-tN" to it)


def display_py(value: Any) -> Any:
    """Encode one local for display; never raises (a failure becomes a placeholder node). The
    pure-Python :data:`display` (and the fallback of the C one)."""
    cls = type(value)
    if cls is int:
        if -(2**63) <= value < 2**64:
            return value
    elif value is None or cls is float or cls is bool or cls is str and len(value) <= DISPLAY.max_str and value.isascii():
        return value
    try:
        return Encoder(DISPLAY).encode(value)
    except BaseException as exc:  # noqa: BLE001 - a hostile value must not stop the replay
        return ["?", f"{cls.__module__}:{cls.__qualname__}", "<unreadable>", type(exc).__name__]


def _fast(name: str, fallback: Any = None) -> Any:
    """``replay.replayer._fastline.<name>`` (the optional C extension), or ``fallback`` when it
    is not built or ``REPLAY_PURE_TRACER=1`` (tests and benchmarks compare both paths)."""
    if os.environ.get("REPLAY_PURE_TRACER") == "1":
        return fallback
    try:
        from replay.replayer import _fastline
    except ImportError:
        return fallback
    return getattr(_fastline, name, fallback)


_display_fingerprint: Any = _fast("display_fingerprint")
# What display_fingerprint may know of a type's instances (kinds below), by type; and the types
# it may not even name (their metaclass rewrites __qualname__ or __module__). The table keeps
# the types alive (the C walk hashes their addresses); both are cleared when full (an address
# then only stands for a type path, whose __qualname__ the walk hashes too).
_TYPE_KINDS: dict[type, Any] = {}
_UNFIT_TYPES: set[type] = set()
_MAX_TYPES: Final = 4096
_Display: Any = _fast("Display")
display: Any = display_py if _Display is None else _Display(display_py, _TYPE_KINDS)
"""``display(value)``: the node of one local (:func:`display_py`); with the C extension,
``_fastline.Display`` builds the nodes of leaves, built-in containers and the objects whose
types :data:`_TYPE_KINDS` describes in C, byte for byte as display_py does, and hands every
other value to display_py (tests/unit/test_display_fast.py compares them)."""
_MAX_CLASSIFY: Final = 32  # new types classified per fingerprint() call
# Kinds (``_fastline.KIND_*``): what the encoder makes of every instance of a type.
_KIND_OTHER: Final = 0  # no fingerprint (the type may still be named at the depth cut)
_KIND_PLAIN: Final = 1  # ["obj", path, name, value, ...] from __dict__ alone
_KIND_OPAQUE: Final = 2  # a placeholder that names the type and nothing else
_KIND_NAMEDTUPLE: Final = 3  # ["nt", path, item, ...]
_KIND_CLASS: Final = 4  # (a metaclass) its instances are classes: ["type", path]
_KIND_SLOTTED: Final = 5  # (_KIND_SLOTTED, has_dict, ((name, member), ...)): "obj" with slots
_KIND_DATACLASS: Final = 6  # (_KIND_DATACLASS, ((name, member | None), ...)): ["dc", ...]
# Classes Encoder._enc_other encodes by content before namedtuples, dataclasses and objects.
_BY_CONTENT: Final = (enum.Enum, _DATETIME, _DATE, datetime.time, datetime.timedelta, decimal.Decimal,
                      uuid.UUID, complex, pathlib.PurePath, range, BaseException)


def fingerprint(value: Any) -> bytes | None:
    """16 bytes that change whenever :func:`display` would give ``value`` another node, or None
    (re-encode): no C extension, ``REPLAY_PURE_TRACER=1``, or a value graph holding something
    the fingerprint does not know (see ``_fastline.display_fingerprint``). Never raises but
    MemoryError; runs no code of the value's classes (classifying a new class reads it)."""
    walk = _display_fingerprint
    if walk is None:
        return None
    fp = walk(value, _TYPE_KINDS, True)
    if fp is None or fp.__class__ is bytes:
        return fp  # type: ignore[no-any-return]
    for _ in range(_MAX_CLASSIFY):  # a type met for the first time: classify it, walk again
        if not _classify(fp):
            return None
        fp = walk(value, _TYPE_KINDS, True)
        if fp is None or fp.__class__ is bytes:
            return fp  # type: ignore[no-any-return]
    return None  # more new types than that: the next calls go on classifying them


_fingerprint: Final = fingerprint  # the one LocalTracer may walk by itself (tests replace the name)


def _classify(cls: type) -> bool:
    """Enter a type the fingerprint met in :data:`_TYPE_KINDS`; False if it is unfit."""
    if cls in _UNFIT_TYPES:
        return False
    if len(_TYPE_KINDS) + len(_UNFIT_TYPES) >= _MAX_TYPES:
        _TYPE_KINDS.clear()
        _UNFIT_TYPES.clear()
    try:
        kind = _type_kind(cls) if _named_as_type(cls) else None
    except Exception:  # noqa: BLE001 - a hostile class: no fingerprint for its instances
        kind = None
    if kind is None:
        _UNFIT_TYPES.add(cls)
        return False
    _TYPE_KINDS[cls] = kind
    return True


def _named_as_type(cls: type) -> bool:
    """True if ``type_path(cls)`` is what the C walk hashes: a static type (its names never
    change), or a heap type whose ``__qualname__`` and ``__module__`` no metaclass rewrites."""
    if not cls.__flags__ & _HEAPTYPE:
        return True
    metaclass: type = type(cls)
    for meta in metaclass.__mro__:
        if meta is type or meta is object:
            continue
        attrs = vars(meta)
        module = attrs.get("__module__")
        if "__qualname__" in attrs or (module is not None and hasattr(type(module), "__set__")):
            return False
    return type(vars(cls).get("__module__")) is str


def _type_kind(cls: type) -> Any:
    """What ``Encoder._enc_other`` makes of every instance of ``cls``, in its order of checks
    (a ``_KIND_*``). Sound only when reading an instance as its kind implies runs no code: the
    metaclass reads attributes as ``type`` does and no class of the MRO defines ``__class__``
    (``isinstance`` reads it) or ``__getattribute__``; the C walk also checks the instance's
    attribute lookup each time (classes can change)."""
    meta = type(cls)
    if meta.__getattribute__ is not type.__getattribute__ or hasattr(meta, "__getattr__"):
        return _KIND_OTHER
    mro = cls.__mro__[:-1]
    for klass in mro:
        attrs = vars(klass)
        if "__class__" in attrs or ("__getattribute__" in attrs and type(attrs["__getattribute__"]) is not WrapperDescriptorType):
            return _KIND_OTHER
    if issubclass(cls, type):
        return _KIND_CLASS
    if issubclass(cls, _BY_CONTENT):
        return _KIND_OTHER
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        plain_tuple = cls.__iter__ is tuple.__iter__ and cls.__len__ is tuple.__len__
        return _KIND_NAMEDTUPLE if plain_tuple else _KIND_OTHER
    if dataclasses.is_dataclass(cls):
        return _dataclass_kind(cls)
    if issubclass(cls, int | float | str | bytes) or not _is_plain_class(cls) or cls.__module__ == "builtins":
        return _KIND_OPAQUE  # "subclass of a built-in value type", "... implemented in C", ...
    descriptor = _lookup(cls, "__dict__")  # what getattr(v, "__dict__", None) runs
    has_dict = descriptor is not None
    if has_dict and not (cls.__dictoffset__ and _generic_dict(descriptor)):
        return _KIND_OTHER
    slots = _slot_names(cls)
    if not slots:
        return _KIND_PLAIN if has_dict else _KIND_OPAQUE  # "no fields to record"
    members = tuple((name, _lookup(cls, name)) for name in slots)
    if any(type(member) is not MemberDescriptorType for _, member in members):
        return _KIND_OTHER
    return (_KIND_SLOTTED, has_dict, members)


def _dataclass_kind(cls: type) -> Any:
    """``(_KIND_DATACLASS, ((name, member | None), ...))``: where ``getattr(v, name)`` reads each
    field of the dataclass ``cls`` (a slot, else the instance dict), or :data:`_KIND_OTHER`
    when a field is a property or another data descriptor."""
    readers: list[tuple[str, Any]] = []
    for field in dataclasses.fields(cls):
        found = _lookup(cls, field.name)
        if type(found) is MemberDescriptorType:
            readers.append((field.name, found))
        elif cls.__dictoffset__ and not (hasattr(type(found), "__set__") or hasattr(type(found), "__delete__")):
            readers.append((field.name, None))
        else:
            return _KIND_OTHER
    return (_KIND_DATACLASS, tuple(readers))


def _lookup(cls: type, name: str) -> Any:
    """The class attribute ``name`` as attribute lookup finds it on the MRO (None if absent)."""
    return next((vars(klass)[name] for klass in cls.__mro__ if name in vars(klass)), None)


def _generic_dict(descriptor: Any) -> bool:
    from replay.replayer._fastline import generic_dict

    return bool(generic_dict(descriptor))


def _keep_fingerprint(fps: dict[str, tuple[bytes, Any]], name: str, fp: bytes | None, node: Any) -> None:
    """``fps[name] = (fp, node)``: ``fp`` taken before ``node`` was made; not for the node of a
    value display could not read (its fallback placeholder: a later try may read it)."""
    if fp is not None and not _unreadable(node):
        fps[name] = (fp, node)
    else:
        fps.pop(name, None)


def _unreadable(node: Any) -> bool:
    """True for display's fallback node (a value it could not read)."""
    return node.__class__ is list and len(node) == 4 and node[0] == "?" and node[2] == "<unreadable>"


# Nodes display() made lately, by fingerprint: an argument passed down a chain of calls, or a
# local bound again to an object it held before, is encoded once (equal fingerprints, equal
# nodes; nodes are never changed in place). The oldest goes first when it is full; all go when
# ``display`` is not the function that made them (tests and benchmarks replace it).
_NODES: dict[bytes, Any] = {}
_MAX_NODES: Final = 64
_nodes_display: Any = None


def _node_of(value: Any, fp: bytes | None) -> Any:
    """``display(value)``, or the node it made for the fingerprint ``fp`` (taken just now)."""
    global _nodes_display
    if fp is None:
        return display(value)
    if display.__class__ is _Display:  # the C display keeps its own table
        return display.node_of(value, fp)
    if _nodes_display is not display:
        _NODES.clear()
        _nodes_display = display
    node = _NODES.get(fp)
    if node is None:
        node = display(value)
        if not _unreadable(node):
            if len(_NODES) >= _MAX_NODES:
                del _NODES[next(iter(_NODES))]
            _NODES[fp] = node
    return node


def _chunk_columns_py(steps: list[tuple[int, int, int, int, int, int]], exception_kind: int) -> tuple[Any, ...]:
    """What :meth:`TraceRecorder.flush` needs from a chunk's steps, in one tuple (the pure-Python
    twin of ``_fastline.chunk_columns``, which documents the shape)."""
    kinds, cids, lines, serials, depths, threads = zip(*steps, strict=False)
    hits: list[int] = []
    for (serial, kind, line), n in Counter(zip(serials, kinds, lines, strict=False)).items():
        hits += (serial, kind << 24 | line, n)
    return (array("B", kinds).tobytes(), array("I", cids).tobytes(), array("I", lines).tobytes(),
            array("I", serials).tobytes(), array("I", depths).tobytes(), array("I", threads).tobytes(),
            hits, sorted(set(cids)), sorted(c << 24 | ln for c, ln in set(zip(cids, lines, strict=True))),
            kinds.count(exception_kind), min(depths), max(depths))


def _change_columns_py(changes: list[tuple[Any, ...]], first: int) -> tuple[bytes, bytes, list[str], list[Any], list[int]]:
    """A chunk's changes as columns, ordered by step (stable): ``(steps relative to first, u32
    bytes; serials, u32 bytes; names; nodes, None for a deletion; indexes of deletions)``.

    Changes arrive in step order except when another thread appended while a value was being
    encoded; the sort puts them back.
    """
    changes = list(changes)  # one read: other threads may append while this runs
    steps = [c[0] - first for c in changes]
    if any(a > b for a, b in zip(steps, steps[1:], strict=False)):
        order = sorted(range(len(changes)), key=steps.__getitem__)
        changes = [changes[i] for i in order]
        steps = [steps[i] for i in order]
    deleted = [i for i, c in enumerate(changes) if len(c) < 4]
    return (array("I", steps).tobytes(), array("I", [c[1] for c in changes]).tobytes(),
            [c[2] for c in changes], [c[3] if len(c) > 3 else None for c in changes], deleted)


_change_columns: Any = _fast("change_columns", _change_columns_py)
_snapshot_locals_c: Any = _fast("snapshot_locals")


def _add_hits_py(hits: list[int], live: dict[int, Activation]) -> None:
    """Add a chunk's hit counts (``[frame, key, count, ...]``) to the live activations' ``hits``."""
    it = iter(hits)
    for serial, key, n in zip(it, it, it, strict=True):
        act = live.get(serial)
        if act is not None:
            act.hits[key] = act.hits.get(key, 0) + n


_add_hits: Any = _fast("add_hits", _add_hits_py)


_chunk_columns: Any = _fast("chunk_columns", _chunk_columns_py)
_pack_nodes: Any = _fast("pack_nodes")  # msgpack of a chunk's nodes, in C
_Steps: Any = _fast("Steps")  # TraceRecorder.steps: a list of tuples without it
_Changes: Any = _fast("Changes")  # TraceRecorder.changes: a list of tuples without it


class _LockGate:
    """TraceRecorder.gate without the C extension: ``_fastline.EventGate``'s protocol on a
    reentrant lock. One thread at a time between reading a step's number and appending the
    step (a pure-Python event can lose the GIL anywhere in between; see gate.c for why the
    wait is bounded)."""

    PATIENCE_S: Final = 0.5

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.timeouts = 0
        self.waits = 0

    def enter(self) -> bool:
        if self._lock.acquire(blocking=False):
            return True
        self.waits += 1
        if self._lock.acquire(timeout=self.PATIENCE_S):
            return True
        self.timeouts += 1
        return False

    def leave(self, entered: bool) -> None:
        if entered:
            self._lock.release()


_EventGate: Any = _fast("EventGate", _LockGate)  # TraceRecorder.gate


def _gated(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` run inside the recorder's event gate (nested calls of one thread pass)."""
    @functools.wraps(method)
    def gated(self: TraceRecorder, *args: Any) -> Any:
        entered = self.gate.enter()
        try:
            return method(self, *args)
        finally:
            self.gate.leave(entered)

    return gated


_RETURN_OPS: Final = frozenset(dis.opmap[n] for n in ("RETURN_VALUE", "RETURN_CONST", "YIELD_VALUE") if n in dis.opmap)


_RESUME: Final = dis.opmap["RESUME"]
_YIELD_VALUE: Final = dis.opmap["YIELD_VALUE"]


def _returning(frame: FrameType | None) -> bool:
    """True if the frame is returning a value (or yielding), False if an exception unwinds it.

    At a yield, ``f_lasti`` is the YIELD_VALUE up to 3.12 and the RESUME after it from 3.13.
    """
    if frame is None:
        return False
    try:
        code, lasti = frame.f_code.co_code, frame.f_lasti
        op = code[lasti]
        return op in _RETURN_OPS or (op == _RESUME and lasti >= 2 and code[lasti - 2] == _YIELD_VALUE)
    except (IndexError, AttributeError):
        return True


def _snapshot_arguments() -> tuple[Any, ...]:
    """``_fastline.snapshot_locals``' arguments after ``module_level``, with three before it:
    ``(display, immutable, shown, kinds, fingerprint, node_of)`` as this module's hooks are now."""
    fp = fingerprint if _display_fingerprint is not None else None
    return (display, _IMMUTABLE, _shown, _TYPE_KINDS if fp is _fingerprint else None, fp,
            display if display.__class__ is _Display else _node_of)


_Returning: Any = _fast("Returning")
_RETURNING: Final = _returning  # (tests may replace _returning: then LocalTracer calls theirs)
_returning_c: Any = None if _Returning is None else _Returning(_RETURN_OPS, _RESUME, _YIELD_VALUE)
"""The C twin of :func:`_returning` (LocalTracer calls it without a Python call)."""


def _shown(name: str, value: Any, module_level: bool) -> bool:
    if (name[:2] == "__" and name[-2:] == "__") or name[:1] == ".":  # dunders, a comprehension's .0
        return False
    if module_level:  # a module's "locals" are its globals: show data, not imports and defs
        return not (callable(value) or type(value).__name__ == "module")
    return True


class TraceRecorder:
    """Collect steps from a backend and write the trace file.

    Args:
        path: Trace file to write (atomic: nothing under this name until :meth:`close`).
        scope: What to trace line by line.
        header: Extra header keys (snapshot digest, code identity, ...).
        max_steps: Steps after which tracing stops and the trace is marked cut.
    """

    def __init__(self, path: str, scope: Scope, header: dict[str, Any] | None = None,
                 max_steps: int = DEFAULT_MAX_STEPS):
        self.scope = scope
        self.max_steps = max_steps
        self.truncated = False
        self.stopped = False
        # zstd level 1: traces are written while the program runs; 3 saves ~10% for twice the
        # time. Frames are compressed on the writer's thread, beside the traced program.
        self._writer = SnapshotWriter(path, {"kind": "trace", "trace_format": TRACE_FORMAT, **(header or {})},
                                      level=1, background=True)
        self._pack = msgpack.Packer(use_bin_type=True).pack  # nodes and keyframes: read lazily
        # (kind, code id, line, activation, depth, thread) per step of the chunk being filled:
        # with the C extension a _fastline.Steps (the same to Python code, u32 rows in C)
        self.steps: Any = [] if _Steps is None else _Steps()
        # (step, activation, name, node) per changed local, (step, activation, name) per deleted
        # one: with the C extension a _fastline.Changes (the same to Python code, no tuples in C)
        self.changes: Any = [] if _Changes is None else _Changes()
        # one thread at a time inside an event: a step's changes are appended under its number
        # before the step itself, and another thread's step must not take that number meanwhile
        self.gate: Any = _EventGate()
        self.base = 0  # step number of steps[0]
        self.codes: dict[CodeType, _Code] = {}
        self._code_records: list[list[Any]] = []
        self._threads: dict[int, _Thread] = {}
        self._thread_records: list[list[Any]] = []
        self.live: dict[int, Activation] = {}
        self.links: list[tuple[int, int]] = []
        self._next_keyframe: list[Any] = []
        self._act_code = array("I")
        self._act_parent = array("q")
        self._act_call = array("q")
        self._act_end = array("q")
        self._act_depth = array("I")
        self._act_thread = array("I")
        self._act_nth = array("I")
        self._lock = threading.Lock()
        self._files: dict[str, str] = {}
        self.header_backend = ""
        self.error: BaseException | None = None
        self.gc_thread = 0  # threading.get_ident() of the thread running the collector, or 0

    @property
    def in_gc(self) -> bool:
        """Is this thread running the cyclic collector (see :meth:`watch_gc`)?"""
        return self.gc_thread == threading.get_ident()

    def _gc_start(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.gc_thread = threading.get_ident()

    def _gc_stop(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "stop":
            self.gc_thread = 0

    def watch_gc(self, on: bool = True) -> None:
        """Know when the cyclic collector runs (backends call this at start and stop).

        Code the collector runs (weakref callbacks, ``__del__``, generator ``close``, other
        ``gc.callbacks``) runs when allocation counts say so, and the tracer's own
        allocations move that moment: backends do not trace calls made while :attr:`in_gc`,
        so traces do not depend on it. The flag is set by the first callback and cleared by
        the last, so other ``gc.callbacks`` run inside it. It names the collecting thread:
        other threads run while the collector's Python code gives up the GIL, and their
        calls are the program's own (a process-wide flag lost them at random).
        """
        start, stop = self._gc_start, self._gc_stop  # bound once: creating them can collect
        if on and start not in gc.callbacks:
            # stop first: a collection between the two calls must never see the start
            # callback without the stop one (the flag would stay set and tracing stay off)
            gc.callbacks.append(stop)
            gc.callbacks.insert(0, start)
        elif not on:
            for callback in (start, stop):
                with contextlib.suppress(ValueError):
                    gc.callbacks.remove(callback)
            self.gc_thread = 0

    # ------------------------------------------------------------- registration

    def code(self, code: CodeType) -> _Code:
        """The :class:`_Code` of a code object, analysed on first sight."""
        info = self.codes.get(code)
        if info is not None:
            return info
        with self._lock, suspended():  # path checks must not reach the tape (os.getcwd)
            info = self.codes.get(code)
            if info is not None:
                return info
            filename = code.co_filename
            in_scope = self.scope.contains(filename)
            lib = not in_scope and not os.path.abspath(filename).startswith(PACKAGE_DIR)
            effects = line_effects(code) if in_scope else {}
            qualname = getattr(code, "co_qualname", code.co_name)
            info = _Code(-1, in_scope, effects, qualname, code.co_name == "<module>", lib)
            if in_scope:
                self._files.setdefault(self._number(info, code), filename)
            self.codes[code] = info
            return info

    def _number(self, info: _Code, code: CodeType) -> str:
        """Give a code object its id and record (codes are numbered when a step first uses them)."""
        shown = self.scope.relative(code.co_filename) if info.in_scope else code.co_filename
        info.cid = len(self._code_records)
        self._code_records.append([shown, info.qualname, code.co_firstlineno, info.in_scope, code.co_name])
        return shown

    def thread(self) -> _Thread:
        """This thread's state (created on its first traced call)."""
        ident = threading.get_ident()
        ts = self._threads.get(ident)
        if ts is None:
            with self._lock:
                strand = STRAND.get()
                ts = self._threads[ident] = _Thread(len(self._thread_records), strand)
                self._thread_records.append([ts.index, self._strand_name(strand, ts.index)])
        return ts

    def _strand_name(self, strand: str, index: int) -> str:
        """The strand name of trace thread ``index``: threads outside a replay session share
        the strand "0"; a suffix keeps positions unique."""
        if any(r[1] == strand and r[0] != index for r in self._thread_records):
            return f"{strand}-t{index}"
        return strand

    def _root_strand(self, ts: _Thread) -> None:
        """A root call starts on ``ts``: its strand names the thread. A thread's first call
        (``threading``'s bootstrap) comes before the replay sets its strand; and an OS thread
        that ran another strand's calls before (a reused ident, a pool worker) becomes a new
        trace thread, so that positions name the strand that ran."""
        strand = STRAND.get()
        if strand == ts.strand:
            return
        with self._lock:
            if ts.roots:
                ts.index = len(self._thread_records)
                ts.roots = {}
                self._thread_records.append([ts.index, self._strand_name(strand, ts.index)])
            else:
                self._thread_records[ts.index][1] = self._strand_name(strand, ts.index)
            ts.strand = strand

    # ------------------------------------------------------------- events

    @_gated
    def push(self, ts: _Thread, info: _Code, frame: FrameType) -> Activation:
        """Start an activation and record its call step with the frame's arguments."""
        stack = ts.stack
        depth = len(stack)
        serial = len(self._act_code)
        if stack:
            parent = stack[-1]
            kids = parent.kids
            parent_serial = parent.serial
        else:
            if STRAND.get() != ts.strand:
                self._root_strand(ts)
            kids = ts.roots
            parent_serial = -1
        nth = kids.get(info.qualname, 0) + 1
        kids[info.qualname] = nth
        if info.cid < 0:  # a library function's first direct call from application code
            with self._lock:
                if info.cid < 0:
                    self._number(info, frame.f_code)
        act = Activation(serial, info, frame, depth, ts.index)
        n = self.base + len(self.steps)
        self._act_code.append(info.cid)
        self._act_parent.append(parent_serial)
        self._act_call.append(n)
        self._act_end.append(-1)
        self._act_depth.append(depth)
        self._act_thread.append(ts.index)
        self._act_nth.append(nth)
        stack.append(act)
        self.live[serial] = act
        line = frame.f_lineno
        act.line = line
        self._snapshot_locals(act, frame, n)
        self.steps.append((CALL, info.cid, line, serial, depth, ts.index))
        return act

    def _snapshot_locals(self, act: Activation, frame: FrameType, n: int) -> None:
        module_level = act.code.module_level
        if _snapshot_locals_c is not None:  # the same loop in C
            show, immutable, shown, kinds, fp, node_of = _snapshot_arguments()
            _snapshot_locals_c(act, frame, n, self.changes, show, immutable, shown, module_level, kinds, fp, node_of)
            return
        values, nodes, fps, changes = act.values, act.nodes, act.fps, self.changes
        try:
            items = list(frame.f_locals.items())
        except Exception:  # noqa: BLE001 - a broken frame proxy must not stop the replay
            return
        for name, value in items:
            if _shown(name, value, module_level):
                values[name] = value
                fp = None if type(value) in _IMMUTABLE else fingerprint(value)
                node = nodes[name] = _node_of(value, fp)
                if fp is not None:
                    _keep_fingerprint(fps, name, fp, node)
                changes.append((n, act.serial, name, node))

    def diff(self, act: Activation, frame: FrameType, effect: LineEffect, n: int) -> None:
        """Record the locals that the line ``effect`` describes changed, at step ``n``."""
        check, reencode, full, _ = effect
        try:
            loc = frame.f_locals
        except Exception:  # noqa: BLE001
            return
        values, nodes, fps = act.values, act.nodes, act.fps
        get = values.get
        module_level = act.code.module_level
        if full:
            check = tuple(loc)
            gone = [k for k in values if k not in loc]
            reencode = check
        else:
            gone = [k for k in check if k in values and k not in loc]
        for name in reencode:
            value = loc.get(name, _MISSING)
            if value is _MISSING or type(value) in _IMMUTABLE or value is not get(name, _MISSING):
                continue
            fp = fingerprint(value)
            kept = fps.get(name)
            if fp is not None and kept is not None and kept[0] == fp and kept[1] is nodes.get(name, _MISSING):
                continue  # unchanged since its node was made: the node still holds
            node = _node_of(value, fp)
            old = nodes.get(name)
            if node != old:
                nodes[name] = old = node
                self.changes.append((n, act.serial, name, node))
            _keep_fingerprint(fps, name, fp, old)
        for name in check:
            value = loc.get(name, _MISSING)
            if value is _MISSING or value is get(name, _MISSING):
                continue
            if module_level and not _shown(name, value, True):
                continue
            values[name] = value
            mutable = type(value) not in _IMMUTABLE
            fp = fingerprint(value) if mutable else None
            node = nodes[name] = _node_of(value, fp)
            self.changes.append((n, act.serial, name, node))
            if mutable:
                _keep_fingerprint(fps, name, fp, node)
        for name in gone:
            del values[name]
            nodes.pop(name, None)
            fps.pop(name, None)
            self.changes.append((n, act.serial, name))

    @_gated
    def pop(self, ts: _Thread, act: Activation, kind: int, line: int, value: Any) -> None:
        """Record a return (``value`` the returned object, or None after an exception)."""
        n = self.base + len(self.steps)
        if act.code.in_scope and act.line in act.code.effects:
            self.diff(act, act.frame, act.code.effects[act.line], n)
        if kind == RETURN and _returning(act.frame):
            self.changes.append((n, act.serial, RETURN_NAME, display(value)))
        self.steps.append((kind, act.code.cid, line, act.serial, act.depth, ts.index))
        self._act_end[act.serial] = n
        stack = ts.stack
        if stack and stack[-1] is act:
            stack.pop()
        elif act in stack:
            del stack[stack.index(act):]
        self.live.pop(act.serial, None)
        act.frame = None  # type: ignore[assignment]
        if len(self.steps) >= CHUNK_STEPS:
            self.flush()

    @_gated
    def exception(self, ts: _Thread, act: Activation, line: int, exc: BaseException) -> None:
        """Record an exception raised in (or propagating through) the activation's frame."""
        n = self.base + len(self.steps)
        if act.line in act.code.effects:
            self.diff(act, act.frame, act.code.effects[act.line], n)
        self.changes.append((n, act.serial, EXCEPTION_NAME, display(exc)))
        self.steps.append((EXCEPTION, act.code.cid, line, act.serial, act.depth, ts.index))
        act.line = line
        if len(self.steps) >= CHUNK_STEPS:
            self.flush()

    def link(self, tape_index: int) -> None:
        """The interaction ``tape_index`` was served during this thread's current step (none
        once tracing stopped: the step that made it is not in the trace)."""
        if self.stopped:
            return
        ts = self._threads.get(threading.get_ident())
        n = self.base + len(self.steps) - 1
        if ts is not None:
            steps = self.steps
            for i in range(len(steps) - 1, max(-1, len(steps) - 64), -1):
                if steps[i][5] == ts.index:
                    n = self.base + i
                    break
        self.links.append((max(n, 0), tape_index))

    # ------------------------------------------------------------- chunks

    @_gated
    def flush(self) -> None:
        """Write the buffered steps as one chunk (with the keyframe of the live frames)."""
        steps = self.steps
        cut = self.base + len(steps) > self.max_steps
        if cut:  # the budget ends inside this chunk: keep exactly max_steps steps
            keep = max(self.max_steps - self.base, 0)
            del steps[keep:]
            kept = [c for c in self.changes if c[0] < self.max_steps]
            self.changes.clear()
            for change in kept:
                self.changes.append(change)
        if not steps:
            if cut:
                self.truncated = True
                self.stop_all()
            return
        first = self.base
        # Other threads go on tracing while this one flushes (the writer's compression lets
        # them run): the chunk is what the columns read, and only that is removed after.
        (kind, code, line, frame, depth, thread, hits, code_ids, code_lines, exceptions, low,
         high) = _chunk_columns(steps, EXCEPTION)
        count = len(kind)  # one byte per step
        c_step, c_frame, c_name, c_nodes, c_deleted = _change_columns(self.changes, first)
        n_changes = len(c_name)
        record = {
            "first": first, "n": count, "kind": kind, "code": code, "line": line, "frame": frame,
            "depth": depth, "thread": thread, "c_step": c_step, "c_frame": c_frame, "c_name": c_name,
            "c_deleted": c_deleted, "c_nodes": self._packed(c_nodes), "keyframe": self._packed(self._next_keyframe),
        }
        _add_hits(hits, self.live)
        # code_lines: every (code, line) pair stepped: a superset of the line steps' keys
        summary = [first, count, code_ids, code_lines, exceptions, sorted(set(c_name)), low, high]
        self._writer.append(TraceSection.STEPS, record)
        self._writer.append(TraceSection.CHUNKS, summary)
        self.base += count
        del steps[:count]
        del self.changes[:n_changes]
        self._next_keyframe = self._keyframe()
        if cut or self.base >= self.max_steps:
            self.truncated = True
            self.stop_all()

    def _packed(self, nodes: Any) -> bytes:
        """``self._pack(nodes)``; with the C extension ``_fastline.pack_nodes`` (the same bytes,
        each node shared by several changes packed once; msgpack for what it does not pack)."""
        if _pack_nodes is None:
            return self._pack(nodes)  # type: ignore[no-any-return]
        return _pack_nodes(nodes, self._pack)  # type: ignore[no-any-return]

    def _keyframe(self) -> list[Any]:
        """The live frames now (the start of the next chunk): ``[serial, line, [name, node, ...],
        [kind << 24 | line, hits, ...]]`` each, outermost first per thread."""
        frames = []
        for ts in self._threads.values():
            for act in ts.stack:
                flat: list[Any] = []
                for name, node in act.nodes.items():
                    flat.append(name)
                    flat.append(node)
                hits: list[int] = []
                for key, count in act.hits.items():
                    hits.append(key)
                    hits.append(count)
                frames.append([act.serial, act.line, flat, hits])
        return frames

    def failed(self, exc: BaseException) -> None:
        """A bug of the tracer: stop tracing (the program goes on), keep the first error for
        the trace header (``tracer_error``)."""
        if self.error is None:
            self.error = exc
        self.stop_all()

    def stop_all(self) -> None:
        """Stop tracing every frame (the step budget is spent, or the replay ended)."""
        self.stopped = True
        for ts in self._threads.values():
            for act in ts.stack:
                frame = act.frame
                if frame is not None:
                    with contextlib.suppress(Exception):
                        frame.f_trace = None

    # ------------------------------------------------------------- finish

    def close(self, header_update: dict[str, Any] | None = None, *, sources: bool = True) -> str:
        """Write everything still buffered and the tables; return the trace file's path.

        Args:
            header_update: Extra header keys known at the end.
            sources: Store the traced application files' source (a snapshot that embeds the
                trace already has them in its code section).
        """
        # Capture the live frames' keyframe before the final chunk (the reader uses the
        # chunk records only); activations still live end "at the end of the trace".
        self.flush()
        w = self._writer
        w.write_section(TraceSection.CODES, self._code_records)
        w.write_section(TraceSection.THREADS, self._thread_records)
        w.write_section(TraceSection.LINKS, [list(x) for x in self.links if x[0] < self.base])
        total = len(self._act_code)
        while total and self._act_call[total - 1] >= self.base:  # calls in the steps a cut dropped
            total -= 1
        for serial in range(total):  # calls still running when the trace ended (or was cut)
            if self._act_end[serial] >= self.base:
                self._act_end[serial] = -1
        for start in range(0, total, CALL_BLOCK):
            end = min(start + CALL_BLOCK, total)
            w.append(TraceSection.CALLS, {
                "first": start,
                "code": self._act_code[start:end].tobytes(),
                "parent": self._act_parent[start:end].tobytes(),
                "call": self._act_call[start:end].tobytes(),
                "end": self._act_end[start:end].tobytes(),
                "depth": self._act_depth[start:end].tobytes(),
                "thread": self._act_thread[start:end].tobytes(),
                "nth": self._act_nth[start:end].tobytes(),
            })
        for shown, filename in (self._files.items() if sources else ()):
            try:
                with open(filename, encoding="utf-8", errors="replace") as fh:
                    w.append(TraceSection.SOURCES, [shown, fh.read()])
            except OSError:
                continue
        update = {"steps": self.base, "activations": total, "truncated": self.truncated,
                  "tracer": self.header_backend,
                  "tracer_error": f"{type(self.error).__name__}: {self.error}" if self.error else None,
                  "byteorder": sys.byteorder, "call_block": CALL_BLOCK}
        update.update(header_update or {})
        return w.close(update)

    def abort(self) -> None:
        """Drop the trace file being written."""
        self._writer.abort()


class SettraceTracer:
    """The ``sys.settrace`` backend (all Python versions).

    Lines of in-scope code are traced; a library function called directly from traced code
    is one call step and one return step (its lines are not traced); code the application
    does not call directly is not traced at all.
    """

    name = "settrace"

    def __init__(self, recorder: TraceRecorder):
        self.rec = recorder

    def start(self) -> None:
        """Trace this thread from its next call, and threads started from now on.

        With the C extension the global trace function is ``_fastline.GlobalTracer``: it
        installs itself with ``PyEval_SetTrace`` at each thread's first call event, so no
        event goes through ``sys.settrace``'s trampoline or Python code on the common path
        (the same steps; tests/unit/test_fastline.py compares the trace files)."""
        self.rec.watch_gc()
        trace = self._c_global() or self._global
        threading.settrace(trace)
        sys.settrace(trace)

    def _c_global(self) -> Any:
        """The C global tracer, or None: no extension, ``REPLAY_PURE_TRACER=1``, or a test
        that replaced :func:`line_tracer` or ``_LocalTracer`` (the Python path then runs)."""
        if _GlobalTracer is None or _LocalTracer is None or globals()["line_tracer"] is not _LINE_TRACER:
            return None
        rec = self.rec
        # pushes in C too (making each Activation as its __init__ does, these fields in this
        # order), unless a test replaced push or the locals snapshot (then rec.push)
        pushes = (type(rec).push is TraceRecorder.push and "push" not in vars(rec) and _snapshot_locals_c is not None
                  and type(rec)._snapshot_locals is TraceRecorder._snapshot_locals
                  and Activation.__slots__ == ("serial", "code", "frame", "depth", "thread", "nodes", "values", "fps",
                                               "kids", "hits", "line"))
        return _GlobalTracer(rec, *_local_arguments(), activation=Activation if pushes else None,
                             snapshot=_snapshot_arguments() if pushes else None)

    def stop(self) -> None:
        """Stop tracing (frames still live stop being traced too)."""
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]
        self.rec.watch_gc(False)
        self.rec.stop_all()

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        rec = self.rec
        try:
            if rec.stopped or rec.in_gc:
                if frame.f_trace is not None:  # a resumed generator: see below
                    frame.f_trace = None
                return None
            info = rec.codes.get(frame.f_code) or rec.code(frame.f_code)
            ts = rec.thread()
            if not info.in_scope:
                stack = ts.stack
                if not info.lib or not stack or frame.f_back is not stack[-1].frame or not stack[-1].code.in_scope:
                    # Returning None leaves f_trace as it was: a generator resumed here would
                    # still report to the tracer of its last traced activation (a second return).
                    if frame.f_trace is not None:
                        frame.f_trace = None
                    return None
                act = rec.push(ts, info, frame)
                frame.f_trace_lines = False
                return self._library(ts, act)
            return line_tracer(rec, ts, rec.push(ts, info, frame))
        except Exception as exc:  # noqa: BLE001 - a tracer bug must not reach the program
            rec.failed(exc)
            return None

    def _library(self, ts: _Thread, act: Activation) -> Any:
        rec = self.rec

        def library(frame: FrameType, event: str, arg: Any) -> Any:
            if event == "return":
                rec.pop(ts, act, RETURN, frame.f_lineno, arg)
                return None
            return library

        return library


_LocalTracer: Any = _fast("LocalTracer")  # the C twin of line_tracer's closure
_GlobalTracer: Any = _fast("GlobalTracer")  # the C twin of SettraceTracer._global


def _local_arguments() -> tuple[Any, ...]:
    """What ``_LocalTracer`` is made with after ``(rec, ts, act)`` (and ``_GlobalTracer``
    after ``rec``): ``(display, immutable, chunk_steps, fingerprint, node_of, kinds,
    returning)``, as this module's hooks are now (tests and benchmarks replace them)."""
    returning = _returning_c if _returning_c is not None and _returning is _RETURNING else _returning
    if _display_fingerprint is None:
        return (display, _IMMUTABLE, CHUNK_STEPS, None, None, None, returning)
    # with the C display, its own node table stands for _node_of's
    node_of = display if display.__class__ is _Display else _node_of
    return (display, _IMMUTABLE, CHUNK_STEPS, fingerprint, node_of,
            _TYPE_KINDS if fingerprint is _fingerprint else None, returning)


def line_tracer(rec: TraceRecorder, ts: _Thread, act: Activation) -> Any:
    """The local trace function of one traced frame (``frame.f_trace``): records its line,
    return and exception steps. The monitoring backend calls it for LINE events too. This
    is the hot path: the common case is inlined (and done in C when the extension is built)."""
    if _LocalTracer is not None:
        return _LocalTracer(rec, ts, act, *_local_arguments())
    steps = rec.steps
    append = steps.append
    effects = act.code.effects
    diff = rec.diff
    cid, serial, depth, thread = act.code.cid, act.serial, act.depth, ts.index
    values, nodes, changes = act.values, act.nodes, rec.changes
    values_get = values.get  # ``values`` itself doubles as the "missing" sentinel
    immutable = _IMMUTABLE
    gate = rec.gate

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        entered = gate.enter()
        try:
            if event == "line":
                n = len(steps)
                effect = effects.get(act.line)
                line = act.line = frame.f_lineno
                if effect is not None:
                    if effect[3]:  # the common case, inlined
                        loc = frame.f_locals
                        for name in effect[1]:  # same object, maybe mutated in place
                            value = loc.get(name, values)
                            if value is values or type(value) in immutable or value is not values_get(name, values):
                                continue  # unbound (``values`` is the sentinel), immutable or rebound
                            node = display(value)
                            if node != nodes.get(name):
                                nodes[name] = node
                                changes.append((rec.base + n, serial, name, node))
                        for name in effect[0]:  # rebound (or deleted)
                            value = loc.get(name, values)
                            if value is values_get(name, values):
                                continue
                            if value is values:
                                del values[name]
                                nodes.pop(name, None)
                                changes.append((rec.base + n, serial, name))
                            else:
                                values[name] = value
                                cls = type(value)
                                node = nodes[name] = value if cls is float or (cls is int and -0x8000000000000000 <= value <= 0xFFFFFFFFFFFFFFFF) else display(value)
                                changes.append((rec.base + n, serial, name, node))
                    else:
                        diff(act, frame, effect, rec.base + n)
                append((LINE, cid, line, serial, depth, thread))
                if n >= CHUNK_STEPS - 1:
                    rec.flush()
                    if rec.stopped:  # the step budget is spent
                        return None
                return local
            if event == "return":
                rec.pop(ts, act, RETURN, frame.f_lineno, arg)
                return None
            if event == "exception":
                rec.exception(ts, act, frame.f_lineno, arg[1])
            return local
        except Exception as exc:  # noqa: BLE001 - a tracer bug must not reach the program
            rec.failed(exc)
            return None
        finally:
            gate.leave(entered)

    return local


_LINE_TRACER: Final = line_tracer  # SettraceTracer._c_global: has a test replaced it?


class NoopTracer:
    """A ``sys.settrace`` tracer that records nothing: the reference cost of tracing at all
    (benchmarks compare the real tracer with it on the same program)."""

    name = "noop"

    def __init__(self, recorder: TraceRecorder):
        self.rec = recorder

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        return self._trace

    def start(self) -> None:
        """Start on this thread and threads started from now on."""
        threading.settrace(self._trace)
        sys.settrace(self._trace)

    def stop(self) -> None:
        """Stop."""
        sys.settrace(None)
        threading.settrace(None)  # type: ignore[arg-type]


def make_tracer(recorder: TraceRecorder, backend: str = "auto") -> Any:
    """The tracing backend: ``settrace``, ``monitoring`` (3.12+), ``auto`` (monitoring where it
    exists) or ``noop`` (traces every line but records nothing: a reference for benchmarks)."""
    if backend == "noop":
        return NoopTracer(recorder)
    if backend == "auto":
        backend = "monitoring" if hasattr(sys, "monitoring") else "settrace"
    if backend == "monitoring":
        from replay.replayer.monitoring import MonitoringTracer

        return MonitoringTracer(recorder)
    if backend != "settrace":
        raise ValueError(f"unknown tracer backend {backend!r}")
    return SettraceTracer(recorder)


__all__ = [
    "CALL", "CHUNK_STEPS", "EXCEPTION", "KIND_NAMES", "LINE", "RETURN", "Scope", "SettraceTracer",
    "TraceRecorder", "TraceSection", "line_effects", "make_tracer",
]
