"""The Textual application: screens, global keys, workers' errors. Wiring only; every screen
lives in :mod:`tui.screens` and everything it shows comes from :class:`tui.session.TraceSession`."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterable
from typing import Any

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.worker import Worker

from tui.screens.help import HelpScreen
from tui.screens.modals import PromptModal, report_failure
from tui.screens.summary import SummaryScreen
from tui.session import TraceSession


class ReplayApp(App[None]):
    """``replay tui SNAP``: the summary, step, diff and verify screens over one session.

    Args:
        session: The snapshot to show (not opened yet: the app opens it in a worker).
        start: ``summary`` (default) or ``step`` (go to the step screen as soon as the
            trace is open).

    Attributes:
        opened_s: Seconds from mount until the trace was open and the first screen ready
            (reported by the benchmark).
    """

    CSS_PATH = "app.tcss"
    TITLE = "replay"
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("ctrl+s", "summary", "Summary", show=False, id="summary"),
    ]

    def __init__(self, session: TraceSession, *, start: str = "summary"):
        super().__init__()
        self.session = session
        self.start = start
        self.mounted_at = 0.0
        self.opened_s: float | None = None
        self.theme = "textual-dark"

    # ------------------------------------------------------------- opening

    def on_mount(self) -> None:
        self.mounted_at = time.perf_counter()
        self.sub_title = self.session.path
        self.install_screen(SummaryScreen(self.session), "summary")
        self.push_screen("summary")
        self._open()

    @work(thread=True, exclusive=True, group="open", exit_on_error=False, description="open the snapshot")
    def _open(self) -> None:
        self.session.open_snapshot()
        self.call_from_thread(self._summary_changed)
        try:
            self.session.open_trace()
        except Exception as exc:
            self.call_from_thread(self._trace_failed, exc)
            raise
        self.call_from_thread(self._trace_opened)

    def _summary_changed(self) -> None:
        summary = self.get_screen("summary")
        assert isinstance(summary, SummaryScreen)
        summary.update_summary()

    def _trace_failed(self, exc: BaseException) -> None:
        summary = self.get_screen("summary")
        assert isinstance(summary, SummaryScreen)
        summary.trace_failed(str(exc))

    def _trace_opened(self) -> None:
        from tui.screens.step import StepScreen

        self.install_screen(StepScreen(self.session), "step")
        # Everything alive now (widgets, the trace's tables) lives as long as the app: keep it
        # out of the collector's full passes, which otherwise stall a step by ~70 ms now and then.
        gc.freeze()
        self._summary_changed()
        if self.start == "step":
            self.switch_screen("step")
        self.opened_s = time.perf_counter() - self.mounted_at

    # ------------------------------------------------------------- screens

    def _show(self, name: str) -> None:
        if self.screen is self.get_screen(name):
            return
        if isinstance(self.screen, Screen) and len(self.screen_stack) > 1:
            self.switch_screen(name)
        else:
            self.push_screen(name)

    def open_step(self) -> None:
        """Show the step screen (the trace must be open)."""
        if self.is_screen_installed("step"):
            self._show("step")
        else:
            self.notify("the trace is still opening", severity="warning", timeout=2)

    def open_summary(self) -> None:
        """Show what the snapshot is."""
        self._show("summary")

    def action_summary(self) -> None:
        self.open_summary()

    def back(self) -> None:
        """Leave the diff or verify screen for the step screen (or the summary)."""
        self._show("step" if self.is_screen_installed("step") else "summary")

    def open_verify(self) -> None:
        """Show the verify screen."""
        from tui.screens.verify import VerifyScreen

        if not self.is_screen_installed("verify"):
            self.install_screen(VerifyScreen(self.session), "verify")
        self._show("verify")

    def open_diff(self) -> None:
        """Show original and candidate side by side; ask for the candidate when none is known."""
        if self.session.trace is None:
            self.notify("the trace is still opening", severity="warning", timeout=2)
            return
        if not self.session.code_dirs:
            def chosen(text: str | None) -> None:
                if text:
                    self.session.code_dirs = [text.strip()]
                    self.open_diff()

            self.push_screen(PromptModal("Diff against which candidate?", "a code directory: the snapshot is "
                                         "replayed against it and the two traces are aligned by call tree",
                                         placeholder="./fixed"), chosen)
            return
        from tui.screens.diff import DiffScreen

        if self.is_screen_installed("diff"):
            diff = self.get_screen("diff")
            if getattr(diff, "code_dirs", None) != self.session.code_dirs:
                if self.screen is diff:
                    self.switch_screen("step")
                self.uninstall_screen("diff")
        if not self.is_screen_installed("diff"):
            self.install_screen(DiffScreen(self.session), "diff")
        self._show("diff")

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.screen))

    # ------------------------------------------------------------- errors and commands

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A worker that failed shows its error: nothing is swallowed."""
        report_failure(event, self)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """The command palette: every key of the current screen, then Textual's own commands."""
        for binding in getattr(screen, "BINDINGS", []):
            if isinstance(binding, Binding) and binding.description:
                yield SystemCommand(binding.description, f"key: {binding.key}",
                                    lambda action=binding.action: self.call_later(screen.run_action, action))
        yield from super().get_system_commands(screen)

    def on_unmount(self) -> None:
        self.session.close()
