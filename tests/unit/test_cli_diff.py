"""``replay diff`` on the sample corpus: text, JSON and the documented exit codes."""

from __future__ import annotations

import json

import pytest

from replay.cli import ExitCode, main
from tests.conftest import SAMPLES
from tests.integration.test_sample_corpus import EXPECTED, SCENARIOS, snapshot_of

CORRECT = str(SAMPLES / "fixes" / "correct")


@pytest.fixture(autouse=True)
def trace_cache(tmp_path_factory, monkeypatch):
    """One trace cache for the module's tests (each trace is regenerated once)."""
    monkeypatch.setenv("REPLAY_TRACE_CACHE", str(tmp_path_factory.getbasetemp() / "diff-trace-cache"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_diff_against_the_correct_fix_json(scenario, capsys):
    code = main(["diff", snapshot_of(scenario), "--code", CORRECT, "--json"])
    data = json.loads(capsys.readouterr().out)
    verdict = EXPECTED["correct"][scenario].value
    assert data["verdict"].startswith(verdict + ":")
    # the fix rewrites add_months, whose steps differ on every renewal
    assert code == ExitCode.DIFFERENT and data["exit_code"] == 1 and data["same"] is False
    assert sum(data["counts"].values()) == data["rows_total"]
    assert data["first_divergence"]["row"] == data["blocks"][0][0]
    fields = [d["field"] for d in data["outcome"]]
    if verdict == "FIXED":
        assert fields[0] == "outcome" and data["outcome"][0] == {"field": "outcome", "a": "exception", "b": "return"}
    else:  # same invoice: same return value, same effects
        assert fields == [] and data["effects"] == [] and data["effects_compared"] is True
    first = data["first_divergence"]
    side = first["a"] or first["b"]
    assert side["function"] == "add_months" and side["position"].startswith("0:renew#1/add_months#1@")


def test_diff_text_shows_outcome_first_then_the_first_divergence(capsys):
    code = main(["diff", snapshot_of("jan31-monthly"), "--code", CORRECT, "--rows", "5"])
    out = capsys.readouterr().out
    assert code == ExitCode.DIFFERENT
    order = [out.index(text) for text in ("verdict: FIXED", "outcome differences:", "outcome: exception  ->  return",
                                          "first divergence:", "return day.replace", "differing rows")]
    assert order == sorted(order)
    assert "more differing rows in this block" in out  # --rows 5 bounds the list


def test_two_recordings_and_the_same_one_twice(capsys):
    jan, mar = snapshot_of("jan31-monthly"), snapshot_of("mar31-monthly")
    assert main(["diff", jan, jan]) == ExitCode.OK
    assert "the traces agree step for step" in capsys.readouterr().out
    assert main(["diff", jan, mar]) == ExitCode.DIFFERENT
    out = capsys.readouterr().out
    assert "request.customer_id: 'cust-jan31-monthly'  ->  'cust-mar31-monthly'" in out
    assert "effects: not compared" in out


def test_usage_errors_exit_2_and_bad_snapshots_exit_3(tmp_path, capsys):
    snap = snapshot_of("jan31-monthly")
    assert main(["diff", snap]) == ExitCode.USAGE  # nothing to compare with
    assert main(["diff", snap, snap, "--code", CORRECT]) == ExitCode.USAGE
    assert main(["diff", snap, "--code", str(tmp_path / "missing")]) == ExitCode.USAGE
    bad = tmp_path / "bad.rsnap"
    bad.write_bytes(b"not a snapshot at all")
    assert main(["diff", str(bad), snap]) == ExitCode.BAD_SNAPSHOT
    assert main(["diff", "--help"]) == ExitCode.OK
    assert "Exit codes" in capsys.readouterr().out
