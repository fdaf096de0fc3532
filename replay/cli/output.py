"""Rich rendering helpers shared by the CLI commands."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from replay.replayer.tape import describe
from replay.snapshot import Section, Snapshot, SnapshotFile, ValidationReport
from replay.snapshot.codec import render
from replay.snapshot.model import header_reasons
from replay.snapshot.rendering import (
    call_text,
    format_size,
    frame_locals,
    innermost_app_frame,
    printable,
)
from replay.verify import FAILING_VERDICTS, Verdict, VerifyResult

VERDICT_STYLE = {
    Verdict.FIXED: "bold green",
    Verdict.UNCHANGED: "green",
    Verdict.REPRODUCED: "bold green",
    Verdict.CHANGED: "yellow",
    Verdict.DIVERGED: "yellow",
    Verdict.STILL_FAILING: "bold red",
    Verdict.NEW_FAILURE: "bold red",
    Verdict.NOT_REPRODUCIBLE: "bold magenta",
}


@functools.cache
def console() -> Console:
    """Console for normal output (stdout)."""
    return Console(highlight=False, soft_wrap=True)


@functools.cache
def error_console() -> Console:
    """Console for errors (stderr)."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def safe(text: Any, style: str = "") -> Text:
    """Text from a snapshot, with control characters escaped and no markup interpreted."""
    return Text(printable(text), style=style)


def _kv(rows: list[tuple[str, Any]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in rows:
        table.add_row(key, value if isinstance(value, Text) else safe(value))
    return table


def show_snapshot(snap: Snapshot, *, max_interactions: int = 15, all_locals: bool = False) -> None:
    """Print everything `replay show` shows (a recovered file may lack sections: said so)."""
    h = snap.header
    c = console()
    created = dt.datetime.fromtimestamp(h.get("created_at_ns", 0) / 1e9, dt.UTC)
    rows: list[tuple[str, Any]] = [
        ("file", snap.path),
        ("size", f"{format_size(snap.size_bytes)} ({snap.size_bytes} bytes)"),
        ("format", f"{snap.version[0]}.{snap.version[1]}"),
        ("snapshot id", h.get("snapshot_id", "?")),
        ("recorded", created.strftime("%Y-%m-%d %H:%M:%S UTC")),
        ("duration", f"{(h.get('duration_ns') or 0) / 1e6:.3f} ms"),
        ("replayable", Text("yes", style="green") if h.get("replayable") else
         Text("no: " + "; ".join(header_reasons(h)), style="red")),
    ]
    recovered = h.get("recovered")
    if isinstance(recovered, dict):
        rows.append(("recovered", Text(f"from {recovered.get('source')}: {recovered.get('frames')} frames kept, "
                                       f"{recovered.get('dropped_bytes')} bytes dropped", style="yellow")))
    c.print(Panel(_kv(rows), title="snapshot", title_align="left"))
    if snap.has(Section.ENTRY):
        entry = snap.entry
        c.print(Panel(_kv([
            ("entry point", f"{entry['module']}:{entry['qualname']}"),
            ("kind", entry.get("kind", "function")),
            ("file", entry.get("file") or "?"),
            ("call", call_text(entry)),
        ]), title="entry point", title_align="left"))
    else:
        c.print(_missing_panel("entry point"))
    c.print(_outcome_panel(snap.outcome, all_locals) if snap.has(Section.OUTCOME) else _missing_panel("outcome"))
    c.print(_tape_panel(snap, max_interactions))
    env = snap.environment if snap.has(Section.ENVIRONMENT) else {}
    files = snap.code_files
    code = Table("file", "sha256", "size", "embedded", box=None, pad_edge=False)
    for f in files:
        code.add_row(safe(f["path"]), str(f.get("sha256", "?"))[:12], str(f.get("size", "?")),
                     "yes" if f.get("source") is not None else "no")
    notes = [safe(n) for n in h.get("code_notes") or []]
    c.print(Panel(Group(_kv([("project root", env.get("project_root", "?")),
                             ("files", str(len(files)))]), code, *notes),
                  title="code identity", title_align="left"))
    if not env:
        c.print(_missing_panel("environment"))
        return
    tz = env.get("timezone") or {}
    libs = ", ".join(f"{k} {v}" for k, v in sorted((env.get("libraries") or {}).items())) or "(none loaded)"
    c.print(Panel(_kv([
        ("python", f"{env.get('implementation', '')} {env.get('python', '?')}"),
        ("platform", env.get("platform", "?")),
        ("libraries", libs),
        ("time zone", tz.get("key") or "/".join(tz.get("tzname", [])) or "?"),
        ("hash seed", env.get("hash_seed") if env.get("hash_seed") is not None else "random (unknown)"),
        ("cwd", env.get("cwd", "?")),
        ("argv", " ".join(env.get("argv", []))),
    ]), title="environment", title_align="left"))


def _missing_panel(what: str) -> Panel:
    return Panel(Text("missing: the recording was cut short before this was written", style="yellow"),
                 title=what, title_align="left", border_style="yellow")


def _outcome_panel(outcome: dict[str, Any], all_locals: bool) -> Panel | Group:
    if outcome.get("kind") == "return":
        returned = Panel(_kv([("returned", render(outcome.get("value"), width=500))]), title="outcome", title_align="left")
        logged = outcome.get("logged_exception")
        if not isinstance(logged, dict):
            return returned
        cause = _outcome_panel(logged, all_locals)
        if isinstance(cause, Panel):
            cause.title = "cause: the exception the app logged before it responded"
        return Group(returned, cause)
    items: list[Any] = [Text.assemble((str(outcome.get("type", "?")).rpartition(":")[2], "bold red"), ": ",
                                      safe(outcome.get("message", "")))]
    place = outcome.get("place")
    if place:
        items.append(Text(f"raised in {place[0]} :: {place[1]}", style="dim"))
    items.append(Text("Traceback (most recent call last):", style="bold"))
    frames = outcome.get("traceback", [])
    for f in frames:
        style = "" if f.get("path") else "dim"
        items.append(Text.assemble(("  File ", style), (f"{f.get('path') or f.get('file')}", f"{style} cyan"),
                                   (f", line {f.get('line')}, in {f.get('function')}", style)))
        if f.get("code"):
            items.append(Text("    " + f["code"], style=style or "white"))
        if all_locals or f is innermost_app_frame(frames):
            for name, value in frame_locals(f):
                items.append(Text.assemble(("      " + name, "yellow"), " = ", safe(value)))
    return Panel(Group(*items), title="outcome: exception", title_align="left", border_style="red")


def _tape_panel(snap: Snapshot, limit: int) -> Panel:
    total = snap.tape_length
    counts = snap.header.get("channels")
    if not isinstance(counts, dict) or sum(v for v in counts.values() if isinstance(v, int)) != total:
        counts = snap.channel_counts()
    summary = ", ".join(f"{ch}: {n}" for ch, n in sorted(counts.items())) or "no interactions"
    items: list[Any] = [Text(f"{total} interactions ({summary})", style="bold")]
    for i in range(min(limit, total)):
        items.append(safe("  " + describe(snap.interaction(i))))
    if total > limit:
        items.append(Text(f"  ... {total - limit} more (use --interactions N)", style="dim"))
    return Panel(Group(*items), title="tape", title_align="left")


def print_result(result: VerifyResult, *, verbose: bool = True, out: Console | None = None) -> None:
    """Print one verdict with its evidence (on ``out``, default stdout)."""
    c = out or console()
    style = VERDICT_STYLE.get(result.verdict, "bold")
    c.print(Text.assemble((f"{result.verdict.value:<16}", style), " ", safe(result.snapshot)))
    c.print(Text.assemble("  ", safe(result.reason)))
    if not verbose:
        return
    if result.entry:
        c.print(Text.assemble(("  entry:     ", "dim"), safe(result.entry)))
    if result.recorded:
        c.print(Text.assemble(("  recorded:  ", "dim"), safe(result.recorded)))
    if result.observed and result.verdict is not Verdict.REPRODUCED:
        c.print(Text.assemble(("  observed:  ", "dim"), safe(result.observed)))
    for path, old, new in result.changes:
        c.print(Text.assemble("    ", safe(path, "cyan"), ": ", safe(old, "red"), " -> ", safe(new, "green")))
    if result.divergence:
        d = result.divergence
        c.print(Text(f"  first divergence at interaction #{d['index']}: {d['reason']}", style="yellow"))
        c.print(Text.assemble("    asked:    ", safe(f"{d['channel']} {d['op']}{d['asked']}")))
        c.print(Text.assemble("    recorded: ", safe(d.get("recorded") or "(nothing on the tape answers it)")))
        for path, old, new in d.get("diff") or []:
            c.print(Text.assemble("    differs:  ", safe(path, "cyan"), ": recorded ", safe(old, "red"),
                                  ", asked ", safe(new, "green")))
        for cand in d.get("candidates") or []:
            c.print(Text.assemble("    nearest:  ", safe(cand)))
        if d.get("stack"):
            c.print(Text("    asked from (innermost last):", style="dim"))
            for line in d["stack"][-6:]:
                c.print(Text.assemble("      ", safe(line)))
    if result.effects:
        from replay.verify.verdict import describe_effect

        c.print(Text(f"  {len(result.effects)} effect(s) differ from the recording:", style="yellow"))
        for effect in result.effects[:10]:
            c.print(Text.assemble("    ", safe(describe_effect(effect))))
    if result.changed_files:
        c.print(Text.assemble(("  changed code: ", "dim"), safe(", ".join(result.changed_files))))
    if result.synthesized:
        c.print(Text.assemble(("  synthesized: ", "dim"),
                              safe(", ".join(f"{k} x{v}" for k, v in result.synthesized.items()))))
    if result.from_environment:
        c.print(Text(f"  {result.from_environment} env read(s) answered from the recorded environment", style="dim"))
    if result.unconsumed:
        c.print(Text(f"  {len(result.unconsumed)} recorded interaction(s) not asked for by the candidate", style="dim"))
    for w in result.warnings:
        c.print(Text.assemble(("  warning: ", "yellow"), safe(w)))


def print_summary(results: list[VerifyResult], fail_on: frozenset[Verdict] = FAILING_VERDICTS, *,
                  out: Console | None = None, errors: dict[str, int] | None = None,
                  footer: str | None = None) -> None:
    """A table of verdict counts; ``errors`` adds rows for snapshots without a verdict
    (label -> count, they always fail the run); ``footer`` is a caption (wall time)."""
    counts: dict[Verdict, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    table = Table("verdict", "snapshots", "fails the run", box=None, pad_edge=False, title="summary",
                  title_justify="left", caption=footer, caption_justify="left")
    for verdict, n in sorted(counts.items(), key=lambda kv: kv[0].value):
        table.add_row(Text(verdict.value, style=VERDICT_STYLE.get(verdict, "")), str(n), "yes" if verdict in fail_on else "no")
    for label, n in sorted((errors or {}).items()):
        table.add_row(Text(label, style="bold red"), str(n), "yes")
    (out or console()).print(table)


def print_validation(report: ValidationReport) -> None:
    """One line (and warnings) for a validated file."""
    c = console()
    if report.ok:
        counts = ", ".join(f"{name} {n}" for name, n in report.records.items())
        version = f"{report.version[0]}.{report.version[1]}" if report.version else "?"
        c.print(Text.assemble(("valid     ", "bold green"), safe(report.path)))
        c.print(Text(f"  format {version}, {report.frames} frames, {format_size(report.size_bytes)} "
                     f"({format_size(report.content_bytes)} decompressed); records: {counts}", style="dim"))
    else:
        err = report.error
        c.print(Text.assemble(("invalid   ", "bold red"), safe(report.path)))
        if err is not None:
            where = f"at byte {err.offset}: " if err.offset is not None else ""
            c.print(Text.assemble("  ", (type(err).__name__, "red"), ": ", safe(where + err.detail)))
    for w in report.warnings:
        c.print(Text.assemble(("  warning: ", "yellow"), safe(w)))


def print_recovery(rec: dict[str, Any]) -> None:
    """What ``validate --recover`` did for one file."""
    c = console()
    if "output" not in rec:
        c.print(Text.assemble(("  not recoverable: ", "bold red"), safe(rec.get("error", ""))))
        return
    records = ", ".join(f"{k} {v}" for k, v in rec["records"].items()) or "none"
    style = "bold green" if rec["ok"] else "bold red"
    c.print(Text.assemble(("  recovered ", style), safe(rec["output"])))
    c.print(Text(f"    {rec['frames']} frames kept (records: {records}); {rec['dropped_bytes']} bytes dropped; "
                 f"stopped at: {rec['stop_reason']}", style="dim"))
    if rec.get("missing"):
        c.print(Text(f"    missing sections: {', '.join(rec['missing'])} (marked not replayable)", style="yellow"))
    if not rec["ok"]:
        c.print(Text.assemble(("    the recovered file does not validate: ", "red"), safe(rec.get("error") or "")))


def show_records(file: SnapshotFile, section: int | None, *, as_json: bool = False) -> None:
    """Print every record in storage order with its frame offset and offset in the frame.

    Streams: one line per record, never the whole file in memory.
    """
    if as_json:
        import json
        import sys

        for pos in file.iter_positions():
            if section is None or pos.section == section:
                sys.stdout.write(json.dumps({
                    "section": Section.name(pos.section), "record": pos.number, "frame_offset": pos.frame_offset,
                    "content_offset": pos.content_offset, "size": pos.size, "value": pos.record,
                }, default=repr) + "\n")
        return
    c = console()
    c.print(Text(f"{file.path}: format {file.version[0]}.{file.version[1]}, {file.frame_count} frames, "
                 f"{format_size(file.size_bytes)}", style="bold"))
    c.print(Text(f"{'section':<12} {'record':>7} {'frame@':>10} {'+offset':>8} {'size':>6}  value", style="dim"))
    width = max(c.width - 50, 40) if c.is_terminal else 200
    for pos in file.iter_positions():
        if section is not None and pos.section != section:
            continue
        text = repr(pos.record)
        if len(text) > width:
            text = text[: width - 3] + "..."
        c.print(Text.assemble(
            (f"{Section.name(pos.section):<12} {pos.number:>7} {pos.frame_offset:>10} "
             f"{pos.content_offset:>8} {pos.size:>6}  ", "cyan"), safe(text)))


def print_check(report: Any) -> None:
    """The determinism check report (:class:`replay.verify.check.CheckReport`)."""
    c = console()
    if report.deterministic:
        c.print(Text.assemble(("DETERMINISTIC  ", "bold green"), safe(report.snapshot)))
    else:
        c.print(Text.assemble(("LEAKS          ", "bold red"), safe(report.snapshot)))
    channels = ", ".join(f"{k}: {v}" for k, v in sorted(report.channels.items())) or "none"
    c.print(Text(f"  {report.reproduced} of {report.runs} replays reproduced the recording; "
                 f"{report.interactions} interactions recorded ({channels})", style="dim"))
    if report.exit_status is not None:
        c.print(Text(f"  the recorded program exited with status {report.exit_status}", style="dim"))
    if report.leaks:
        c.print(Text(f"  leaked channels: {', '.join(report.leaked_channels())}", style="yellow"))
        for leak in report.leaks[:20]:
            c.print(Text.assemble("    ", (f"{leak.kind:<11}", "yellow"), (f"{leak.channel:<10}", "cyan"),
                                  f"replay {leak.replay}: ", safe(leak.detail)))
        if len(report.leaks) > 20:
            c.print(Text(f"    ... {len(report.leaks) - 20} more", style="dim"))
    for w in report.warnings:
        c.print(Text.assemble(("  warning: ", "yellow"), safe(w)))
