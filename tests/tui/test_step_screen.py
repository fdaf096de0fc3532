"""Pilot tests of the step screen: keys move the cursor, every panel follows, scans run in
workers, errors open a modal. Each expectation comes from a headless TraceCursor on the same
trace, moved the same way."""

from __future__ import annotations

import pytest

from replay.replayer.cursor import TraceCursor
from replay.replayer.traces import open_trace
from tests.tui.conftest import opened, text_of, wait_for
from tui import build_app
from tui.screens.modals import ErrorModal, PickModal, PromptModal
from tui.screens.step import StepScreen
from tui.screens.summary import SummaryScreen
from tui.widgets.lazylist import LazyList
from tui.widgets.locals import LocalsView
from tui.widgets.source import SourceView
from tui.widgets.timeline import Timeline


def reference(path: str) -> TraceCursor:
    trace, _ = open_trace(path)
    return TraceCursor(trace)


async def test_the_summary_says_what_the_snapshot_is_then_enter_steps_through(sample):
    app = build_app(sample)
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        assert isinstance(app.screen, SummaryScreen)
        shown = text_of(app.screen.query_one("#summary"))
        assert "subscriptions.service:renew" in shown
        assert "ValueError: day is out of range for month" in shown
        assert "17 steps" in shown
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StepScreen)
        assert app.session.cursor.index == 0


@pytest.mark.parametrize("keys, moves", [
    ("sss", [("step_into", False)] * 3),
    ("sssssS", [("step_into", False)] * 5 + [("step_into", True)]),
    ("nnn", [("step_over", False)] * 3),
    ("ssssso", [("step_into", False)] * 5 + [("step_out", False)]),
    ("sssssO", [("step_into", False)] * 5 + [("step_out", True)]),
    ("nnnnN", [("step_over", False)] * 4 + [("step_over", True)]),
])
async def test_keys_move_the_cursor_like_the_cursor_api(sample, keys, moves):
    ref = reference(sample)
    for name, back in moves:
        getattr(ref, name)(back=back)
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        for key in keys:
            await pilot.press(key)
        await pilot.pause()
        assert app.session.cursor.index == ref.index
        screen = app.screen
        assert isinstance(screen, StepScreen)
        # the panels follow: source line, frame, status and timeline show the cursor's step
        frame = ref.state().frame
        source = screen.query_one(SourceView)
        assert (source.file, source.current) == (frame.code.file, frame.line)
        assert source.highlighted == frame.line - 1
        assert ref.position in text_of(screen.query_one("#status"))
        assert screen.query_one(Timeline).position == ref.index


async def test_e_goes_to_the_exception_and_marks_it(sample):
    ref = reference(sample)
    ref.goto_exception()
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("e")
        await pilot.pause()
        assert app.session.cursor.index == ref.index
        screen = app.screen
        source = screen.query_one(SourceView)
        assert source.failing and "✖" in str(source._render_row(source.current - 1))
        view = screen.query_one(LocalsView)
        assert any(r.changed and r.text(False).startswith("<exception> = ValueError") for r in view.rows)
        assert "● " in str(view._line(next(i for i, r in enumerate(view.rows) if r.changed)))
        await wait_for(pilot, lambda: screen._exception_step == ref.index)


async def test_locals_mark_what_the_last_step_changed(sample):
    ref = reference(sample)
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        for _ in range(12):
            await pilot.press("s")
            ref.step_into()
            await pilot.pause()
            frame = ref.state().frame
            rows = app.screen.query_one(LocalsView).rows
            assert {r.label for r in rows if r.changed} == frame.changed
            assert {r.label for r in rows if r.depth == 0} == set(frame.locals)


async def test_g_goes_to_a_step_a_position_and_an_interaction(sample):
    ref = reference(sample)
    ref.goto(9)
    position = ref.position
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("g")
        await pilot.pause()
        assert isinstance(app.screen, PromptModal)
        await pilot.press(*"9", "enter")
        await pilot.pause()
        assert app.session.cursor.index == 9
        await pilot.press("e", "g", *position, "enter")
        await pilot.pause()
        assert app.session.cursor.index == 9
        await pilot.press("g", "#", "0", "enter")
        await pilot.pause()
        assert app.session.cursor.index == app.session.trace.step_of_interaction(0)


async def test_a_bad_position_opens_an_error_modal_and_keeps_the_cursor(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("s", "s")
        before = app.session.cursor.index
        await pilot.press("g", *"0:nosuch#1@3#1", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ErrorModal)
        assert "nosuch" in text_of(app.screen.query_one("#error-message"))
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, StepScreen)
        assert app.session.cursor.index == before


async def test_breakpoints_toggle_and_continue_stops_there_both_ways(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("e")  # in add_months, line 12
        await pilot.pause()
        screen = app.screen
        source = screen.query_one(SourceView)
        file, line = source.file, source.current
        await pilot.press("b")
        assert [(bp.file, bp.line) for bp in app.session.cursor.breakpoints] == [(file, line)]
        assert "●" in str(source._render_row(line - 1))
        ref = reference(sample)
        ref.toggle_breakpoint(app.session.cursor.breakpoints[0])
        await pilot.press("g", "0", "enter", "c")
        ref.continue_()
        await wait_for(pilot, lambda: screen.state.step.index == ref.index)  # drawn, not only moved
        await pilot.press("g", *"end", "enter", "C")
        await wait_for(pilot, lambda: screen.state.step.index == ref.index)
        await pilot.press("b")  # clears it
        assert app.session.cursor.breakpoints == []


async def test_clicking_a_tape_row_goes_to_the_step_that_asked_for_it(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("e")
        tape = app.screen.query_one("#tape", LazyList)
        await pilot.click(tape, offset=(3, 1))  # first row, inside the border
        await pilot.pause()
        assert app.session.cursor.index == app.session.trace.step_of_interaction(0)


async def test_clicking_the_timeline_seeks(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        timeline = app.screen.query_one(Timeline)
        width = timeline.size.width
        await pilot.click(timeline, offset=(width - 1, 0))
        await pilot.pause()
        assert app.session.cursor.index == app.session.trace.steps - 1
        await pilot.click(timeline, offset=(width // 2, 0))
        await pilot.pause()
        assert app.session.cursor.index == (width // 2) * app.session.trace.steps // width


async def test_selecting_a_caller_frame_shows_its_source_and_locals(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("e")
        await pilot.pause()
        state = app.session.state()
        caller = state.frames[-2]
        stack = app.screen.query_one("#stack", LazyList)
        await pilot.click(stack, offset=(3, 2))  # second row: the caller
        await pilot.pause()
        source = app.screen.query_one(SourceView)
        assert (source.file, source.current) == (caller.code.file, caller.line)
        names = {r.label for r in app.screen.query_one(LocalsView).rows if r.depth == 0}
        assert names == set(caller.locals)


async def test_search_runs_in_a_worker_and_a_hit_goes_to_its_step(sample):
    ref = reference(sample)
    hits = ref.search("2026")
    assert hits
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("slash", *"2026", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, PickModal))
        assert len(app.screen.rows) == len(hits)
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.session.cursor.index == hits[1].step if len(hits) > 1 else hits[0].step


async def test_a_watch_shows_its_value_and_history(sample):
    ref = reference(sample)
    changes = ref.history("months")
    assert changes
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("w", *"months", "enter")
        await wait_for(pilot, lambda: len(app.session.watches) == 1)
        await pilot.pause()
        watches = app.screen.query_one("#watches", LazyList)
        assert watches.count == 1
        assert [c.step for c in app.session.watches[0].changes] == [c.step for c in changes]
        watches.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, PickModal)
        await pilot.press("enter")
        await pilot.pause()
        assert app.session.cursor.index == changes[0].step
        row = str(app.screen.query_one("#watches", LazyList)._line(0))
        assert row.startswith("months = ") and row.split(" = ")[1].split()[0] == repr(ref.evaluate("months", changes[0].step))


async def test_a_disallowed_watch_expression_is_an_error_modal(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("w", *"__import__('os')", "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert "not allowed" in text_of(app.screen.query_one("#error-message")).lower() or \
            "__import__" in text_of(app.screen.query_one("#error-message"))


async def test_help_lists_the_keys_of_the_screen(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        text = " ".join(text_of(w) for w in app.screen.query("Static"))
        for words in ("step over", "reverse step into", "reverse continue", "watch an expression"):
            assert words in text
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, StepScreen)


async def test_a_missing_snapshot_is_shown_not_swallowed(tmp_path):
    app = build_app(str(tmp_path / "nope.rsnap"))
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        assert "nope.rsnap" in text_of(app.screen.query_one("#error-message"))


async def test_a_container_local_expands_to_its_items_and_stays_open(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("e")
        await pilot.pause()
        view = app.screen.query_one(LocalsView)
        i = next(i for i, r in enumerate(view.rows) if r.label == "<exception>")
        assert view.rows[i].expandable
        view.focus()
        view.highlighted = i
        await pilot.press("enter")
        await pilot.pause()
        kids = [r for r in view.rows if r.depth == 1]
        assert kids and all(r.path.startswith("<exception>") for r in kids)
        await pilot.press("S", "s")  # away and back: still open
        await pilot.pause()
        assert [r.path for r in view.rows if r.depth == 1] == [r.path for r in kids]
