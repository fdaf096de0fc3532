"""End to end: capture a real library bug, then verify it against the buggy and fixed releases.

For each bug listed in ``tests/integration/real_libs/README.md``:

1. install the buggy and the fixed release of the library into two temporary
   folders (``pip install --no-deps --target``), once per module;
2. check the premise without replay: the entry point raises with the buggy
   release and returns the expected value with the fixed one;
3. record the failing call in a subprocess whose ``PYTHONPATH`` holds the buggy
   folder and ``real_libs/``, with ``replay.capture(on="error", directory=...)``
   wrapped around the plain entry function from ``real_libs/entries.py``, and
   check that exactly one ``.rsnap`` file was written;
4. ``python -m replay verify SNAP --code BUGGY_DIR --json`` must say
   ``STILL_FAILING`` and ``--code FIXED_DIR`` must say ``FIXED``.

The test is skipped when pip cannot install the pinned releases, for example
when the package registry cannot be reached.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REAL_LIBS = HERE / "real_libs"
REPO_ROOT = HERE.parent.parent

PIP_TIMEOUT = 180
RUN_TIMEOUT = 120


@dataclass(frozen=True)
class Bug:
    id: str
    package: str  # distribution name given to pip
    buggy: str
    fixed: str
    entry: str  # function name in real_libs/entries.py
    args: tuple[Any, ...]  # Python literals only: they are embedded with repr()
    exception: str  # exception type name raised with the buggy release
    fixed_result: Any  # value returned with the fixed release


BUGS = [
    Bug(
        id="sqlparse-format-reindent-indexerror",
        package="sqlparse",
        buggy="0.6.0",
        fixed="0.6.1",
        entry="format_sql",
        args=("( as )",),
        exception="IndexError",
        fixed_result="(as)",
    ),
    Bug(
        id="markdown-1534-marked-section-assertionerror",
        package="markdown",
        buggy="3.8",
        fixed="3.8.1",
        entry="render_markdown",
        args=("<![",),
        exception="AssertionError",
        fixed_result="<p>&lt;![</p>",
    ),
    Bug(
        id="semver-479-compare-dict-typeerror",
        package="semver",
        buggy="3.0.4",
        fixed="3.1.0",
        entry="version_equals",
        args=("1.2.3", {}),
        exception="TypeError",
        fixed_result=False,
    ),
]


def _env(pythonpath: list[Path | str]) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    # Keep __pycache__ out of real_libs/ (it is the snapshot's project root) and the
    # release folders.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.pop("PYTHONSTARTUP", None)
    return env


def _describe(proc: subprocess.CompletedProcess[str]) -> str:
    return (
        f"command: {proc.args!r}\nexit code: {proc.returncode}\n"
        f"--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}"
    )


@pytest.fixture(scope="module")
def releases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Install every buggy and fixed release (concurrently). Returns {bug.id: (buggy, fixed)}."""
    root = tmp_path_factory.mktemp("real_libs_releases")
    jobs: list[tuple[str, Path, subprocess.Popen[str]]] = []
    for bug in BUGS:
        for version in (bug.buggy, bug.fixed):
            spec = f"{bug.package}=={version}"
            target = root / f"{bug.package}-{version}"
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-deps",
                "--target",
                str(target),
                "--disable-pip-version-check",
                "--no-input",
                "--no-compile",
                "-q",
                spec,
            ]
            proc = subprocess.Popen(
                cmd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                stdin=subprocess.DEVNULL,
            )
            jobs.append((spec, target, proc))

    failures = []
    for spec, _target, proc in jobs:
        try:
            out, err = proc.communicate(timeout=PIP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            failures.append(f"{spec}: pip timed out after {PIP_TIMEOUT}s\n{err[-1500:]}")
            continue
        if proc.returncode != 0:
            failures.append(f"{spec}: pip exited {proc.returncode}\n{(out + err)[-1500:]}")
    if failures:
        pytest.skip(
            "cannot install the pinned library releases with pip (is the package "
            "registry reachable?):\n" + "\n".join(failures)
        )

    return {
        bug.id: (root / f"{bug.package}-{bug.buggy}", root / f"{bug.package}-{bug.fixed}")
        for bug in BUGS
    }


def _call_directly(bug: Bug, lib_dir: Path, cwd: Path) -> dict[str, Any]:
    """Call the entry point without replay; report what it raised or returned."""
    script = textwrap.dedent(
        f"""
        import json
        import entries
        try:
            result = entries.{bug.entry}(*{bug.args!r})
        except BaseException as exc:
            print(json.dumps({{"raised": type(exc).__name__, "message": str(exc)}}))
        else:
            print(json.dumps({{"raised": None, "result": repr(result)}}))
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=_env([lib_dir, REAL_LIBS]),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, _describe(proc)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _record(bug: Bug, buggy_dir: Path, snapdir: Path, cwd: Path) -> Path:
    """Run the failing call under replay.capture in a fresh process; return the snapshot."""
    script = textwrap.dedent(
        f"""
        import json
        import replay
        import entries
        fn = replay.capture(on="error", directory={str(snapdir)!r})(entries.{bug.entry})
        try:
            result = fn(*{bug.args!r})
        except BaseException as exc:
            print(json.dumps({{"raised": type(exc).__name__, "message": str(exc)}}))
        else:
            print(json.dumps({{"raised": None, "result": repr(result)}}))
        """
    )
    # The repository root goes last, only so that `import replay` works even when the
    # package is not installed into sys.executable's environment.
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=cwd,
        env=_env([buggy_dir, REAL_LIBS, REPO_ROOT]),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, "recording subprocess crashed\n" + _describe(proc)
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["raised"] == bug.exception, (
        f"the captured call should propagate {bug.exception}, got {outcome}\n" + _describe(proc)
    )
    snaps = sorted(snapdir.glob("*.rsnap"))
    assert len(snaps) == 1, (
        f"expected exactly one .rsnap in {snapdir}, found {snaps}; everything there: "
        f"{sorted(str(p.relative_to(snapdir)) for p in snapdir.rglob('*'))}\n" + _describe(proc)
    )
    return snaps[0]


def _verify(snap: Path, code_dir: Path, cwd: Path) -> tuple[dict[str, Any], str]:
    """Run `python -m replay verify SNAP --code DIR --json`; return (result for SNAP, details)."""
    proc = subprocess.run(
        [sys.executable, "-m", "replay", "verify", str(snap), "--code", str(code_dir), "--json"],
        cwd=cwd,
        env=_env([REPO_ROOT]),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    details = _describe(proc)
    assert proc.returncode in (0, 1), f"verify failed to run (usage or snapshot error)\n{details}"
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"verify --json did not print a JSON document ({exc})\n{details}")
    results = doc.get("results")
    assert isinstance(results, list) and len(results) == 1, f"expected one result\n{details}"
    return results[0], details


@pytest.mark.parametrize("bug", BUGS, ids=[b.id for b in BUGS])
def test_real_library_bug_still_failing_then_fixed(
    bug: Bug, releases: dict[str, tuple[Path, Path]], tmp_path: Path
) -> None:
    buggy_dir, fixed_dir = releases[bug.id]
    work = tmp_path / "cwd"
    work.mkdir()
    snapdir = tmp_path / "snaps"
    snapdir.mkdir()

    # Premise, without replay: the buggy release raises, the fixed release returns.
    buggy = _call_directly(bug, buggy_dir, work)
    assert buggy["raised"] == bug.exception, f"{bug.package}=={bug.buggy}: {buggy}"
    fixed = _call_directly(bug, fixed_dir, work)
    assert fixed == {"raised": None, "result": repr(bug.fixed_result)}, (
        f"{bug.package}=={bug.fixed}: {fixed}"
    )

    snap = _record(bug, buggy_dir, snapdir, work)

    result, details = _verify(snap, buggy_dir, work)
    assert result.get("verdict") == "STILL_FAILING", (
        f"against {bug.package}=={bug.buggy} expected STILL_FAILING, got "
        f"{result.get('verdict')}: {result.get('reason')}\n{details}"
    )

    result, details = _verify(snap, fixed_dir, work)
    assert result.get("verdict") == "FIXED", (
        f"against {bug.package}=={bug.fixed} expected FIXED, got "
        f"{result.get('verdict')}: {result.get('reason')}\n{details}"
    )
