"""Machine-readable reports of a verify run: JSON, JUnit XML, GitHub Actions annotations.

UI-free, like :mod:`replay.verify.batch`. Text from snapshots (exception messages, values)
can hold control characters and terminal escape sequences: every report neutralises them.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from typing import Any

from replay.snapshot.rendering import printable
from replay.verify.batch import BatchReport, Outcome
from replay.verify.verdict import Verdict, VerifyResult, describe_effect

# Characters XML 1.0 cannot hold at all, plus the C1 controls and DEL.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def first_divergence(result: VerifyResult) -> str:
    """One line: ``first divergence at interaction #3: ...; asked http GET(...); recorded ...``."""
    d = result.divergence
    if not d:
        return ""
    text = f"first divergence at interaction #{d.get('index')}: {d.get('reason')}"
    text += f"; asked {d.get('channel')} {d.get('op')}{d.get('asked')}"
    return text + f"; recorded {d.get('recorded') or '(nothing on the tape answers it)'}"


def details(outcome: Outcome) -> str:
    """The evidence of one outcome as plain text lines (JUnit bodies, annotations)."""
    r = outcome.result
    if r is None:
        return printable(outcome.error)
    lines = [f"{r.verdict.value}: {r.reason}"]
    if r.entry:
        lines.append(f"entry: {r.entry}")
    if r.recorded:
        lines.append(f"recorded: {r.recorded}")
    if r.observed:
        lines.append(f"observed: {r.observed}")
    lines += [f"changed {path}: {old} -> {new}" for path, old, new in r.changes[:10]]
    if r.divergence:
        lines.append(first_divergence(r))
    lines += [f"effect {describe_effect(e)}" for e in r.effects[:10]]
    if r.changed_files:
        lines.append("changed code: " + ", ".join(r.changed_files))
    return printable("\n".join(lines))


def to_json(report: BatchReport, fail_on: frozenset[Verdict], exit_code: int, run: dict[str, Any]) -> dict[str, Any]:
    """The ``--json`` document.

    Shape (``results``, ``summary``, ``fail_on`` and ``exit_code`` as in earlier releases)::

        {"results": [VerifyResult.to_dict() + {"duration_s"}...],   # corpus order
         "errors": [{"snapshot", "kind": "bad_snapshot"|"internal", "message", "duration_s"}...],
         "summary": {"FIXED": 3, ...},                              # verdicts only
         "fail_on": ["NEW_FAILURE", ...], "exit_code": 0,
         "run": {"snapshots", "failed", "errors", "wall_time_s", "jobs", **run}}
    """
    results = []
    errors = []
    for o in report.outcomes:
        if o.result is not None:
            results.append({**o.result.to_dict(), "duration_s": round(o.duration_s, 3)})
        else:
            errors.append({"snapshot": o.name, "kind": o.error_kind, "message": o.error,
                           "duration_s": round(o.duration_s, 3)})
    summary: dict[str, int] = {}
    for r in report.results:
        summary[r.verdict.value] = summary.get(r.verdict.value, 0) + 1
    return {
        "results": results, "errors": errors, "summary": dict(sorted(summary.items())),
        "fail_on": sorted(v.value for v in fail_on), "exit_code": int(exit_code),
        "run": {"snapshots": len(report.outcomes), "failed": len(report.failed(fail_on)), "errors": len(errors),
                "wall_time_s": round(report.wall_time_s, 3), "jobs": report.jobs, **run},
    }


def junit_xml(report: BatchReport, fail_on: frozenset[Verdict], *, suite: str = "replay verify") -> bytes:
    """A JUnit XML document: one ``testcase`` per snapshot.

    A verdict in ``fail_on`` is a ``failure`` (``type`` = the verdict, ``message`` = the
    reason, body = the evidence with the first divergence); a snapshot that could not be
    verified is an ``error``; every case carries its verdict as a property and in
    ``system-out``. The format is the one Jenkins, GitLab and the GitHub test-report actions
    read (testsuites > testsuite > testcase).

    Returns:
        UTF-8 bytes with an XML declaration.
    """
    failed = report.failed(fail_on)
    errors = [o for o in report.outcomes if o.result is None]
    root = ET.Element("testsuites", name=suite, tests=str(len(report.outcomes)), failures=str(len(failed)),
                      errors=str(len(errors)), time=f"{report.wall_time_s:.3f}")
    ts = ET.SubElement(root, "testsuite", name=suite, tests=str(len(report.outcomes)), failures=str(len(failed)),
                       errors=str(len(errors)), skipped="0", time=f"{report.wall_time_s:.3f}")
    for o in report.outcomes:
        entry = o.result.entry if o.result is not None else ""
        case = ET.SubElement(ts, "testcase", classname=_xml(entry or "replay.snapshot"), name=_xml(o.name),
                             time=f"{o.duration_s:.3f}")
        props = ET.SubElement(case, "properties")
        ET.SubElement(props, "property", name="verdict", value=o.label)
        body = _xml(details(o))
        if o.result is None:
            ET.SubElement(case, "error", type=o.error_kind, message=_xml(o.error.splitlines()[0] if o.error else "")
                          ).text = body
        elif o.result.verdict in fail_on:
            ET.SubElement(case, "failure", type=o.result.verdict.value,
                          message=_xml(f"{o.result.verdict.value}: {o.result.reason}")).text = body
        ET.SubElement(case, "system-out").text = body
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _xml(text: str) -> str:
    """Printable text that XML 1.0 can hold (ElementTree escapes markup, not these)."""
    return _NOT_XML.sub(lambda m: repr(m.group())[1:-1], printable(text))


def github_annotations(report: BatchReport, fail_on: frozenset[Verdict], *, cwd: str | None = None) -> list[str]:
    """GitHub Actions workflow commands (``::error file=F,line=L,title=T::message``).

    Verdicts in ``fail_on`` and snapshots that could not be verified are ``error``;
    CHANGED and DIVERGED outside ``fail_on`` are ``warning``; FIXED and UNCHANGED give
    nothing. The location is the innermost application frame of the candidate's exception
    when that file is under ``cwd`` (a file of the pull request, so the annotation lands on
    the diff), else the snapshot file.

    Returns:
        One line per annotation, escaped as the runner expects (``%``, CR, LF; and ``:`` and
        ``,`` in properties).
    """
    cwd = os.path.abspath(cwd or os.getcwd())
    lines = []
    for o in report.outcomes:
        r = o.result
        if r is None or r.verdict in fail_on:
            level = "error"
        elif r.verdict in (Verdict.CHANGED, Verdict.DIVERGED):
            level = "warning"
        else:
            continue
        file, line = _location(o, cwd)
        props = f"file={_prop(file)}" + (f",line={line}" if line else "")
        props += f",title={_prop(f'replay verify: {o.label}')}"
        message = f"{o.name}\n{details(o)}"
        lines.append(f"::{level} {props}::{_data(message)}")
    return lines


_STACK_LINE = re.compile(r"^(?P<file>.+):(?P<line>\d+) in \S+$")


def _location(outcome: Outcome, cwd: str) -> tuple[str, int | None]:
    """Where the candidate failed (exception frame) or asked what the tape lacks
    (divergence stack), as a path under ``cwd``; else the snapshot itself."""
    r = outcome.result
    places: list[tuple[Any, Any]] = []
    if r is not None and r.divergence:
        for text in r.divergence.get("stack") or []:
            m = _STACK_LINE.match(str(text))
            if m:
                places.append((m["file"], int(m["line"])))
    run = r.candidate if r is not None else None
    if run is not None and run.outcome:
        places += [(f.get("file"), f.get("line")) for f in run.outcome.get("traceback") or [] if f.get("path")]
    for file, line in reversed(places):
        if isinstance(file, str) and os.path.isfile(file):
            rel = os.path.relpath(file, cwd)
            if not rel.startswith(".."):
                return rel, line
    return outcome.name, None


def _data(text: str) -> str:
    return printable(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _prop(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")
