"""One trace read into flat columns, the input of the alignment (:mod:`replay.diff.align`).

A :class:`TraceColumns` holds, for every step, the key the alignment compares (kind,
function and the source text of the line) and a signature of the values the step changed,
and for every activation its call and end steps, its parent and its children. The columns
are ``array`` objects filled chunk by chunk with C-speed operations (about 40 bytes per
step); the node values are only hashed, never kept.

The tokens of an activation's body (its own steps, and one token per call it made) are built
when the alignment asks for them. On a trace with one thread they are ranges of steps: the
body of an activation is its step range minus its children's ranges (checked once against
the frame column: the own-step count of every activation). Otherwise, or when that check
fails, one pass over the frame column sorts the steps into activations.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Callable
from typing import Any

from replay.replayer.tracefile import TraceFile
from replay.replayer.tracer import CALL

Check = Callable[[int], None]
"""Called with the number of steps just read (progress and cancellation)."""


class KeyTable:
    """Interns alignment keys shared by both traces of a diff, so keys compare as ints.

    A step's key is ``(kind, function qualname, source text of its line)`` (the line number
    when the source is not stored; no text for a call step); a call made by an activation is
    the key ``("call", qualname)``. Comparing the text rather than the number lets a fix that
    moves lines still align with the original.

    The int of a key is its hash, not a serial number, so that it does not depend on which
    trace was read first (the alignment orders the two sides by these ints to be symmetric).
    Two different keys with the same 64-bit hash would align as equal (about 2**-64 a pair).
    """

    def __init__(self) -> None:
        self._ids: dict[Any, int] = {}

    def intern(self, key: Any) -> int:
        """The int for ``key``."""
        got = self._ids.get(key)
        if got is None:
            got = self._ids[key] = hash(key)
        return got


class TraceColumns:
    """The columns of one trace that the alignment reads.

    Args:
        trace: An open trace.
        keys: The key table shared with the other trace.
        check: Called after each chunk with its step count (progress, cancellation).

    Attributes:
        steps: Number of steps.
        key: Per step, its interned alignment key (``array('q')``).
        sig: Per step, 0 when it changed nothing, else a hash of its ``(name, node)``
            changes (``array('q')``); equal signatures mean equal changes (up to a 2**-64
            collision).
        acts: Number of activations in the activation table.
        act_key: Per activation, the interned key of the call that started it.
        spans_ok: True when every activation's steps and its descendants' form one
            contiguous range (one thread): then :meth:`span` holds and whole subtrees can be
            compared as slices.

    Raises:
        SnapshotError: a chunk or the activation table is corrupt.
    """

    def __init__(self, trace: TraceFile, keys: KeyTable, check: Check | None = None):
        self.trace = trace
        self.steps = n_steps = trace.steps
        self._keys = keys
        self._sources: dict[int, list[str]] = {}
        self.key = array("q")
        self.sig = array("q", bytes(8 * n_steps))
        frame = self._frame = array("I")
        thread = array("I")
        local: dict[tuple[int, int, int], int] = {}  # (code, line, kind) -> key id
        for k in range(len(trace.summaries)):
            ck = trace.chunk(k)
            triples = list(zip(ck.code, ck.line, ck.kind, strict=True))
            for t in set(triples).difference(local):
                local[t] = keys.intern(self._step_key(*t))
            self.key.extend(map(local.__getitem__, triples))
            frame.extend(ck.frame)
            thread.extend(ck.thread)
            if ck.c_name:
                self._sign(ck)
            if check is not None:
                check(ck.n)
        self._read_activations()
        self.spans_ok = bool(n_steps) and thread.count(thread[0]) == n_steps and self._check_spans()
        self._own: list[list[int]] | None = None
        self._roots: list[int] | None = None

    # ----------------------------------------------------------------- reading

    def _step_key(self, code: int, line: int, kind: int) -> Any:
        info = self.trace.codes[code]
        if kind == CALL:
            return (kind, info.qualname)
        lines = self._sources.get(code)
        if lines is None:
            lines = self._sources[code] = self.trace.source_lines(info.file) if info.in_scope else []
        text = lines[line - 1].strip() if 0 < line <= len(lines) else line
        return (kind, info.qualname, text)

    def _sign(self, ck: Any) -> None:
        """Fill ``sig`` for the chunk's steps that changed something."""
        hashes = list(map(hash, zip(ck.c_name, map(repr, ck.nodes()), strict=True)))
        sig, base, prev = self.sig, ck.first, -1
        for rel, h in zip(ck.c_step, hashes, strict=True):
            i = base + rel
            sig[i] = hash((sig[i], h)) if rel == prev else (h or 1)
            prev = rel

    def _read_activations(self) -> None:
        """The activation table's columns (``call``, ``end``, ``parent``, ``code``) and the
        children of each activation, in call order."""
        trace, n = self.trace, self.trace.activations
        self.acts = n
        code, parent, call, end = array("I"), array("q"), array("q"), array("q")
        block_size = int(trace.header.get("call_block", 8192))
        for b in range(-(-n // block_size)):
            blk: Any = trace._block(b)  # whole columns: one ActivationInfo per call would cost 10x
            code.extend(blk.code)
            parent.extend(blk.parent)
            call.extend(blk.call)
            end.extend(blk.end)
        del code[n:], parent[n:], call[n:], end[n:]
        self.act_call, self.act_end, self.act_parent = call, end, parent
        codes = self.trace.codes
        keyed = {c: self._keys.intern(("call", codes[c].qualname)) for c in set(code)}
        self.act_key = array("q", map(keyed.__getitem__, code))
        self.children: list[list[int]] = [[] for _ in range(n)]
        self.root_acts: list[int] = []
        for s, p in enumerate(parent):
            (self.children[p] if 0 <= p < n else self.root_acts).append(s)

    def span(self, s: int) -> tuple[int, int]:
        """Steps ``[start, stop)`` of activation ``s`` and its descendants (``s == -1``: the
        whole trace). Exact only when ``spans_ok``."""
        if s < 0:
            return 0, self.steps
        end = self.act_end[s]
        return self.act_call[s], (end + 1 if end >= 0 else self.steps)

    def _check_spans(self) -> bool:
        """True when every activation's own steps are its span minus its children's spans."""
        counts = Counter(self._frame)
        stop_prev = 0
        for s in self.root_acts:
            start, stop = self.span(s)
            if start != stop_prev:
                return False
            stop_prev = stop
        if stop_prev != self.steps:
            return False
        for s in range(self.acts):
            start, stop = self.span(s)
            own = stop - start
            for c in self.children[s]:
                c_start, c_stop = self.span(c)
                if not start <= c_start <= c_stop <= stop:
                    return False
                own -= c_stop - c_start
            if own != counts.get(s, 0) or (stop > start and self._frame[start] != s):
                return False
        return True

    # ----------------------------------------------------------------- tokens

    def tokens(self, s: int) -> list[int]:
        """The body of activation ``s`` (``-1``: the top level): a step number (>= 0) for
        each of its own steps and ``~child`` (< 0) for each call it made, in step order."""
        if not self.spans_ok:
            self._scan()
            assert self._own is not None and self._roots is not None
            return self._roots if s < 0 else self._own[s]
        out: list[int] = []
        pos, stop = self.span(s)
        for c in self.children[s] if s >= 0 else self.root_acts:
            c_start, c_stop = self.span(c)
            out.extend(range(pos, c_start))
            out.append(~c)
            pos = c_stop
        out.extend(range(pos, stop))
        return out

    def _scan(self) -> None:
        """Sort every step into its activation's body (threads, or a table that does not nest)."""
        if self._own is not None:
            return
        n_acts = self.acts
        own: list[list[int]] = [[] for _ in range(n_acts)]
        roots: list[int] = []
        seen = bytearray(n_acts)
        parent = self.act_parent
        for n, s in enumerate(self._frame):
            if s < n_acts:
                if not seen[s]:  # the activation's first step: a token in its parent
                    seen[s] = 1
                    p = parent[s]
                    (own[p] if 0 <= p < n_acts else roots).append(~s)
                own[s].append(n)
            else:
                roots.append(n)
        self._own, self._roots = own, roots
