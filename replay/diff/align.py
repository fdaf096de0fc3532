"""Aligning two traces by call tree: :func:`diff_traces` and the :class:`TraceDiff` it returns.

Two traces of the same snapshot (the recorded code and a candidate, or two recordings) are
aligned call by call, not step by step, so that one extra call in the candidate is one
block of ``only_b`` rows and everything after it lines up again:

1. The top level (activations without a parent) is aligned as one sequence of calls.
2. Inside a matched pair of activations, their own bodies are aligned: each own step is a
   token keyed by its kind and the source text of its line (see :class:`KeyTable`), and each
   call the activation made is one token keyed by the callee's qualname. The sequences are
   matched with :class:`difflib.SequenceMatcher` (``autojunk`` off) when the part that
   differs is small, else with Myers' O(ND) diff (E. W. Myers, "An O(ND) Difference
   Algorithm and Its Variations", Algorithmica 1986) bounded to :data:`MAX_EDITS` edits;
   past that bound the differing middle is reported as one-sided rows, not guessed. Equal
   sequences (the common case) are paired without either.
3. Matched call tokens recurse into step 2; an unmatched call becomes one-sided rows for its
   whole subtree; matched own steps become ``same`` or ``changed`` rows (same key, values
   changed by the step differ), unmatched ones ``only_a`` / ``only_b``.

Rows come out in call-tree order (for one thread, step order). They are stored as three
``array`` columns, about 17 bytes per row, so a diff of two 1,000,000-step traces stays small.
"""

from __future__ import annotations

import bisect
import dataclasses
import operator
import re
from array import array
from collections.abc import Callable, Iterator
from difflib import SequenceMatcher
from typing import Any, Final, NamedTuple

from replay.diff.columns import KeyTable, TraceColumns
from replay.diff.myers import myers_blocks
from replay.diff.outcome import OutcomeDifference, outcome_differences
from replay.errors import ReplayError
from replay.replayer.tracefile import TraceFile

SAME: Final = 0
CHANGED: Final = 1
ONLY_A: Final = 2
ONLY_B: Final = 3
STATUS_NAMES: Final = ("same", "changed", "only_a", "only_b")
"""Row status names by code (``TraceDiff.status_code``)."""

SMALL_MIDDLE: Final = 2000
"""Tokens (both sides) up to which the differing middle is matched with SequenceMatcher."""
MAX_EDITS: Final = 400
"""Most insertions + deletions Myers' diff looks for in one activation before giving up."""
_CHECK_EVERY: Final = 8192


class DiffCancelledError(ReplayError):
    """``cancelled()`` returned True while :func:`diff_traces` ran."""


class DiffRow(NamedTuple):
    """One row of a trace diff.

    Attributes:
        a_step: Step of trace A, or -1 when the row is only in B.
        b_step: Step of trace B, or -1 when the row is only in A.
        status: ``same``, ``changed``, ``only_a`` or ``only_b``.
    """

    a_step: int
    b_step: int
    status: str


@dataclasses.dataclass
class TraceDiff:
    """Two traces aligned by call tree (see the module docstring).

    Not thread-safe while being built; read-only afterwards (any thread may read it).

    Attributes:
        a: Trace A (left, usually the recorded code).
        b: Trace B (right, usually the candidate).
        a_rows: Per row, the A step or -1 (``array('q')``).
        b_rows: Per row, the B step or -1 (``array('q')``).
        status_code: Per row, :data:`SAME`, :data:`CHANGED`, :data:`ONLY_A` or :data:`ONLY_B`
            (``bytearray``).
        outcome: How the two runs ended differently (empty when they ended alike).
        effects: Effects that differ (effect log maps, see
            :class:`replay.replayer.runner.ReplayRun`), when they were compared.
        effects_compared: False when nobody gave :func:`diff_traces` the effects (traces
            alone do not hold them): then ``effects`` is empty and says nothing.
        gave_up: Activations whose bodies differed by more than :data:`MAX_EDITS` edits and
            whose differing middle was left unaligned (one-sided rows).
    """

    a: TraceFile
    b: TraceFile
    a_rows: array[int]
    b_rows: array[int]
    status_code: bytearray
    outcome: list[OutcomeDifference] = dataclasses.field(default_factory=list)
    effects: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    effects_compared: bool = False
    gave_up: int = 0

    def __post_init__(self) -> None:
        self._row_of_a: array[int] | None = None  # built on first use
        self._row_of_b: array[int] | None = None
        # blocks of consecutive rows that are not `same`: [start, stop) each
        spans = [m.span() for m in re.finditer(rb"[^\x00]+", bytes(self.status_code))]
        self.block_starts = array("q", (s for s, _ in spans))
        self.block_stops = array("q", (e for _, e in spans))

    def __len__(self) -> int:
        return len(self.status_code)

    def row(self, i: int) -> DiffRow:
        """Row ``i`` (negative counts from the end).

        Raises:
            IndexError: no such row.
        """
        return DiffRow(self.a_rows[i], self.b_rows[i], STATUS_NAMES[self.status_code[i]])

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[DiffRow]:
        """Rows ``start`` to ``stop`` (exclusive)."""
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(start, 0), stop):
            yield DiffRow(self.a_rows[i], self.b_rows[i], STATUS_NAMES[self.status_code[i]])

    @property
    def same(self) -> bool:
        """True when every row is ``same`` and the outcomes and compared effects agree."""
        return not self.block_starts and not self.outcome and not self.effects

    @property
    def first_divergence(self) -> int | None:
        """The first row that is not ``same``, or None."""
        return self.block_starts[0] if self.block_starts else None

    def next_divergence(self, row: int) -> int | None:
        """Start of the first block of differing rows that starts after ``row``, or None."""
        k = bisect.bisect_right(self.block_starts, row)
        return self.block_starts[k] if k < len(self.block_starts) else None

    def previous_divergence(self, row: int) -> int | None:
        """Start of the last block of differing rows that starts before ``row``, or None."""
        k = bisect.bisect_left(self.block_starts, row)
        return self.block_starts[k - 1] if k > 0 else None

    def blocks(self) -> Iterator[tuple[int, int]]:
        """The blocks of consecutive differing rows, as ``(start, stop)`` row ranges."""
        return zip(self.block_starts, self.block_stops, strict=True)

    def row_of_a(self, step: int) -> int:
        """The row showing step ``step`` of A (every step is on exactly one row).

        The first call builds the step-to-row map of A (O(rows), 8 bytes a step); same for B.

        Raises:
            IndexError: no such step.
        """
        if self._row_of_a is None:
            self._row_of_a = _inverse(self.a_rows, self.a.steps)
        return self._row_of_a[step]

    def row_of_b(self, step: int) -> int:
        """The row showing step ``step`` of B.

        Raises:
            IndexError: no such step.
        """
        if self._row_of_b is None:
            self._row_of_b = _inverse(self.b_rows, self.b.steps)
        return self._row_of_b[step]

    def counts(self) -> dict[str, int]:
        """Rows per status name (every status present, 0 when none)."""
        code = self.status_code
        return {name: code.count(bytes([i])) for i, name in enumerate(STATUS_NAMES)}


def _inverse(rows: array[int], steps: int) -> array[int]:
    out = array("q", [-1]) * steps
    for r, s in enumerate(rows):
        if s >= 0:
            out[s] = r
    return out


def diff_traces(a: TraceFile, b: TraceFile, *, progress: Callable[[int, int], None] | None = None,
                cancelled: Callable[[], bool] | None = None,
                effects: list[dict[str, Any]] | None = None) -> TraceDiff:
    """Align two traces by call tree (see the module docstring).

    Args:
        a: Trace A (left).
        b: Trace B (right).
        progress: Called now and then with ``(done, total)``: reading counts each step of
            both traces once, aligning counts each step and each call again (``total`` is
            ``2 * (a.steps + b.steps) + a.activations + b.activations``); ``done == total``
            at the end. Called from the calling thread.
        cancelled: Polled between chunks and every few thousand rows; when it returns True
            the diff stops with :class:`DiffCancelledError`.
        effects: The effects that differ between the two runs, when the caller has them
            (``replay.verify.verdict.effect_changes(run)`` of a candidate replay): stored
            on the result, which then says ``effects_compared``.

    Returns:
        A :class:`TraceDiff`. Cost: one pass over both traces' chunks, then O(rows) when the
        bodies agree; memory about 40 bytes per step of both traces while it runs.

    Raises:
        DiffCancelledError: ``cancelled()`` returned True.
        SnapshotError: a trace is corrupt.
    """
    total = 2 * (a.steps + b.steps) + a.activations + b.activations
    done = 0

    def check(n: int) -> None:
        nonlocal done
        done += n
        if cancelled is not None and cancelled():
            raise DiffCancelledError("the trace diff was cancelled")
        if progress is not None:
            progress(min(done, total), total)

    keys = KeyTable()
    ca = TraceColumns(a, keys, check)
    cb = TraceColumns(b, keys, check)
    aligner = _Aligner(ca, cb, check)
    aligner.run()
    if progress is not None:
        progress(total, total)
    return TraceDiff(a, b, aligner.ra, aligner.rb, aligner.st, outcome=outcome_differences(a, b),
                     effects=list(effects or []), effects_compared=effects is not None, gave_up=aligner.gave_up)


class _Aligner:
    """Builds the row columns with an explicit stack (traced programs recurse deeper than Python may)."""

    def __init__(self, ca: TraceColumns, cb: TraceColumns, check: Callable[[int], None]):
        self.ca, self.cb, self.check = ca, cb, check
        self.ra: array[int] = array("q")
        self.rb: array[int] = array("q")
        self.st = bytearray()
        self.gave_up = 0
        self._pending = 0

    def run(self) -> None:
        stack: list[Iterator[tuple[int, int, int]]] = [self._pair(-1, -1)]
        while stack:
            item = next(stack[-1], None)
            if item is None:
                stack.pop()
                continue
            what, x, y = item
            if what == 0:  # a matched pair of calls
                stack.append(self._pair(x, y))
            elif what == 1:  # a call only in A
                stack.append(self._one(self.ca.tokens(x), 0))
            else:
                stack.append(self._one(self.cb.tokens(y), 1))
        self.check(self._pending)

    def _tick(self, n: int) -> None:
        self._pending += n
        if self._pending >= _CHECK_EVERY:
            pending, self._pending = self._pending, 0
            self.check(pending)

    def _keys(self, cols: TraceColumns, tokens: list[int]) -> list[int]:
        key, act_key = cols.key, cols.act_key
        return [key[t] if t >= 0 else act_key[~t] for t in tokens]

    def _same_subtree(self, sa: int, sb: int) -> bool:
        """Emit two whole subtrees as paired rows when their steps have the same keys.

        With one thread a subtree is a contiguous range of steps, and two ranges with the
        same keys (kinds, functions, lines; calls and returns included) have the same call
        tree, so the recursive alignment would pair them step for step: done here with
        slice comparisons instead, in C. Returns False (nothing emitted) otherwise.
        """
        ca, cb = self.ca, self.cb
        if not (ca.spans_ok and cb.spans_ok):
            return False
        xa, ya = ca.span(sa)
        xb, yb = cb.span(sb)
        if ya - xa != yb - xb or ca.key[xa:ya] != cb.key[xb:yb]:
            return False
        self.ra.extend(range(xa, ya))
        self.rb.extend(range(xb, yb))
        sig_a, sig_b = ca.sig[xa:ya], cb.sig[xb:yb]
        self.st.extend(bytes(ya - xa) if sig_a == sig_b else bytes(map(operator.ne, sig_a, sig_b)))
        # progress counts each step and each call (descendants: the next serials, in call order)
        below = bisect.bisect_left(ca.act_call, ya) - (sa + 1) + bisect.bisect_left(cb.act_call, yb) - (sb + 1)
        self._tick(2 * (ya - xa) + below)
        return True

    def _pair(self, sa: int, sb: int) -> Iterator[tuple[int, int, int]]:
        if self._same_subtree(sa, sb):
            return
        ta, tb = self.ca.tokens(sa), self.cb.tokens(sb)
        ka, kb = self._keys(self.ca, ta), self._keys(self.cb, tb)
        blocks = [(0, 0, len(ka))] if ka == kb else self._match(ka, kb)
        ra, rb, st = self.ra, self.rb, self.st
        sig_a, sig_b = self.ca.sig, self.cb.sig
        same_subtree = self._same_subtree
        i = j = 0
        for mi, mj, size in blocks:
            for t in ta[i:mi]:
                if t >= 0:
                    ra.append(t)
                    rb.append(-1)
                    st.append(ONLY_A)
                else:
                    yield 1, ~t, -1
            for u in tb[j:mj]:
                if u >= 0:
                    ra.append(-1)
                    rb.append(u)
                    st.append(ONLY_B)
                else:
                    yield 2, -1, ~u
            self._tick((mi - i) + (mj - j))
            for lo in range(0, size, _CHECK_EVERY):
                hi = min(size, lo + _CHECK_EVERY)
                for x in range(mi + lo, mi + hi):
                    t, u = ta[x], tb[x - mi + mj]
                    if t >= 0:
                        ra.append(t)
                        rb.append(u)
                        st.append(SAME if sig_a[t] == sig_b[u] else CHANGED)
                    elif not same_subtree(~t, ~u):  # else emitted whole, without a generator
                        yield 0, ~t, ~u
                self._tick(2 * (hi - lo))
            i, j = mi + size, mj + size
        for t in ta[i:]:
            if t >= 0:
                ra.append(t)
                rb.append(-1)
                st.append(ONLY_A)
            else:
                yield 1, ~t, -1
        for u in tb[j:]:
            if u >= 0:
                ra.append(-1)
                rb.append(u)
                st.append(ONLY_B)
            else:
                yield 2, -1, ~u
        self._tick(len(ta) - i + len(tb) - j)

    def _one(self, tokens: list[int], side: int) -> Iterator[tuple[int, int, int]]:
        ra, rb, st = self.ra, self.rb, self.st
        mine, other = (ra, rb) if side == 0 else (rb, ra)
        status = ONLY_A if side == 0 else ONLY_B
        for t in tokens:
            if t >= 0:
                mine.append(t)
                other.append(-1)
                st.append(status)
            else:
                yield (1, ~t, -1) if side == 0 else (2, -1, ~t)
        self._tick(len(tokens))

    def _match(self, a: list[int], b: list[int]) -> list[tuple[int, int, int]]:
        """Matching blocks ``(i, j, size)``, ascending, of two key sequences.

        The pair is matched in a canonical order (the smaller list first), so that
        ``diff(b, a)`` pairs exactly what ``diff(a, b)`` pairs: neither SequenceMatcher nor
        Myers' diff breaks ties symmetrically.
        """
        if b < a:
            return [(i, j, size) for j, i, size in self._match_ordered(b, a)]
        return self._match_ordered(a, b)

    def _match_ordered(self, a: list[int], b: list[int]) -> list[tuple[int, int, int]]:
        n, m = len(a), len(b)
        p, lim = 0, min(n, m)
        while p < lim and a[p] == b[p]:
            p += 1
        s = 0
        while s < lim - p and a[n - 1 - s] == b[m - 1 - s]:
            s += 1
        mid_a, mid_b = a[p:n - s], b[p:m - s]
        blocks = [(0, 0, p)] if p else []
        if mid_a and mid_b:
            if len(mid_a) + len(mid_b) <= SMALL_MIDDLE:
                found: list[tuple[int, int, int]] = [
                    (i, j, size) for i, j, size in SequenceMatcher(None, mid_a, mid_b, autojunk=False).get_matching_blocks()
                    if size]
            else:
                got = myers_blocks(mid_a, mid_b, MAX_EDITS)
                if got is None:
                    self.gave_up += 1
                found = got or []
            blocks.extend((i + p, j + p, size) for i, j, size in found)
        if s:
            blocks.append((n - s, m - s, s))
        return blocks

