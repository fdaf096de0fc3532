"""Reading a trace: steps, activations, the state at any step, and stable positions.

A trace is stored as sections of a ``.rsnap`` container (:class:`TraceSection`), either in a
trace file of its own (the cache :mod:`replay.replayer.traces` keeps) or inside a snapshot
(the production flight recorder). Nothing is read until asked for: reaching step N
decompresses the one chunk that holds it (:data:`~replay.replayer.tracer.CHUNK_STEPS` steps)
and replays at most that many steps from the chunk's keyframe, so any step is reached in a
bounded time whatever the trace's length. Layout: docs/time-travel.md.
"""

from __future__ import annotations

import bisect
import dataclasses
import os
import re
import sys
from array import array
from collections import OrderedDict
from typing import Any, Final

from replay.errors import CorruptSnapshotError, UsageError
from replay.replayer.tracer import CALL, EXCEPTION, KIND_NAMES, LINE, RETURN, TraceSection
from replay.snapshot.format import (
    DEFAULT_LIMITS,
    ReadLimits,
    Section,
    msgpack_error,
    unpack_one,
    unpacker,
)
from replay.snapshot.reader import SnapshotFile

_CHUNK_CACHE: Final = 16
_BLOCK_CACHE: Final = 8


@dataclasses.dataclass(frozen=True)
class CodeInfo:
    """A traced code object.

    Attributes:
        id: Code id in the trace.
        file: Path relative to the code root for application code, else the absolute path.
        qualname: Qualified name (``Order.total``, ``<module>``, ``main.<locals>.helper``).
        firstlineno: First line of the code.
        in_scope: True for application code (traced line by line); False for a library
            function called from it (a single call step and return step).
    """

    id: int
    file: str
    qualname: str
    firstlineno: int
    in_scope: bool


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a trace.

    Attributes:
        index: Step number, from 0.
        kind: ``call``, ``line``, ``return`` or ``exception``.
        code: The code running.
        line: Line number (for ``line``: the line about to run).
        frame: Serial of the activation (call) the step belongs to.
        depth: Traced activations below it on its thread's stack (0 for the entry point).
        thread: Thread index (0: the entry point's thread).
    """

    index: int
    kind: str
    code: CodeInfo
    line: int
    frame: int
    depth: int
    thread: int


@dataclasses.dataclass(frozen=True)
class ActivationInfo:
    """One call (or generator resume) in the trace.

    Attributes:
        serial: Activation number, from 0 in call order.
        code: The code called.
        parent: Serial of the caller's activation, or -1 for a root.
        call_step: Step of the call.
        end_step: Step of its return, or -1 when the trace ended first.
        depth: Depth of its steps.
        thread: Thread index.
        nth: It is the nth call of a function of this name by its parent (from 1).
    """

    serial: int
    code: CodeInfo
    parent: int
    call_step: int
    end_step: int
    depth: int
    thread: int
    nth: int


@dataclasses.dataclass
class FrameState:
    """One frame of the call stack at a step.

    Attributes:
        serial: Activation serial.
        code: Its code.
        line: Its current line.
        locals: Encoded locals (display codec nodes) by name; ``<return>`` and
            ``<exception>`` hold the value being returned or the exception being raised, at
            that step only.
        changed: Names whose value the step changed (set only on the step's own frame).
    """

    serial: int
    code: CodeInfo
    line: int
    locals: dict[str, Any]
    changed: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class State:
    """The program's state at a step: the step, the call stack of its thread, its position.

    Attributes:
        step: The step.
        frames: The call stack, outermost first; the last frame is the step's own.
        position: The stable position string (see :meth:`TraceFile.position`).
    """

    step: Step
    frames: list[FrameState]
    position: str

    @property
    def frame(self) -> FrameState:
        """The step's own frame (innermost)."""
        return self.frames[-1]


class _Chunk:
    """One decoded chunk: step columns, change columns, and its nodes and keyframe, both
    decoded only when asked for (most moves read columns only)."""

    __slots__ = ("first", "n", "kind", "code", "line", "frame", "depth", "thread", "c_step", "c_frame",
                 "c_name", "deleted", "_nodes", "_offsets", "_keyframe_raw", "_keyframe", "_path", "_limits")

    def __init__(self, first: int, n: int, cols: dict[str, array[int]], path: str, limits: ReadLimits):
        self.first = first
        self.n = n
        self.kind = cols["kind"]
        self.code = cols["code"]
        self.line = cols["line"]
        self.frame = cols["frame"]
        self.depth = cols["depth"]
        self.thread = cols["thread"]
        self.c_step: array[int] = array("I")  # step of each change, relative to first, ascending
        self.c_frame: array[int] = array("I")
        self.c_name: list[str] = []
        self.deleted: frozenset[int] = frozenset()
        self._nodes: bytes | list[Any] = b""  # packed list (format 2) or decoded (format 1)
        self._offsets: array[int] | None = None
        self._keyframe_raw: bytes | None = None
        self._keyframe: list[Any] | None = None
        self._path = path
        self._limits = limits

    def change_range(self, lo: int, hi: int) -> range:
        """Indexes of the changes made by the chunk's steps ``lo`` to ``hi`` (relative, inclusive)."""
        return range(bisect.bisect_left(self.c_step, lo), bisect.bisect_right(self.c_step, hi))

    def node(self, i: int) -> Any:
        """The node of change ``i`` (:data:`DELETED` for a deletion)."""
        if i in self.deleted:
            return DELETED
        if isinstance(self._nodes, list):
            return self._nodes[i]
        offsets = self._offsets
        if offsets is None:
            offsets = self._offsets = self._node_offsets()
        return unpack_one(self._path, memoryview(self._nodes)[offsets[i]:offsets[i + 1]], 0, "trace node",
                          self._limits)

    def nodes(self) -> list[Any]:
        """Every change's node, in change order (:data:`DELETED` for deletions)."""
        if isinstance(self._nodes, list):
            nodes = list(self._nodes)
        else:
            nodes = unpack_one(self._path, self._nodes, 0, "trace nodes", self._limits)
            if not isinstance(nodes, list) or len(nodes) != len(self.c_name):
                raise CorruptSnapshotError(self._path, "trace chunk nodes do not match its changes", offset=0)
        for i in self.deleted:
            nodes[i] = DELETED
        return nodes

    def _node_offsets(self) -> array[int]:
        raw = self._nodes
        assert isinstance(raw, bytes)
        u = unpacker(len(raw), self._limits)
        u.feed(raw)
        try:
            count = u.read_array_header()
            offsets = array("Q", [u.tell()])
            for _ in range(count):
                u.skip()
                offsets.append(u.tell())
        except Exception as exc:  # msgpack raises several unrelated types
            raise msgpack_error(self._path, "trace nodes", exc, 0) from exc
        if count != len(self.c_name) or offsets[-1] != len(raw):
            raise CorruptSnapshotError(self._path, "trace chunk nodes do not match its changes", offset=0)
        return offsets

    @property
    def keyframe(self) -> list[Any]:
        """The live frames at the chunk's first step: ``[serial, line, [name, node, ...],
        [kind << 24 | line, hits, ...]]`` each."""
        if self._keyframe is None:
            got = unpack_one(self._path, self._keyframe_raw or b"\x90", 0, "trace keyframe", self._limits)
            if not isinstance(got, list) or not all(isinstance(f, list) and len(f) == 4 for f in got):
                raise CorruptSnapshotError(self._path, "malformed trace keyframe", offset=0)
            self._keyframe = got
            self._keyframe_raw = None
        return self._keyframe


class _Block:
    __slots__ = ("first", "code", "parent", "call", "end", "depth", "thread", "nth", "parent_bytes")

    def __init__(self, first: int, cols: dict[str, array[int]]):
        self.first = first
        for name, col in cols.items():
            setattr(self, name, col)
        self.parent_bytes = cols["parent"].tobytes()  # native order: searched by _child


_POSITION: Final = re.compile(r"^(?P<strand>[0-9A-Za-z._-]+):(?P<path>[^@]+)@(?P<line>\d+)#(?P<hit>\d+)(?::(?P<kind>call|return|exception))?$")


class TraceFile:
    """Random access to a trace.

    Args:
        path: A trace file, or a snapshot holding a trace (flight recorder).
        limits: Bounds on everything read (traces may come with snapshots from strangers).

    Attributes:
        header: The trace header (``steps``, ``activations``, ``truncated``, ``tracer``, ...).
        steps: Number of steps.
        codes: Traced code objects by id.

    Raises:
        SnapshotError: the file is missing, corrupt, or holds no trace.
    """

    def __init__(self, path: str | os.PathLike[str], limits: ReadLimits = DEFAULT_LIMITS):
        self.path = os.fspath(path)
        self._file = SnapshotFile(self.path, limits)
        try:
            header = self._file.header
            # a trace file's own header, or the "trace" map of a snapshot that embeds one
            self.header = header if header.get("kind") == "trace" else dict(header.get("trace") or {})
            if self._file.count(TraceSection.STEPS) == 0 and self._file.count(TraceSection.CODES) == 0:
                raise CorruptSnapshotError(self.path, "the file holds no trace", offset=0)
            self._swap = self.header.get("byteorder", sys.byteorder) != sys.byteorder
            self.codes = [self._code(i, r) for i, r in enumerate(self._file.iter_records(TraceSection.CODES))]
            self._summaries = list(self._file.iter_records(TraceSection.CHUNKS))
            self._firsts = [int(s[0]) for s in self._summaries]
            self.steps = sum(int(s[1]) for s in self._summaries)
            self.threads = {int(t[0]): str(t[1]) for t in self._file.iter_records(TraceSection.THREADS)}
            self.links = sorted((int(a), int(b)) for a, b in self._file.iter_records(TraceSection.LINKS))
            self.activations = self._file.count(TraceSection.CALLS) and int(self.header.get("activations", 0))
        except (TypeError, ValueError, IndexError, KeyError) as exc:
            self._file.close()
            raise CorruptSnapshotError(self.path, f"malformed trace table: {exc}", offset=0) from exc
        except BaseException:
            self._file.close()
            raise
        self._chunks: OrderedDict[int, _Chunk] = OrderedDict()
        self._blocks: OrderedDict[int, _Block] = OrderedDict()
        self._sources: dict[str, str] | None = None

    def close(self) -> None:
        """Close the file."""
        self._file.close()

    def __enter__(self) -> TraceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.steps

    # ----------------------------------------------------------------- tables

    def _code(self, i: int, record: Any) -> CodeInfo:
        file, qualname, first, in_scope = record[0], record[1], record[2], record[3]
        if not (isinstance(file, str) and isinstance(qualname, str) and isinstance(first, int)):
            raise ValueError(f"code record {i}")
        return CodeInfo(i, file, qualname, first, bool(in_scope))

    def _array(self, typecode: str, raw: Any, n: int, what: str) -> array[int]:
        col = array(typecode)
        if not isinstance(raw, bytes) or len(raw) != n * col.itemsize:
            raise CorruptSnapshotError(self.path, f"trace column {what} has the wrong size", offset=0)
        col.frombytes(raw)
        if self._swap:
            col.byteswap()
        return col

    @property
    def summaries(self) -> list[list[Any]]:
        """Per chunk: ``[first step, steps, code ids, line keys (code << 24 | line),
        exceptions, names changed, min depth, max depth]``."""
        return self._summaries

    def chunk_index(self, n: int) -> int:
        """Index of the chunk holding step ``n``."""
        return bisect.bisect_right(self._firsts, n) - 1

    def chunk(self, k: int) -> _Chunk:
        """Chunk ``k`` decoded (cached)."""
        got = self._chunks.get(k)
        if got is not None:
            self._chunks.move_to_end(k)
            return got
        record = self._file.record(TraceSection.STEPS, k)
        try:
            first, n = int(record["first"]), int(record["n"])
            cols = {
                "kind": self._array("B", record["kind"], n, "kind"),
                "code": self._array("I", record["code"], n, "code"),
                "line": self._array("I", record["line"], n, "line"),
                "frame": self._array("I", record["frame"], n, "frame"),
                "depth": self._array("I", record["depth"], n, "depth"),
                "thread": self._array("I", record["thread"], n, "thread"),
            }
            got = _Chunk(first, n, cols, self.path, self._file.limits)
            if "c_step" in record:  # trace format 2
                got.c_step = self._array("I", record["c_step"], len(record["c_name"]), "c_step")
                got.c_frame = self._array("I", record["c_frame"], len(record["c_name"]), "c_frame")
                got.c_name = record["c_name"]
                got.deleted = frozenset(int(i) for i in record["c_deleted"])
                got._nodes = bytes(record["c_nodes"])
                got._keyframe_raw = bytes(record["keyframe"])
                if not all(isinstance(x, str) for x in got.c_name) or any(
                        a > b for a, b in zip(got.c_step, got.c_step[1:], strict=False)):
                    raise ValueError("change names or steps")
            else:  # trace format 1: a list of [step, serial, name(, node)]
                changes = sorted(record["changes"], key=lambda c: int(c[0]))
                got.c_step = array("I", [int(c[0]) - first for c in changes])
                got.c_frame = array("I", [int(c[1]) for c in changes])
                got.c_name = [str(c[2]) for c in changes]
                got.deleted = frozenset(i for i, c in enumerate(changes) if len(c) < 4)
                got._nodes = [c[3] if len(c) > 3 else None for c in changes]
                got._keyframe = list(record["keyframe"])
        except (TypeError, KeyError, ValueError, IndexError) as exc:
            raise CorruptSnapshotError(self.path, f"malformed trace chunk {k}: {exc}", offset=0) from exc
        self._chunks[k] = got
        if len(self._chunks) > _CHUNK_CACHE:
            self._chunks.popitem(last=False)
        return got

    def _block(self, b: int) -> _Block:
        got = self._blocks.get(b)
        if got is not None:
            return got
        record = self._file.record(TraceSection.CALLS, b)
        try:
            first = int(record["first"])
            n = len(record["code"]) // 4
            cols = {"code": self._array("I", record["code"], n, "code"), "parent": self._array("q", record["parent"], n, "parent"),
                    "call": self._array("q", record["call"], n, "call"), "end": self._array("q", record["end"], n, "end"),
                    "depth": self._array("I", record["depth"], n, "depth"), "thread": self._array("I", record["thread"], n, "thread"),
                    "nth": self._array("I", record["nth"], n, "nth")}
        except (TypeError, KeyError, ValueError) as exc:
            raise CorruptSnapshotError(self.path, f"malformed activation block {b}: {exc}", offset=0) from exc
        got = self._blocks[b] = _Block(first, cols)
        if len(self._blocks) > _BLOCK_CACHE:
            self._blocks.popitem(last=False)
        return got

    def activation(self, serial: int) -> ActivationInfo:
        """Activation ``serial``.

        Raises:
            IndexError: no such activation.
        """
        if not 0 <= serial < self.activations:
            raise IndexError(f"the trace has {self.activations} activations, asked for {serial}")
        block_size = int(self.header.get("call_block", 8192))
        b = self._block(serial // block_size)
        i = serial - b.first
        return ActivationInfo(serial, self.codes[b.code[i]], b.parent[i], b.call[i], b.end[i], b.depth[i],
                              b.thread[i], b.nth[i])

    def iter_activations(self, start: int = 0) -> Any:
        """Yield activations in serial order from ``start``."""
        for serial in range(max(start, 0), self.activations):
            yield self.activation(serial)

    def sources(self) -> dict[str, str]:
        """Source text of the traced application files, by the file names steps carry."""
        if self._sources is None:
            self._sources = {}
            for record in self._file.iter_records(TraceSection.SOURCES):
                if isinstance(record, list) and len(record) == 2 and all(isinstance(x, str) for x in record):
                    self._sources[record[0]] = record[1]
            if not self._sources:  # a snapshot's embedded trace: the sources are its code section
                for record in self._file.iter_records(Section.CODE):
                    if isinstance(record, dict) and isinstance(record.get("path"), str) \
                            and isinstance(record.get("source"), str):
                        self._sources[record["path"]] = record["source"]
        return self._sources

    def source_lines(self, file: str) -> list[str]:
        """Lines of a traced file (empty when its source was not stored)."""
        text = self.sources().get(file)
        return text.splitlines() if text is not None else []

    # ----------------------------------------------------------------- steps

    def _check(self, n: int) -> int:
        if n < 0:
            n += self.steps
        if not 0 <= n < self.steps:
            raise IndexError(f"the trace has {self.steps} steps (0..{self.steps - 1}), asked for step {n}")
        return n

    def step(self, n: int) -> Step:
        """Step ``n`` (negative counts from the end).

        Raises:
            IndexError: no such step.
        """
        n = self._check(n)
        ck = self.chunk(self.chunk_index(n))
        i = n - ck.first
        return Step(n, KIND_NAMES[ck.kind[i]], self.codes[ck.code[i]], ck.line[i], ck.frame[i], ck.depth[i], ck.thread[i])

    def iter_steps(self, start: int = 0, stop: int | None = None) -> Any:
        """Yield steps ``start`` to ``stop`` (exclusive) in order."""
        stop = self.steps if stop is None else min(stop, self.steps)
        n = max(start, 0)
        while n < stop:
            ck = self.chunk(self.chunk_index(n))
            end = min(ck.first + ck.n, stop)
            for j in range(n - ck.first, end - ck.first):
                yield Step(ck.first + j, KIND_NAMES[ck.kind[j]], self.codes[ck.code[j]], ck.line[j], ck.frame[j],
                           ck.depth[j], ck.thread[j])
            n = end

    def changes(self, n: int) -> list[tuple[str, Any]]:
        """What step ``n`` changed: ``(name, node)`` pairs; a deleted name has node ``DELETED``."""
        n = self._check(n)
        ck = self.chunk(self.chunk_index(n))
        return [(ck.c_name[c], ck.node(c)) for c in ck.change_range(n - ck.first, n - ck.first)]

    # ----------------------------------------------------------------- state

    def state(self, n: int) -> State:
        """The state at step ``n``: its thread's call stack with each frame's locals.

        The stack is the step's activation and its callers (the activation table). Each
        frame's locals are the chunk's keyframe plus the chunk's changes up to ``n``; only the
        nodes that end up shown are decoded. Cost: one chunk's columns, at most one pass over
        them, whatever the trace's length.
        """
        n = self._check(n)
        ck = self.chunk(self.chunk_index(n))
        i = n - ck.first
        own = ck.frame[i]
        path = self._path(own)
        live = {f[0]: f for f in ck.keyframe}
        frames: list[FrameState] = []
        by_serial: dict[int, FrameState] = {}
        for act in path:
            kf = live.get(act.serial)
            if kf is not None and act.call_step < ck.first:
                flat = kf[2]
                fs = FrameState(act.serial, act.code, int(kf[1]), dict(zip(flat[::2], flat[1::2], strict=False)))
            else:
                fs = FrameState(act.serial, act.code, act.code.firstlineno, {})
            frames.append(fs)
            by_serial[act.serial] = fs
        # each caller's line: its last step up to n (the call it is in)
        waiting = {a.serial for a in path[:-1] if a.call_step <= n}
        fr, ln = ck.frame, ck.line
        j = i - 1
        while waiting and j >= 0:
            s = fr[j]
            if s in waiting:
                by_serial[s].line = ln[j]
                waiting.discard(s)
            j -= 1
        frames[-1].line = ln[i]
        # each frame's locals: the last change of each name up to n (<return>, <exception>:
        # at their own step only)
        last: dict[tuple[int, str], int] = {}
        c_frame, c_name, c_step = ck.c_frame, ck.c_name, ck.c_step
        for c in range(ck.change_range(0, i).stop):
            s = c_frame[c]
            if s in by_serial:
                name = c_name[c]
                if name[:1] == "<" and c_step[c] != i:
                    continue
                last[s, name] = c
        for (s, name), c in last.items():
            node = ck.node(c)
            if node is DELETED:
                by_serial[s].locals.pop(name, None)
            else:
                by_serial[s].locals[name] = node
        frames[-1].changed = {c_name[c] for c in ck.change_range(i, i)}
        kinds = ck.kind
        key = kinds[i] << 24 | ln[i]
        hit = 0
        kf = live.get(own)
        if kf is not None:
            counts = kf[3]
            hit = next((int(v) for k, v in zip(counts[::2], counts[1::2], strict=False) if k == key), 0)
        for j in range(i + 1):
            if fr[j] == own and ln[j] == ln[i] and kinds[j] == kinds[i]:
                hit += 1
        step = Step(n, KIND_NAMES[kinds[i]], self.codes[ck.code[i]], ln[i], own, ck.depth[i], ck.thread[i])
        return State(step, frames, self._position(step, hit))

    # ----------------------------------------------------------------- positions

    def _path(self, serial: int) -> list[ActivationInfo]:
        path = []
        while serial >= 0:
            act = self.activation(serial)
            path.append(act)
            serial = act.parent
        path.reverse()
        return path

    def _position(self, step: Step, hit: int) -> str:
        strand = self.threads.get(step.thread, str(step.thread))
        parts = [f"{a.code.qualname}#{a.nth}" for a in self._path(step.frame)]
        suffix = "" if step.kind == "line" else f":{step.kind}"
        return f"{strand}:{'/'.join(parts)}@{step.line}#{hit}{suffix}"

    def position(self, n: int) -> str:
        """The stable position of step ``n``.

        ``STRAND:QUALNAME#N/QUALNAME#N/...@LINE#HIT[:KIND]``: the thread or task (strand id
        as on the tape), the call path from the entry point where ``#N`` says it is the Nth
        call of a function of that name from its caller, the line and the how-manyth time
        that line ran in that call; ``:call``, ``:return`` or ``:exception`` for those steps.
        A position names the same point in every replay of the same snapshot and code, so it
        can be pasted into a ticket and opened with :meth:`find_position`.
        """
        return self.state(n).position

    def find_position(self, text: str) -> int:
        """The step at a position string (see :meth:`position`).

        Raises:
            UsageError: the text is not a position, or no step of this trace is there.
        """
        m = _POSITION.match(text.strip())
        if m is None:
            raise UsageError(f"{text!r} is not a position (expected STRAND:FUNC#N/FUNC#N@LINE#HIT, for example 0:main#1@12#1)")
        strand, line, hit = m["strand"], int(m["line"]), int(m["hit"])
        kind = {"call": CALL, "return": RETURN, "exception": EXCEPTION}.get(m["kind"] or "", LINE)
        thread = next((t for t, s in self.threads.items() if s == strand), None)
        if thread is None:
            raise UsageError(f"position {text}: no thread or task {strand} in this trace")
        parent = -1
        for part in m["path"].split("/"):
            name, _, nth_text = part.rpartition("#")
            if not name or not nth_text.isdigit():
                raise UsageError(f"position {text}: {part!r} is not FUNC#N")
            parent = self._child(parent, thread, name, int(nth_text), text)
        return self._hit(parent, kind << 24 | line, hit, text)

    def _hits_before(self, k: int, serial: int, key: int) -> int:
        """How many times activation ``serial`` made step ``key`` before chunk ``k`` (keyframe)."""
        for frame in self.chunk(k).keyframe:
            if frame[0] == serial:
                counts = frame[3]
                return next((int(v) for c, v in zip(counts[::2], counts[1::2], strict=False) if c == key), 0)
        return 0

    def _hit(self, serial: int, key: int, hit: int, text: str) -> int:
        """The step where activation ``serial`` makes step ``key`` (kind << 24 | line) for
        the ``hit``-th time. Binary search over the chunks' keyframe counts, then one chunk's
        columns: O(log chunks) whatever the call's length."""
        act = self.activation(serial)
        end = act.end_step if act.end_step >= 0 else self.steps - 1
        lo, hi = self.chunk_index(act.call_step), self.chunk_index(end)
        while lo < hi:  # the last chunk that starts with fewer than `hit` such steps done
            mid = (lo + hi + 1) // 2
            if self._hits_before(mid, serial, key) < hit:
                lo = mid
            else:
                hi = mid - 1
        seen = self._hits_before(lo, serial, key) if self.chunk(lo).first > act.call_step else 0
        kind, line = key >> 24, key & 0xFFFFFF
        for k in range(lo, self.chunk_index(end) + 1):
            ck = self.chunk(k)
            fr, ln, kinds = ck.frame, ck.line, ck.kind
            for j in range(max(act.call_step - ck.first, 0), min(ck.n, end + 1 - ck.first)):
                if fr[j] == serial and ln[j] == line and kinds[j] == kind:
                    seen += 1
                    if seen == hit:
                        return ck.first + j
        raise UsageError(f"position {text}: line {line} ran {seen} time(s) in that call, not {hit}")

    def _child(self, parent: int, thread: int, name: str, nth: int, text: str) -> int:
        """The ``nth`` call of a function named ``name`` made by activation ``parent`` (-1: a
        root) on ``thread``. Searches the activation table's parent column for ``parent``
        (bytes search, block by block), from the parent on, up to its return."""
        codes = {c.id for c in self.codes if c.qualname == name}
        end_step = self.activation(parent).end_step if parent >= 0 else -1
        start = parent + 1 if parent >= 0 else 0
        block_size = int(self.header.get("call_block", 8192))
        pattern = array("q", [parent]).tobytes()
        width = len(pattern)
        for b in range(start // block_size, -(-self.activations // block_size)) if codes else ():
            blk = self._block(b)
            if end_step >= 0 and blk.call[0] > end_step:
                break
            raw = blk.parent_bytes
            at = raw.find(pattern, max(start - blk.first, 0) * width)
            while at >= 0:
                if at % width:
                    at = raw.find(pattern, at + 1)
                    continue
                i = at // width
                if end_step >= 0 and blk.call[i] > end_step:
                    break
                if blk.nth[i] == nth and blk.thread[i] == thread and blk.code[i] in codes:
                    return blk.first + i
                at = raw.find(pattern, at + width)
        where = "at the top" if parent < 0 else f"in {self.activation(parent).code.qualname}"
        raise UsageError(f"position {text}: no call #{nth} of {name} {where}")

    # ----------------------------------------------------------------- links

    def interactions_of(self, n: int) -> list[int]:
        """Tape indexes of the interactions step ``n`` made."""
        lo = bisect.bisect_left(self.links, (n, -1))
        out = []
        for step, index in self.links[lo:]:
            if step != n:
                break
            out.append(index)
        return out

    def step_of_interaction(self, index: int) -> int | None:
        """The step that made tape interaction ``index``, or None if this replay never asked for it."""
        for step, tape_index in self.links:
            if tape_index == index:
                return step
        return None


class _Deleted:
    def __repr__(self) -> str:
        return "DELETED"


DELETED: Final = _Deleted()
"""Node of a name a step deleted (see :meth:`TraceFile.changes`)."""
