"""Pilot tests of the diff and verify screens against real replays of the sample snapshot
(the recorded code against sample_snapshots/fixes/*)."""

from __future__ import annotations

from replay.diff import diff_traces
from replay.replayer.traces import open_trace
from replay.verify.verdict import verify
from tests.tui.conftest import FIX, REPO, SAMPLE, opened, text_of, wait_for
from tui import build_app
from tui.screens.diff import DiffScreen
from tui.screens.modals import PromptModal
from tui.screens.step import StepScreen
from tui.screens.verify import VerifyScreen
from tui.widgets.lazylist import LazyList

AI_FIX = REPO / "sample_snapshots" / "fixes" / "ai_clamp30"


def reference_diff(code: str):
    a, _ = open_trace(str(SAMPLE))
    b, _ = open_trace(str(SAMPLE), code_dirs=[code])
    return diff_traces(a, b)


async def test_d_opens_the_diff_at_the_first_divergence_and_f_n_move_between_blocks(sample):
    ref = reference_diff(str(AI_FIX))
    assert ref.first_divergence is not None
    app = build_app(sample, code_dirs=[str(AI_FIX)], start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen.diff is not None)
        await pilot.pause()
        screen = app.screen
        left, right = screen.query_one("#diff-a", LazyList), screen.query_one("#diff-b", LazyList)
        assert left.count == right.count == len(ref)
        assert left.highlighted == right.highlighted == ref.first_divergence
        assert "DIFFERENT" in text_of(screen.query_one("#diff-head"))
        # rows are drawn side by side: a one-sided row leaves the other side blank
        row = ref.row(ref.first_divergence)
        drawn = str(left._line(ref.first_divergence)), str(right._line(ref.first_divergence))
        assert (str(row.a_step) in drawn[0]) == (row.a_step >= 0)
        assert (str(row.b_step) in drawn[1]) == (row.b_step >= 0)
        await pilot.press("home", "f")
        assert left.highlighted == ref.first_divergence
        await pilot.press("n")
        expected = ref.next_divergence(ref.first_divergence)
        assert left.highlighted == (expected if expected is not None else ref.first_divergence)
        await pilot.press("down")
        assert right.highlighted == left.highlighted  # both sides follow
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, StepScreen)


async def test_enter_on_a_diff_row_opens_that_step(sample):
    ref = reference_diff(str(AI_FIX))
    app = build_app(sample, code_dirs=[str(AI_FIX)], start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("d")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen.diff is not None)
        await pilot.press("home")
        target = next(i for i in range(len(ref)) if ref.row(i).a_step >= 3)
        for _ in range(target):
            await pilot.press("down")
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StepScreen)
        assert app.session.cursor.index == ref.row(target).a_step
        assert app.screen.state.step.index == ref.row(target).a_step


async def test_the_diff_asks_for_a_candidate_when_none_was_given(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert isinstance(app.screen, PromptModal)
        await pilot.press(*str(FIX), "enter")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen.diff is not None)
        assert app.screen.diff.outcome  # the fix returns where the recording raised


async def test_verify_runs_in_a_worker_shows_the_verdict_and_opens_the_diff(sample):
    expected = verify(str(SAMPLE), [str(FIX)])
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("v")
        await pilot.pause()
        assert isinstance(app.screen, VerifyScreen)
        await pilot.press(*str(FIX), "enter")
        screen = app.screen
        await wait_for(pilot, lambda: screen.result is not None, timeout_s=120)
        assert screen.result.verdict == expected.verdict
        shown = text_of(screen.query_one("#verify-verdict"))
        assert expected.verdict.value in shown and "recorded" in shown
        assert "done in" in text_of(screen.query_one("#verify-phase"))
        await pilot.click("#diff-button")
        await wait_for(pilot, lambda: isinstance(app.screen, DiffScreen) and app.screen.diff is not None)
        assert app.screen.diff.effects_compared  # the verify's effects feed the diff


async def test_verify_can_be_cancelled(sample):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("v", *str(FIX), "enter")
        screen = app.screen
        await wait_for(pilot, lambda: screen.worker is not None)
        await pilot.press("escape")  # cancels the running verify
        await wait_for(pilot, lambda: screen.worker.is_finished)
        assert screen.result is None
        assert "cancelled" in text_of(screen.query_one("#verify-phase"))


async def test_verify_rejects_a_directory_that_does_not_exist(sample, tmp_path):
    app = build_app(sample, start="step")
    async with app.run_test(size=(120, 40)) as pilot:
        await opened(pilot)
        await pilot.press("v", *str(tmp_path / "nope"), "enter")
        await pilot.pause()
        assert app.screen.worker is None
        assert any("is not a directory" in str(n.message) for n in app._notifications)
