"""Ticket-ready summaries of a snapshot: ``replay export SNAP --format md|json|html``.

:func:`summarize` reads a snapshot into a plain, bounded summary (what failed, the call, the
traceback with the failing frames' locals, a tape summary, the environment and the commands
that reproduce and verify it); :func:`render_markdown`, :func:`render_json` and
:func:`render_html` format it. The pieces ``replay show`` also prints come from
:mod:`replay.snapshot.rendering`.

Safety: a snapshot may come from a stranger, and its strings end up in a terminal, a ticket
tracker or a browser. Every string of the summary is neutralised when the summary is built
(:func:`replay.snapshot.rendering.printable`: control characters, escape sequences and bidi
overrides become visible escapes), so all three formats are safe; Markdown puts snapshot
text only inside code spans and fenced blocks, HTML escapes everything and has no scripts.
Nothing from the snapshot is imported or executed.

UI-free (no click, no rich): the CLI command is :mod:`replay.cli.exportcmd`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import json
import os
import shlex
from typing import Any, Final

from replay.snapshot import Section, Snapshot
from replay.snapshot.model import header_reasons
from replay.snapshot.rendering import (
    call_text,
    format_size,
    frame_locals,
    innermost_app_frame,
    printable,
    render,
)

FORMATS: Final = ("md", "json", "html")


@dataclasses.dataclass(frozen=True)
class Bounds:
    """How much of a snapshot a summary keeps (everything cut is said so in ``notes``).

    Attributes:
        value_chars: Characters per value, message or source line.
        frames: Traceback frames shown (the innermost ones).
        locals_per_frame: Locals shown per application frame.
        interactions: Tape interactions listed (the first ones).
        libraries: Library versions listed.
    """

    value_chars: int = 240
    frames: int = 12
    locals_per_frame: int = 20
    interactions: int = 10
    libraries: int = 20


def _cut(text: Any, limit: int, notes: set[str]) -> str:
    """Neutralised one-line ``text``, cut to ``limit`` characters with the full length said."""
    out = printable(text, newlines=False)
    if len(out) <= limit:
        return out
    notes.add("long values are cut, ending in …")
    return f"{out[: limit - 1]}…"


def summarize(snap: Snapshot, *, bounds: Bounds = Bounds(), path: str | None = None) -> dict[str, Any]:
    """The bounded, neutralised summary of a snapshot, as JSON-ready data.

    Args:
        snap: An opened snapshot (a recovered file may lack sections: said so in ``notes``).
        bounds: How much to keep.
        path: The snapshot path to print in the commands (default ``snap.path``).

    Returns:
        A map with ``title``, ``snapshot``, ``entry``, ``outcome``, ``traceback``, ``tape``,
        ``environment``, ``code``, ``commands`` and ``notes`` (what was cut or is missing).
        Every string in it is printable (see the module docstring).

    Raises:
        SnapshotError: a section the summary reads is damaged.
    """
    notes: set[str] = set()
    h = snap.header
    cut = bounds.value_chars
    created = dt.datetime.fromtimestamp((h.get("created_at_ns") or 0) / 1e9, dt.UTC)
    entry = snap.entry if snap.has(Section.ENTRY) else {}
    outcome = snap.outcome if snap.has(Section.OUTCOME) else {}
    for name, section in (("entry point", Section.ENTRY), ("outcome", Section.OUTCOME),
                          ("environment", Section.ENVIRONMENT)):
        if not snap.has(section):
            notes.add(f"the {name} section is missing (the recording was cut short)")
    point = f"{entry['module']}:{entry['qualname']}" if entry else str(h.get("entry", "?"))
    # what failed: the exception, or the one a web app logged for its 5xx response
    logged = outcome.get("logged_exception")
    cause = outcome if outcome.get("kind") == "exception" else logged if isinstance(logged, dict) else None
    summary: dict[str, Any] = {
        "snapshot": {
            "file": _cut(os.path.basename(snap.path), cut, notes),
            "id": _cut(h.get("snapshot_id", "?"), 64, notes),
            "size": f"{format_size(snap.size_bytes)} ({snap.size_bytes} bytes)",
            "format": f"{snap.version[0]}.{snap.version[1]}",
            "recorded_at": created.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "duration_ms": round((h.get("duration_ns") or 0) / 1e6, 3),
            "replayable": bool(h.get("replayable")),
            "not_replayable_because": [_cut(r, cut, notes) for r in header_reasons(h)[:5]],
        },
        "entry": {"point": _cut(point, cut, notes), "kind": _cut(entry.get("kind", "function"), 40, notes),
                  "call": _cut(call_text(entry, width=cut + 1), 2 * cut, notes) if entry else ""},
        "outcome": _outcome(outcome, cut, notes),
        "failure": _outcome(cause, cut, notes) if cause else None,
        "traceback": _traceback(cause or outcome, bounds, notes),
        "tape": _tape(snap, bounds, notes),
        "environment": _environment(snap.environment if snap.has(Section.ENVIRONMENT) else {}, bounds, notes),
        "code": {"files": len(snap.code_files),
                 "embedded": sum(1 for f in snap.code_files if f.get("source") is not None)},
        "commands": _commands(path or snap.path),
    }
    o = summary["outcome"]
    if o["kind"] == "exception":
        what = f"{o['type']}: {o['message']}"
    elif "http_status" in o:
        what = f"HTTP {o['http_status']} response" + ("" if o["failed"] else " (no failure)")
        if summary["failure"]:
            what += f" ({summary['failure']['type']}: {summary['failure']['message']}, logged)"
    else:
        what = f"{o['kind']} (no failure)"
    summary["title"] = _cut(f"{what} in {point}", cut, notes)
    summary["notes"] = sorted(notes)
    return summary


def _outcome(outcome: dict[str, Any], cut: int, notes: set[str]) -> dict[str, Any]:
    kind = str(outcome.get("kind", "missing"))
    out: dict[str, Any] = {"kind": _cut(kind, 40, notes)}
    if kind == "exception":
        place = outcome.get("place")
        out.update(type=_cut(str(outcome.get("type", "?")).rpartition(":")[2], cut, notes),
                   message=_cut(outcome.get("message", ""), 2 * cut, notes),
                   place=_cut(f"{place[0]} :: {place[1]}", cut, notes) if isinstance(place, list) and len(place) == 2
                   else None)
    elif "value" in outcome:
        out["value"] = _cut(render(outcome.get("value"), width=2 * cut + 1), 2 * cut, notes)
    if outcome.get("http_status") is not None:  # web entry points: the response is the outcome
        out["http_status"] = _cut(outcome["http_status"], 40, notes)
    out["failed"] = kind == "exception" or bool(outcome.get("failed"))
    return out


def _traceback(outcome: dict[str, Any], bounds: Bounds, notes: set[str]) -> list[dict[str, Any]]:
    frames = [f for f in outcome.get("traceback") or [] if isinstance(f, dict)]
    if len(frames) > bounds.frames:
        notes.add(f"only the innermost {bounds.frames} of {len(frames)} traceback frames are shown")
        frames = frames[-bounds.frames:]
    innermost = innermost_app_frame(frames)
    out = []
    for f in frames:
        pairs = frame_locals(f, width=bounds.value_chars + 1)  # +1: _cut notices and says so
        if len(pairs) > bounds.locals_per_frame:
            notes.add(f"at most {bounds.locals_per_frame} locals per frame are shown")
        cut = bounds.value_chars
        out.append({
            "file": _cut(f.get("path") or f.get("file") or "?", cut, notes),
            "line": f.get("line") if isinstance(f.get("line"), int) else None,
            "function": _cut(f.get("function", "?"), cut, notes),
            "code": _cut(f.get("code") or "", cut, notes),
            "application": bool(f.get("path")),
            "failing": f is innermost,
            "locals": [[_cut(k, 80, notes), _cut(v, cut, notes)] for k, v in pairs[: bounds.locals_per_frame]],
        })
    return out


def _tape(snap: Snapshot, bounds: Bounds, notes: set[str]) -> dict[str, Any]:
    from replay.replayer.tape import describe

    total = snap.tape_length
    counts = snap.header.get("channels")
    if not isinstance(counts, dict) or sum(v for v in counts.values() if isinstance(v, int)) != total:
        counts = dict(snap.channel_counts())
    shown = min(total, bounds.interactions)
    if total > shown:
        notes.add(f"only the first {shown} of {total} tape interactions are listed")
    return {
        "interactions": total,
        "channels": {_cut(k, 40, notes): int(v) for k, v in sorted(counts.items()) if isinstance(v, int)},
        "first": [_cut(describe(snap.interaction(i)), bounds.value_chars, notes) for i in range(shown)],
    }


def _environment(env: dict[str, Any], bounds: Bounds, notes: set[str]) -> dict[str, Any]:
    if not env:
        return {}
    tz: dict[str, Any] = env["timezone"] if isinstance(env.get("timezone"), dict) else {}
    libs: dict[str, Any] = env["libraries"] if isinstance(env.get("libraries"), dict) else {}
    if len(libs) > bounds.libraries:
        notes.add(f"only {bounds.libraries} of {len(libs)} libraries are listed")
    seed = env.get("hash_seed")
    return {
        "python": _cut(f"{env.get('implementation', '')} {env.get('python', '?')}".strip(), 80, notes),
        "platform": _cut(env.get("platform", "?"), 120, notes),
        "time_zone": _cut(tz.get("key") or "/".join(map(str, tz.get("tzname") or [])) or "?", 80, notes),
        "hash_seed": _cut(seed if seed is not None else "random (unknown)", 40, notes),
        "libraries": {_cut(k, 80, notes): _cut(v, 40, notes) for k, v in sorted(libs.items())[: bounds.libraries]},
    }


def _commands(path: str) -> dict[str, str]:
    snap = shlex.quote(printable(path, newlines=False))
    return {
        "show": f"replay show {snap}",
        "run": f"replay run {snap}",
        "verify": f"replay verify {snap} --code ./your-fix",
        "tui": f"replay tui {snap}",
    }


# ------------------------------------------------------------------------------ formats


def render_json(summary: dict[str, Any]) -> str:
    """The summary as indented JSON (UTF-8 text; every string is already printable)."""
    return json.dumps(summary, indent=2, ensure_ascii=False) + "\n"


def _backtick_run(text: str) -> int:
    """Length of the longest run of backticks in ``text``."""
    run = longest = 0
    for c in text:
        run = run + 1 if c == "`" else 0
        longest = max(longest, run)
    return longest


def _code(text: str) -> str:
    """A Markdown code span that holds ``text`` whatever backticks it contains (CommonMark)."""
    ticks = "`" * (_backtick_run(text) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") or not text.strip() else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(lines: list[str], lang: str = "") -> list[str]:
    """A fenced block longer than any backtick run inside it, so the content cannot close it."""
    fence = "`" * max(3, _backtick_run("\n".join(lines)) + 1)
    return [f"{fence}{lang}", *lines, fence]


def _traceback_lines(summary: dict[str, Any]) -> list[str]:
    lines = ["Traceback (most recent call last):"]
    for f in summary["traceback"]:
        lines.append(f'  File "{f["file"]}", line {f["line"]}, in {f["function"]}')
        if f["code"]:
            lines.append(f"    {f['code']}")
        lines += [f"      {name} = {value}" for name, value in f["locals"]]
    o = summary["failure"]
    lines.append(f"{o['type']}: {o['message']}")
    return lines


def render_markdown(summary: dict[str, Any]) -> str:
    """The summary as GitHub-flavoured Markdown: snapshot text only in code spans and blocks."""
    s, o, e = summary["snapshot"], summary["outcome"], summary["entry"]
    failure = summary["failure"]
    out = [f"## replay snapshot: {_code(summary['title'])}", ""]
    verb = "failed" if o["failed"] else "returned"
    out.append(f"{_code(e['point'])} {verb} at {s['recorded_at']} after {s['duration_ms']} ms. "
               f"Snapshot {_code(s['file'])} ({s['size']}, id {_code(s['id'])}, format {s['format']}, "
               + ("replayable)." if s["replayable"] else "**not replayable**: "
                  + "; ".join(_code(r) for r in s["not_replayable_because"]) + ")."))
    out += ["", "### Call", "", *_fence([e["call"]], "python")]
    if failure:
        how = "logged by the app, which responded" if o["kind"] != "exception" else "exception"
        out += ["", "### What failed", "", f"- {how}: {_code(failure['type'])}: {_code(failure['message'])}"]
        if failure.get("place"):
            out.append(f"- raised in: {_code(failure['place'])}")
        out += ["", "Traceback with the failing frames' locals:", "", *_fence(_traceback_lines(summary))]
    if o["kind"] != "exception":
        out += ["", "### Outcome", "", f"- {_code(o['kind'])}: {_code(str(o.get('value', '')))}"]
    if "http_status" in o:
        out.append(f"- HTTP status: {_code(str(o['http_status']))}")
    t = summary["tape"]
    channels = ", ".join(f"{k}: {v}" for k, v in t["channels"].items()) or "no interactions"
    out += ["", "### Tape", "", f"{t['interactions']} interaction(s) ({_code(channels)}).", ""]
    if t["first"]:
        out += _fence(t["first"])
    env = summary["environment"]
    if env:
        libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items()) or "(none loaded)"
        out += ["", "### Environment", ""]
        out += [f"- {label}: {_code(str(value))}" for label, value in (
            ("python", env["python"]), ("platform", env["platform"]), ("time zone", env["time_zone"]),
            ("hash seed", env["hash_seed"]), ("libraries", libs))]
    c = summary["code"]
    out += ["", f"Code: {c['files']} application file(s), {c['embedded']} embedded in the snapshot.", ""]
    out += ["### Reproduce and verify", "", "Attach the `.rsnap` file to the ticket, then:", ""]
    out += _fence([summary["commands"][k] for k in ("run", "verify", "tui")], "bash")
    if summary["notes"]:
        out += ["", "<sub>Shortened: " + "; ".join(summary["notes"]) + ".</sub>"]
    return "\n".join(out) + "\n"


_STYLE: Final = """
body{font:14px/1.45 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}
pre{background:#f6f8fa;padding:.75rem;overflow-x:auto;border-radius:4px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:13px}
th{text-align:left;padding-right:1rem;vertical-align:top}
.failed{color:#b00020} .note{color:#666;font-size:12px}
"""


def render_html(summary: dict[str, Any]) -> str:
    """The summary as one self-contained HTML page: inline style, no scripts, all text escaped."""
    x = html.escape
    s, o, e, t = summary["snapshot"], summary["outcome"], summary["entry"], summary["tape"]
    failure = summary["failure"]
    failed = bool(o["failed"])

    def rows(pairs: list[tuple[str, Any]]) -> str:
        return "".join(f"<tr><th>{x(k)}</th><td><code>{x(str(v))}</code></td></tr>" for k, v in pairs)

    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{x(summary['title'])}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        f'<h1 class="{"failed" if failed else "ok"}">{x(summary["title"])}</h1>',
        "<table>", rows([("entry point", e["point"]), ("recorded", s["recorded_at"]),
                         ("duration", f"{s['duration_ms']} ms"), ("snapshot", s["file"]), ("id", s["id"]),
                         ("size", s["size"]), ("format", s["format"]),
                         ("replayable", "yes" if s["replayable"] else "no: " + "; ".join(s["not_replayable_because"]))]),
        "</table>", "<h2>Call</h2>", f"<pre>{x(e['call'])}</pre>",
    ]
    if failure:
        how = "exception" if o["kind"] == "exception" else "logged exception"
        parts += ["<h2>What failed</h2>", "<table>",
                  rows([(how, f"{failure['type']}: {failure['message']}"), ("raised in", failure.get("place") or "?")]),
                  "</table>", "<h3>Traceback with the failing frames' locals</h3>",
                  f"<pre>{x(chr(10).join(_traceback_lines(summary)))}</pre>"]
    if o["kind"] != "exception":
        parts += ["<h2>Outcome</h2>", "<table>", rows([(o["kind"], o.get("value", ""))]), "</table>"]
    channels = ", ".join(f"{k}: {v}" for k, v in t["channels"].items()) or "no interactions"
    parts += ["<h2>Tape</h2>", f"<p>{t['interactions']} interaction(s) ({x(channels)})</p>"]
    if t["first"]:
        parts.append(f"<pre>{x(chr(10).join(t['first']))}</pre>")
    env = summary["environment"]
    if env:
        libs = ", ".join(f"{k} {v}" for k, v in env["libraries"].items()) or "(none loaded)"
        parts += ["<h2>Environment</h2>", "<table>",
                  rows([("python", env["python"]), ("platform", env["platform"]), ("time zone", env["time_zone"]),
                        ("hash seed", env["hash_seed"]), ("libraries", libs)]), "</table>"]
    commands = "\n".join(summary["commands"][k] for k in ("run", "verify", "tui"))
    parts += ["<h2>Reproduce and verify</h2>", "<p>Attach the <code>.rsnap</code> file to the ticket, then:</p>",
              f"<pre>{x(commands)}</pre>"]
    if summary["notes"]:
        parts.append(f'<p class="note">Shortened: {x("; ".join(summary["notes"]))}.</p>')
    parts += ["</body>", "</html>"]
    return "\n".join(parts) + "\n"


RENDERERS: Final = {"md": render_markdown, "json": render_json, "html": render_html}


def export(snap: Snapshot, fmt: str, *, bounds: Bounds = Bounds(), path: str | None = None) -> str:
    """A snapshot's ticket summary in ``fmt`` (``md``, ``json`` or ``html``).

    Raises:
        UsageError: unknown format.
        SnapshotError: the snapshot is damaged.
    """
    from replay.errors import UsageError

    if fmt not in RENDERERS:
        raise UsageError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return RENDERERS[fmt](summarize(snap, bounds=bounds, path=path))
