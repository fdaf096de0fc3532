"""The pytest plugin, run by real pytest sessions (``pytester``) on the sample corpus.

Sessions that verify snapshots start replay subprocesses; sessions that capture failing
tests run in a subprocess (``runpytest_subprocess``) because capture installs its
interceptors for the rest of the process.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replay.pytest_plugin import failure_text
from replay.verify import Verdict, VerifyResult

pytest_plugins = ["pytester"]

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_snapshots"
CORPUS = SAMPLES / "snapshots"
FIXES = SAMPLES / "fixes"
JAN31 = str(CORPUS / "jan31-*")  # jan31-monthly (a recorded failure) and jan31-annual (a success)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("REPLAY_")]:
        monkeypatch.delenv(name)


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    """An in-process session without the plugins that do not belong in it:
    pytest-textual-snapshot keeps one temporary directory per process and removes it at the
    end of a session; pytest-asyncio warns about its unset options in every inner session.
    The inner session's ini file is the test's own (pytest would otherwise find this
    project's pyproject.toml above the snapshot paths given as option values)."""
    ini = pytester.path / "pytest.ini"
    if not ini.exists():
        ini.write_text("[pytest]\n")
    return pytester.runpytest("-p", "no:textual-snapshot", "-p", "no:asyncio", "-c", str(ini), *args)


def _ids(result: pytest.RunResult) -> list[str]:
    return sorted(line for line in result.outlines if line.endswith("::replay"))


def test_loading_the_plugin_imports_none_of_replay_s_machinery() -> None:
    # The plugin is loaded in every pytest session of a project that installs replay.
    code = ("import sys, replay.pytest_plugin\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('click', 'rich', 'textual') or\n"
            "      m.startswith(('replay.capture', 'replay.snapshot', 'replay.verify', 'replay.replayer',\n"
            "                    'replay.cli', 'replay.export'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_snapshot_is_one_item_with_a_stable_readable_id(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_plain(): pass")
    first = _run(pytester, "--co", "-q", "--replay-snapshots", str(CORPUS))
    second = _run(pytester, "--co", "-q", "--replay-snapshots", str(CORPUS))
    ids = _ids(first)
    assert len(ids) == 6 and ids == _ids(second)
    assert all(Path(i.split("::")[0]).name.startswith("renew-") and i.endswith(".rsnap::replay") for i in ids)
    assert "test_plain.py::test_plain" in first.outlines  # the project's own tests still run
    first.stdout.fnmatch_lines(["7 tests collected*"])


def test_keyword_selects_the_scenario_directory_and_a_named_file_runs_alone(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "--co", "-q", "--replay-snapshots", str(CORPUS), "-k", "jan31")
    assert [Path(i).parent.name for i in _ids(result)] == ["jan31-annual", "jan31-monthly"]
    one = next((CORPUS / "feb15-monthly").glob("*.rsnap"))
    alone = _run(pytester, "--co", "-q", str(one), "--rootdir", str(REPO))
    assert _ids(alone) == [f"{one.relative_to(REPO)}::replay"]


def test_a_correct_fix_passes_and_the_recorded_code_fails_the_recorded_failures(pytester: pytest.Pytester) -> None:
    recorded = _run(pytester, "--replay-snapshots", JAN31, "-rA")
    recorded.assert_outcomes(passed=1, failed=1)
    recorded.stdout.fnmatch_lines([
        "replay verdict STILL_FAILING, expected FIXED (candidate: the recorded code)",
        "*entry:*subscriptions.service:renew",
        "*recorded:*ValueError('day is out of range for month') in subscriptions/calendar_utils.py:add_months",
        "*reproduce: replay verify *jan31-monthly*.rsnap",
        "PASSED *jan31-annual/renew-*.rsnap::replay",
        "FAILED *jan31-monthly/renew-*.rsnap::replay",
    ])
    # A corpus kept in the project and the candidate named in the ini file, relative to it.
    shutil.copytree(CORPUS / "jan31-monthly", pytester.path / "snapshots")
    shutil.copytree(FIXES / "correct", pytester.path / "src")
    (pytester.path / "pytest.ini").write_text("[pytest]\nreplay_code = src\n")
    fixed = _run(pytester, "--replay-snapshots", "snapshots", "-rA")
    fixed.assert_outcomes(passed=1)
    fixed.stdout.fnmatch_lines(["PASSED snapshots/renew-*.rsnap::replay"])  # ids relative to the rootdir


def test_the_failure_report_shows_verdict_change_and_first_divergence(pytester: pytest.Pytester,
                                                                       tmp_path: Path) -> None:
    clamp = _run(pytester, "--replay-snapshots", JAN31, "--replay-code", str(FIXES / "ai_clamp30"))
    clamp.assert_outcomes(failed=2)
    clamp.stdout.fnmatch_lines([
        "*replay renew-*.rsnap*",
        "replay verdict CHANGED, expected UNCHANGED*",
        "*the return value changed: period_end: datetime.date(2027, 1, 31) -> datetime.date(2027, 1, 30)",
        "*changed code: subscriptions/calendar_utils.py",
    ])
    # A candidate that reads a file the recording never read: replay will not invent the answer.
    nosy = tmp_path / "nosy"
    shutil.copytree(FIXES / "correct", nosy)
    service = nosy / "subscriptions" / "service.py"
    service.write_text(service.read_text().replace(
        "    issued_at = datetime.now(timezone.utc)\n",
        "    issued_at = datetime.now(timezone.utc)\n    open('/etc/hostname').read()\n"))
    diverged = _run(pytester, "--replay-snapshots", str(CORPUS / "jan31-monthly"), "--replay-code", str(nosy))
    diverged.assert_outcomes(failed=1)
    diverged.stdout.fnmatch_lines([
        "replay verdict DIVERGED, expected FIXED*",
        "*first divergence at interaction #*",
        "*asked:    file *hostname*",
    ])


def test_failure_text_neutralises_escape_sequences() -> None:
    result = VerifyResult(snapshot="s.rsnap", verdict=Verdict.NEW_FAILURE, reason="raises \x1b[31mred\x07",
                          recorded="returned 'ok'", observed="KeyError('\u202egnp.exe\r')",
                          divergence={"index": 3, "reason": "no match", "channel": "http", "op": "GET",
                                      "asked": "('http://x/\x1b]0;title\x07',)", "recorded": None})
    text = failure_text(result, "UNCHANGED", [])
    assert not any(c in text for c in "\x1b\x07\r\u202e")
    assert "\\x1b[31mred\\x07" in text and "\\u202egnp.exe\\r" in text
    assert "(nothing on the tape answers it)" in text


def test_usage_errors_name_the_bad_option(pytester: pytest.Pytester) -> None:
    missing = _run(pytester, "--replay-snapshots", "no/such/dir")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--replay-snapshots no/such/dir: no such file or directory*"])
    empty = pytester.mkdir("empty")
    nothing = _run(pytester, "--replay-snapshots", str(empty))
    nothing.stderr.fnmatch_lines(["*no .rsnap files under*empty*"])
    bad_code = _run(pytester, "--replay-snapshots", JAN31, "--replay-code", "nowhere")
    assert bad_code.ret == pytest.ExitCode.USAGE_ERROR
    bad_code.stderr.fnmatch_lines(["*candidate code directory*nowhere does not exist*"])


def test_works_under_xdist(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-n", "2", "--replay-snapshots", str(CORPUS),
                                           "--replay-code", str(FIXES / "ai_clamp30"), "-rA")
    # ai_clamp30: STILL_FAILING on Jan 31, CHANGED on the Jan 31 annual renewal, fine elsewhere.
    result.assert_outcomes(passed=4, failed=2)
    result.stdout.fnmatch_lines_random([
        "FAILED *jan31-monthly/*::replay*", "FAILED *jan31-annual/*::replay*",
        "PASSED *aug31-quarterly/*::replay*", "PASSED *mar10-annual/*::replay*",
    ])
    assert "Different tests were collected" not in result.stdout.str() + result.stderr.str()


# ---------------------------------------------------------------------------------------
# --replay-capture-failures

APP = """
import random
import time


def quote(order):
    started = time.time()
    # the bug: a coupon may take more than the total
    coupon = round(order["total"] * random.uniform(1.5, 2.0), 2)
    return {"total": round(order["total"] - coupon, 2), "quoted_at": started}
"""

FIXED_APP = APP.replace('round(order["total"] - coupon, 2)', 'max(0.0, round(order["total"] - coupon, 2))')

TESTS = """
import pytest

import shop


@pytest.fixture
def order():
    return {"id": "o-1", "total": 120.0}


def test_quote_is_never_negative(order):
    assert shop.quote(order)["total"] >= 0


def test_passes(order):
    assert order["id"] == "o-1"


class TestQuote:
    def test_method_failure(self, order):
        assert shop.quote(order)["total"] > 1000


def test_skipped():
    pytest.skip("not today")
"""


def _replay(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "replay", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_failing_tests_are_captured_and_replay(pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makepyfile(shop=APP, test_shop=TESTS)
    result = pytester.runpytest_subprocess("--replay-capture-failures", "-p", "no:cacheprovider", *workers)
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*replay: 2 snapshot(s) of failing tests*"])
    listed = re.findall(r"^\s+(snapshots/\S+\.rsnap)$", result.stdout.str(), re.M)
    snaps = sorted(p.name for p in (pytester.path / "snapshots").glob("*.rsnap"))
    assert sorted(Path(p).name for p in listed) == snaps
    assert [s.split("-")[0] for s in snaps] == ["TestQuote.test_method_failure", "test_quote_is_never_negative"]
    assert not [p for p in (pytester.path / "snapshots").iterdir() if p.name.startswith(".")]  # no staging left

    fixed = pytester.mkdir("fixed")
    (fixed / "shop.py").write_text(FIXED_APP)
    run = _replay("run", "snapshots", cwd=pytester.path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("REPRODUCED") == 2
    method, function = (str(pytester.path / "snapshots" / s) for s in snaps)
    verdicts = _replay("verify", function, method, "--code", str(fixed), "--json", cwd=pytester.path)
    results = {Path(r["snapshot"]).name.split("-")[0]: r["verdict"] for r in json.loads(verdicts.stdout)["results"]}
    # The fixed shop never quotes below 0; "> 1000" is still false.
    assert results == {"test_quote_is_never_negative": "FIXED", "TestQuote.test_method_failure": "STILL_FAILING"}


def test_snapshot_path_is_in_the_failure_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(shop=APP, test_shop=TESTS)
    out = pytester.path / "caught"
    result = pytester.runpytest_subprocess("--replay-capture-failures", "--replay-capture-dir", str(out),
                                           "-k", "never_negative", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1, deselected=3)
    result.stdout.fnmatch_lines(["*Captured replay call*", f"snapshot written: {out}/test_quote_is_never_negative-*.rsnap"])


def test_capture_that_cannot_write_never_changes_the_outcome(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(shop=APP, test_shop=TESTS)
    blocker = pytester.path / "not-a-dir"
    blocker.write_text("a file where the snapshot directory should be")
    result = pytester.runpytest_subprocess("--replay-capture-failures", "--replay-capture-dir", str(blocker),
                                           "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2, skipped=1)
    result.stdout.fnmatch_lines(["*replay: 0 snapshot(s) of failing tests*",
                                 "*no snapshot written (see the replay.capture log*"])
    plain = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=1, failed=2, skipped=1)
