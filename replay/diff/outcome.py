"""How two traced runs ended: outcome differences read from the traces themselves.

A trace header says how its run ended (``outcome``: ``return``, ``exception`` or
``diverged``; ``divergence``; ``truncated``), and the entry point's last steps hold the value
it returned (``<return>``) or the exception that left it (``<exception>``), as display nodes.
Return values are compared field by field with :func:`replay.verify.valuediff.diff_values`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from replay.replayer.tracefile import TraceFile
from replay.snapshot.codec import render
from replay.verify.valuediff import diff_values

_MISSING = object()


@dataclasses.dataclass(frozen=True)
class OutcomeDifference:
    """One way the two runs ended differently.

    Attributes:
        field: ``outcome`` (how the run ended), ``divergence``, ``truncated``, ``exception``,
            or ``return`` / ``return.FIELD`` / ``return[KEY]`` for the returned value.
        a: Rendering on side A (``-`` when it has none).
        b: Rendering on side B.
    """

    field: str
    a: str
    b: str


def entry_result(trace: TraceFile) -> tuple[str, Any]:
    """How the entry point (activation 0) ended, from its last steps.

    Returns:
        ``("return", node)``, ``("exception", node)``, or ``("none", None)`` when the trace
        ended first (cut, diverged) or has no activation table.
    """
    if not trace.activations:
        return "none", None
    act = trace.activation(0)
    end = act.end_step
    if end < 0:
        return "none", None
    for name, node in trace.changes(end):
        if name == "<return>":
            return "return", node
    for n in range(end - 1, max(act.call_step, end - 4) - 1, -1):  # the exception step precedes the return
        step = trace.step(n)
        if step.frame == 0 and step.kind == "exception":
            node = dict(trace.changes(n)).get("<exception>", _MISSING)
            if node is not _MISSING:
                return "exception", node
    return "none", None


def _text(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value)


def outcome_differences(a: TraceFile, b: TraceFile) -> list[OutcomeDifference]:
    """The outcome differences between two traces, most important first (empty if none)."""
    out: list[OutcomeDifference] = []
    ha, hb = a.header, b.header
    if ha.get("outcome") != hb.get("outcome"):
        out.append(OutcomeDifference("outcome", _text(ha.get("outcome")), _text(hb.get("outcome"))))
    if ha.get("divergence") != hb.get("divergence"):
        out.append(OutcomeDifference("divergence", _text(ha.get("divergence")), _text(hb.get("divergence"))))
    if bool(ha.get("truncated")) != bool(hb.get("truncated")):
        out.append(OutcomeDifference("truncated", str(bool(ha.get("truncated"))), str(bool(hb.get("truncated")))))
    kind_a, node_a = entry_result(a)
    kind_b, node_b = entry_result(b)
    if kind_a == kind_b == "return":
        out.extend(OutcomeDifference(path, old, new) for path, old, new in diff_values(node_a, node_b, "return"))
    elif kind_a == kind_b == "exception":
        if node_a != node_b:
            out.append(OutcomeDifference("exception", render(node_a, width=200), render(node_b, width=200)))
    elif kind_a != kind_b:
        out.append(OutcomeDifference(
            "return" if "return" in (kind_a, kind_b) else "exception",
            f"{kind_a} {render(node_a, width=200)}" if kind_a != "none" else "-",
            f"{kind_b} {render(node_b, width=200)}" if kind_b != "none" else "-"))
    return out
