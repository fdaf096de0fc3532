"""``replay export``: a ticket-ready summary of a snapshot (Markdown, JSON or HTML)."""

from __future__ import annotations

import os
import sys
import tempfile

import click

from replay.cli import EXIT_CODES_HELP, ExitCode, cli
from replay.export import FORMATS, export
from replay.snapshot import open_snapshot


@cli.command("export", epilog=EXIT_CODES_HELP)
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("--format", "-f", "fmt", type=click.Choice(FORMATS), default="md", show_default=True,
              help="md: paste into a ticket; json: for tools; html: one self-contained page.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write to FILE (atomically) instead of stdout.")
def export_cmd(snapshot: str, fmt: str, output: str | None) -> int:
    """Summarise a snapshot for a bug ticket: what failed, the traceback with the failing
    frames' locals, a tape summary, the environment, and the commands to reproduce and
    verify it.

    The summary is bounded (long values, lists and tracebacks are cut, and it says so), and
    every value from the snapshot is neutralised: control characters, terminal escape
    sequences and bidi overrides are written as visible escapes in every format; the HTML
    page escapes everything and runs no scripts. Attach the .rsnap file next to it.

    \b
    Examples:
      replay export snapshots/renew-*.rsnap                  (Markdown on stdout)
      replay export SNAP --format html -o ticket-1234.html
    """
    with open_snapshot(snapshot) as snap:
        text = export(snap, fmt, path=snapshot)
    if output is None:
        sys.stdout.write(text)
        return ExitCode.OK
    directory = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".export-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, output)
    except BaseException:
        os.unlink(tmp)
        raise
    return ExitCode.OK
