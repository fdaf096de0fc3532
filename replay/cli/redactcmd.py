"""``replay redact``: apply more redaction rules to an existing snapshot before sharing it.

Reads every record with :class:`~replay.snapshot.reader.SnapshotFile`, runs the default
rules plus the extra ``--name``/``--pattern`` rules over them
(:func:`replay.capture.redact_records.redact_snapshot`, the same walk capture uses) and
writes a new file with :class:`~replay.snapshot.writer.SnapshotWriter` (a temporary file,
fsync, atomic rename: ``-o`` may name the input, which is then replaced only once the new
file is complete). The header's ``redaction`` manifest gains this pass's rule hash and hit
counts. Tokens already in the file stay as they are; new tokens use a fresh key.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import click

from replay.cli import cli, dump_json

REDACT_EXIT_HELP = """\b
Exit codes:
  0   the redacted copy was written
  2   usage error (a bad --pattern, no -o)
  3   the snapshot is missing, corrupt or not a snapshot"""


def redact_file(source: str, output: str, *, names: tuple[str, ...] = (), patterns: tuple[str, ...] = ()) -> dict[str, Any]:
    """Write a redacted copy of ``source`` to ``output``; return this pass's manifest.

    Args:
        source: A snapshot file.
        output: Where the copy goes (may be ``source``: replaced atomically when complete).
        names: Extra secret names (normalised substrings, like the defaults).
        patterns: Extra value regexes (group 1, else the whole match, is the secret).

    Raises:
        UsageError: a pattern is not a valid regular expression.
        SnapshotError: the source cannot be read.
        OSError: the output cannot be written (nothing is left under its name).
    """
    from replay.capture.redact import current_policy
    from replay.capture.redact_records import redact_snapshot, trace_record
    from replay.errors import UsageError
    from replay.snapshot.format import Section
    from replay.snapshot.reader import SnapshotFile
    from replay.snapshot.writer import SnapshotWriter

    for p in patterns:
        try:
            re.compile(p)
        except re.error as exc:
            raise UsageError(f"--pattern {p!r} is not a regular expression: {exc}") from exc
    base = current_policy()
    policy = dataclasses.replace(base, enabled=True, names=base.names + names, patterns=base.patterns + patterns)
    with SnapshotFile(source) as f:
        present = f.sections

        def records(section: int) -> list[Any]:
            return list(f.iter_records(section)) if section in present else []

        entry, outcome, env = (records(s) or [{}] for s in (Section.ENTRY, Section.OUTCOME, Section.ENVIRONMENT))
        red = redact_snapshot(entry=entry[0], tape=records(Section.TAPE), outcome=outcome[0],
                              environment=env[0], code=records(Section.CODE), policy=policy)
        header = dict(f.header)
        before = header.get("redaction") or {}
        header["redaction"] = _merge(before, red.manifest)
        if header.get("exception_message") is not None:
            header["exception_message"] = (red.outcome.get("message") or "")[:500]
        writer = SnapshotWriter(output, header)
        try:
            writer.write_section(Section.ENTRY, [red.entry])
            writer.write_section(Section.ENVIRONMENT, [red.environment])
            writer.write_section(Section.CODE, red.code)
            writer.write_section(Section.TAPE, red.tape)
            writer.write_section(Section.OUTCOME, [red.outcome])
            for number, frame in enumerate(f.frames):
                if frame.section not in (Section.ENTRY, Section.ENVIRONMENT, Section.CODE, Section.TAPE,
                                         Section.OUTCOME, Section.TRACE_STEPS, Section.TRACE_SOURCES):
                    writer.write_frame(frame.section, frame.records, f.raw_payload(number))
            for section in (Section.TRACE_STEPS, Section.TRACE_SOURCES):
                writer.write_section(section, (trace_record(red.walker, section, r) for r in records(section)))
            writer.close()
        except BaseException:
            writer.abort()
            raise
    return red.manifest


def _merge(before: dict[str, Any], now: dict[str, Any]) -> dict[str, Any]:
    """The file's manifest after one more pass: hits summed, each pass's policy listed."""
    hits = dict(before.get("hits") or {})
    for rule, n in now["hits"].items():
        hits[rule] = hits.get(rule, 0) + n
    passes = list(before.get("passes") or ([{"policy": before.get("policy"), "enabled": before.get("enabled")}]
                                           if before else []))
    passes.append({"policy": now["policy"], "enabled": True, "tool": "replay redact", "hits": now["hits"]})
    return {**before, **now, "enabled": bool(before.get("enabled", True)) or now["enabled"], "hits": hits,
            "errors": int(before.get("errors") or 0) + now["errors"], "passes": passes}


@cli.command("redact", epilog=REDACT_EXIT_HELP)
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="The redacted copy (may be SNAPSHOT itself: replaced atomically once complete).")
@click.option("--name", "names", multiple=True, metavar="NAME",
              help="Also redact values bound to names containing NAME (normalised like the defaults; repeatable).")
@click.option("--pattern", "patterns", multiple=True, metavar="REGEX",
              help="Also redact text matching REGEX (group 1, else the whole match; repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print this pass's manifest as JSON.")
def redact_cmd(snapshot: str, output: str, names: tuple[str, ...], patterns: tuple[str, ...], as_json: bool) -> int:
    """Write a copy of SNAPSHOT with the default redaction rules and extra ones applied,
    before it is attached to a ticket. The copy still replays: a token in a recorded
    request matches what the replayed program sends in its place.

    \b
    Examples:
      replay redact snap.rsnap -o shared.rsnap --name customer_ref --pattern 'ORD-\\d{6}'
      replay redact snap.rsnap -o snap.rsnap          (in place, atomically)
    """
    from replay.cli.output import console

    manifest = redact_file(snapshot, output, names=names, patterns=patterns)
    if as_json:
        dump_json({"output": os.path.abspath(output), "redaction": manifest})
        return 0
    hits = ", ".join(f"{rule} {n}" for rule, n in manifest["hits"].items()) or "nothing new found"
    console().print(f"redacted copy written to {output}: {hits}")
    return 0
