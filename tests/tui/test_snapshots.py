"""SVG snapshots of each screen at 80x24 and 120x40 (pytest-textual-snapshot).

Update after a deliberate change of the looks with ``pytest tests/tui --snapshot-update``
and review the SVGs in the diff; the report of a failure is ``snapshot_report.html``.
"""

from __future__ import annotations

import pytest

from tests.tui.conftest import opened, wait_for
from tui import build_app

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]


@pytest.mark.parametrize("size", SIZES)
class TestSummary:
    def test_summary_when_the_trace_is_open(self, snap_compare, sample, size):
        """The snapshot's entry, outcome, tape and environment, and 'Ready'."""
        assert snap_compare(build_app(sample), terminal_size=size, run_before=opened)


@pytest.mark.parametrize("size", SIZES)
class TestStep:
    def test_step_at_the_exception(self, snap_compare, sample, size):
        """The failing line marked in the gutter, the stack, the locals with <exception> marked."""
        async def run_before(pilot):
            await opened(pilot)
            await pilot.press("e")
            await wait_for(pilot, lambda: pilot.app.screen._exception_step is not None)

        assert snap_compare(build_app(sample, start="step"), terminal_size=size, run_before=run_before)

    def test_step_with_a_breakpoint_and_a_watch(self, snap_compare, sample, size):
        """A breakpoint in the gutter and a watch with its value."""
        async def run_before(pilot):
            await opened(pilot)
            await pilot.press("e", "b", "w", *"months", "enter")
            await wait_for(pilot, lambda: len(pilot.app.session.watches) == 1)
            await wait_for(pilot, lambda: pilot.app.screen._exception_step is not None)
            await pilot.pause()

        assert snap_compare(build_app(sample, start="step"), terminal_size=size, run_before=run_before)

    def test_help(self, snap_compare, sample, size):
        """Every key of the step screen with what it does."""
        async def run_before(pilot):
            await opened(pilot)
            await pilot.press("question_mark")

        assert snap_compare(build_app(sample, start="step"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
class TestVerify:
    def test_verify_before_running(self, snap_compare, sample, size):
        """The directory field, the buttons and the explanation."""
        async def run_before(pilot):
            await opened(pilot)
            await pilot.press("v")
            await pilot.pause()

        assert snap_compare(build_app(sample, start="step"), terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES)
class TestDiff:
    def test_diff_at_the_first_divergence(self, snap_compare, sample, size):
        """Original and candidate aligned by call tree, the first divergence highlighted."""
        from tests.tui.conftest import REPO
        from tui.screens.diff import DiffScreen

        async def run_before(pilot):
            await opened(pilot)
            await pilot.press("d")
            await wait_for(pilot, lambda: isinstance(pilot.app.screen, DiffScreen) and pilot.app.screen.diff)
            await pilot.pause()

        app = build_app(sample, code_dirs=["sample_snapshots/fixes/ai_clamp30"], start="step")
        assert (REPO / "sample_snapshots/fixes/ai_clamp30").is_dir()
        assert snap_compare(app, terminal_size=size, run_before=run_before)
