"""The summary screen, shown when a snapshot opens: what it is (entry, outcome, when, size,
environment) while its trace opens in the background; Enter steps through it."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import LoadingIndicator, Static

from tui.screens.modals import safe
from tui.session import TraceSession
from tui.widgets.status import KeyBar


class SummaryScreen(Screen[None]):
    """What the snapshot is; the trace's loading state below it."""

    DEFAULT_CSS = """
    SummaryScreen #summary-box { border: round $primary; padding: 0 1; height: auto; max-height: 1fr; }
    SummaryScreen #trace-state { padding: 1 1 0 1; height: auto; }
    SummaryScreen LoadingIndicator { height: 1; }
    SummaryScreen .-hidden { display: none; }
    """
    BINDINGS = [
        Binding("enter", "step", "Step through", id="open-step"),
        Binding("d", "diff", "Diff", id="open-diff"),
        Binding("v", "verify", "Verify", id="open-verify"),
    ]

    def __init__(self, session: TraceSession):
        super().__init__()
        self.session = session
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            with VerticalScroll(id="summary-box"):
                yield Static(id="summary")
            yield Static(id="trace-state")
            yield LoadingIndicator(id="loading")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#summary-box").border_title = "snapshot"
        self.update_summary()

    def update_summary(self) -> None:
        """Redraw the rows and the trace state from the session."""
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column(overflow="fold")
        for label, value in self.session.summary():
            style = ""
            if label == "outcome":
                style = "bold red" if self.session.failed() else "bold green"
            table.add_row(label, Text(safe(value), style=style))
        self.query_one("#summary", Static).update(table)
        state = self.query_one("#trace-state", Static)
        loading = self.query_one("#loading", LoadingIndicator)
        if self.error:
            state.update(Text.assemble(("The trace could not be opened: ", "bold red"), safe(self.error),
                                       ("\nq quits; v verifies a candidate anyway.", "dim")))
            loading.add_class("-hidden")
        elif self.session.trace is None:
            state.update(Text("Opening the trace (replaying the snapshot with the tracer on, "
                              "the first time)...", style="italic"))
            loading.remove_class("-hidden")
        else:
            state.update(Text.assemble(("Ready. ", "bold green"), "Enter steps through the trace; "
                                       "d diffs against a candidate; v verifies one; ? lists every key."))
            loading.add_class("-hidden")

    def trace_failed(self, message: str) -> None:
        self.error = message
        self.update_summary()

    def action_step(self) -> None:
        if self.session.trace is None:
            self.notify("the trace is still opening" if not self.error else "the trace could not be opened",
                        severity="warning", timeout=2)
            return
        self.app.open_step()  # type: ignore[attr-defined]

    def action_diff(self) -> None:
        self.app.open_diff()  # type: ignore[attr-defined]

    def action_verify(self) -> None:
        self.app.open_verify()  # type: ignore[attr-defined]
