"""Subcommands: ``show``, ``validate``, ``run`` (``verify`` is in :mod:`replay.cli.verifycmd`)."""

from __future__ import annotations

from typing import Any

import click

from replay.cli import EXIT_CODES_HELP, ExitCode, cli, dump_json
from replay.errors import SnapshotError, SnapshotNotFoundError, UsageError
from replay.replayer.runner import DEFAULT_TIMEOUT_S
from replay.snapshot import Section, SnapshotFile, open_snapshot, recover, validate
from replay.verify import Verdict, reproduce
from replay.verify.batch import expand_path


def expand_snapshots(paths: tuple[str, ...]) -> list[str]:
    """Files as given; directories searched recursively for ``*.rsnap``; globs expanded
    (in argument order, sorted within each; see :func:`replay.verify.batch.expand_path`).

    Raises:
        UsageError: a directory or glob holds no snapshot.
    """
    return [path for p in paths for path in expand_path(p)]


SECTION_CHOICE = click.Choice(sorted(Section.NAMES.values()))


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("snapshot", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot's content as JSON.")
@click.option("--interactions", "-n", default=15, show_default=True, help="Tape interactions to list.")
@click.option("--all-locals", is_flag=True, help="Show the locals of every application frame, not only the innermost.")
@click.option("--records", "records", is_flag=True,
              help="List every stored record with its frame and byte offsets (for debugging the format).")
@click.option("--section", "section_name", type=SECTION_CHOICE, help="With --records: only this section.")
def show(snapshot: str, as_json: bool, interactions: int, all_locals: bool, records: bool,
         section_name: str | None) -> int:
    """Show what a snapshot holds: entry point, arguments, outcome, tape, code, environment.

    With --records, list the file's records in storage order instead: section, record
    number, the frame's byte offset in the file, the record's offset and size inside the
    frame's decompressed content, and the record itself.
    """
    if section_name and not records:
        raise UsageError("--section only applies with --records")
    if records:
        from replay.cli.output import show_records

        section = next((k for k, v in Section.NAMES.items() if v == section_name), None)
        with SnapshotFile(snapshot) as f:
            show_records(f, section, as_json=as_json)
        return ExitCode.OK
    with open_snapshot(snapshot) as snap:
        if as_json:
            dump_json({
                "path": snap.path, "size_bytes": snap.size_bytes, "format": list(snap.version),
                "header": snap.header, "entry": snap.entry, "outcome": snap.outcome,
                "tape": [i.__dict__ for i in snap.tape[:interactions]],
                "channels": dict(snap.channel_counts()),
                "code": [{k: v for k, v in f.items() if k != "source"} for f in snap.code_files],
                "environment": snap.environment,
            })
            return ExitCode.OK
        from replay.cli.output import show_snapshot

        show_snapshot(snap, max_interactions=interactions, all_locals=all_locals)
    return ExitCode.OK


VALIDATE_EXIT_HELP = """\b
Exit codes:
  0   every file is valid (with --recover: or was recovered into a valid file)
  2   usage error
  3   some file is missing, not a snapshot, corrupt, truncated or over a limit
      (with --recover: and could not be recovered)"""


@cli.command(epilog=VALIDATE_EXIT_HELP)
@click.argument("snapshots", nargs=-1, required=True)
@click.option("--recover", "do_recover", is_flag=True,
              help="Rebuild each invalid file from its complete, checksummed frames into a new file.")
@click.option("--output", "-o", type=click.Path(dir_okay=False),
              help="With --recover and one file: where to write (default NAME.recovered.rsnap).")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
def validate_cmd(snapshots: tuple[str, ...], do_recover: bool, output: str | None, as_json: bool) -> int:
    """Check snapshot files completely: structure, every checksum, every read limit.

    Reads the header and index, decompresses every frame (verifying its zstd content
    checksum and the limits), and checks the records of every known section. Nothing in
    the file is imported or executed. A file without its index - a crashed writer's
    temporary file (.NAME.rsnap.PID.N.tmp) or a truncated download - is invalid; with
    --recover it is rebuilt up to its last complete, checksummed frame.

    \b
    Examples:
      replay validate snapshots/
      replay validate --recover snapshots/.charge-....rsnap.4242.1.tmp
    """
    from replay.cli.output import print_recovery, print_validation

    if output and (not do_recover or len(snapshots) != 1):
        raise UsageError("--output needs --recover and exactly one file")
    paths = expand_snapshots(snapshots)
    results: list[dict[str, Any]] = []
    failed = False
    for path in paths:
        report = validate(path)
        entry: dict[str, Any] = report.to_json()
        if not report.ok and do_recover and not isinstance(report.error, SnapshotNotFoundError):
            try:
                rec = recover(path, output)
            except SnapshotError as exc:
                entry["recovery"] = {"ok": False, "error": str(exc)}
            else:
                check = validate(rec.output)
                entry["recovery"] = {"ok": check.ok, **rec.to_json(),
                                     "error": None if check.ok else str(check.error)}
        ok = report.ok or bool(entry.get("recovery", {}).get("ok"))
        failed = failed or not ok
        results.append(entry)
        if not as_json:
            print_validation(report)
            if "recovery" in entry:
                print_recovery(entry["recovery"])
    if as_json:
        dump_json({"results": results, "exit_code": int(ExitCode.BAD_SNAPSHOT if failed else ExitCode.OK)})
    return ExitCode.BAD_SNAPSHOT if failed else ExitCode.OK


validate_cmd.name = "validate"
cli.add_command(validate_cmd, "validate")


@cli.command(epilog=EXIT_CODES_HELP)
@click.argument("snapshots", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON.")
@click.option("--timeout", default=DEFAULT_TIMEOUT_S, show_default=True, help="Seconds allowed per replay.")
def run(snapshots: tuple[str, ...], as_json: bool, timeout: float) -> int:
    """Replay snapshots against the recorded code: REPRODUCED or NOT_REPRODUCIBLE.

    Each replay runs in a fresh subprocess with the snapshot's embedded sources first on
    sys.path, and every boundary interaction must match the tape in order. A snapshot
    that does not reproduce names its first divergence (interaction index, what was
    recorded, what was asked).
    """
    from replay.cli.output import print_result

    results = [reproduce(path, timeout_s=timeout) for path in expand_snapshots(snapshots)]
    if as_json:
        dump_json({"results": [r.to_dict() for r in results]})
    else:
        for r in results:
            print_result(r)
    return ExitCode.DIFFERENT if any(r.verdict is Verdict.NOT_REPRODUCIBLE for r in results) else ExitCode.OK
