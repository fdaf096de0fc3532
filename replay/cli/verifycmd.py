"""``replay verify``: verify a candidate fix against a corpus of snapshots (CI-grade).

The work is done by :mod:`replay.verify.batch` (inputs, shards, patch, parallel run) and
:mod:`replay.verify.reports` (JSON, JUnit, annotations); this module parses options and
draws progress: a rich progress bar on a terminal, one plain line per snapshot elsewhere.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from replay.cli import ExitCode, cli, dump_json
from replay.replayer.runner import DEFAULT_TIMEOUT_S
from replay.verify import FAILING_VERDICTS, Verdict
from replay.verify.batch import (
    BatchReport,
    Candidate,
    Outcome,
    collect_snapshots,
    default_jobs,
    parse_shard,
    prepare_candidate,
    run_batch,
    select_shard,
)

VERIFY_EXIT_HELP = """\b
Exit codes (when several apply, the highest wins):
  0   every snapshot was verified and no verdict is in --fail-on
  1   some verdict is in --fail-on
  2   usage error: bad option, missing code directory, an input that matches
      nothing, a patch that does not apply
  3   some snapshot file is missing, corrupt or not a snapshot (the others
      are still verified and reported)
  70  internal error: a replay process could not run"""


def _parse_fail_on(text: str) -> frozenset[Verdict]:
    try:
        return frozenset(Verdict(v.strip().upper()) for v in text.split(",") if v.strip())
    except ValueError as exc:
        raise click.BadParameter(f"{exc}; choose from {', '.join(v.value for v in Verdict)}",
                                 param_hint="--fail-on") from exc


@cli.command("verify", epilog=VERIFY_EXIT_HELP)
@click.argument("snapshots", nargs=-1, required=True)
@click.option("--code", "code_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Candidate code root, put first on sys.path (repeatable; first wins).")
@click.option("--patch", type=click.Path(dir_okay=False),
              help="Unified diff applied to a temporary copy of the first --code directory, "
                   "or without --code, of the sources recorded in each snapshot.")
@click.option("--strip", "-p", default=1, show_default=True, type=click.IntRange(0),
              help="Leading path components removed from the patch's file names (git apply -p).")
@click.option("--jobs", "-j", type=click.IntRange(1), default=None,
              help="Snapshots verified in parallel  [default: the number of CPU cores]")
@click.option("--shard", help="I/N: verify only the I-th of N parts of the sorted corpus (1-based).")
@click.option("--fail-on", default=",".join(sorted(v.value for v in FAILING_VERDICTS)), show_default=True,
              help="Comma-separated verdicts that make the exit code 1.")
@click.option("--json", "as_json", is_flag=True, help="Print results as JSON on stdout (progress goes to stderr).")
@click.option("--junit-xml", type=click.Path(dir_okay=False), help="Write a JUnit XML report: one testcase per snapshot.")
@click.option("--annotations", type=click.Choice(["auto", "github", "none"]), default="auto", show_default=True,
              help="GitHub Actions ::error/::warning lines; auto: when $GITHUB_ACTIONS is true.")
@click.option("--timeout", default=DEFAULT_TIMEOUT_S, show_default=True, help="Seconds allowed per replay.")
@click.option("--quiet", "-q", is_flag=True, help="One line per snapshot, no evidence.")
@click.option("--verbose", "-v", is_flag=True, help="Evidence for every snapshot, not only those that need attention.")
def verify_cmd(snapshots: tuple[str, ...], code_dirs: tuple[str, ...], patch: str | None, strip: int,
               jobs: int | None, shard: str | None, fail_on: str, as_json: bool, junit_xml: str | None,
               annotations: str, timeout: float, quiet: bool, verbose: bool) -> int:
    """Verify a candidate fix against snapshots: one verdict per snapshot.

    SNAPSHOTS are files, directories (searched for *.rsnap), globs, or fsspec URLs
    (memory://, file://, s3://bucket/corpus/ with s3fs installed, ...). For each snapshot
    a baseline replay against the recorded code runs first; if it does not reproduce the
    recording the verdict is NOT_REPRODUCIBLE. Otherwise the entry point is replayed
    against the candidate (--code DIR, or --patch FILE applied to a copy of the code) and
    judged:

    \b
      FIXED            recorded failure; the candidate completes without one
      STILL_FAILING    the same exception type at the same place
      NEW_FAILURE      a different exception (or one where the call used to succeed)
      UNCHANGED        recorded success; same return value and effects
      CHANGED          recorded success; different return value or effects
      DIVERGED         the candidate asked the outside world something the tape
                       cannot answer (inconclusive)
      NOT_REPRODUCIBLE the baseline replay did not reproduce the recording

    \b
    Examples:
      replay verify snapshots/ --code ./fixed-checkout
      replay verify 's3://corpus/billing/**/*.rsnap' --code . -j 4 --shard 2/4
      replay verify snapshots/ --patch fix.diff --junit-xml verify.xml
    """
    from replay.cli.output import console, error_console

    failing = _parse_fail_on(fail_on)
    shard_of = parse_shard(shard) if shard else None
    jobs = jobs or default_jobs()
    out = error_console() if as_json else console()
    with tempfile.TemporaryDirectory(prefix="replay-verify-") as workdir:
        corpus = collect_snapshots(snapshots, workdir)
        items = select_shard(corpus, *shard_of) if shard_of else corpus
        roots = prepare_candidate(Candidate(code_dirs, patch, strip), items, workdir)
        if shard_of:
            out.print(Text(f"shard {shard_of[0]}/{shard_of[1]}: {len(items)} of {len(corpus)} snapshots", style="dim"))
        report = _run(items, roots, jobs, timeout, out)
    exit_code = _exit_code(report, failing)
    _print_details(report, not quiet and (verbose or len(report.outcomes) == 1), quiet, out)
    _print_summary(report, failing, out)
    if annotations == "github" or (annotations == "auto" and os.environ.get("GITHUB_ACTIONS") == "true"):
        from replay.verify.reports import github_annotations

        # The runner reads workflow commands from stdout and stderr; keep stdout pure JSON.
        for line in github_annotations(report, failing):
            click.echo(line, err=as_json)
    if junit_xml:
        from replay.verify.reports import junit_xml as render_junit

        with open(junit_xml, "wb") as fh:
            fh.write(render_junit(report, failing))
    if as_json:
        from replay.verify.reports import to_json

        run: dict[str, Any] = {"corpus": len(corpus), "shard": list(shard_of) if shard_of else None,
                               "candidate": {"code": list(code_dirs), "patch": patch}}
        dump_json(to_json(report, failing, exit_code, run))
    return exit_code


def _exit_code(report: BatchReport, failing: frozenset[Verdict]) -> ExitCode:
    if report.errors("internal"):
        return ExitCode.INTERNAL
    if report.errors("bad_snapshot"):
        return ExitCode.BAD_SNAPSHOT
    return ExitCode.DIFFERENT if report.failed(failing) else ExitCode.OK


def _line(outcome: Outcome, done: int, total: int) -> Text:
    from replay.cli.output import VERDICT_STYLE, safe

    style = VERDICT_STYLE.get(outcome.result.verdict, "") if outcome.result else "bold red"
    width = len(str(total))
    return Text.assemble((f"[{done:>{width}}/{total}] ", "dim"), (f"{outcome.label:<16}", style), " ",
                         safe(outcome.name), (f"  {outcome.duration_s:.2f} s", "dim"))


def _run(items: list[Any], roots: dict[str, list[str]], jobs: int, timeout: float, out: Console) -> BatchReport:
    """Run the batch; a progress bar on a terminal, else one line per finished snapshot."""
    done = 0

    if not out.is_terminal:
        def plain(outcome: Outcome) -> None:
            nonlocal done
            done += 1
            out.print(_line(outcome, done, len(items)))

        return run_batch(items, roots, jobs=jobs, timeout_s=timeout, on_outcome=plain)
    columns = (TextColumn("verifying"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("[dim]{task.fields[last]}"))
    with Progress(*columns, console=out, transient=True) as progress:
        task = progress.add_task("verify", total=len(items), last="")

        def bar(outcome: Outcome) -> None:
            nonlocal done
            done += 1
            progress.console.print(_line(outcome, done, len(items)))
            progress.update(task, advance=1, last=outcome.label)

        return run_batch(items, roots, jobs=jobs, timeout_s=timeout, on_outcome=bar)


def _needs_attention(outcome: Outcome) -> bool:
    r = outcome.result
    if r is None:
        return True
    if r.verdict is Verdict.UNCHANGED:
        return False
    return not (r.verdict is Verdict.FIXED and not r.effects)


def _print_details(report: BatchReport, everything: bool, quiet: bool, out: Console) -> None:
    """The evidence of the snapshots that need attention (all with ``everything``); errors
    (bad snapshot files, replays that could not run) go to stderr like every CLI error."""
    from replay.cli.output import error_console, print_result, safe

    shown = [o for o in report.outcomes if o.result is not None and not quiet and (everything or _needs_attention(o))]
    if shown:
        out.print()
    for o in shown:
        assert o.result is not None
        print_result(o.result, out=out)
    for o in report.outcomes:
        if o.result is None:
            what = "bad snapshot" if o.error_kind == "bad_snapshot" else "replay could not run"
            error_console().print(Text.assemble((f"{what}: ", "bold red"), safe(o.error)))


def _print_summary(report: BatchReport, failing: frozenset[Verdict], out: Console) -> None:
    from replay.cli.output import print_summary

    per_snapshot = report.wall_time_s / len(report.outcomes) if report.outcomes else 0.0
    errors = {label: n for label, n in report.counts().items() if label in ("BAD_SNAPSHOT", "ERROR")}
    print_summary(report.results, failing, out=out, errors=errors,
                  footer=f"{len(report.outcomes)} snapshots in {report.wall_time_s:.1f} s "
                         f"({per_snapshot:.2f} s each, {report.jobs} at a time)")
