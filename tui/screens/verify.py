"""The verify screen: choose a candidate code directory, replay the snapshot against it in a
background worker (progress, cancel), show the verdict, and open the diff from it."""

from __future__ import annotations

import os
import time

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Input, Label, ProgressBar, Static
from textual.worker import Worker, get_current_worker

from replay.verify.verdict import FAILING_VERDICTS, Verdict, VerifyResult
from tui.screens.modals import report_failure, safe
from tui.session import TraceSession
from tui.widgets.status import KeyBar

_PHASES = {"baseline": "1/2 replaying the recorded code (must reproduce the recorded outcome)",
           "candidate": "2/2 replaying the candidate code"}


class VerifyScreen(Screen[None]):
    """Verify a candidate against the snapshot; see the module docstring."""

    DEFAULT_CSS = """
    VerifyScreen > Vertical { padding: 0 1; }
    VerifyScreen #verify-row { height: 3; }
    VerifyScreen #verify-dir { width: 1fr; }
    VerifyScreen #verify-progress { margin: 1 0 0 0; }
    VerifyScreen #verify-phase { height: auto; color: $text-muted; }
    VerifyScreen #verify-result { border: round $primary 50%; height: 1fr; padding: 0 1; }
    VerifyScreen .-hidden { display: none; }
    """
    BINDINGS = [
        Binding("ctrl+r", "run", "Run verify", id="verify-run"),
        Binding("escape", "cancel", "Cancel / back", id="verify-cancel"),
        Binding("ctrl+d", "diff", "Open diff", id="verify-diff"),
    ]

    def __init__(self, session: TraceSession):
        super().__init__()
        self.session = session
        self.result: VerifyResult | None = None
        self.worker: Worker[None] | None = None
        self.started = 0.0

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(Text("Verify a candidate fix against this snapshot", style="bold"))
            with Horizontal(id="verify-row"):
                yield Input(value=self.session.code_dirs[0] if self.session.code_dirs else "",
                            placeholder="candidate code directory, e.g. ./fixed", id="verify-dir")
                yield Button("Verify", variant="primary", id="verify-button")
                yield Button("Cancel", id="cancel-button", disabled=True)
            yield ProgressBar(total=None, show_eta=False, id="verify-progress", classes="-hidden")
            yield Static(id="verify-phase")
            with VerticalScroll(id="verify-result"):
                yield Static(Text("Enter a directory and press Enter (or Verify). The snapshot is replayed twice "
                                  "in a sandbox: against the recorded code, then against the candidate.",
                                  style="dim"), id="verify-verdict")
            yield Button("Open diff (original vs candidate)", id="diff-button", disabled=True)
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#verify-result").border_title = "verdict"
        self.query_one("#verify-dir", Input).focus()

    @on(Input.Submitted, "#verify-dir")
    @on(Button.Pressed, "#verify-button")
    def action_run(self) -> None:
        directory = self.query_one("#verify-dir", Input).value.strip()
        if not directory:
            self.notify("type the candidate's code directory first", severity="warning", timeout=3)
            return
        if not os.path.isdir(directory):
            self.notify(f"{safe(directory)} is not a directory", severity="error", timeout=4)
            return
        if self.worker is not None and self.worker.is_running:
            return
        if self.session.snapshot_path is None:
            self.notify("no snapshot to replay (a lone trace file)", severity="error", timeout=4)
            return
        self.result = None
        self.started = time.monotonic()
        self.query_one("#verify-progress").remove_class("-hidden")
        self.query_one("#cancel-button", Button).disabled = False
        self.query_one("#diff-button", Button).disabled = True
        self.query_one("#verify-verdict", Static).update(Text("verifying...", style="italic"))
        self.worker = self._verify(os.path.abspath(directory))

    @work(thread=True, exclusive=True, group="verify", exit_on_error=False, description="verify")
    def _verify(self, directory: str) -> None:
        from replay.verify.verdict import verify

        worker = get_current_worker()
        snapshot = self.session.snapshot_path
        assert snapshot is not None

        def progress(phase: str) -> None:
            if not worker.is_cancelled:
                self.app.call_from_thread(self._phase, _PHASES.get(phase, phase))

        result = verify(snapshot, [directory], progress=progress)
        if not worker.is_cancelled:
            self.app.call_from_thread(self._done, directory, result)

    def _phase(self, text: str) -> None:
        self.query_one("#verify-phase", Static).update(text)

    def _done(self, directory: str, result: VerifyResult) -> None:
        self.result = result
        self.session.code_dirs = [directory]
        self.session.verify_result = result
        elapsed = time.monotonic() - self.started
        self.query_one("#verify-progress").add_class("-hidden")
        self.query_one("#cancel-button", Button).disabled = True
        self.query_one("#verify-phase", Static).update(f"done in {elapsed:.1f} s")
        self.query_one("#verify-verdict", Static).update(verdict_text(result))
        self.query_one("#diff-button", Button).disabled = False

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(event, self.app)
        if event.worker is self.worker and event.worker.is_finished and self.result is None:
            self.query_one("#verify-progress").add_class("-hidden")
            self.query_one("#cancel-button", Button).disabled = True
            self.query_one("#verify-phase", Static).update(
                "cancelled (the replay in progress finishes in the background)" if event.worker.is_cancelled
                else "failed: see the error")

    @on(Button.Pressed, "#cancel-button")
    def cancel_pressed(self) -> None:
        if self.worker is not None and self.worker.is_running:
            self.worker.cancel()

    def action_cancel(self) -> None:
        if self.worker is not None and self.worker.is_running:
            self.worker.cancel()
            return
        self.app.back()  # type: ignore[attr-defined]

    @on(Button.Pressed, "#diff-button")
    def action_diff(self) -> None:
        if self.result is None:
            self.notify("verify a candidate first", severity="warning", timeout=2)
            return
        self.app.open_diff()  # type: ignore[attr-defined]


def verdict_text(result: VerifyResult) -> Text:
    """The verdict with its reason and evidence, for the verdict panel."""
    bad = result.verdict in FAILING_VERDICTS
    style = "bold red" if bad else ("bold green" if result.verdict in (Verdict.FIXED, Verdict.UNCHANGED) else "bold yellow")
    text = Text.assemble((f" {result.verdict.value} ", f"{style} reverse"), "  ", safe(result.reason), "\n")
    rows = [("recorded", result.recorded), ("candidate", result.observed)]
    if result.changed_files:
        rows.append(("changed files", ", ".join(result.changed_files)))
    for label, value in rows:
        if value:
            text.append(f"\n{label:>13}: ", style="dim")
            text.append(safe(value))
    for path, old, new in result.changes:
        text.append(f"\n    {safe(path)}: ", style="cyan")
        text.append(safe(old), style="red")
        text.append(" -> ")
        text.append(safe(new), style="green")
    if result.divergence:
        d = result.divergence
        text.append("\n\nfirst divergence: ", style="bold yellow")
        text.append(safe(str(d.get("reason") or d)))
    from replay.verify.verdict import describe_effect

    for effect in result.effects[:20]:
        text.append("\n  effect: ", style="dim")
        text.append(safe(describe_effect(effect)))
    for warning in result.warnings:
        text.append("\n  warning: ", style="yellow")
        text.append(safe(warning))
    return text
