"""The `replay` command: output and documented exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from replay.cli import ExitCode, main
from tests.conftest import SAMPLES
from tests.integration.test_sample_corpus import snapshot_of


def test_help_lists_commands_and_exit_codes():
    out = subprocess.run([sys.executable, "-m", "replay", "--help"], capture_output=True, text=True, check=True)
    for word in ("show", "run", "verify", "Exit codes", "70"):
        assert word in out.stdout
    verify_help = subprocess.run([sys.executable, "-m", "replay", "verify", "--help"], capture_output=True,
                                 text=True, check=True).stdout
    for verdict in ("FIXED", "STILL_FAILING", "NEW_FAILURE", "UNCHANGED", "CHANGED", "DIVERGED", "NOT_REPRODUCIBLE"):
        assert verdict in verify_help


def test_installed_console_script_runs():
    exe = shutil.which("replay", path=str(__import__("pathlib").Path(sys.executable).parent))
    if exe is None:
        pytest.skip("console script not installed next to this interpreter")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=True)
    assert "replay" in out.stdout


def test_show_prints_entry_outcome_tape_code_and_environment(capsys):
    assert main(["show", snapshot_of("jan31-monthly")]) == ExitCode.OK
    out = capsys.readouterr().out
    for text in ("subscriptions.service:renew", "ValueError", "day is out of range for month",
                 "calendar_utils.py", "clock", "datetime.now", "sha256", "python", "Europe/Amsterdam"):
        assert text in out, text


def test_show_json_is_machine_readable(capsys):
    assert main(["show", "--json", snapshot_of("feb15-monthly")]) == ExitCode.OK
    data = json.loads(capsys.readouterr().out)
    assert data["header"]["entry"] == "subscriptions.service:renew"
    assert data["channels"]["clock"] >= 1
    assert all("source" not in f for f in data["code"])


def test_run_reproduces_the_sample(capsys):
    assert main(["run", snapshot_of("mar31-monthly")]) == ExitCode.OK
    assert "REPRODUCED" in capsys.readouterr().out


def test_verify_exit_codes_follow_the_policy(capsys):
    snaps = str(SAMPLES / "snapshots")
    assert main(["verify", snaps, "--code", str(SAMPLES / "fixes" / "correct"), "-q"]) == ExitCode.OK
    assert main(["verify", snaps, "--code", str(SAMPLES / "fixes" / "ai_clamp30"), "-q"]) == ExitCode.DIFFERENT
    capsys.readouterr()
    # CHANGED is reported but does not fail the run unless asked for.
    timedelta = str(SAMPLES / "fixes" / "ai_timedelta")
    assert main(["verify", snapshot_of("feb15-monthly"), "--code", timedelta, "-q"]) == ExitCode.OK
    assert main(["verify", snapshot_of("feb15-monthly"), "--code", timedelta, "-q",
                 "--fail-on", "CHANGED"]) == ExitCode.DIFFERENT


def test_verify_json(capsys):
    code = main(["verify", snapshot_of("jan31-monthly"), "--code", str(SAMPLES / "fixes" / "correct"), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert data["results"][0]["verdict"] == "FIXED"
    assert data["summary"] == {"FIXED": 1}
    assert data["exit_code"] == 0


def test_usage_errors_exit_2(tmp_path, capsys):
    snap = snapshot_of("jan31-monthly")
    assert main(["verify", snap]) == ExitCode.USAGE  # --code missing
    assert main(["verify", snap, "--code", str(tmp_path / "nope")]) == ExitCode.USAGE
    assert main(["verify", snap, "--code", str(tmp_path), "--fail-on", "BOGUS"]) == ExitCode.USAGE
    assert main(["verify", str(tmp_path), "--code", str(tmp_path)]) == ExitCode.USAGE  # no snapshots there
    assert main(["frobnicate"]) == ExitCode.USAGE


def test_bad_snapshots_exit_3_and_name_the_file(tmp_path, capsys):
    text = tmp_path / "notes.rsnap"
    text.write_text("just some text, not a snapshot\n")
    assert main(["show", str(text)]) == ExitCode.BAD_SNAPSHOT
    err = capsys.readouterr().err
    assert "notes.rsnap" in err and "byte 0" in err
    assert main(["run", str(tmp_path / "missing.rsnap")]) == ExitCode.BAD_SNAPSHOT
    data = Path(snapshot_of("jan31-monthly")).read_bytes()
    truncated = tmp_path / "cut.rsnap"
    truncated.write_bytes(bytes(data[: len(data) // 2]))
    assert main(["verify", str(truncated), "--code", str(SAMPLES / "fixes" / "correct")]) == ExitCode.BAD_SNAPSHOT
    assert "cut.rsnap" in capsys.readouterr().err


def test_escape_sequences_from_a_snapshot_are_neutralised(tmp_path, capsys):
    import replay

    @replay.capture(directory=tmp_path)
    def evil():
        raise ValueError("\x1b[2J\x1b[31mpwned\x07")

    with pytest.raises(ValueError):
        evil()
    replay.capture.flush()  # written by the background writer
    (snap,) = list(tmp_path.glob("*.rsnap"))
    assert main(["show", str(snap)]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "\x1b[2J" not in out and "\x07" not in out
    assert "pwned" in out
