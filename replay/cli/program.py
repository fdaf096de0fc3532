"""Subcommands that run whole programs: ``record`` and ``check``."""

from __future__ import annotations

import os
import subprocess
import sys

import click

from replay.cli import ExitCode, cli, dump_json
from replay.errors import UsageError
from replay.replayer.runner import DEFAULT_TIMEOUT_S

RECORD_EXIT_HELP = """\b
Exit codes:
  the program's own exit status (the snapshot is written either way)
  2   usage error"""

CHECK_EXIT_HELP = """\b
Exit codes:
  0   deterministic: every replay reproduced the recording, nothing leaked
  1   some channel leaked (see the report)
  2   usage error
  3   the snapshot is missing, corrupt or not a snapshot"""


def _program(argv: tuple[str, ...]) -> list[str]:
    from replay.verify.check import strip_interpreter

    program = strip_interpreter(list(argv))
    if not program:
        raise UsageError("give the program after --, for example: -- python script.py ARGS")
    if program[0] != "-m" and not os.path.isfile(program[0]):
        raise UsageError(f"no such script: {program[0]}")
    return program


@cli.command(epilog=RECORD_EXIT_HELP, context_settings={"ignore_unknown_options": True})
@click.option("--on", "on", type=click.Choice(["always", "error"]), default="always", show_default=True,
              help="Write the snapshot always, or only when the program raises or exits non-zero.")
@click.option("--output-dir", "-o", "directory", type=click.Path(file_okay=False),
              help="Where the snapshot goes (default $REPLAY_DIR or ./snapshots).")
@click.argument("program", nargs=-1, required=True, type=click.UNPROCESSED)
def record(on: str, directory: str | None, program: tuple[str, ...]) -> int:
    """Run a whole program and record it into one snapshot.

    The program runs as __main__ under this interpreter with every boundary channel
    recorded; its entry point is the script, its outcome the exit status or the exception
    that ended it.

    \b
    Examples:
      replay record -- python tools/reconcile.py --day 2026-11-20
      replay record --on error -o snaps -- -m billing.nightly
    """
    argv = _program(program)
    directory = directory or os.environ.get("REPLAY_DIR") or "snapshots"
    path_file = os.path.join(directory, f".last-snapshot-{os.getpid()}")
    os.makedirs(directory, exist_ok=True)
    cmd = [sys.executable, "-m", "replay.capture.script", "--on", on, "--dir", directory,
           "--path-file", path_file, "--", *argv]
    status = subprocess.call(cmd)
    if os.path.exists(path_file):
        with open(path_file, encoding="utf-8") as fh:
            click.echo(f"replay: snapshot written to {fh.read()}", err=True)
        os.unlink(path_file)
    elif on == "always":
        click.echo("replay: no snapshot was written (see the messages above)", err=True)
    return status


@cli.command(epilog=CHECK_EXIT_HELP, context_settings={"ignore_unknown_options": True})
@click.option("--runs", "-n", default=3, show_default=True, type=click.IntRange(1, 100),
              help="Replays to run.")
@click.option("--keep", type=click.Path(file_okay=False), help="Keep the recorded snapshot in this directory.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--timeout", default=DEFAULT_TIMEOUT_S, show_default=True, help="Seconds allowed per run.")
@click.argument("target", nargs=-1, required=True, type=click.UNPROCESSED)
def check(runs: int, keep: str | None, as_json: bool, timeout: float, target: tuple[str, ...]) -> int:
    """Check that recording captures every source of nondeterminism of a program.

    Records the program once (as `replay record` does), replays it --runs times against
    the recorded code, and reports every channel that leaked: a replay that diverged, a
    recorded interaction never asked for, an attempt to reach a real system the sandbox
    blocked, an outcome or printed output that differs from the recording, or replays that
    differ from each other. TARGET is a program after -- or an existing .rsnap file.

    \b
    Examples:
      replay check -- python script.py ARGS
      replay check --runs 5 -- -m mypackage.job
      replay check snapshots/charge-20261121T101500-4f2a.rsnap
    """
    from replay.cli.output import print_check
    from replay.verify.check import check_program, check_snapshot

    if len(target) == 1 and target[0].endswith(".rsnap"):
        report = check_snapshot(target[0], runs=runs, timeout_s=timeout)
    else:
        report = check_program(_program(target), runs=runs, keep=keep, timeout_s=timeout)
    if as_json:
        dump_json(report.to_dict())
    else:
        print_check(report)
    return ExitCode.OK if report.deterministic else ExitCode.DIFFERENT
