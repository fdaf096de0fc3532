"""The batch engine of `replay verify`: inputs, shards, patches, parallel runs and reports.

Everything runs for real: the sample snapshots are replayed in child processes, patches
are applied with git and with patch, remote corpora live in fsspec's memory file system.
"""

from __future__ import annotations

import difflib
import filecmp
import shutil
import subprocess
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from replay.errors import UsageError
from replay.snapshot.rendering import printable
from replay.verify import FAILING_VERDICTS, Verdict
from replay.verify.batch import (
    BatchReport,
    Candidate,
    Outcome,
    SnapshotInput,
    apply_patch,
    collect_snapshots,
    expand_path,
    parse_shard,
    prepare_candidate,
    run_batch,
    select_shard,
)
from replay.verify.reports import github_annotations, junit_xml, to_json
from replay.verify.verdict import VerifyResult
from tests.conftest import REPO, SAMPLES

SERVICE = SAMPLES / "billing"
CORRECT = SAMPLES / "fixes" / "correct"
TOOLS = [t for t in ("git", "patch") if shutil.which(t)]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the six sample snapshots: <scenario>/<file>.rsnap."""
    dest = tmp_path / "corpus"
    shutil.copytree(SAMPLES / "snapshots", dest)
    return dest


def unified_diff(old_root: Path, new_root: Path) -> str:
    """A git-style patch (a/ and b/ prefixes, -p1) from old_root to new_root."""
    out = []
    for new in sorted(new_root.rglob("*.py")):
        rel = new.relative_to(new_root).as_posix()
        old = old_root / rel
        a = old.read_text().splitlines(keepends=True) if old.exists() else []
        out += difflib.unified_diff(a, new.read_text().splitlines(keepends=True), f"a/{rel}", f"b/{rel}")
    return "".join(out)


def same_tree(a: Path, b: Path) -> bool:
    files = sorted(p.relative_to(a).as_posix() for p in a.rglob("*.py"))
    assert files == sorted(p.relative_to(b).as_posix() for p in b.rglob("*.py"))
    return all(filecmp.cmp(a / f, b / f, shallow=False) for f in files)


# --- inputs ---------------------------------------------------------------------------


def test_directories_globs_and_files_give_one_sorted_list(corpus, tmp_path):
    files = sorted(str(p) for p in corpus.rglob("*.rsnap"))
    items = collect_snapshots([str(corpus / "mar31-monthly"), str(corpus / "*"), files[0]], str(tmp_path))
    assert [i.name for i in items] == files  # each once, sorted, whatever the argument order
    assert all(i.path == i.name for i in items)
    assert expand_path(str(corpus / "jan31-*")) == sorted(str(p) for p in corpus.glob("jan31-*/*.rsnap"))


def test_an_input_that_matches_nothing_is_a_usage_error(tmp_path):
    (tmp_path / "empty").mkdir()
    for spec, words in [(str(tmp_path / "empty"), "no .rsnap files under"),
                        (str(tmp_path / "nothing-*.rsnap"), "no snapshot matches"),
                        ("memory://no-such-corpus/", "no snapshot matches")]:
        with pytest.raises(UsageError, match=words):
            collect_snapshots([spec], str(tmp_path))
    with pytest.raises(UsageError, match="cannot read nosuchprotocol://x"):
        collect_snapshots(["nosuchprotocol://x"], str(tmp_path))


def test_a_missing_plain_file_is_kept_so_that_reading_it_names_it(tmp_path):
    missing = str(tmp_path / "gone.rsnap")
    assert [i.path for i in collect_snapshots([missing], str(tmp_path))] == [missing]


def test_memory_urls_are_copied_to_the_work_directory(corpus, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    originals = sorted(corpus.rglob("*.rsnap"))
    for p in originals:
        fs.pipe(f"/verify-test/{p.parent.name}/{p.name}", p.read_bytes())
    fs.pipe("/verify-test/notes.txt", b"not a snapshot")
    work = tmp_path / "work"
    work.mkdir()
    try:
        whole = collect_snapshots(["memory://verify-test/"], str(work))
        globbed = collect_snapshots(["memory://verify-test/jan31-*"], str(work))
    finally:
        fs.rm("/verify-test", recursive=True)
    # Named by fsspec's canonical URL (the memory file system's root is "/").
    assert [i.name for i in whole] == sorted(f"memory:///verify-test/{p.parent.name}/{p.name}" for p in originals)
    assert [i.name.rsplit("/", 2)[1] for i in globbed] == ["jan31-annual", "jan31-monthly"]
    by_name = {p.name: p for p in originals}
    for item in whole:
        local = Path(item.path)
        assert work in local.parents
        assert local.read_bytes() == by_name[local.name].read_bytes()


def test_file_urls_are_read_in_place(corpus, tmp_path):
    items = collect_snapshots([f"file://{corpus}/feb15-monthly"], str(tmp_path))
    assert len(items) == 1 and Path(items[0].path).parent == corpus / "feb15-monthly"


# --- shards ----------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["0/2", "3/2", "1/0", "a/b", "2", "", "1/2/3", "-1/2"])
def test_bad_shards_are_usage_errors(text):
    with pytest.raises(UsageError, match="--shard must be I/N"):
        parse_shard(text)


def test_shards_partition_the_corpus_exactly():
    assert parse_shard("2/4") == (2, 4)
    for size in range(0, 23):
        items = [SnapshotInput(f"s{i:03d}.rsnap", f"s{i:03d}.rsnap") for i in range(size)]
        for count in range(1, 8):
            shards = [select_shard(items, i, count) for i in range(1, count + 1)]
            names = [x.name for shard in shards for x in shard]
            assert sorted(names) == [x.name for x in items]  # every snapshot exactly once
            sizes = [len(s) for s in shards]
            assert max(sizes) - min(sizes) <= 1


# --- patches ---------------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
def test_a_patch_turns_the_recorded_service_into_the_correct_fix(tool, tmp_path):
    patch = tmp_path / "fix.patch"
    patch.write_text(unified_diff(SERVICE, CORRECT))
    for name, source in [("generated", patch), ("docs example", REPO / "docs/examples/fix-month-end.patch")]:
        tree = tmp_path / f"{tool}-{name}"
        shutil.copytree(SERVICE, tree)
        assert apply_patch(str(source), str(tree), tool=tool) == tool
        assert same_tree(tree, CORRECT), name


@pytest.mark.parametrize("tool", TOOLS)
def test_a_patch_that_does_not_apply_names_the_file_and_the_hunk(tool, tmp_path):
    tree = tmp_path / "clamp30"
    shutil.copytree(SAMPLES / "fixes" / "ai_clamp30", tree)
    with pytest.raises(UsageError) as info:
        apply_patch(str(REPO / "docs/examples/fix-month-end.patch"), str(tree), tool=tool, what="the candidate")
    text = str(info.value)
    assert "does not apply to the candidate" in text and "subscriptions/calendar_utils.py" in text
    assert ("patch failed: subscriptions/calendar_utils.py:2" if tool == "git" else "Hunk #1 FAILED") in text
    with pytest.raises(UsageError, match="does not exist"):
        apply_patch(str(tmp_path / "nope.patch"), str(tree))


@pytest.mark.skipif("git" not in TOOLS, reason="git is not installed")
def test_git_apply_inside_another_repository_still_patches_the_directory(tmp_path):
    # A work directory below a repository's root: without the ceiling, git apply would take
    # the patch's paths as relative to that root and skip the files silently.
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    tree = tmp_path / "deep" / "tree"
    shutil.copytree(SERVICE, tree)
    apply_patch(str(REPO / "docs/examples/fix-month-end.patch"), str(tree), tool="git")
    assert same_tree(tree, CORRECT)


def test_the_recorded_sources_are_patched_once_per_distinct_source_set(corpus, tmp_path):
    items = collect_snapshots([str(corpus)], str(tmp_path))
    work = tmp_path / "work"
    work.mkdir()
    roots = prepare_candidate(Candidate(patch=str(REPO / "docs/examples/fix-month-end.patch")), items, str(work))
    distinct = {tuple(r) for r in roots.values()}
    assert len(distinct) == 1  # the six samples were recorded from one release
    (root,) = next(iter(distinct))
    assert same_tree(Path(root), CORRECT)


def test_candidate_usage_errors(corpus, tmp_path):
    items = collect_snapshots([str(corpus)], str(tmp_path))
    with pytest.raises(UsageError, match="give the candidate"):
        prepare_candidate(Candidate(), items, str(tmp_path))
    with pytest.raises(UsageError, match="does not exist"):
        prepare_candidate(Candidate((str(tmp_path / "nope"),)), items, str(tmp_path))
    with pytest.raises(UsageError, match="a copy of .*ai_clamp30"):
        prepare_candidate(Candidate((str(SAMPLES / "fixes" / "ai_clamp30"),),
                                    str(REPO / "docs/examples/fix-month-end.patch")), items, str(tmp_path))


# --- running ---------------------------------------------------------------------------


def test_a_parallel_run_keeps_corpus_order_and_survives_a_bad_file(corpus, tmp_path):
    (corpus / "zz-broken.rsnap").write_bytes(b"RSNAP but not really")
    items = collect_snapshots([str(corpus)], str(tmp_path))
    roots = prepare_candidate(Candidate((str(SAMPLES / "fixes" / "ai_clamp30"),)), items, str(tmp_path))
    seen: list[tuple[str, bool]] = []
    report = run_batch(items, roots, jobs=2,
                       on_outcome=lambda o: seen.append((o.name, threading.current_thread() is threading.main_thread())))
    assert [o.name for o in report.outcomes] == [i.name for i in items]
    assert sorted(n for n, _ in seen) == sorted(i.name for i in items) and all(main for _, main in seen)
    labels = {Path(o.name).parent.name if o.result else Path(o.name).name: o.label for o in report.outcomes}
    assert labels == {"aug31-quarterly": "FIXED", "feb15-monthly": "UNCHANGED", "jan31-annual": "CHANGED",
                      "jan31-monthly": "STILL_FAILING", "mar10-annual": "UNCHANGED", "mar31-monthly": "FIXED",
                      "zz-broken.rsnap": "BAD_SNAPSHOT"}
    broken = report.outcomes[-1]
    assert broken.result is None and broken.error_kind == "bad_snapshot" and "zz-broken.rsnap" in broken.error
    assert [o.label for o in report.failed(FAILING_VERDICTS)] == ["STILL_FAILING"]
    assert report.counts()["FIXED"] == 2 and report.jobs == 2
    assert all(o.duration_s > 0 for o in report.outcomes)


def test_jobs_below_one_are_refused():
    with pytest.raises(UsageError):
        run_batch([], {}, jobs=0)


# --- reports ---------------------------------------------------------------------------


def diverging_candidate(tmp_path: Path) -> Path:
    """The correct fix, plus a file read the tape cannot answer."""
    root = tmp_path / "diverging"
    shutil.copytree(CORRECT, root)
    utils = root / "subscriptions" / "calendar_utils.py"
    utils.write_text(utils.read_text().replace(
        "    month = day.month - 1 + months\n",
        "    with open('/etc/os-release') as fh:\n        fh.read()\n    month = day.month - 1 + months\n", 1))
    return root


def test_junit_and_annotations_carry_the_first_divergence(corpus, tmp_path):
    items = collect_snapshots([str(corpus / "feb15-monthly")], str(tmp_path))
    candidate = diverging_candidate(tmp_path)
    report = run_batch(items, prepare_candidate(Candidate((str(candidate),)), items, str(tmp_path)))
    assert report.outcomes[0].label == "DIVERGED"
    fail_on = FAILING_VERDICTS | {Verdict.DIVERGED}
    root = ET.fromstring(junit_xml(report, fail_on))
    (case,) = root.iter("testcase")
    failure = case.find("failure")
    assert failure is not None and failure.get("type") == "DIVERGED"
    assert "first divergence at interaction #1" in failure.text and "open('/etc/os-release'" in failure.text
    assert case.find("properties/property").get("value") == "DIVERGED"
    # Reported, not failing, by default: a warning on the line of the candidate that asked.
    (line,) = github_annotations(report, FAILING_VERDICTS, cwd=str(tmp_path))
    assert line.startswith("::warning file=diverging/subscriptions/calendar_utils.py,line=")
    assert "title=replay verify%3A DIVERGED::" in line and "\n" not in line


def hostile_report() -> BatchReport:
    evil = "\x1b[2J\x1b]8;;http://x\x07click\x00\x0b%0A::error::forged\r\nline"
    result = VerifyResult(snapshot=f"snaps/{evil}.rsnap", verdict=Verdict.NEW_FAILURE,
                          reason=f"the candidate raises ValueError({evil!s})", entry="app:main",
                          recorded="returned 1", observed=f"ValueError({evil})")
    return BatchReport([Outcome(result.snapshot, result, duration_s=0.5),
                        Outcome("snaps/cut.rsnap", None, f"snaps/cut.rsnap at byte 9: {evil}", "bad_snapshot", 0.1)],
                       wall_time_s=0.6, jobs=2)


def test_reports_neutralise_control_characters():
    report = hostile_report()
    data = junit_xml(report, FAILING_VERDICTS)
    assert b"\x1b" not in data and b"\x00" not in data and b"\x07" not in data
    root = ET.fromstring(data)  # well-formed despite the NUL, BEL and ESC in the values
    assert root.get("tests") == "2" and root.get("failures") == "1" and root.get("errors") == "1"
    cases = list(root.iter("testcase"))
    assert cases[0].find("failure").get("type") == "NEW_FAILURE"
    assert "\\x1b[2J" in cases[0].find("failure").get("message")
    assert cases[1].find("error").get("type") == "bad_snapshot"
    lines = github_annotations(report, FAILING_VERDICTS)
    assert len(lines) == 2 and all(line.startswith("::error file=") for line in lines)
    for line in lines:
        # One command per line; a value cannot end the message early or start a new command.
        assert "\n" not in line and "\r" not in line and "\x1b" not in line
        head, sep, message = line[2:].partition("::")
        assert sep and head.startswith("error file=") and ":" not in head.partition("=")[2]
        assert "%250A" in message  # a literal "%0A" in a value stays text
    assert printable("a\x1bb\nc") == "a\\x1bb\nc" and printable("a\nb", newlines=False) == "a\\nb"


def test_json_keeps_the_old_keys_and_adds_the_run(corpus):
    report = hostile_report()
    data = to_json(report, FAILING_VERDICTS, 3, {"corpus": 2, "shard": None})
    assert data["summary"] == {"NEW_FAILURE": 1} and data["exit_code"] == 3
    assert data["fail_on"] == ["NEW_FAILURE", "NOT_REPRODUCIBLE", "STILL_FAILING"]
    assert data["results"][0]["verdict"] == "NEW_FAILURE" and data["results"][0]["duration_s"] == 0.5
    assert data["errors"] == [{"snapshot": "snaps/cut.rsnap", "kind": "bad_snapshot",
                               "message": report.outcomes[1].error, "duration_s": 0.1}]
    assert data["run"] == {"snapshots": 2, "failed": 1, "errors": 1, "wall_time_s": 0.6, "jobs": 2,
                           "corpus": 2, "shard": None}
