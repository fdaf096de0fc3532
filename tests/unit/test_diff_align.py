"""Trace diff aligned by call tree (:mod:`replay.diff`) on real traces of small programs.

Programs are traced in this process (:func:`tests.unit.cursor_programs.recorded`); the
properties draw random programs from :func:`tests.unit.cursor_programs.programs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from difflib import SequenceMatcher

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.diff import DiffCancelledError, TraceDiff, diff_traces
from replay.diff.align import myers_blocks
from replay.diff.render import changed_values, diff_json, text_lines
from replay.replayer.tracefile import TraceFile
from tests.unit.cursor_programs import PRELUDE, Program, programs, recorded


@contextmanager
def traces(*bodies: str, args: tuple[tuple[int, int], ...] | None = None,
           chunk: int = 3) -> Iterator[list[TraceFile]]:
    """Traces of ``f0(*args[i])`` for each body (appended to the generated programs' prelude)."""
    with ExitStack() as stack:
        out = []
        for i, body in enumerate(bodies):
            program = Program(PRELUDE + "\n\n" + body, (args or ((1, 2),) * len(bodies))[i], False, chunk, 0)
            out.append(stack.enter_context(TraceFile(stack.enter_context(recorded(program)))))
        yield out


def statuses(diff: TraceDiff) -> list[str]:
    return [r.status for r in diff.rows()]


def where(trace: TraceFile, n: int) -> tuple[str, str, int]:
    s = trace.step(n)
    return s.kind, s.code.qualname, s.line


def check_invariants(diff: TraceDiff) -> None:
    """Every step of each side is on exactly one row, in the order of its activation's body,
    and pairs have the same kind and function."""
    for side, trace, col in (("a", diff.a, diff.a_rows), ("b", diff.b, diff.b_rows)):
        seen = sorted(s for s in col if s >= 0)
        assert seen == list(range(trace.steps)), side
        for n in range(trace.steps):
            assert col[diff.row_of_a(n) if side == "a" else diff.row_of_b(n)] == n
    for r in diff.rows():
        assert (r.a_step >= 0) == (r.status != "only_b") and (r.b_step >= 0) == (r.status != "only_a")
        if r.a_step >= 0 and r.b_step >= 0:
            sa, sb = diff.a.step(r.a_step), diff.b.step(r.b_step)
            assert (sa.kind, sa.code.qualname) == (sb.kind, sb.code.qualname)


BASE = """\
def g(n):
    return n + 1


def h(n):
    k = n * 2
    return k


def f0(a, b):
    g(a)
    h(b)
    h(a)
    return a
"""

EXTRA_CALL = BASE.replace("    g(a)\n", "    g(a)\n    h(7)\n")


def test_identical_traces_have_no_divergence() -> None:
    with traces(BASE, BASE) as (a, b):
        diff = diff_traces(a, b)
        assert diff.same and diff.first_divergence is None and diff.outcome == []
        assert statuses(diff) == ["same"] * a.steps
        assert diff.counts() == {"same": a.steps, "changed": 0, "only_a": 0, "only_b": 0}
        assert [(r.a_step, r.b_step) for r in diff.rows()] == [(n, n) for n in range(a.steps)]
        assert diff.next_divergence(0) is None and diff.previous_divergence(len(diff)) is None
        check_invariants(diff)
        assert "the traces agree step for step" in text_lines(diff)


def test_an_extra_call_is_one_only_b_block_and_the_rest_realigns() -> None:
    with traces(BASE, EXTRA_CALL) as (a, b):
        diff = diff_traces(a, b)
        check_invariants(diff)
        blocks = list(diff.blocks())
        assert len(blocks) == 1, [(r, where(b, r.b_step) if r.b_step >= 0 else None) for r in diff.rows()]
        start, stop = blocks[0]
        assert diff.first_divergence == start
        block = list(diff.rows(start, stop))
        assert {r.status for r in block} == {"only_b"}
        # the block is the line `h(7)` and the whole call h(7): line, call, 2 lines, return
        assert [where(b, r.b_step)[:2] for r in block] == [
            ("line", "f0"), ("call", "h"), ("line", "h"), ("line", "h"), ("return", "h")]
        assert diff.counts()["only_b"] == b.steps - a.steps
        # after the block, every step of A is paired again with the same line of B
        after = list(diff.rows(stop))
        assert after and all(r.status == "same" for r in after)
        assert all(where(a, r.a_step)[:2] == where(b, r.b_step)[:2] for r in after)
        # call-tree alignment, not step index: the last steps are paired end to end
        assert diff.row(-1).a_step == a.steps - 1 and diff.row(-1).b_step == b.steps - 1
        # the mirror: the same block, now only in A
        back = diff_traces(b, a)
        assert [r.status for r in back.rows(start, stop)] == ["only_a"] * (stop - start)


def test_a_changed_value_is_changed_with_its_values() -> None:
    with traces(BASE, BASE, args=((1, 2), (1, 5))) as (a, b):
        diff = diff_traces(a, b)
        check_invariants(diff)
        assert set(statuses(diff)) == {"same", "changed"}
        first = diff.first_divergence
        assert first == 0 and diff.row(0).status == "changed"  # the call: its argument b differs
        assert changed_values(diff, 0) == [("b", "2", "5")]
        # h(b) computes k = 4 vs 10: that step is changed too, and the h(a) call is the same
        rows = [r for r in diff.rows() if r.status == "changed"]
        assert any(("k", "4", "10") in changed_values(diff, diff.row_of_a(r.a_step)) for r in rows)
        nxt = diff.next_divergence(first)
        assert nxt is not None and nxt > first and diff.previous_divergence(nxt) == first
        assert diff.outcome == []  # f0 returns a in both


def test_outcome_differences_come_from_the_entry_points_last_steps() -> None:
    with traces(BASE, BASE.replace("    return a\n", "    return [a, b]\n")) as (a, b):
        diff = diff_traces(a, b)
        assert [(d.field, d.a, d.b) for d in diff.outcome] == [("return", "1", "[1, 2]")]
        assert not diff.same
    raising = BASE.replace("    return a\n", "    raise KeyError(a)\n")
    with traces(BASE, raising) as (a, b):
        diff = diff_traces(a, b)
        assert [d.field for d in diff.outcome] == ["return"]
        assert diff.outcome[0].a == "return 1" and diff.outcome[0].b.startswith("exception KeyError")


def test_a_loop_of_many_steps_with_one_change() -> None:
    body = """\
def f0(a, b):
    total = 0
    for i in range(3000):
        total += i if i != 1500 else b
    return total
"""
    with traces(body, body, args=((0, 1500), (0, 7)), chunk=512) as (a, b):
        diff = diff_traces(a, b)
        check_invariants(diff)
        c = diff.counts()
        assert c["only_a"] == c["only_b"] == 0
        # the call (argument b) and, from i = 1500 on, every step that stores total
        assert diff.row(0).status == "changed"
        assert diff.outcome and diff.outcome[0].field == "return"


def test_json_and_text_renderings() -> None:
    with traces(BASE, EXTRA_CALL) as (a, b):
        diff = diff_traces(a, b)
        data = diff_json(diff, max_rows=3)
        assert data["same"] is False and data["counts"]["only_b"] == 5
        assert data["first_divergence"]["b"]["source"] == "h(7)" and data["first_divergence"]["a"] is None
        assert len(data["rows"]) == 3 and data["rows_cut"] is True
        text = "\n".join(text_lines(diff, max_rows=2))
        assert "first divergence" in text and "h(7)" in text and "more differing rows" in text


def test_progress_reaches_the_total_and_cancel_stops() -> None:
    with traces(BASE, EXTRA_CALL, chunk=2) as (a, b):
        seen: list[tuple[int, int]] = []
        diff_traces(a, b, progress=lambda done, total: seen.append((done, total)))
        total = 2 * (a.steps + b.steps) + a.activations + b.activations
        assert seen[-1] == (total, total)
        assert all(d1 <= d2 for (d1, _), (d2, _) in zip(seen, seen[1:], strict=False))
        with pytest.raises(DiffCancelledError):
            diff_traces(a, b, cancelled=lambda: True)


def test_effects_hook() -> None:
    with traces(BASE, BASE) as (a, b):
        assert diff_traces(a, b).effects_compared is False
        effect = {"status": "changed", "channel": "http", "op": "request", "diff": [["body.amount", "10000", "100"]]}
        diff = diff_traces(a, b, effects=[effect])
        assert diff.effects_compared and not diff.same
        assert any("http request changed" in line for line in text_lines(diff))


# --------------------------------------------------------------------------- properties


def _lcs(a: list[int], b: list[int]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 3), max_size=30), st.lists(st.integers(0, 3), max_size=30))
def test_myers_finds_a_longest_common_subsequence(a: list[int], b: list[int]) -> None:
    blocks = myers_blocks(a, b, 60)
    assert blocks is not None
    ends = (0, 0)
    for i, j, size in blocks:
        assert i >= ends[0] and j >= ends[1] and size > 0 and a[i:i + size] == b[j:j + size]
        ends = (i + size, j + size)
    assert sum(size for _, _, size in blocks) == _lcs(a, b)
    assert myers_blocks(a, b, 0) is None or a == b


def test_myers_handles_long_sequences_and_gives_up_past_its_bound() -> None:
    a = [i % 3 for i in range(20_000)]
    b = a[:10_000] + [7, 8] + a[10_000:15_000] + a[15_001:]
    blocks = myers_blocks(a, b, 10)
    assert blocks is not None and sum(s for _, _, s in blocks) == len(a) - 1
    assert myers_blocks(list(range(100)), list(range(100, 200)), 10) is None
    assert sum(s for *_, s in SequenceMatcher(None, a[:50], b[:50], autojunk=False).get_matching_blocks()) == 50


def _mirrored(diff: TraceDiff) -> set[tuple[int, int, str]]:
    swap = {"only_a": "only_b", "only_b": "only_a"}
    return {(r.b_step, r.a_step, swap.get(r.status, r.status)) for r in diff.rows()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(programs(cut=False), programs(cut=False))
def test_diff_of_a_trace_with_itself_is_all_same_and_swapping_sides_mirrors(pa: Program, pb: Program) -> None:
    with recorded(pa) as path_a, recorded(pb) as path_b, TraceFile(path_a) as a, TraceFile(path_b) as b:
        same = diff_traces(a, a)
        assert same.same and statuses(same) == ["same"] * a.steps
        ab, ba = diff_traces(a, b), diff_traces(b, a)
        check_invariants(ab)
        check_invariants(ba)
        assert {(r.a_step, r.b_step, r.status) for r in ba.rows()} == _mirrored(ab)
        # paired rows come in the same order both ways
        assert [(r.a_step, r.b_step) for r in ab.rows() if min(r.a_step, r.b_step) >= 0] == [
            (r.b_step, r.a_step) for r in ba.rows() if min(r.a_step, r.b_step) >= 0]
        ca, cb = ab.counts(), ba.counts()
        assert (ca["same"], ca["changed"], ca["only_a"], ca["only_b"]) == (cb["same"], cb["changed"], cb["only_b"], cb["only_a"])
        assert [(d.field, d.a, d.b) for d in ab.outcome] == [(d.field, d.b, d.a) for d in ba.outcome]


def test_extra_calls_far_apart_in_a_long_loop_realign() -> None:
    """Two insertions 1,300 iterations apart leave a differing middle too long for
    SequenceMatcher: Myers' diff aligns it, and only the two extra calls differ."""
    body = """\
def g(n):
    return n


def f0(a, b):
    total = 0
    for i in range(1500):
        if i == a or i == b:
            g(i)
        total += 1
    return total
"""
    with traces(body, body, args=((-1, -1), (100, 1400)), chunk=512) as (a, b):
        diff = diff_traces(a, b)
        check_invariants(diff)
        assert diff.gave_up == 0
        c = diff.counts()
        assert c["only_a"] == 0 and c["only_b"] == b.steps - a.steps
        assert len(diff.block_starts) == 3  # the call f0(a, b) itself (arguments), then the two inserted calls
        assert [r.status for r in diff.rows(0, 1)] == ["changed"]
