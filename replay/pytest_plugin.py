"""The pytest plugin (registered through the ``pytest11`` entry point as ``replay``).

Two features, both off unless asked for:

* ``--replay-snapshots PATH`` (file, directory or glob; repeatable) adds every ``.rsnap``
  snapshot under PATH to the session as one test item, ``<file>::replay``. The item verifies
  the snapshot (:func:`replay.verify.verify`) against the candidate code given with
  ``--replay-code DIR`` (repeatable; or the ``replay_code`` ini option, relative to the ini
  file) and passes when the verdict follows the recorded outcome: a recorded failure must
  now be ``FIXED``, a recorded success must stay ``UNCHANGED``. Without a candidate the
  recorded code is replayed, so a recorded failure fails (``STILL_FAILING``) until a fixed
  code root is given. ``pytest path/to/x.rsnap`` runs one snapshot the same way.
* ``--replay-capture-failures`` records each test call like ``@replay.capture`` does (the
  test function is the entry point, its fixture values the arguments) and writes a snapshot
  for each test that fails with an exception to ``--replay-capture-dir`` (default
  ``$REPLAY_DIR``, else ``./snapshots``). The paths are listed in the terminal summary.
  Capture fails open: it never changes a test's outcome.

Loaded in every pytest session of a project that installs replay-debugger, so this module
imports only pytest and the standard library; replay itself is imported inside the hooks
that need it. Works with pytest-xdist: every worker computes the same items, and the
snapshot paths travel to the controller in the reports' ``user_properties``.
"""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Generator, Iterator

    from _pytest._code.code import ExceptionInfo, TerminalRepr

    from replay.verify import VerifyResult

ITEM_NAME = "replay"
MARKER = "replay_snapshot"
PASSING = frozenset({"FIXED", "UNCHANGED"})  # verdict names; replay.verify is imported lazily
SNAPSHOT_PROPERTY = "replay_snapshot"  # user property: (name, path of a captured snapshot)
VERDICT_PROPERTY = "replay_verdict"


class _Corpus:
    """What ``--replay-snapshots`` and ``--replay-code`` resolved to (one per session).

    Attributes:
        files: Snapshot files, absolute, in corpus order (sorted per input).
        members: The same as a set of absolute path strings, for the collection hook.
        named: ``.rsnap`` files named on the command line as positional arguments.
        code_dirs: Candidate code roots, absolute; empty for the recorded code.
        timeout_s: Limit per replay in seconds, or None for the replayer's default.
    """

    def __init__(self, files: list[Path], named: set[str], code_dirs: list[str], timeout_s: float | None):
        self.files = files
        self.members = {str(p) for p in files}
        self.named = named
        self.code_dirs = code_dirs
        self.timeout_s = timeout_s


_CORPUS = pytest.StashKey[_Corpus]()
_CAPTURED = pytest.StashKey[str]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("replay", "replay: snapshots as tests, snapshots of failing tests")
    group.addoption("--replay-snapshots", action="append", default=[], metavar="PATH",
                    help="Add every .rsnap snapshot under PATH (file, directory or glob; repeatable) as a "
                         "test: a recorded failure must now be FIXED, a recorded success must stay UNCHANGED.")
    group.addoption("--replay-code", action="append", default=[], metavar="DIR",
                    help="Candidate code root the snapshots are verified against (repeatable, first wins). "
                         "Default: the replay_code ini option, else the code recorded in each snapshot.")
    group.addoption("--replay-timeout", type=float, default=None, metavar="SECONDS",
                    help="Limit per replay of a snapshot test (default: the replayer's, 300 s).")
    group.addoption("--replay-capture-failures", action="store_true", default=False,
                    help="Write a .rsnap snapshot for each test that fails with an exception.")
    group.addoption("--replay-capture-dir", default=None, metavar="DIR",
                    help="Where --replay-capture-failures writes (default: $REPLAY_DIR, else ./snapshots).")
    parser.addini("replay_code", type="paths", default=[],
                  help="Candidate code roots for snapshot tests, relative to the ini file (like --replay-code).")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a .rsnap snapshot verified as a test (the replay plugin)")
    base = config.invocation_params.dir
    code_dirs = [str(base / d) for d in config.getoption("replay_code")] or [str(p) for p in config.getini("replay_code")]
    for d in code_dirs:
        if not os.path.isdir(d):
            raise pytest.UsageError(f"replay: the candidate code directory {d} does not exist")
    named = {os.path.abspath(base / a.split("::", 1)[0]) for a in config.args}
    config.stash[_CORPUS] = _Corpus(_expand(config.getoption("replay_snapshots"), base), named,
                                    [os.path.abspath(d) for d in code_dirs], config.getoption("replay_timeout"))
    if config.getoption("replay_capture_failures"):
        directory = config.getoption("replay_capture_dir") or os.environ.get("REPLAY_DIR") or "snapshots"
        config.pluginmanager.register(FailureCapture(base / directory), "replay-capture-failures")


def _expand(specs: list[str], base: Path) -> list[Path]:
    """Snapshot files of the ``--replay-snapshots`` inputs, each once, in input order."""
    if not specs:
        return []
    if any("://" in s for s in specs):
        raise pytest.UsageError("replay: --replay-snapshots takes local paths; copy a corpus at a URL first "
                                "(`replay verify` reads URLs directly)")
    from replay.errors import UsageError
    from replay.verify.batch import expand_path

    out: dict[str, Path] = {}
    for spec in specs:
        path = spec if os.path.isabs(spec) else str(base / spec)
        try:
            found = expand_path(path)
        except UsageError as exc:
            raise pytest.UsageError(f"replay: --replay-snapshots {spec}: {exc}") from exc
        if found == [path] and not os.path.isfile(path):
            raise pytest.UsageError(f"replay: --replay-snapshots {spec}: no such file or directory")
        for p in found:
            out.setdefault(os.path.abspath(p), Path(os.path.abspath(p)))
    return list(out.values())


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> SnapshotFile | None:
    """Collect a snapshot that is part of ``--replay-snapshots`` or named on the command line."""
    corpus = parent.config.stash.get(_CORPUS, None)
    if corpus is None or not (corpus.members or file_path.suffix == ".rsnap"):
        return None
    key = os.path.abspath(file_path)
    if key in corpus.members or (file_path.suffix == ".rsnap" and key in corpus.named):
        return SnapshotFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)  # before -k/-m deselection, so those apply to snapshots too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Add the ``--replay-snapshots`` items pytest's own traversal did not reach.

    Node ids are ``<path relative to rootdir>::replay`` either way, so a snapshot is never
    added twice and ``--lf``/``--deselect`` see the same ids in every run and xdist worker.
    """
    corpus = config.stash.get(_CORPUS, None)
    if corpus is None or not corpus.files:
        return
    seen = {item.nodeid for item in items}
    for path in corpus.files:
        # Outside the rootdir pytest would name the file "::<name>": use a relative path.
        nodeid = os.path.relpath(path, config.rootpath).replace(os.sep, "/")
        node = SnapshotFile.from_parent(session, path=path, nodeid=nodeid)
        if f"{node.nodeid}::{ITEM_NAME}" in seen:
            continue
        # The hooks pytest's own collection calls: counted in "collected N items", shown by
        # --collect-only, and sent to the controller by xdist workers.
        node.ihook.pytest_collectstart(collector=node)
        report = node.ihook.pytest_make_collect_report(collector=node)
        node.ihook.pytest_collectreport(report=report)
        for item in report.result if report.passed else []:
            if isinstance(item, pytest.Item) and item.nodeid not in seen:
                seen.add(item.nodeid)
                items.append(item)


class SnapshotFile(pytest.File):
    """A ``.rsnap`` file: one :class:`SnapshotItem`. Reads nothing at collection time."""

    def collect(self) -> Iterator[SnapshotItem]:
        yield SnapshotItem.from_parent(self, name=ITEM_NAME)


class VerdictError(AssertionError):
    """A snapshot test's verdict is not the one its recorded outcome asks for."""

    def __init__(self, result: VerifyResult, expected: str):
        super().__init__(f"{result.verdict.value}, expected {expected}")
        self.result = result
        self.expected = expected


class SnapshotItem(pytest.Item):
    """Verify one snapshot against the session's candidate code."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.add_marker(MARKER)
        # `-k jan31` selects the snapshots of a corpus directory named after the scenario.
        self.extra_keyword_matches.add(self.path.parent.name)

    def runtest(self) -> None:
        from replay.replayer.runner import DEFAULT_TIMEOUT_S
        from replay.snapshot import open_snapshot
        from replay.verify import verify

        corpus = self.config.stash[_CORPUS]
        with open_snapshot(self.path) as snap:
            outcome = snap.outcome  # a failure: an exception, or a web response marked failed (5xx)
            failed = outcome.get("kind") == "exception" or bool(outcome.get("failed"))
        expected = "FIXED" if failed else "UNCHANGED"
        result = verify(self.path, corpus.code_dirs, timeout_s=corpus.timeout_s or DEFAULT_TIMEOUT_S)
        self.user_properties.append((VERDICT_PROPERTY, result.verdict.value))
        if result.verdict.value not in PASSING:
            raise VerdictError(result, expected)

    def repr_failure(self, excinfo: ExceptionInfo[BaseException], style: Any = None) -> str | TerminalRepr:
        from replay.errors import ReplayError
        from replay.snapshot.rendering import printable

        exc = excinfo.value
        if isinstance(exc, VerdictError):
            return failure_text(exc.result, exc.expected, self.config.stash[_CORPUS].code_dirs)
        if isinstance(exc, ReplayError):
            return f"{type(exc).__name__}: {printable(str(exc))}"
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"replay {self.path.name}"


def failure_text(result: VerifyResult, expected: str, code_dirs: list[str]) -> str:
    """The failure report of a snapshot test: verdict, reason, outcomes, first divergence.

    Every value that came from the snapshot or the replay is neutralised (control
    characters and escape sequences written as Python escapes); lists are cut at a few
    entries, like an assertion message.
    """
    from replay.snapshot.rendering import printable
    from replay.verify.verdict import describe_effect

    candidate = ", ".join(_shown(c) for c in code_dirs) or "the recorded code"
    lines = [f"replay verdict {result.verdict.value}, expected {expected} (candidate: {candidate})",
             f"  {result.reason}"]
    for label, value in (("entry", result.entry), ("recorded", result.recorded), ("observed", result.observed)):
        if value:
            lines.append(f"  {label + ':':<10}{value}")
    d = result.divergence
    if d:
        lines.append(f"  first divergence at interaction #{d.get('index')}: {d.get('reason')}")
        lines.append(f"    asked:    {d.get('channel')} {d.get('op')}{d.get('asked')}")
        lines.append(f"    recorded: {d.get('recorded') or '(nothing on the tape answers it)'}")
        lines += [f"    nearest:  {c}" for c in (d.get("candidates") or [])[:3]]
    if result.effects:
        lines.append(f"  {len(result.effects)} effect(s) differ from the recording:")
        lines += [f"    {describe_effect(e)}" for e in result.effects[:5]]
    if result.changed_files:
        lines.append(f"  changed code: {', '.join(result.changed_files[:10])}")
    snap, code = _shown(result.snapshot), "".join(f" --code {_shown(c)}" for c in code_dirs)
    lines.append(f"  reproduce: replay verify {snap}{code}")
    lines.append(f"  step through it: replay tui {snap}{code}")
    return "\n".join(printable(line) for line in lines)


def _shown(path: str) -> str:
    """``path`` relative to the working directory when it is below it (shorter commands)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


class FailureCapture:
    """``--replay-capture-failures``: record each test call; keep the snapshots of failures.

    A test runs wrapped by :func:`replay.capture.capture` (``on="error"``), which writes
    into a private directory next to the target; the snapshot is then moved to the target
    directory, so its path is known exactly even with xdist workers writing side by side.

    Attributes:
        directory: Where snapshots go.
        written: ``(node id, snapshot path)`` of every test captured in this session.
        missed: Node ids of failing tests for which no snapshot was written.
    """

    def __init__(self, directory: Path):
        self.directory = directory
        self.written: list[tuple[str, str]] = []
        self.missed: list[str] = []
        self._counter = itertools.count()
        self._undo = _unrecorded_assertion_helpers()

    def pytest_unconfigure(self) -> None:
        self._undo()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, object, object]:
        staging = self.directory / f".replay-{os.getpid()}-{next(self._counter)}"
        restore = _wrap_test(item, staging)
        failed = False
        try:
            return (yield)
        except Exception:
            failed = True
            raise
        finally:
            if restore is not None:
                restore()
                self._keep(item, staging, failed)

    def _keep(self, item: pytest.Item, staging: Path, failed: bool) -> None:
        """Move what the capture wrote to the target directory; never raises."""
        try:
            paths = []
            if staging.is_dir():
                for src in sorted(staging.glob("*.rsnap")):
                    dst = self.directory / src.name
                    os.replace(src, dst)
                    paths.append(str(dst))
                shutil.rmtree(staging, ignore_errors=True)
            for path in paths:
                item.user_properties.append((SNAPSHOT_PROPERTY, path))
                item.add_report_section("call", "replay", f"snapshot written: {path}\n"
                                                          f"replay it:        replay run {path}")
            if failed and not paths:
                item.user_properties.append((SNAPSHOT_PROPERTY, ""))
        except Exception:  # noqa: BLE001 - capture never breaks the test run
            shutil.rmtree(staging, ignore_errors=True)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Runs in the controller with xdist too: the property travels with the report.
        for name, value in report.user_properties:
            if name == SNAPSHOT_PROPERTY and report.when == "call":
                if value:
                    self.written.append((report.nodeid, str(value)))
                else:
                    self.missed.append(report.nodeid)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.written and not self.missed:
            return
        tr = terminalreporter
        tr.write_sep("=", f"replay: {len(self.written)} snapshot(s) of failing tests")
        for nodeid, path in self.written:
            tr.write_line(f"{nodeid}\n    {_shown(path)}")
        if self.written:
            tr.write_line("replay them: replay run SNAP | replay tui SNAP | replay export SNAP --format md")
        for nodeid in self.missed:
            tr.write_line(f"{nodeid}\n    no snapshot written (see the replay.capture log and replay.capture.stats())")


# Helpers of _pytest.assertion.rewrite that rewritten asserts call to build their message.
_ASSERTION_HELPERS = ("_saferepr", "_format_assertmsg", "_format_explanation", "_should_repr_global_name",
                      "_format_boolop", "_call_reprcompare", "_call_assertion_pass", "_check_if_assertion_pass_impl")


def _unrecorded_assertion_helpers() -> Any:
    """Run pytest's assertion-message helpers with recording suspended; return the undo.

    A failing rewritten ``assert`` calls pytest's ``pytest_assertrepr_compare`` hooks, which
    read the environment (CI detection, verbosity) and call ``repr`` on values. Replay
    imports the test module without pytest's rewriting, so those boundary calls would be on
    the tape and never asked for again: the snapshot would not reproduce. Never raises.
    """
    try:
        import functools

        from _pytest.assertion import rewrite

        from replay.capture.boundary import suspended
    except Exception:  # noqa: BLE001 - another pytest layout: captures may then not reproduce
        return lambda: None
    saved = {name: getattr(rewrite, name) for name in _ASSERTION_HELPERS if callable(getattr(rewrite, name, None))}

    def unrecorded(fn: Any) -> Any:
        @functools.wraps(fn)
        def call(*args: Any, **kwargs: Any) -> Any:
            with suspended():
                return fn(*args, **kwargs)

        return call

    for name, fn in saved.items():
        setattr(rewrite, name, unrecorded(fn))

    def undo() -> None:
        for name, fn in saved.items():
            setattr(rewrite, name, fn)

    return undo


def _wrap_test(item: pytest.Item, staging: Path) -> Any:
    """Replace a test function by its captured wrapper; return the undo, or None.

    A method is captured as its function called with the test instance, so that replay,
    which imports ``module:Class.test_x``, can call it the same way. Never raises.
    """
    if not isinstance(item, pytest.Function) or item.get_closest_marker("xfail") is not None:
        return None  # an expected failure is not news
    try:
        import types

        from replay.capture import capture

        original = item.obj
        func = getattr(original, "__func__", original)
        instance = getattr(original, "__self__", None)
        wrapped = capture(on="error", directory=str(staging), **_capture_options())(func)
        item.obj = types.MethodType(wrapped, instance) if instance is not None else wrapped
    except Exception:  # noqa: BLE001 - fail open: the test runs uncaptured
        return None

    def restore() -> None:
        item.obj = original

    return restore


def _capture_options() -> dict[str, Any]:
    """Capture policy for tests (docs/production.md has the production defaults): every
    failing test is written, on the test's own thread (so the file exists when the test
    ends), with no sampling or rate limits and a generous time budget. ``REPLAY_CAPTURE=off``
    still turns capture off."""
    return {"sample_rate": 1.0, "rate_limit": None, "rate_limit_per_failure": None, "background": False,
            "time_budget_ms": 10_000.0}
