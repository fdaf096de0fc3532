"""The sample billing corpus: the correct fix is FIXED/UNCHANGED, the AI-style fixes are exposed.

The snapshots in sample_snapshots/snapshots were recorded from real runs of the billing
service under libfaketime (see sample_snapshots/README.md). Each scenario directory holds
one snapshot.
"""

from __future__ import annotations

import glob

import pytest

from replay.verify import Verdict, reproduce, verify
from tests.conftest import SAMPLES

pytestmark = pytest.mark.integration

SCENARIOS = ["jan31-monthly", "mar31-monthly", "aug31-quarterly", "feb15-monthly", "mar10-annual", "jan31-annual"]

EXPECTED = {
    "correct": {
        "jan31-monthly": Verdict.FIXED, "mar31-monthly": Verdict.FIXED, "aug31-quarterly": Verdict.FIXED,
        "feb15-monthly": Verdict.UNCHANGED, "mar10-annual": Verdict.UNCHANGED, "jan31-annual": Verdict.UNCHANGED,
    },
    # 30 days is not a month: the crash goes away, every succeeding renewal changes its period end.
    "ai_timedelta": {
        "jan31-monthly": Verdict.FIXED, "mar31-monthly": Verdict.FIXED, "aug31-quarterly": Verdict.FIXED,
        "feb15-monthly": Verdict.CHANGED, "mar10-annual": Verdict.CHANGED, "jan31-annual": Verdict.CHANGED,
    },
    # Clamping to day 30 still fails for February and shortens annual renewals from the 31st.
    "ai_clamp30": {
        "jan31-monthly": Verdict.STILL_FAILING, "mar31-monthly": Verdict.FIXED, "aug31-quarterly": Verdict.FIXED,
        "feb15-monthly": Verdict.UNCHANGED, "mar10-annual": Verdict.UNCHANGED, "jan31-annual": Verdict.CHANGED,
    },
}


def snapshot_of(scenario: str) -> str:
    found = glob.glob(str(SAMPLES / "snapshots" / scenario / "*.rsnap"))
    assert len(found) == 1, found
    return found[0]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_sample_reproduces_against_the_recorded_code(scenario):
    result = reproduce(snapshot_of(scenario))
    assert result.verdict is Verdict.REPRODUCED, result.reason


@pytest.mark.parametrize("fix", sorted(EXPECTED))
def test_verdicts_against_each_fix(fix):
    code = str(SAMPLES / "fixes" / fix)
    got = {s: verify(snapshot_of(s), [code]).verdict for s in SCENARIOS}
    assert got == EXPECTED[fix]


def test_changed_verdict_names_the_field_that_changed():
    result = verify(snapshot_of("feb15-monthly"), [str(SAMPLES / "fixes" / "ai_timedelta")])
    assert result.verdict is Verdict.CHANGED
    assert [c[0] for c in result.changes] == ["period_end"]
    assert result.changes[0][1:] == ("datetime.date(2026, 3, 15)", "datetime.date(2026, 3, 17)")
    assert result.changed_files == ["subscriptions/calendar_utils.py"]


def test_still_failing_names_the_place():
    result = verify(snapshot_of("jan31-monthly"), [str(SAMPLES / "fixes" / "ai_clamp30")])
    assert result.verdict is Verdict.STILL_FAILING
    assert "subscriptions/calendar_utils.py:add_months" in result.reason
