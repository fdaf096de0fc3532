"""The step screen: source, call stack, locals, tape, watches and timeline at the cursor.

Keys move the :class:`~replay.replayer.cursor.TraceCursor` (lowercase forward, Shift
backward); every panel then follows the cursor. Moving reads one trace chunk (milliseconds),
so it runs on the UI thread; scans over the whole trace (continue, search, watch) run in
workers and report progress in the status bar.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.worker import Worker, get_current_worker

from replay.errors import ReplayError
from replay.replayer.tracefile import FrameState, State
from tui.screens.modals import ErrorModal, PickModal, PromptModal, report_failure, safe
from tui.session import TraceSession, parse_goto
from tui.widgets.lazylist import LazyList
from tui.widgets.locals import LocalsView
from tui.widgets.source import SourceView
from tui.widgets.status import KeyBar, StatusBar
from tui.widgets.timeline import Marks, Timeline

_CHANNEL_STYLE = {"clock": "cyan", "random": "magenta", "uuid": "magenta", "http": "green", "db": "yellow",
                  "file": "blue", "subprocess": "red", "env": "bright_black", "socket": "green"}


class StepScreen(Screen[None]):
    """Step through one trace; see the module docstring."""

    CSS_PATH = "step.tcss"
    BINDINGS = [
        Binding("n", "step('over', False)", "Over", id="step-over", tooltip="step over: the next line of this frame, jumping over calls"),
        Binding("N", "step('over', True)", "Back over", show=False, id="step-over-back", tooltip="reverse step over: the previous line of this frame"),
        Binding("s", "step('into', False)", "Into", id="step-into", tooltip="step into: the next step, entering calls"),
        Binding("S", "step('into', True)", "Back into", show=False, id="step-into-back", tooltip="reverse step into: the previous step"),
        Binding("o", "step('out', False)", "Out", id="step-out", tooltip="step out: to the caller, after this frame returns"),
        Binding("O", "step('out', True)", "Back out", show=False, id="step-out-back", tooltip="reverse step out: to the caller's step that made this call"),
        Binding("c", "continue(False)", "Continue", id="continue", tooltip="continue to the next breakpoint (or the end)"),
        Binding("C", "continue(True)", "Reverse continue", show=False, id="continue-back", tooltip="reverse continue to the previous breakpoint (or the start)"),
        Binding("b", "breakpoint", "Breakpoint", id="breakpoint", tooltip="toggle a breakpoint on the source line under the source cursor"),
        Binding("e", "exception", "Exception", id="exception", tooltip="go to where the exception that ended the run was raised"),
        Binding("g", "goto", "Go to", id="goto", tooltip="go to a step number, #N tape interaction, 'exception', 'end' or a position"),
        Binding("slash", "search", "Search", id="search", tooltip="search values: steps where a local took a value containing the text"),
        Binding("w", "watch", "Watch", id="watch", tooltip="watch an expression: its value here and its whole history"),
        Binding("d", "diff", "Diff", id="diff", tooltip="diff the original trace against the candidate's, aligned by call tree"),
        Binding("v", "verify", "Verify", id="verify", tooltip="verify a candidate code directory against this snapshot"),
        Binding("i", "summary", "Snapshot info", show=False, id="summary", tooltip="what the snapshot is: entry, outcome, environment, size"),
    ]

    def __init__(self, session: TraceSession):
        super().__init__()
        self.session = session
        self.frame_offset = 0  # 0: the step's own frame; 1: its caller; ...
        self.state: State | None = None
        self._tape_steps: dict[int, int] = {}
        self._exception_step: int | None = None
        self.last_move_ms = 0.0
        self.redraws = 0
        self.redrawn_at = 0.0
        """Milliseconds the last redraw took (the benchmark reads it)."""

    # ------------------------------------------------------------- layout

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="left"):
                yield SourceView(id="source")
                yield LazyList(self._tape_row, id="tape")
            with Vertical(id="right"):
                yield LazyList(self._stack_row, id="stack")
                yield LocalsView(id="locals")
                yield LazyList(self._watch_row, id="watches")
        yield Timeline(id="timeline")
        yield StatusBar(id="status")
        yield KeyBar()

    def on_resize(self) -> None:
        self.set_class(self.size.height < 32, "-small")

    def on_mount(self) -> None:
        trace = self.session.trace
        assert trace is not None
        self._tape_steps = {index: step for step, index in trace.links}
        self._marks = Marks(trace.steps, [s for s, _ in trace.links])
        tape = self.query_one("#tape", LazyList)
        tape.set_rows(self.session.tape_length())
        tape.border_title = f"tape · {self.session.tape_summary()}"
        self.query_one("#stack", LazyList).border_title = "call stack"
        self.query_one("#locals", LocalsView).border_title = "locals"
        watches = self.query_one("#watches", LazyList)
        watches.border_title = "watches · w to add"
        self._find_exception()
        self.refresh_view()
        self.query_one("#source", SourceView).focus()

    @work(thread=True, exclusive=True, group="exception-mark", exit_on_error=False)
    def _find_exception(self) -> None:
        """Mark the exception on the timeline (a scan from the end; off the UI thread)."""
        from replay.replayer.cursor import TraceCursor

        trace = self.session.trace
        if trace is None or not any(s[4] for s in trace.summaries):
            return
        probe = TraceCursor(trace)
        try:
            step = probe.goto_exception().index
        except ReplayError:
            return
        self.app.call_from_thread(self._set_exception, step)

    def _set_exception(self, step: int) -> None:
        self._exception_step = step
        self._update_timeline()

    # ------------------------------------------------------------- drawing

    @property
    def cursor(self) -> Any:
        return self.session.require()

    def refresh_view(self) -> None:
        """Redraw every panel for the cursor's step (and the selected frame)."""
        started = time.perf_counter()
        self.state = self.session.state()
        frames = self.state.frames
        self.frame_offset = min(self.frame_offset, len(frames) - 1)
        frame = frames[-1 - self.frame_offset]
        step = self.state.step
        trace = self.session.trace
        assert trace is not None
        failing = step.kind == "exception" and self.frame_offset == 0
        source = self.query_one("#source", SourceView)
        text = trace.sources().get(frame.code.file)
        source.show(frame.code.file, text, frame.line, self.session.executed_lines(frame.code.id),
                    self.session.breakpoint_lines(frame.code.file), failing=failing)
        kind = "" if self.frame_offset else f" · {step.kind}"
        source.border_title = f"{safe(frame.code.file)} · {safe(frame.code.qualname)}{kind}"
        stack = self.query_one("#stack", LazyList)
        stack.set_rows(len(frames))
        stack.highlighted = self.frame_offset
        locals_view = self.query_one("#locals", LocalsView)
        locals_view.show(frame.locals, frame.changed if self.frame_offset == 0 else set())
        locals_view.border_title = f"locals · {safe(frame.code.qualname)}"
        tape = self.query_one("#tape", LazyList)
        made = trace.interactions_of(step.index)
        tape.refresh_rows()
        if made:
            tape.highlighted = made[0]
        watches = self.query_one("#watches", LazyList)
        watches.set_rows(len(self.session.watches))
        watches.set_class(not self.session.watches, "-empty")
        self._update_timeline()
        self.last_move_ms = (time.perf_counter() - started) * 1000
        self.redraws += 1
        self.redrawn_at = time.perf_counter()
        self._update_status()

    def _update_timeline(self) -> None:
        trace = self.session.trace
        if trace is None:
            return
        timeline = self.query_one(Timeline)
        if self._marks.exception != self._exception_step:  # the marks change only when the exception is found
            self._marks = Marks(trace.steps, self._marks.interactions, self._exception_step)
            timeline.set_marks(self._marks)
        elif timeline.marks is not self._marks:
            timeline.set_marks(self._marks)
        timeline.move_to(self.cursor.index)

    def _update_status(self, extra: str = "") -> None:
        state = self.state
        if state is None:
            return
        trace = self.session.trace
        assert trace is not None
        step = state.step
        outcome = self.session.outcome_text()
        text = Text.assemble(
            (f" step {step.index:,}/{trace.steps - 1:,} ", "bold reverse"), " ",
            (safe(state.position), "cyan"), " · ", (step.kind, "bold"),
        )
        if extra:
            text.append(f" · {extra}", style="yellow")
        else:
            text.append(" · outcome: ", style="dim")
            text.append(safe(outcome)[:120], style="red" if self.session.failed() else "green")
        self.query_one("#status", StatusBar).show(text)

    def _frame_rows(self) -> list[FrameState]:
        return list(reversed(self.state.frames)) if self.state else []

    def _stack_row(self, i: int) -> Text:
        rows = self._frame_rows()
        if i >= len(rows):
            return Text("")
        f = rows[i]
        return Text.assemble(("▶ " if i == 0 else "  ", "yellow"), (safe(f.code.qualname), "bold" if i == 0 else ""),
                             (f"  {safe(f.code.file)}:{f.line}", "dim"))

    def _tape_row(self, i: int) -> Text:
        channel, text = self.session.interaction_text(i)
        step = self._tape_steps.get(i)
        here = self.cursor.index
        made_here = step == here
        done = step is not None and step <= here
        mark = "◆ " if made_here else ("  " if done else "· ")
        style = "" if done else "dim"
        row = Text(mark, style="bold yellow")
        row.append(safe(text), style=style)
        row.stylize(_CHANNEL_STYLE.get(channel, ""), len(mark) + len(f"#{i} "),
                    len(mark) + len(f"#{i} ") + len(channel))
        if step is None:
            row.append("  (not asked for)", style="dim italic")
        return row

    def _watch_row(self, i: int) -> Text:
        if i >= len(self.session.watches):
            return Text("")
        w = self.session.watches[i]
        value = self.session.evaluate(w.text)
        n = len(w.changes)
        return Text.assemble((safe(w.text), "bold cyan"), " = ", safe(value)[:200],
                             (f"   {n} change{'s' if n != 1 else ''}", "dim"))

    # ------------------------------------------------------------- moving

    def move(self, fn: Callable[[], Any]) -> None:
        """Run a cursor move, then redraw; an error (no exception, bad position) opens a modal."""
        try:
            fn()
        except (ReplayError, IndexError) as exc:
            self.app.push_screen(ErrorModal("Cannot go there", str(exc)))
            return
        self.frame_offset = 0
        self.refresh_view()

    def action_step(self, how: str, back: bool) -> None:
        cursor = self.cursor
        fn = {"over": cursor.step_over, "into": cursor.step_into, "out": cursor.step_out}[how]
        before = cursor.index
        self.move(lambda: fn(back=back))
        if cursor.index == before:
            self.notify("at the start of the trace" if back else "at the end of the trace", timeout=2)

    def action_exception(self) -> None:
        self.move(self.cursor.goto_exception)

    def goto(self, step: int) -> None:
        """Go to a step (from the timeline, a search hit, a watch change, the diff)."""
        self.move(lambda: self.cursor.goto(step))

    def action_goto(self) -> None:
        def done(text: str | None) -> None:
            if not text or not text.strip():
                return
            try:
                what, arg = parse_goto(text)
            except ReplayError as exc:
                self.app.push_screen(ErrorModal("Cannot go there", str(exc)))
                return
            cursor = self.cursor
            self.move({"step": lambda: cursor.goto(arg), "interaction": lambda: cursor.goto_interaction(arg),
                       "exception": cursor.goto_exception, "end": lambda: cursor.goto(-1),
                       "position": lambda: cursor.goto_position(arg)}[what])

        self.app.push_screen(PromptModal(
            "Go to", "a step number, #N (tape interaction N), 'exception', 'end', or a position such as "
                     f"{safe(self.cursor.position)}", placeholder="step, #interaction, exception, position"), done)

    @on(Timeline.SeekRequested)
    def seek(self, event: Timeline.SeekRequested) -> None:
        self.goto(event.step)

    @on(LazyList.Selected, "#stack")
    def frame_selected(self, event: LazyList.Selected) -> None:
        self.frame_offset = event.index
        self.refresh_view()

    @on(LazyList.Selected, "#tape")
    def tape_selected(self, event: LazyList.Selected) -> None:
        self.move(lambda: self.cursor.goto_interaction(event.index))

    @on(LazyList.Selected, "#source")
    def source_clicked(self, event: LazyList.Selected) -> None:
        if event.x >= 0 and self.query_one(SourceView).clicked_gutter(event.x):
            self._toggle(event.index + 1)

    # ------------------------------------------------------------- breakpoints and continue

    def action_breakpoint(self) -> None:
        source = self.query_one(SourceView)
        line = source.highlighted + 1 if source.highlighted >= 0 else source.current
        self._toggle(line)

    def _toggle(self, line: int) -> None:
        source = self.query_one(SourceView)
        added = self.session.toggle_breakpoint(source.file, line)
        self.notify(f"breakpoint {'set' if added else 'cleared'} at {safe(source.file)}:{line}", timeout=2)
        source.breakpoints = self.session.breakpoint_lines(source.file)
        source.refresh_rows()

    def _progress(self, verb: str) -> Callable[[int], None]:
        """Progress callback for a scan in the current worker: the percentage reached goes to
        the status bar, and once the worker is cancelled the scan stops (:class:`_Cancelled`)."""
        worker = get_current_worker()
        steps = max(self.session.trace.steps if self.session.trace is not None else 1, 1)

        def progress(n: int) -> None:
            if worker.is_cancelled:
                raise _Cancelled
            self.app.call_from_thread(self._update_status, f"{verb}... {100 * n // steps}%")

        return progress

    def action_continue(self, back: bool) -> None:
        self._update_status("continuing" + (" backwards" if back else "") + "...")
        self._continue(back)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False, description="continue")
    def _continue(self, back: bool) -> None:
        try:
            self.cursor.continue_(back=back, progress=self._progress("continuing"))
        except _Cancelled:
            return
        stopped = self.cursor.stopped_at
        self.app.call_from_thread(self._after_continue, str(stopped) if stopped else None, back)

    def _after_continue(self, stopped: str | None, back: bool) -> None:
        self.frame_offset = 0
        self.refresh_view()
        if stopped:
            self.notify(f"stopped at breakpoint {safe(stopped)}", timeout=3)
        else:
            self.notify(("no breakpoint before: at the start" if back else "no breakpoint after: at the end")
                        + (" (b sets one)" if not self.cursor.breakpoints else ""), timeout=3)

    # ------------------------------------------------------------- search and watch

    def action_search(self) -> None:
        def done(text: str | None) -> None:
            if text:
                self._update_status(f"searching for {safe(text)!r}...")
                self._search(text)

        self.app.push_screen(PromptModal("Search values", "steps where a local took a value whose text contains this",
                                         placeholder="text, e.g. 42 or 'alice'"), done)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False, description="search")
    def _search(self, text: str) -> None:
        try:
            hits = self.session.search(text, progress=self._progress("searching"))
        except _Cancelled:
            return
        self.app.call_from_thread(self._show_hits, text, hits)

    def _show_hits(self, text: str, hits: list[Any]) -> None:
        self._update_status()
        if not hits:
            self.notify(f"no local ever shows {safe(text)!r}", severity="warning", timeout=3)
            return
        rows = [f"step {h.step:>9,}  {h.function}  {h.name} = {h.value}" for h in hits]

        def picked(i: int | None) -> None:
            if i is not None:
                self.goto(hits[i].step)

        self.app.push_screen(PickModal(f"{len(hits)} steps show {text!r}" + (" (first 200)" if len(hits) >= 200 else ""),
                                       rows), picked)

    def action_watch(self) -> None:
        def done(text: str | None) -> None:
            if text:
                self._update_status(f"watching {safe(text)}: reading its history...")
                self._watch(text)

        self.app.push_screen(PromptModal("Watch an expression", "its value here and every step where it changed, "
                                         "e.g. order.total or len(items)", placeholder="expression"), done)

    @work(thread=True, exclusive=True, group="scan", exit_on_error=False, description="watch")
    def _watch(self, text: str) -> None:
        try:
            self.session.watch(text, progress=self._progress("watching"))
        except _Cancelled:
            return
        self.app.call_from_thread(self._watched)

    def _watched(self) -> None:
        watches = self.query_one("#watches", LazyList)
        watches.set_rows(len(self.session.watches))
        watches.remove_class("-empty")
        watches.highlighted = len(self.session.watches) - 1
        self._update_status()

    @on(LazyList.Selected, "#watches")
    def watch_selected(self, event: LazyList.Selected) -> None:
        w = self.session.watches[event.index]
        changes = list(w.changes)
        if not changes:
            self.notify(f"{safe(w.text)} never has a value in this trace", severity="warning", timeout=3)
            return
        rows = [f"step {c.step:>9,}  {c.function}:{c.line}  {c.old if c.old is not None else '(new call)'} -> {c.new}"
                for c in changes]

        def picked(i: int | None) -> None:
            if i is not None:
                self.goto(changes[i].step)

        self.app.push_screen(PickModal(f"{w.text}: {len(changes)} changes", rows), picked)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.is_finished:
            self._update_status()
        report_failure(event, self.app)

    # ------------------------------------------------------------- other screens

    def action_diff(self) -> None:
        self.app.open_diff()  # type: ignore[attr-defined]

    def action_verify(self) -> None:
        self.app.open_verify()  # type: ignore[attr-defined]

    def action_summary(self) -> None:
        self.app.open_summary()  # type: ignore[attr-defined]


class _Cancelled(Exception):
    """Raised inside a scan's progress callback when its worker was cancelled."""
