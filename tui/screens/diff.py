"""The diff screen: the original trace and the candidate's side by side, aligned by call tree
(:func:`replay.diff.diff_traces`), the first divergence one key away, and how the outcomes
and effects differ. The candidate's trace is regenerated and aligned in a worker."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import ProgressBar, Static
from textual.worker import Worker, get_current_worker

from replay.diff import DiffCancelledError, TraceDiff, diff_traces
from replay.diff.render import changed_values, source_line, summary_text
from replay.replayer.tracefile import TraceFile
from tui.screens.modals import report_failure, safe
from tui.session import TraceSession
from tui.widgets.lazylist import LazyList
from tui.widgets.status import KeyBar

_MARK = {"same": (" ", ""), "changed": ("~", "yellow"), "only_a": ("-", "red"), "only_b": ("+", "green")}
_KIND = {"call": "→", "line": " ", "return": "←", "exception": "✖"}


class DiffScreen(Screen[None]):
    """Original (left) and candidate (right); see the module docstring."""

    DEFAULT_CSS = """
    DiffScreen #diff-head { height: auto; max-height: 8; padding: 0 1; background: $panel; }
    DiffScreen #diff-a, DiffScreen #diff-b { border: round $primary 50%; width: 1fr; }
    DiffScreen #diff-a:focus, DiffScreen #diff-b:focus { border: round $accent; }
    DiffScreen #diff-detail { height: auto; max-height: 7; padding: 0 1; border-top: solid $primary 50%; }
    DiffScreen #diff-progress { margin: 1 2; }
    DiffScreen .-hidden { display: none; }
    """
    BINDINGS = [
        Binding("f", "first", "First divergence", id="diff-first",
                tooltip="go to the first divergence: the first row where the two runs differ"),
        Binding("n", "next(False)", "Next", id="diff-next", tooltip="next block of differing rows"),
        Binding("N", "next(True)", "Previous", show=False, id="diff-previous",
                tooltip="previous block of differing rows"),
        Binding("enter", "open_step", "Step here", id="diff-step",
                tooltip="open the original's step of this row in the step screen"),
        Binding("escape", "back", "Back", id="diff-back", tooltip="back to the step screen"),
    ]

    def __init__(self, session: TraceSession):
        super().__init__()
        self.session = session
        self.code_dirs = list(session.code_dirs)
        self.diff: TraceDiff | None = None
        self.worker: Worker[None] | None = None

    def compose(self) -> ComposeResult:
        yield Static(id="diff-head")
        yield ProgressBar(total=100, show_eta=False, id="diff-progress")
        with Horizontal(id="diff-sides"):
            yield LazyList(lambda i: self._side(i, True), id="diff-a")
            yield LazyList(lambda i: self._side(i, False), id="diff-b")
        with Vertical(id="diff-detail"):
            yield Static(id="diff-values")
        yield KeyBar()

    def on_mount(self) -> None:
        self.query_one("#diff-a").border_title = "original (recorded code)"
        self.query_one("#diff-b").border_title = "candidate: " + safe(", ".join(self.code_dirs))
        self.query_one("#diff-head", Static).update(Text("Replaying the candidate with the tracer on, then "
                                                          "aligning the two traces by call tree...", style="italic"))
        self.worker = self._compute()

    # ------------------------------------------------------------- the worker

    @work(thread=True, exclusive=True, group="diff", exit_on_error=False, description="diff the two traces")
    def _compute(self) -> None:
        worker = get_current_worker()
        self.app.call_from_thread(self._progress, 0, 0, "replaying the candidate")
        b = self.session.open_candidate(self.code_dirs)
        a = self.session.trace
        assert a is not None
        result = self.session.verify_result
        same_candidate = result is not None and result.candidate is not None and self.session.code_dirs == self.code_dirs
        effects = result.effects if same_candidate else None

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(self._progress, done, total, "aligning by call tree")

        try:
            diff = diff_traces(a, b, progress=progress, cancelled=lambda: worker.is_cancelled, effects=effects)
        except DiffCancelledError:
            return
        self.app.call_from_thread(self._ready, diff)

    def _progress(self, done: int, total: int, what: str) -> None:
        bar = self.query_one(ProgressBar)
        if total:
            bar.update(total=total, progress=done)
        self.query_one("#diff-head", Static).update(Text(f"{what}...", style="italic"))

    def _ready(self, diff: TraceDiff) -> None:
        self.diff = diff
        self.query_one(ProgressBar).add_class("-hidden")
        for side in ("#diff-a", "#diff-b"):
            self.query_one(side, LazyList).set_rows(len(diff))
        self.query_one("#diff-head", Static).update(self._head(diff))
        first = diff.first_divergence
        lst = self.query_one("#diff-a", LazyList)
        lst.highlighted = first if first is not None else 0
        lst.scroll_to_row(lst.highlighted, center=True)
        lst.focus()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_failure(event, self.app)

    # ------------------------------------------------------------- drawing

    def _head(self, diff: TraceDiff) -> Text:
        text = Text()
        if diff.same:
            text.append(" SAME ", style="bold green reverse")
            text.append("  the two runs took the same steps with the same values and ended alike")
        else:
            text.append(" DIFFERENT ", style="bold yellow reverse")
            first = diff.first_divergence
            text.append(f"  first divergence at row {first:,} (f)" if first is not None else
                        "  the steps agree; the outcome differs")
        text.append("\n" + summary_text(diff), style="dim")
        for d in diff.outcome[:4]:
            text.append(f"\n{safe(d.field)}: ", style="bold")
            text.append(safe(d.a), style="red")
            text.append(" -> ")
            text.append(safe(d.b), style="green")
        if diff.effects_compared:
            for effect in diff.effects[:2]:
                from replay.verify.verdict import describe_effect

                text.append("\neffect: ", style="bold")
                text.append(safe(describe_effect(effect)))
        return text

    def _side(self, i: int, left: bool) -> Text:
        diff = self.diff
        if diff is None:
            return Text("")
        row = diff.row(i)
        step = row.a_step if left else row.b_step
        mark, style = _MARK[row.status]
        if step < 0:
            return Text("  " + "·" * 6, style="dim")
        trace: TraceFile = diff.a if left else diff.b
        s = trace.step(step)
        src = source_line(trace, step) if s.kind == "line" else ""
        text = Text.assemble((mark + " ", f"bold {style}"), (f"{step:>7} ", "dim"), (_KIND[s.kind] + " ", style),
                             (safe(f"{s.code.qualname}:{s.line}"), style or "cyan"))
        if src:
            text.append("  " + safe(src), style=style)
        return text

    def _detail(self, i: int) -> None:
        diff = self.diff
        if diff is None or not 0 <= i < len(diff):
            return
        row = diff.row(i)
        text = Text.assemble((f"row {i:,}", "bold"), f"  {row.status.replace('_', ' ')}")
        for label, trace, step in (("original", diff.a, row.a_step), ("candidate", diff.b, row.b_step)):
            if step >= 0:
                text.append(f"\n{label:>9}: ", style="dim")
                text.append(safe(trace.position(step)), style="cyan")
        for path, va, vb in changed_values(diff, i, width=100)[:4]:
            text.append(f"\n  {safe(path)}: ", style="bold")
            text.append(safe(va), style="red")
            text.append(" -> ")
            text.append(safe(vb), style="green")
        self.query_one("#diff-values", Static).update(text)

    # ------------------------------------------------------------- moving

    @on(LazyList.Highlighted)
    def follow(self, event: LazyList.Highlighted) -> None:
        """Keep both sides on the same row."""
        for side in ("#diff-a", "#diff-b"):
            lst = self.query_one(side, LazyList)
            if lst is not event.lazy_list and lst.highlighted != event.index:
                lst.highlighted = event.index
        self._detail(event.index)

    @on(LazyList.Selected)
    def selected(self, event: LazyList.Selected) -> None:
        if event.x < 0:  # Enter; a click only moves the highlight
            self.action_open_step()

    def _go(self, row: int | None, what: str) -> None:
        if row is None:
            self.notify(what, timeout=2)
            return
        lst = self.query_one("#diff-a", LazyList)
        lst.highlighted = row
        lst.scroll_to_row(row, center=True)

    def action_first(self) -> None:
        if self.diff is not None:
            self._go(self.diff.first_divergence, "no divergence: every step is the same")

    def action_next(self, back: bool) -> None:
        if self.diff is None:
            return
        here = self.query_one("#diff-a", LazyList).highlighted
        if back:
            self._go(self.diff.previous_divergence(here), "no earlier divergence")
        else:
            self._go(self.diff.next_divergence(here), "no later divergence")

    def action_open_step(self) -> None:
        if self.diff is None:
            return
        row = self.diff.row(max(self.query_one("#diff-a", LazyList).highlighted, 0))
        if row.a_step < 0:
            self.notify("this row is only in the candidate: the step screen shows the original", timeout=3)
            return
        cursor: Any = self.session.require()
        cursor.goto(row.a_step)
        self.app.open_step()  # type: ignore[attr-defined]
        step_screen = self.app.get_screen("step")
        step_screen.frame_offset = 0  # type: ignore[attr-defined]
        step_screen.refresh_view()  # type: ignore[attr-defined]

    def action_back(self) -> None:
        if self.worker is not None and self.worker.is_running:
            self.worker.cancel()
        self.app.back()  # type: ignore[attr-defined]
