"""`replay verify` as CI runs it: the real command in a subprocess (not a terminal), its
plain progress lines, summary, reports, shards, patches, exit codes, and the GitHub Actions
recipe in docs/examples/replay-verify.yml run as written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from replay.cli import ExitCode, main
from tests.conftest import REPO, SAMPLES

pytestmark = pytest.mark.integration

SNAPSHOTS = "sample_snapshots/snapshots"
CORRECT = "sample_snapshots/fixes/correct"
CLAMP30 = "sample_snapshots/fixes/ai_clamp30"
EXAMPLE_PATCH = "docs/examples/fix-month-end.patch"


def replay_cli(*args: str, env: dict[str, str] | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """Run ``python -m replay ARGS`` from the repository root, with pipes (as in CI)."""
    full = {k: v for k, v in os.environ.items() if k not in ("GITHUB_ACTIONS", "FORCE_COLOR")}
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "replay", *args], cwd=cwd, env=full, capture_output=True,
                          text=True, timeout=300, check=False)


def scenario(name: str) -> str:
    return name.split("/")[-2]


def test_ci_run_prints_lines_summary_annotations_and_junit(tmp_path):
    junit = tmp_path / "verify.xml"
    proc = replay_cli("verify", SNAPSHOTS, "--code", CLAMP30, "-j", "2", "--junit-xml", str(junit),
                      env={"GITHUB_ACTIONS": "true"})
    assert proc.returncode == ExitCode.DIFFERENT, proc.stderr
    out = proc.stdout
    lines = [line for line in out.splitlines() if re.match(r"\[\d/6\] ", line)]
    assert len(lines) == 6 and "\x1b" not in out  # plain lines, no progress bar or colour in a pipe
    assert {line.split()[1] for line in lines} == {"FIXED", "UNCHANGED", "CHANGED", "STILL_FAILING"}
    assert re.search(r"STILL_FAILING\s+1\s+yes", out) and re.search(r"CHANGED\s+1\s+no", out)
    assert re.search(r"6 snapshots in [\d.]+ s \([\d.]+ s each, 2 at a time\)", out)
    # Evidence only for what needs attention: the STILL_FAILING and CHANGED snapshots.
    assert "period_end: datetime.date(2027, 1, 31) -> datetime.date(2027, 1, 30)" in out
    assert out.count("entry:     subscriptions.service:renew") == 2
    # On GitHub: an error on the candidate's line that still raises, a warning for CHANGED.
    errors = [line for line in out.splitlines() if line.startswith("::error ")]
    warnings = [line for line in out.splitlines() if line.startswith("::warning ")]
    assert len(errors) == 1 and len(warnings) == 1
    assert re.match(rf"::error file={CLAMP30}/subscriptions/calendar_utils.py,line=\d+,"
                    r"title=replay verify%3A STILL_FAILING::.*jan31-monthly", errors[0])
    assert "jan31-annual" in warnings[0]
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite is not None and suite.get("tests") == "6" and suite.get("failures") == "1"
    cases = {scenario(c.get("name")): c for c in suite.iter("testcase")}
    assert len(cases) == 6
    failure = cases["jan31-monthly"].find("failure")
    assert failure is not None and failure.get("type") == "STILL_FAILING"
    assert "ValueError('day is out of range for month')" in failure.get("message")
    assert cases["jan31-annual"].find("failure") is None  # CHANGED is reported, not failing
    assert cases["jan31-annual"].find("properties/property").get("value") == "CHANGED"


def test_json_stays_machine_readable_with_progress_and_annotations_on_stderr():
    proc = replay_cli("verify", SNAPSHOTS, "--code", CLAMP30, "--json", "--fail-on", "CHANGED",
                      env={"GITHUB_ACTIONS": "true"})
    assert proc.returncode == ExitCode.DIFFERENT
    data = json.loads(proc.stdout)
    assert [scenario(r["snapshot"]) for r in data["results"]] == sorted(
        ["aug31-quarterly", "feb15-monthly", "jan31-annual", "jan31-monthly", "mar10-annual", "mar31-monthly"])
    assert data["summary"] == {"CHANGED": 1, "FIXED": 2, "STILL_FAILING": 1, "UNCHANGED": 2}
    assert data["fail_on"] == ["CHANGED"] and data["exit_code"] == 1 and data["errors"] == []
    run = data["run"]
    assert run["snapshots"] == run["corpus"] == 6 and run["failed"] == 1 and run["shard"] is None
    assert run["candidate"] == {"code": [CLAMP30], "patch": None} and run["wall_time_s"] > 0
    assert "[6/6]" in proc.stderr and "::error " in proc.stderr and "summary" in proc.stderr


def test_shards_split_the_corpus_between_machines():
    names = []
    for i in (1, 2, 3):
        proc = replay_cli("verify", SNAPSHOTS, "--code", CORRECT, "--shard", f"{i}/3", "--json", "-j", "1")
        assert proc.returncode == ExitCode.OK, proc.stderr
        data = json.loads(proc.stdout)
        assert data["run"]["shard"] == [i, 3] and data["run"]["corpus"] == 6 and len(data["results"]) == 2
        names += [r["snapshot"] for r in data["results"]]
    assert sorted(names) == sorted(str(p.relative_to(REPO)) for p in (SAMPLES / "snapshots").rglob("*.rsnap"))
    bad = replay_cli("verify", SNAPSHOTS, "--code", CORRECT, "--shard", "4/3")
    assert bad.returncode == ExitCode.USAGE and "--shard must be I/N" in bad.stderr


def test_a_patch_is_verified_against_the_recorded_sources(tmp_path):
    proc = replay_cli("verify", SNAPSHOTS, "--patch", EXAMPLE_PATCH, "--json")
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert json.loads(proc.stdout)["summary"] == {"FIXED": 3, "UNCHANGED": 3}
    # On top of a code directory it does not fit: exit 2 naming the file and the hunk, no replay run.
    bad = replay_cli("verify", SNAPSHOTS, "--code", CLAMP30, "--patch", EXAMPLE_PATCH)
    assert bad.returncode == ExitCode.USAGE
    assert "does not apply to a copy of sample_snapshots/fixes/ai_clamp30" in bad.stderr
    assert "subscriptions/calendar_utils.py:2" in bad.stderr and bad.stdout == ""


def test_a_corrupt_file_is_reported_and_the_rest_still_verified(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLES / "snapshots", corpus)
    good = next(corpus.rglob("*.rsnap"))
    (corpus / "cut.rsnap").write_bytes(good.read_bytes()[:100])
    junit = tmp_path / "v.xml"
    proc = replay_cli("verify", str(corpus), "--code", CORRECT, "--junit-xml", str(junit), "-q")
    assert proc.returncode == ExitCode.BAD_SNAPSHOT
    assert "BAD_SNAPSHOT" in proc.stdout and re.search(r"FIXED\s+3\s+no", proc.stdout)
    assert "bad snapshot:" in proc.stderr and "cut.rsnap" in proc.stderr
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("errors") == "1" and suite.get("tests") == "7"


def test_inputs_that_match_nothing_exit_2(tmp_path):
    for spec, words in [(str(tmp_path), "no .rsnap files under"), ("sample_snapshots/nothing-*", "no snapshot matches"),
                        ("memory://empty-corpus/", "no snapshot matches")]:
        proc = replay_cli("verify", spec, "--code", CORRECT)
        assert proc.returncode == ExitCode.USAGE and words in proc.stderr, proc.stderr
    proc = replay_cli("verify", SNAPSHOTS)
    assert proc.returncode == ExitCode.USAGE and "--code DIR" in proc.stderr


def test_a_corpus_at_a_memory_url(capsys):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    for p in (SAMPLES / "snapshots").glob("mar*/*.rsnap"):
        fs.pipe(f"/cli-corpus/{p.parent.name}/{p.name}", p.read_bytes())
    try:
        code = main(["verify", "memory://cli-corpus", "--code", str(REPO / CORRECT), "--json", "-j", "2"])
    finally:
        fs.rm("/cli-corpus", recursive=True)
    data = json.loads(capsys.readouterr().out)
    assert code == ExitCode.OK
    assert {(r["snapshot"].split("/")[-2], r["verdict"]) for r in data["results"]} == {
        ("mar10-annual", "UNCHANGED"), ("mar31-monthly", "FIXED")}
    assert all(r["snapshot"].startswith("memory://") for r in data["results"])


def test_help_documents_every_exit_code():
    out = replay_cli("verify", "--help").stdout
    for text in ("--shard", "--patch", "--junit-xml", "--annotations", "-j, --jobs", "fsspec"):
        assert text in out
    for code in ("0 ", "1 ", "2 ", "3 ", "70 "):
        assert f"\n    {code}" in out


def workflow_commands(workflow: dict, shard: int) -> list[str]:
    """The `replay verify` commands of the workflow's steps, expressions filled in."""
    commands = []
    for step in workflow["jobs"]["verify"]["steps"]:
        run = step.get("run", "")
        if "replay verify" in run:
            commands.append(run.replace("${{ matrix.shard }}", str(shard)))
    return commands


def test_the_github_actions_recipe_runs_as_written(tmp_path):
    yaml = pytest.importorskip("yaml")
    workflow = yaml.safe_load((REPO / "docs/examples/replay-verify.yml").read_text())
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the key `on` as True
    shards = workflow["jobs"]["verify"]["strategy"]["matrix"]["shard"]
    assert shards == [1, 2]
    env = {k: str(v) for k, v in workflow["env"].items()}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"  # the installed `replay`
    env["GITHUB_ACTIONS"] = "true"
    checkout = tmp_path / "checkout"  # a pull request's checkout: the repository's files
    shutil.copytree(REPO / "sample_snapshots", checkout / "sample_snapshots")
    cases = []
    for shard in shards:
        (command,) = workflow_commands(workflow, shard)
        proc = subprocess.run(["bash", "-c", command], cwd=checkout, env={**os.environ, **env}, capture_output=True,
                              text=True, timeout=300, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        report = checkout / f"replay-verify-{shard}.xml"
        cases += [c.get("name") for c in ET.parse(report).getroot().iter("testcase")]
        upload = [s for s in workflow["jobs"]["verify"]["steps"] if "upload-artifact" in s.get("uses", "")]
        assert upload[0]["with"]["path"].replace("${{ matrix.shard }}", str(shard)) == report.name
    assert sorted(cases) == sorted(str(p.relative_to(REPO)) for p in (SAMPLES / "snapshots").rglob("*.rsnap"))
