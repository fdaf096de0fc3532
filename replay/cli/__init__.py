"""The ``replay`` command: show, run and verify snapshots.

Exit codes (also in ``replay --help`` and README.md):

====  ====================================================================
0     success: ``run`` reproduced; ``verify``: no snapshot failed the policy
1     ``run``: NOT_REPRODUCIBLE; ``verify``: some verdict is in ``--fail-on``
      (default STILL_FAILING, NEW_FAILURE, NOT_REPRODUCIBLE)
2     usage error (bad option, missing code directory)
3     a snapshot file is missing, corrupt or not a snapshot
70    internal error (a bug in replay; please report it)
====  ====================================================================
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Any

import click

from replay.errors import ReplayError, ReplaySetupError, SnapshotError, UsageError


class ExitCode(enum.IntEnum):
    """Process exit codes of the ``replay`` command (public contract)."""

    OK = 0
    DIFFERENT = 1
    USAGE = 2
    BAD_SNAPSHOT = 3
    INTERNAL = 70


EXIT_CODES_HELP = """\b
Exit codes:
  0   success (run: REPRODUCED; verify: no verdict in --fail-on)
  1   run: NOT_REPRODUCIBLE; verify: some verdict in --fail-on
  2   usage error
  3   a snapshot file is missing, corrupt or not a snapshot
  70  internal error"""


@click.group(help=f"""Deterministic replay debugger for production Python.

Capture a failing call with @replay.capture, then show it, replay it against the
recorded code, step through its regenerated trace, and verify candidate fixes
against it before you redeploy.

\b
Examples:
  replay show snapshots/charge-20261121T101500-3fa2b1c9e0d4.rsnap
  replay run  snapshots/charge-*.rsnap
  replay verify snapshots/*.rsnap --code ./fixed-checkout
  replay goto  snapshots/charge-*.rsnap exception      (time travel: trace, goto, history, search)

{EXIT_CODES_HELP}""")
@click.version_option(package_name="replay-debugger", prog_name="replay")
def cli() -> None:
    """Command group."""


def _register() -> None:
    import replay.cli.diffcmd  # noqa: F401 - registers `replay diff`
    import replay.cli.exportcmd  # noqa: F401 - registers `replay export`
    import replay.cli.redactcmd  # noqa: F401 - registers `replay redact`
    import replay.cli.verifycmd  # noqa: F401 - registers `replay verify`
    from replay.cli import commands, program, timetravel  # noqa: F401 - registers subcommands on `cli`

    _register_plugins()


def _register_plugins() -> None:
    """Add commands other packages declare in the ``replay.commands`` entry-point group (the
    TUI's ``replay tui``): the core never imports them by name (STYLE.md: tui -> replay only)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="replay.commands"):
        if ep.name in cli.commands:
            continue
        try:
            cli.add_command(ep.load(), ep.name)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not take the CLI down
            from replay.cli.output import error_console

            error_console().print(f"[yellow]warning:[/] command {ep.name!r} could not load: {escape_text(str(exc))}")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (only ``__main__`` calls ``sys.exit``)."""
    _register()
    from replay.cli.output import error_console

    try:
        result = cli.main(args=argv, prog_name="replay", standalone_mode=False)
    except click.exceptions.Abort:
        error_console().print("aborted")
        return ExitCode.USAGE
    except click.ClickException as exc:
        exc.show()
        return ExitCode.USAGE
    except SnapshotError as exc:
        error_console().print(f"[bold red]bad snapshot:[/] {escape_text(str(exc))}")
        return ExitCode.BAD_SNAPSHOT
    except UsageError as exc:
        error_console().print(f"[bold red]usage error:[/] {escape_text(str(exc))}")
        return ExitCode.USAGE
    except ReplaySetupError as exc:
        error_console().print(f"[bold red]replay could not run:[/] {escape_text(str(exc))}")
        return ExitCode.INTERNAL
    except ReplayError as exc:
        error_console().print(f"[bold red]error:[/] {escape_text(str(exc))}")
        return ExitCode.INTERNAL
    if isinstance(result, int):
        return result
    return ExitCode.OK


def escape_text(text: str) -> str:
    """Neutralise control characters and rich markup in text that came from a snapshot."""
    from rich.markup import escape

    from replay.snapshot.rendering import printable

    return escape(printable(text))


def dump_json(data: Any) -> None:
    """Print machine-readable output on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
