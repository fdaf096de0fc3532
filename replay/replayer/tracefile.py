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
from replay.snapshot.format import DEFAULT_LIMITS, ReadLimits, Section
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
    __slots__ = ("first", "n", "kind", "code", "line", "frame", "depth", "thread", "changes", "keyframe")

    def __init__(self, first: int, n: int, cols: dict[str, array[int]], changes: dict[int, list[list[Any]]],
                 keyframe: list[Any]):
        self.first = first
        self.n = n
        self.kind = cols["kind"]
        self.code = cols["code"]
        self.line = cols["line"]
        self.frame = cols["frame"]
        self.depth = cols["depth"]
        self.thread = cols["thread"]
        self.changes = changes
        self.keyframe = keyframe


class _Block:
    __slots__ = ("first", "code", "parent", "call", "end", "depth", "thread", "nth")

    def __init__(self, first: int, cols: dict[str, array[int]]):
        self.first = first
        for name, col in cols.items():
            setattr(self, name, col)


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
            changes: dict[int, list[list[Any]]] = {}
            for change in record["changes"]:
                changes.setdefault(int(change[0]), []).append(change)
            keyframe = list(record["keyframe"])
        except (TypeError, KeyError, ValueError) as exc:
            raise CorruptSnapshotError(self.path, f"malformed trace chunk {k}: {exc}", offset=0) from exc
        got = _Chunk(first, n, cols, changes, keyframe)
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
        return [(c[2], c[3] if len(c) > 3 else DELETED) for c in ck.changes.get(n, ())]

    # ----------------------------------------------------------------- state

    def state(self, n: int) -> State:
        """The state at step ``n``: its thread's call stack with each frame's locals.

        Cost: decodes at most one chunk and walks at most its steps.
        """
        n = self._check(n)
        ck = self.chunk(self.chunk_index(n))
        i = n - ck.first
        thread = ck.thread[i]
        frames: list[FrameState] = []
        hits: dict[int, dict[int, int]] = {}
        for serial, line, flat, counts in ck.keyframe:
            act = self.activation(serial)
            if act.thread != thread:
                continue
            frames.append(FrameState(serial, act.code, line, dict(zip(flat[::2], flat[1::2], strict=False))))
            hits[serial] = dict(zip(counts[::2], counts[1::2], strict=False))
        kinds, codes, lines, serials, depths, threads = ck.kind, ck.code, ck.line, ck.frame, ck.depth, ck.thread
        changes = ck.changes
        for j in range(i + 1):
            if threads[j] != thread:
                continue
            d, s = depths[j], serials[j]
            if len(frames) > d and frames[d].serial == s:
                del frames[d + 1:]
                fs = frames[d]
            else:
                del frames[d:]
                fs = FrameState(s, self.codes[codes[j]], lines[j], {})
                frames.append(fs)
                hits[s] = {}
            fs.line = lines[j]
            key = kinds[j] << 24 | lines[j]
            h = hits.setdefault(s, {})
            h[key] = h.get(key, 0) + 1
            for change in changes.get(ck.first + j, ()):
                name = change[2]
                if name[:1] == "<" and j != i:  # <return>, <exception>: shown at their own step only
                    continue
                if len(change) > 3:
                    fs.locals[name] = change[3]
                else:
                    fs.locals.pop(name, None)
        own = frames[-1] if frames else None
        if own is None or own.serial != serials[i]:  # a malformed keyframe: show the step's frame alone
            own = FrameState(serials[i], self.codes[codes[i]], lines[i], {})
            frames = [own]
        own.changed = {c[2] for c in changes.get(n, ())}
        step = Step(n, KIND_NAMES[kinds[i]], self.codes[codes[i]], lines[i], serials[i], depths[i], thread)
        position = self._position(step, frames, hits.get(serials[i], {}).get(kinds[i] << 24 | lines[i], 1))
        return State(step, frames, position)

    # ----------------------------------------------------------------- positions

    def _path(self, serial: int) -> list[ActivationInfo]:
        path = []
        while serial >= 0:
            act = self.activation(serial)
            path.append(act)
            serial = act.parent
        path.reverse()
        return path

    def _position(self, step: Step, frames: list[FrameState], hit: int) -> str:
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
        act = self.activation(parent)
        end = act.end_step if act.end_step >= 0 else self.steps - 1
        seen = 0
        n = act.call_step
        while n <= end:
            ck = self.chunk(self.chunk_index(n))
            for j in range(n - ck.first, min(ck.n, end + 1 - ck.first)):
                if ck.frame[j] == parent and ck.line[j] == line and ck.kind[j] == kind:
                    seen += 1
                    if seen == hit:
                        return ck.first + j
            n = ck.first + ck.n
        raise UsageError(f"position {text}: line {line} ran {seen} time(s) in that call, not {hit}")

    def _child(self, parent: int, thread: int, name: str, nth: int, text: str) -> int:
        start = parent + 1 if parent >= 0 else 0
        end_step = self.activation(parent).end_step if parent >= 0 else -1
        for act in self.iter_activations(start):
            if parent >= 0 and end_step >= 0 and act.call_step > end_step:
                break
            if act.parent == parent and act.thread == thread and act.code.qualname == name and act.nth == nth:
                return act.serial
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
