"""``replay diff``: two runs of a snapshot side by side, aligned by call tree.

``replay diff A B`` compares the traces of two snapshots (or trace files);
``replay diff SNAP --code DIR`` compares the replay against the recorded code with the replay
against a candidate, and also runs :func:`replay.verify.verdict.verify` for the verdict and
the effect differences (``--no-verify`` skips it). The traces come from
:func:`replay.replayer.traces.open_trace` (embedded, cached or regenerated), the alignment
from :func:`replay.diff.diff_traces`, the text and JSON from :mod:`replay.diff.render`.
"""

from __future__ import annotations

import click

from replay.cli import ExitCode, cli, dump_json
from replay.cli.timetravel import regeneration_options
from replay.errors import UsageError

DIFF_EXIT_HELP = """\b
Exit codes:
  0   the two runs are the same (every step, the outcome and the compared effects)
  1   they differ
  2   usage error (bad option, missing code directory, not two runs to compare)
  3   a snapshot is missing, corrupt or not a snapshot
  70  a replay that regenerates a trace could not run, or an internal error"""


@cli.command("diff", epilog=DIFF_EXIT_HELP)
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", required=False, type=click.Path(dir_okay=False))
@click.option("--code", "code_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Compare the replay of A against this candidate code with its replay against the recorded code (repeatable).")
@regeneration_options
@click.option("--verify/--no-verify", "run_verify", default=True, show_default=True,
              help="With --code: also run `replay verify` for the verdict and the effect differences.")
@click.option("--rows", "max_rows", default=40, show_default=True, help="Most differing rows printed.")
@click.option("--width", default=60, show_default=True, help="Characters of each side of a row.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout.")
def diff_cmd(a: str, b: str | None, code_dirs: tuple[str, ...], include: tuple[str, ...], exclude: tuple[str, ...],
             max_steps: int, refresh: bool, timeout: float, run_verify: bool, max_rows: int, width: int,
             as_json: bool) -> int:
    """Compare two runs step by step, aligned by call tree: outcome and effect differences
    first, then the first divergence with both sides' source line and values, then the rows
    that differ (- only in A, + only in B, ~ same line with different values).

    A and B are snapshots (each traced against its recorded code) or trace files. With
    --code DIR, give one snapshot: A is its replay against the recorded code, B against DIR.
    One extra call in B is one block of + rows; the steps after it line up again.

    \b
    Examples:
      replay diff snap.rsnap --code ./fix          original against the fix
      replay diff jan31.rsnap jan30.rsnap          two recordings of the same entry point
      replay diff snap.rsnap --code ./fix --json
    """
    if max_rows < 0 or width < 20:
        raise UsageError("--rows must be 0 or more and --width at least 20")
    if code_dirs and b is not None:
        raise UsageError("give two snapshots, or one snapshot and --code DIR, not both")
    if not code_dirs and b is None:
        raise UsageError("give two snapshots to compare, or one snapshot and --code DIR")
    from replay.cli.timetravel import _open
    from replay.diff import diff_traces
    from replay.diff.render import diff_json, text_lines

    options = (tuple(include), tuple(exclude), max_steps, refresh, timeout, as_json)
    trace_a = _open(a, (), *options)
    try:
        trace_b = _open(b if b is not None else a, code_dirs, *options)
        try:
            verdict = None
            effects = None
            if code_dirs and run_verify:
                from replay.verify.verdict import verify

                result = verify(a, list(code_dirs), timeout_s=timeout)
                verdict = f"{result.verdict.value}: {result.reason}"
                effects = result.effects
            diff = diff_traces(trace_a, trace_b, effects=effects)
            if as_json:
                data = diff_json(diff, max_rows=max_rows, width=width * 2)
                data["verdict"] = verdict
                data["exit_code"] = int(ExitCode.OK if diff.same else ExitCode.DIFFERENT)
                dump_json(data)
            else:
                from replay.cli.output import console, safe

                out = console()
                labels = (f"{a} (recorded code)", f"{a} --code {' '.join(code_dirs)}") if code_dirs else (a, str(b))
                for line in text_lines(diff, max_rows=max_rows, width=width, verdict=verdict, labels=labels):
                    out.print(safe(line), overflow="ignore", crop=False, soft_wrap=True)
            return ExitCode.OK if diff.same else ExitCode.DIFFERENT
        finally:
            trace_b.close()
    finally:
        trace_a.close()
