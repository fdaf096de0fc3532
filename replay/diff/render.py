"""Text and JSON renderings of a :class:`~replay.diff.align.TraceDiff`.

Plain strings and JSON-ready maps, no terminal library: the CLI prints them (escaping
control characters), a ticket or a CI log can hold them as they are. Everything is bounded:
``max_rows`` differing rows at most, values cut at ``width`` characters.
"""

from __future__ import annotations

import itertools
from typing import Any

from replay.diff.align import TraceDiff
from replay.replayer.tracefile import DELETED, TraceFile
from replay.snapshot.codec import render
from replay.verify.valuediff import diff_values

_ABSENT = object()
_MARK = {"same": " ", "changed": "~", "only_a": "-", "only_b": "+"}


def _value(node: Any, width: int) -> str:
    return "<deleted>" if node is DELETED else render(node, width=width)


def source_line(trace: TraceFile, step: int) -> str:
    """The stripped source line of a step ('' when its source is not stored)."""
    s = trace.step(step)
    lines = trace.source_lines(s.code.file) if s.code.in_scope else []
    return lines[s.line - 1].strip() if 0 < s.line <= len(lines) else ""


def step_detail(trace: TraceFile, step: int, *, width: int = 120, position: bool = True) -> dict[str, Any]:
    """A step as a map: ``step``, ``kind``, ``function``, ``file``, ``line``, ``source``,
    ``changes`` (name -> rendering) and, when asked, its stable ``position``."""
    s = trace.step(step)
    out: dict[str, Any] = {"step": step, "kind": s.kind, "function": s.code.qualname, "file": s.code.file,
                           "line": s.line, "source": source_line(trace, step) if s.kind != "call" else "",
                           "changes": {name: _value(node, width) for name, node in trace.changes(step)}}
    if position:
        out["position"] = trace.position(step)
    return out


def changed_values(diff: TraceDiff, row: int, *, width: int = 120) -> list[tuple[str, str, str]]:
    """For a row with both sides: ``(path, A rendering, B rendering)`` of each value the two
    steps changed differently, field by field (``request.customer_id``, ``items[2]``; see
    :func:`replay.verify.valuediff.diff_values`); ``-`` for a side that did not change it."""
    r = diff.row(row)
    if r.a_step < 0 or r.b_step < 0:
        return []
    ca, cb = dict(diff.a.changes(r.a_step)), dict(diff.b.changes(r.b_step))
    out: list[tuple[str, str, str]] = []
    for name in list(ca) + [n for n in cb if n not in ca]:
        na, nb = ca.get(name, _ABSENT), cb.get(name, _ABSENT)
        if na is _ABSENT or nb is _ABSENT or na is DELETED or nb is DELETED:
            va = "-" if na is _ABSENT else _value(na, width)
            vb = "-" if nb is _ABSENT else _value(nb, width)
            if va != vb:
                out.append((name, va, vb))
        elif na != nb:
            out.extend((path, _cut(old, width), _cut(new, width)) for path, old, new in diff_values(na, nb, name))
    return out


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _place(trace: TraceFile, step: int, width: int) -> str:
    s = trace.step(step)
    mark = {"call": "→", "line": " ", "return": "←", "exception": "!"}[s.kind]
    text = f"{mark} {s.code.qualname}:{s.line}"
    src = source_line(trace, step) if s.kind == "line" else ""
    if src:
        text += f"  {src}"
    return text if len(text) <= width else text[: width - 3] + "..."


def row_text(diff: TraceDiff, row: int, *, width: int = 60) -> str:
    """One row as ``MARK ROW  A-STEP place | B-STEP place`` (``-`` removed in B, ``+`` added
    in B, ``~`` same line with different values)."""
    r = diff.row(row)
    left = f"{r.a_step:>7} {_place(diff.a, r.a_step, width)}" if r.a_step >= 0 else ""
    right = f"{r.b_step:>7} {_place(diff.b, r.b_step, width)}" if r.b_step >= 0 else ""
    return f"{_MARK[r.status]} {row:>7}  {left:<{width + 8}} | {right}".rstrip()


def summary_text(diff: TraceDiff) -> str:
    """``67 rows: 12 same, 0 changed, 5 only in A, 50 only in B (1 differing block)``."""
    c = diff.counts()
    blocks = len(diff.block_starts)
    return (f"{len(diff):,} rows: {c['same']:,} same, {c['changed']:,} changed, {c['only_a']:,} only in A, "
            f"{c['only_b']:,} only in B ({blocks:,} differing block{'s' if blocks != 1 else ''})")


def text_lines(diff: TraceDiff, *, max_rows: int = 40, width: int = 60, verdict: str | None = None,
               labels: tuple[str, str] | None = None) -> list[str]:
    """The diff as text: outcome and effect differences first, then the first divergence
    with both sides' source line and changed values, then at most ``max_rows`` differing
    rows (with one row of context around each block). ``labels`` name the two sides
    (default: the trace files' paths); ``verdict`` is printed after them when given."""
    out: list[str] = []
    label_a, label_b = labels or (diff.a.path, diff.b.path)
    out.append(f"A: {label_a}  ({diff.a.steps:,} steps, outcome {diff.a.header.get('outcome', '?')})")
    out.append(f"B: {label_b}  ({diff.b.steps:,} steps, outcome {diff.b.header.get('outcome', '?')})")
    if verdict:
        out.append(f"verdict: {verdict}")
    if diff.outcome:
        out.append("outcome differences:")
        out.extend(f"  {d.field}: {d.a}  ->  {d.b}" for d in diff.outcome)
    else:
        out.append("outcome: the same")
    if not diff.effects_compared:
        out.append("effects: not compared (a trace does not hold them; `replay diff SNAP --code DIR` compares them)")
    elif diff.effects:
        from replay.verify.verdict import describe_effect

        out.append("effect differences:")
        out.extend(f"  {describe_effect(e)}" for e in diff.effects)
    else:
        out.append("effects: the same")
    out.append(summary_text(diff))
    first = diff.first_divergence
    if first is None:
        out.append("the traces agree step for step")
        return out
    r = diff.row(first)
    out.append(f"first divergence: row {first} ({r.status.replace('_', ' ')})")
    for side, trace, step in (("A", diff.a, r.a_step), ("B", diff.b, r.b_step)):
        if step < 0:
            out.append(f"  {side}: -")
            continue
        d = step_detail(trace, step, width=width)
        out.append(f"  {side}: step {step} {d['kind']} {d['function']} {d['file']}:{d['line']}  {d['position']}")
        if d["source"]:
            out.append(f"       {d['source']}")
        if r.status != "changed":
            out.extend(f"       {name} = {value}" for name, value in d["changes"].items())
    if r.status == "changed":
        out.extend(f"  {name}: {va}  ->  {vb}" for name, va, vb in changed_values(diff, first, width=width))
    out.append("differing rows (- only in A, + only in B, ~ changed values):")
    printed = 0  # rows printed, context included
    last = -1  # last row printed
    blocks_shown = 0
    for start, stop in diff.blocks():
        if printed >= max_rows:
            break
        lo, hi = max(start - 1, last + 1, 0), min(stop + 1, len(diff))
        if lo > last + 1 and last >= 0:
            out.append("  ...")
        cut = min(hi, lo + max_rows - printed)
        out.extend(row_text(diff, i, width=width) for i in range(lo, cut))
        printed += cut - lo
        last = cut - 1
        blocks_shown += 1
        if cut < stop:
            out.append(f"  ... {stop - cut:,} more differing rows in this block")
    rest = len(diff.block_starts) - blocks_shown
    if rest > 0:
        out.append(f"... {rest:,} more differing blocks (--rows N shows more)")
    return out


def diff_json(diff: TraceDiff, *, max_rows: int = 200, max_blocks: int = 1000, width: int = 120) -> dict[str, Any]:
    """The diff as a JSON-ready map: ``same``, ``a``/``b`` (path, steps, header outcome),
    ``counts``, ``outcome`` (field, a, b), ``effects_compared``, ``effects``,
    ``first_divergence`` (row, status, both sides' step details, changed values),
    ``blocks_total`` and ``blocks`` (start, stop of the first ``max_blocks`` blocks) and ``rows`` (at most ``max_rows`` differing rows)."""
    first = diff.first_divergence
    first_json: dict[str, Any] | None = None
    if first is not None:
        r = diff.row(first)
        first_json = {
            "row": first, "status": r.status,
            "a": step_detail(diff.a, r.a_step, width=width) if r.a_step >= 0 else None,
            "b": step_detail(diff.b, r.b_step, width=width) if r.b_step >= 0 else None,
            "changed_values": [{"name": n, "a": va, "b": vb} for n, va, vb in changed_values(diff, first, width=width)],
        }
    rows: list[dict[str, Any]] = []
    for start, stop in diff.blocks():
        for i in range(start, stop):
            if len(rows) >= max_rows:
                break
            r = diff.row(i)
            rows.append({"row": i, "a_step": r.a_step, "b_step": r.b_step, "status": r.status,
                         "a": _place(diff.a, r.a_step, width).strip() if r.a_step >= 0 else None,
                         "b": _place(diff.b, r.b_step, width).strip() if r.b_step >= 0 else None})
    return {
        "same": diff.same,
        "a": {"path": diff.a.path, "steps": diff.a.steps, "outcome": diff.a.header.get("outcome")},
        "b": {"path": diff.b.path, "steps": diff.b.steps, "outcome": diff.b.header.get("outcome")},
        "rows_total": len(diff),
        "counts": diff.counts(),
        "outcome": [{"field": d.field, "a": d.a, "b": d.b} for d in diff.outcome],
        "effects_compared": diff.effects_compared,
        "effects": diff.effects,
        "gave_up": diff.gave_up,
        "first_divergence": first_json,
        "blocks_total": len(diff.block_starts),
        "blocks": [[s, e] for s, e in itertools.islice(diff.blocks(), max_blocks)],
        "rows": rows,
        "rows_cut": sum(e - s for s, e in diff.blocks()) > len(rows),
    }
