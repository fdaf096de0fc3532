"""Verdicts: does a snapshot reproduce, and what does a candidate do with it?

The table is DESIGN.md section 6. A baseline replay (strict, recorded code) always runs
first; a candidate verdict is only given for a snapshot whose baseline reproduces, so a
FIXED verdict can never come from a snapshot that does not replay.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from collections.abc import Callable
from typing import Any

from replay.capture.redact_rules import redacted_match
from replay.replayer.forkserver import ForkServerPool
from replay.replayer.runner import DEFAULT_TIMEOUT_S, ReplayRun, run_replay
from replay.snapshot import open_snapshot
from replay.snapshot.codec import render
from replay.verify.valuediff import diff_values


class Verdict(enum.StrEnum):
    """Result of verifying one snapshot against a candidate (public contract)."""

    FIXED = "FIXED"
    STILL_FAILING = "STILL_FAILING"
    NEW_FAILURE = "NEW_FAILURE"
    UNCHANGED = "UNCHANGED"
    CHANGED = "CHANGED"
    DIVERGED = "DIVERGED"
    NOT_REPRODUCIBLE = "NOT_REPRODUCIBLE"
    REPRODUCED = "REPRODUCED"  # `replay run`: the baseline matched the recording


# Verdicts that fail a `replay verify` run by default; CHANGED and DIVERGED are reported only.
FAILING_VERDICTS = frozenset({Verdict.STILL_FAILING, Verdict.NEW_FAILURE, Verdict.NOT_REPRODUCIBLE})


@dataclasses.dataclass
class VerifyResult:
    """One snapshot's verdict with the evidence.

    Attributes:
        snapshot: Path of the snapshot.
        verdict: The verdict.
        reason: One or two sentences a person can act on.
        entry: ``module:qualname`` of the entry point.
        recorded: Short form of the recorded outcome.
        observed: Short form of the candidate's (or baseline's) outcome.
        divergence: First divergence map, if any.
        changes: For CHANGED: (field path, recorded, candidate) renderings.
        changed_files: Application files whose code differs from the recording.
        synthesized: Clock/random values invented for the candidate, per stream.
        from_environment: Env reads of the candidate answered from the recorded environment.
        unconsumed: Recorded interactions the candidate never asked for.
        effects: Effects that differ from the recording: ``changed`` (same target, different
            request, with a ``diff``), ``missing`` (recorded, not made), ``blocked`` (stopped
            by the sandbox); see :class:`replay.replayer.runner.ReplayRun`.
        warnings: Caveats (hash seed, time zone).
        baseline: The baseline run, for reports.
        candidate: The candidate run, if one ran.
    """

    snapshot: str
    verdict: Verdict
    reason: str
    entry: str = ""
    recorded: str = ""
    observed: str = ""
    divergence: dict[str, Any] | None = None
    changes: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    changed_files: list[str] = dataclasses.field(default_factory=list)
    synthesized: dict[str, int] = dataclasses.field(default_factory=dict)
    from_environment: int = 0
    unconsumed: list[str] = dataclasses.field(default_factory=list)
    effects: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    warnings: list[str] = dataclasses.field(default_factory=list)
    baseline: ReplayRun | None = None
    candidate: ReplayRun | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the runs are summarised, not embedded whole)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("baseline", "candidate")}
        out["verdict"] = self.verdict.value
        return out


def summarize_outcome(outcome: dict[str, Any]) -> str:
    """``ValueError('bad date') at billing/pricing.py:month_end`` or ``returned 42``."""
    kind = outcome.get("kind")
    if kind == "exception":
        place = outcome.get("place")
        where = f" in {place[0]}:{place[1]}" if place else ""
        name = str(outcome.get("type", "?")).rpartition(":")[2]
        return f"{name}({outcome.get('message', '')!r}){where}"
    if kind == "return" and outcome.get("http_status"):
        logged = outcome.get("logged_exception")
        cause = f" ({summarize_outcome(logged)}, logged)" if isinstance(logged, dict) else ""
        return f"responded HTTP {outcome['http_status']}{cause}"
    if kind == "return":
        return f"returned {render(outcome.get('value'), width=200)}"
    if kind == "diverged":
        return "diverged"
    return str(kind)


def failed(outcome: dict[str, Any]) -> bool:
    """Whether an outcome is a failure: an exception, or a web response marked failed (5xx)."""
    return outcome.get("kind") == "exception" or bool(outcome.get("failed"))


def same_failure(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Same exception type raised at the same place (innermost application frame).

    Line numbers are not compared: a fix moves lines. The place is the file (relative to
    the code root) and the function's qualified name. Two failed web responses (5xx) are
    the same failure when their status codes are equal and, when the app logged the cause of
    both (``logged_exception``), those exceptions are the same failure.
    """
    if a.get("failed") and b.get("failed"):
        la, lb = a.get("logged_exception"), b.get("logged_exception")
        if isinstance(la, dict) and isinstance(lb, dict) and not same_failure(la, lb):
            return False
        return bool(a.get("http_status") == b.get("http_status"))
    return (a.get("kind") == b.get("kind") == "exception" and a.get("type") == b.get("type")
            and a.get("place") == b.get("place"))


def effect_changes(run: ReplayRun) -> list[dict[str, Any]]:
    """The effects of a run that differ from the recording (status other than ``same``)."""
    return [e for e in run.effects if e.get("status") != "same"]


def describe_effect(effect: dict[str, Any]) -> str:
    """One line for an effect change: ``http request changed: body.amount: 10000 -> 100``."""
    status = effect.get("status")
    head = f"{effect.get('channel')} {effect.get('op')}"
    if status == "changed":
        diff = effect.get("diff") or []
        detail = "; ".join(f"{p}: {old} -> {new}" for p, old, new in diff[:3]) or str(effect.get("asked"))
        return f"{head} changed: {detail}"
    if status == "missing":
        return f"{head}{effect.get('recorded')} was recorded but not made"
    if status == "blocked":
        return f"blocked by the sandbox: {effect.get('asked')}"
    return f"{head}{effect.get('asked')} ({status})"


def matches_recording(recorded: dict[str, Any], run: ReplayRun) -> tuple[bool, str]:
    """Whether a baseline run reproduced the recorded outcome, and if not, why (one sentence)."""
    if run.status != "ok":
        return False, run.reason or run.status
    if run.divergence:
        return False, f"the baseline replay diverged at interaction #{run.divergence['index']}: {run.divergence['reason']}"
    blocked = [e for e in run.effects if e.get("status") == "blocked"]
    if blocked:
        return False, (f"the baseline replay tried to reach a real system the recording did not capture "
                       f"({describe_effect(blocked[0])})")
    observed = run.outcome
    if recorded.get("kind") == "exception":
        if same_failure(recorded, observed):
            return True, ""
        return False, f"recorded {summarize_outcome(recorded)}, baseline replay gave {summarize_outcome(observed)}"
    if observed.get("kind") == "return" and same_value(recorded, observed):
        return True, ""
    detail = ""
    if observed.get("kind") == recorded.get("kind") == "return":  # say where (two responses with one status)
        diffs = diff_values(recorded.get("value"), observed.get("value"))
        detail = "".join(f"; {path}: {old} -> {new}" for path, old, new in diffs[:3])
    return False, f"recorded {summarize_outcome(recorded)}, baseline replay gave {summarize_outcome(observed)}{detail}"


def same_value(recorded: dict[str, Any], observed: dict[str, Any]) -> bool:
    """Whether two ``return`` outcomes carry the same value (a redaction token matches any
    text). For a web response, what is derived from the body (the Content-Length header,
    ``body_size``) is left out: redaction may change a recorded body's length, and the body
    itself is compared."""
    return redacted_match(_comparable(recorded), _comparable(observed))


def _comparable(outcome: dict[str, Any]) -> Any:
    value = outcome.get("value")
    if not outcome.get("http_status") or type(value) is not list or value[:1] != ["d"]:
        return value
    out: list[Any] = ["d"]
    for key, item in zip(value[1::2], value[2::2], strict=False):
        if key == "body_size":
            continue
        if key == "headers" and type(item) is list and item[:1] == ["l"]:
            item = ["l", *[h for h in item[1:] if not (type(h) is list and len(h) == 3
                                                       and str(h[1]).lower() == "content-length")]]
        out += [key, item]
    return out


def reproduce(snapshot: str | os.PathLike[str], *, timeout_s: float = DEFAULT_TIMEOUT_S,
              server: ForkServerPool | None = None) -> VerifyResult:
    """Baseline replay against the recorded code: REPRODUCED or NOT_REPRODUCIBLE.

    ``server``: fork the replay from this pool's servers (see :func:`run_replay`).

    Raises:
        SnapshotError: the file is missing or bad.
    """
    with open_snapshot(snapshot) as snap:
        recorded = snap.outcome
        entry = snap.header.get("entry", "")
    run = run_replay(snapshot, mode="strict", timeout_s=timeout_s, server=server)
    ok, why = matches_recording(recorded, run)
    return VerifyResult(
        snapshot=os.fspath(snapshot),
        verdict=Verdict.REPRODUCED if ok else Verdict.NOT_REPRODUCIBLE,
        reason="the replay reproduced the recorded outcome" if ok else why,
        entry=entry,
        recorded=summarize_outcome(recorded),
        observed=summarize_outcome(run.outcome) if run.outcome else run.status,
        divergence=run.divergence,
        effects=effect_changes(run),
        warnings=run.warnings,
        baseline=run,
    )


def verify(
    snapshot: str | os.PathLike[str], code_dirs: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S,
    progress: Callable[[str], None] | None = None, server: ForkServerPool | None = None,
) -> VerifyResult:
    """Verify a candidate against one snapshot (DESIGN.md section 6).

    Args:
        snapshot: The ``.rsnap`` file.
        code_dirs: Candidate code roots, first on ``sys.path``.
        timeout_s: Limit per replay, in seconds.
        progress: Called with the phase starting (``baseline``, then ``candidate``): each is
            one replay in a child process.
        server: Fork both replays from this pool's warm servers instead of starting two
            interpreters (same verdict; see :mod:`replay.replayer.forkserver`).

    Returns:
        A :class:`VerifyResult`; NOT_REPRODUCIBLE when the baseline does not reproduce.

    Raises:
        SnapshotError: the file is missing or bad.
        UsageError: a code directory does not exist.
    """
    if progress is not None:
        progress("baseline")
    base = reproduce(snapshot, timeout_s=timeout_s, server=server)
    if base.verdict is Verdict.NOT_REPRODUCIBLE:
        return base
    with open_snapshot(snapshot) as snap:
        recorded = snap.outcome
        recorded_code = {f["path"]: f["sha256"] for f in snap.code_files}
    if progress is not None:
        progress("candidate")
    run = run_replay(snapshot, mode="keyed", code_dirs=code_dirs, timeout_s=timeout_s, server=server)
    changed = sorted(p for p, h in run.code.items() if recorded_code.get(p) != h)
    result = VerifyResult(
        snapshot=os.fspath(snapshot), verdict=Verdict.DIVERGED, reason="", entry=base.entry,
        recorded=summarize_outcome(recorded), observed=summarize_outcome(run.outcome) if run.outcome else run.status,
        divergence=run.divergence, changed_files=changed, synthesized=run.synthesized,
        from_environment=run.from_environment,
        unconsumed=run.unconsumed, effects=effect_changes(run), warnings=run.warnings,
        baseline=base.baseline, candidate=run,
    )
    result.verdict, result.reason = _judge(recorded, run)
    if result.verdict is Verdict.CHANGED:
        result.changes = diff_values(recorded.get("value"), run.outcome.get("value"))
    return result


def _judge(recorded: dict[str, Any], run: ReplayRun) -> tuple[Verdict, str]:
    if run.status != "ok":
        return Verdict.DIVERGED, f"the candidate could not be replayed: {run.reason or run.status}"
    if run.divergence:
        d = run.divergence
        return Verdict.DIVERGED, (
            f"the candidate asked {d['channel']} {d['op']}{d['asked']}, which the tape cannot answer "
            f"({d['reason']}); the result is inconclusive"
        )
    observed = run.outcome
    changes = effect_changes(run)
    effects_text = ""
    if changes:
        effects_text = "; effects differ: " + "; ".join(describe_effect(e) for e in changes[:3])
        if len(changes) > 3:
            effects_text += f" (+{len(changes) - 3} more)"
    if failed(recorded):
        if not failed(observed):
            now = summarize_outcome(observed) if observed.get("http_status") else "returns"
            return Verdict.FIXED, (f"the recorded {summarize_outcome(recorded)} no longer happens; the call now "
                                   f"{now}{effects_text}")
        if same_failure(recorded, observed):
            return Verdict.STILL_FAILING, f"the candidate still {_failing(observed)}"
        return Verdict.NEW_FAILURE, f"the candidate {_failing(observed)} instead of {summarize_outcome(recorded)}"
    if failed(observed):
        return Verdict.NEW_FAILURE, f"the call used to succeed; the candidate {_failing(observed)}"
    if same_value(recorded, observed):
        if changes:
            return Verdict.CHANGED, f"same return value as recorded{effects_text}"
        return Verdict.UNCHANGED, "same return value and effects as recorded"
    diffs = diff_values(recorded.get("value"), observed.get("value"))
    text = "; ".join(f"{path}: {old} -> {new}" for path, old, new in diffs[:5])
    more = f" (+{len(diffs) - 5} more)" if len(diffs) > 5 else ""
    return Verdict.CHANGED, f"the return value changed: {text}{more}{effects_text}"


def _failing(outcome: dict[str, Any]) -> str:
    """``raises ValueError('x') in a.py:f`` or ``responded HTTP 500``."""
    text = summarize_outcome(outcome)
    return f"raises {text}" if outcome.get("kind") == "exception" else text
