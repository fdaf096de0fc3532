"""Verify a corpus of snapshots against one candidate: the engine behind ``replay verify``.

UI-free (no click, no rich) so that the CLI and the pytest plugin share it:

* :func:`collect_snapshots` turns inputs (files, directories, globs, fsspec URLs) into a
  sorted, de-duplicated list of :class:`SnapshotInput`; remote snapshots are copied to a
  local directory first.
* :func:`parse_shard` and :func:`select_shard` split that list across CI machines.
* :func:`prepare_candidate` turns ``--code`` directories and an optional ``--patch`` into
  the code roots each snapshot is replayed against; :func:`apply_patch` applies a unified
  diff with ``git apply`` (or ``patch`` when git is missing).
* :func:`run_batch` verifies the snapshots in parallel and returns a :class:`BatchReport`.

Parallelism: every replay already runs in its own child process (see
:func:`replay.replayer.runner.run_replay`), so the parent only waits. A thread pool of
``jobs`` threads, each driving one snapshot's baseline and candidate replays in turn, keeps
``jobs`` children busy without a second layer of worker processes. For a corpus of more than
a couple of snapshots the children are forked from warm servers
(:mod:`replay.replayer.forkserver`) instead of started as new interpreters.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence

from replay.errors import ReplaySetupError, SnapshotError, UsageError
from replay.replayer import forkserver
from replay.replayer.forkserver import ForkServerPool
from replay.replayer.runner import DEFAULT_TIMEOUT_S
from replay.snapshot import open_snapshot
from replay.verify.verdict import Verdict, VerifyResult, verify

GLOB_CHARS = "*?["
SNAPSHOT_SUFFIX = ".rsnap"
# Up to this many snapshots, replays start fresh interpreters; past it a fork server pays off.
FORK_SERVER_MIN = 2
# Copying a --code directory to patch it: what never belongs to the candidate's sources.
COPY_IGNORE = shutil.ignore_patterns(".git", ".hg", "__pycache__", "*.pyc", ".venv", "venv", ".tox",
                                     "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache")


@dataclasses.dataclass(frozen=True)
class SnapshotInput:
    """One snapshot of the corpus.

    Attributes:
        name: What reports show and sorting and sharding use: the local path as found, or
            the URL of a remote snapshot.
        path: The local file replayed (a copy in the work directory for a remote one).
    """

    name: str
    path: str


def default_jobs() -> int:
    """Cores this process may run on (the affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------
# Inputs


def expand_path(spec: str) -> list[str]:
    """A local input as snapshot paths: a file as given, a directory searched recursively
    for ``*.rsnap``, a glob expanded (matched directories searched too); sorted.

    A plain path that does not exist is returned as given, so that reading it fails with
    :class:`~replay.errors.SnapshotNotFoundError` naming it.

    Raises:
        UsageError: a directory or glob holds no snapshot.
    """
    if os.path.isdir(spec):
        found = sorted(glob.glob(os.path.join(glob.escape(spec), "**", "*" + SNAPSHOT_SUFFIX), recursive=True))
        if not found:
            raise UsageError(f"no {SNAPSHOT_SUFFIX} files under {spec}")
        return found
    if any(ch in spec for ch in GLOB_CHARS) and not os.path.exists(spec):
        found = []
        for match in sorted(glob.glob(spec, recursive=True)):
            if os.path.isdir(match):
                found.extend(sorted(glob.glob(os.path.join(glob.escape(match), "**", "*" + SNAPSHOT_SUFFIX),
                                              recursive=True)))
            else:
                found.append(match)
        if not found:
            raise UsageError(f"no snapshot matches {spec}")
        return found
    return [spec]


def is_url(spec: str) -> bool:
    """``s3://...``, ``memory://...``, ``file://...``: an fsspec URL, not a local path."""
    scheme, sep, _ = spec.partition("://")
    return bool(sep) and scheme.replace("+", "").replace("-", "").isalnum()


def collect_snapshots(specs: Sequence[str], workdir: str) -> list[SnapshotInput]:
    """Every snapshot the inputs name, sorted by name, each once.

    Args:
        specs: Files, directories, globs and fsspec URLs (a URL may name a file, a directory
            or a glob; ``s3://`` needs ``s3fs`` installed, as fsspec says).
        workdir: Existing directory where remote snapshots are copied; the caller removes it.

    Returns:
        The corpus in a deterministic order (sorted by :attr:`SnapshotInput.name`), so that
        every machine of a sharded run sees the same list.

    Raises:
        UsageError: an input matches nothing, or a URL cannot be read.
    """
    found: dict[str, SnapshotInput] = {}
    for spec in specs:
        if is_url(spec):
            items = _collect_url(spec, workdir)
        else:
            items = [SnapshotInput(os.path.normpath(p), p) for p in expand_path(spec)]
        for item in items:
            found.setdefault(item.name, item)
    return sorted(found.values(), key=lambda i: i.name)


def _collect_url(url: str, workdir: str) -> list[SnapshotInput]:
    try:
        from fsspec.core import url_to_fs
        from fsspec.implementations.local import LocalFileSystem
    except ImportError as exc:  # pragma: no cover - fsspec is a dependency
        raise UsageError(f"reading {url} needs fsspec (pip install fsspec)") from exc
    try:
        fs, root = url_to_fs(url)
        if fs.isdir(root):
            paths = [p for p in fs.find(root) if p.endswith(SNAPSHOT_SUFFIX)]
        elif any(ch in root for ch in GLOB_CHARS):
            paths = []
            for match in fs.glob(root):
                paths += [p for p in fs.find(match) if p.endswith(SNAPSHOT_SUFFIX)] if fs.isdir(match) else [match]
        else:
            paths = [root] if fs.isfile(root) else []
    except (ImportError, ValueError, OSError) as exc:  # unknown protocol, missing driver, network
        raise UsageError(f"cannot read {url}: {exc}") from exc
    if not paths:
        raise UsageError(f"no snapshot matches {url}")
    paths = sorted(set(paths))
    if isinstance(fs, LocalFileSystem):
        return [SnapshotInput(p, p) for p in paths]
    local_dir = os.path.join(workdir, "remote-" + hashlib.sha256(url.encode()).hexdigest()[:12])
    local = [os.path.join(local_dir, f"{i:06d}", os.path.basename(p) or "snapshot.rsnap") for i, p in enumerate(paths)]
    for target in local:
        os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        fs.get(paths, local)  # one call: async file systems (s3, gcs) copy concurrently
    except (OSError, ValueError) as exc:
        raise UsageError(f"cannot copy snapshots from {url}: {exc}") from exc
    return [SnapshotInput(fs.unstrip_protocol(p), lp) for p, lp in zip(paths, local, strict=True)]


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/4"`` -> ``(2, 4)``: the second of four shards (1-based).

    Raises:
        UsageError: not ``I/N`` with ``1 <= I <= N``.
    """
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i = n = 0
    if not sep or not 1 <= i <= n:
        raise UsageError(f"--shard must be I/N with 1 <= I <= N (for example 2/4), not {text!r}")
    return i, n


def select_shard(items: Sequence[SnapshotInput], index: int, count: int) -> list[SnapshotInput]:
    """The ``index``-th (1-based) of ``count`` shards: every ``count``-th snapshot of the
    sorted corpus, starting at position ``index - 1``.

    Round robin over the sorted names: the shards partition the corpus exactly, their sizes
    differ by at most one, and every machine computes the same split without talking to
    the others.
    """
    return list(items[index - 1 :: count])


# ---------------------------------------------------------------------------------------
# Candidate


def apply_patch(patch: str, directory: str, *, strip: int = 1, tool: str | None = None,
                what: str | None = None) -> str:
    """Apply a unified diff to the files under ``directory``, in place.

    Args:
        patch: The patch file (``git diff`` or ``diff -u`` output).
        directory: The tree to patch; the patch's file names are relative to it after
            removing ``strip`` leading components (``-p`` of git apply and patch).
        strip: Leading path components to remove (1 for ``a/...``/``b/...`` names).
        tool: ``"git"`` or ``"patch"``; default git when it is installed, else patch.
        what: What ``directory`` holds, for the error message (default its path).

    Returns:
        The tool used.

    Raises:
        UsageError: the patch does not apply (the message is the tool's, naming the file
            and the hunk), the patch file is missing, or neither tool is installed.
    """
    if not os.path.isfile(patch):
        raise UsageError(f"patch file {patch} does not exist")
    tool = tool or ("git" if shutil.which("git") else "patch" if shutil.which("patch") else None)
    if tool is None or shutil.which(tool) is None:
        raise UsageError("applying --patch needs git or patch on PATH")
    patch = os.path.abspath(patch)
    if tool == "git":
        # Outside any repository git apply patches the working directory; the ceiling keeps
        # it from finding a repository above a temporary directory (then it would skip files).
        env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
        env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(os.path.abspath(directory))
        cmd = ["git", "apply", f"-p{strip}", "--whitespace=nowarn", patch]
    else:
        env = dict(os.environ)
        cmd = ["patch", f"-p{strip}", "--batch", "--forward", "--no-backup-if-mismatch",
               "--reject-file=-", "-i", patch]
    proc = subprocess.run(cmd, cwd=directory, env=env, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() + "\n" + proc.stdout.strip()).strip()
        raise UsageError(f"the patch {patch} does not apply to {what or directory} ({tool} -p{strip}):\n{detail}")
    return tool


@dataclasses.dataclass(frozen=True)
class Candidate:
    """The code under test.

    Attributes:
        code_dirs: Code roots, first on ``sys.path`` (first wins).
        patch: A unified diff applied to a copy of ``code_dirs[0]``, or, without code
            directories, to a copy of each snapshot's embedded sources.
        strip: ``-p`` for the patch.
        patch_tool: ``"git"``, ``"patch"`` or None (git when installed).
    """

    code_dirs: tuple[str, ...] = ()
    patch: str | None = None
    strip: int = 1
    patch_tool: str | None = None


def prepare_candidate(candidate: Candidate, items: Sequence[SnapshotInput], workdir: str) -> dict[str, list[str]]:
    """The code roots to replay each snapshot against, by :attr:`SnapshotInput.path`.

    With a patch and no code directory, snapshots that embed the same sources share one
    patched copy (a corpus recorded from one release patches once).

    Raises:
        UsageError: no candidate given, a code directory is missing, the patch does not
            apply, or (patch without --code) a snapshot does not embed its sources.
    """
    if not candidate.code_dirs and not candidate.patch:
        raise UsageError("give the candidate: --code DIR (the fixed code root) and/or --patch FILE")
    for d in candidate.code_dirs:
        if not os.path.isdir(d):
            raise UsageError(f"code directory {d} does not exist")
    if candidate.patch is None:
        return {item.path: list(candidate.code_dirs) for item in items}
    if candidate.code_dirs:
        copy = os.path.join(workdir, "patched-code")
        shutil.copytree(candidate.code_dirs[0], copy, ignore=COPY_IGNORE, symlinks=True)
        apply_patch(candidate.patch, copy, strip=candidate.strip, tool=candidate.patch_tool,
                    what=f"a copy of {candidate.code_dirs[0]}")
        roots = [copy, *candidate.code_dirs[1:]]
        return {item.path: roots for item in items}
    return _patch_recorded_sources(candidate, items, workdir)


def _patch_recorded_sources(candidate: Candidate, items: Sequence[SnapshotInput], workdir: str) -> dict[str, list[str]]:
    # The replay child's own extraction (with its path checks), so both lay the sources out alike.
    from replay.replayer.child import _extract_sources

    assert candidate.patch is not None
    patched: dict[str, str] = {}
    out: dict[str, list[str]] = {}
    for item in items:
        try:
            with open_snapshot(item.path) as snap:
                files = snap.code_files
        except SnapshotError:
            out[item.path] = []  # reported as a bad snapshot when it is verified
            continue
        if not files or any(f.get("source") is None for f in files):
            raise UsageError(f"{item.name} does not embed its sources; give the code to patch with --code DIR")
        key = hashlib.sha256(repr(sorted((f["path"], f.get("sha256")) for f in files)).encode()).hexdigest()
        if key not in patched:
            root = _extract_sources(files, workdir)
            apply_patch(candidate.patch, root, strip=candidate.strip, tool=candidate.patch_tool,
                        what=f"the sources recorded in {item.name}")
            patched[key] = root
        out[item.path] = [patched[key]]
    return out


# ---------------------------------------------------------------------------------------
# Running


@dataclasses.dataclass
class Outcome:
    """What verifying one snapshot gave.

    Attributes:
        name: :attr:`SnapshotInput.name`.
        result: The verdict with its evidence, or None when the snapshot could not be
            verified (then ``error`` says why).
        error: The message of the error, empty with a result.
        error_kind: ``bad_snapshot`` (missing, corrupt, not a snapshot) or ``internal``
            (the replay process could not run).
        duration_s: Wall time of this snapshot's replays, in seconds.
    """

    name: str
    result: VerifyResult | None
    error: str = ""
    error_kind: str = ""
    duration_s: float = 0.0

    @property
    def label(self) -> str:
        """The verdict's name, or ``BAD_SNAPSHOT`` / ``ERROR``."""
        if self.result is not None:
            return self.result.verdict.value
        return "BAD_SNAPSHOT" if self.error_kind == "bad_snapshot" else "ERROR"


def verify_one(item: SnapshotInput, code_dirs: list[str], *, timeout_s: float = DEFAULT_TIMEOUT_S,
               server: ForkServerPool | None = None) -> Outcome:
    """Verify one snapshot; errors tied to this snapshot become an :class:`Outcome` with
    ``error`` set instead of an exception, so one bad file does not stop a corpus.

    The result's ``snapshot`` is the input's name (its URL for a remote snapshot).
    ``server``: fork the replays from this pool (see :func:`replay.verify.verdict.verify`).
    """
    t0 = time.perf_counter()
    try:
        result = verify(item.path, code_dirs, timeout_s=timeout_s, server=server)
    except SnapshotError as exc:
        return Outcome(item.name, None, str(exc).replace(item.path, item.name), "bad_snapshot",
                       time.perf_counter() - t0)
    except ReplaySetupError as exc:
        return Outcome(item.name, None, str(exc), "internal", time.perf_counter() - t0)
    result.snapshot = item.name
    return Outcome(item.name, result, duration_s=time.perf_counter() - t0)


@dataclasses.dataclass
class BatchReport:
    """The outcomes of a run, sorted by snapshot name.

    Attributes:
        outcomes: One per snapshot, in corpus order.
        wall_time_s: Wall time of the whole run, in seconds.
        jobs: Snapshots verified at a time.
        fork_server: Replays forked from warm servers, and replays that fell back to a
            fresh process because a server failed (both 0 without a fork server).
    """

    outcomes: list[Outcome]
    wall_time_s: float
    jobs: int
    fork_server: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def results(self) -> list[VerifyResult]:
        """The verdicts (snapshots that could be verified)."""
        return [o.result for o in self.outcomes if o.result is not None]

    def counts(self) -> dict[str, int]:
        """Snapshots per verdict name (and ``BAD_SNAPSHOT`` / ``ERROR``), sorted by name."""
        out: dict[str, int] = {}
        for o in self.outcomes:
            out[o.label] = out.get(o.label, 0) + 1
        return dict(sorted(out.items()))

    def failed(self, fail_on: frozenset[Verdict]) -> list[Outcome]:
        """Outcomes whose verdict is in ``fail_on``."""
        return [o for o in self.outcomes if o.result is not None and o.result.verdict in fail_on]

    def errors(self, kind: str) -> list[Outcome]:
        """Outcomes without a verdict, of ``kind`` (``bad_snapshot`` or ``internal``)."""
        return [o for o in self.outcomes if o.error_kind == kind]


def run_batch(
    items: Sequence[SnapshotInput],
    roots: dict[str, list[str]],
    *,
    jobs: int = 1,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    on_outcome: Callable[[Outcome], None] | None = None,
    fork_server: bool | None = None,
) -> BatchReport:
    """Verify every snapshot, ``jobs`` at a time.

    Args:
        items: The corpus (see :func:`collect_snapshots`).
        roots: Code roots per snapshot path (see :func:`prepare_candidate`).
        jobs: Snapshots verified at a time (each is one child process at a time).
        timeout_s: Limit per replay, in seconds.
        on_outcome: Called in the calling thread as each snapshot finishes, in completion
            order (progress display).
        fork_server: Fork the replays from warm servers (:mod:`replay.replayer.forkserver`)
            instead of starting two interpreters per snapshot: same verdicts, a fraction of
            the start-up cost. None (default) uses them for more than
            :data:`FORK_SERVER_MIN` snapshots; ``$REPLAY_FORKSERVER`` (``1``/``0``) overrides.

    Returns:
        A :class:`BatchReport` with the outcomes in corpus order whatever the completion order.

    Raises:
        UsageError: ``jobs`` is below 1.
    """
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, not {jobs}")
    t0 = time.perf_counter()
    done: dict[str, Outcome] = {}
    switch = forkserver.mode()
    if switch != "auto":
        fork_server = switch == "always"
    elif fork_server is None:
        fork_server = len(items) > FORK_SERVER_MIN
    server = ForkServerPool(max_idle=jobs) if fork_server else None
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="replay-verify")
    try:
        futures = {pool.submit(verify_one, item, roots[item.path], timeout_s=timeout_s, server=server): item
                   for item in items}
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            done[futures[future].path] = outcome
            if on_outcome is not None:
                on_outcome(outcome)
    finally:
        # On an error or Ctrl-C, start no more replays; running children finish or get the signal.
        pool.shutdown(wait=True, cancel_futures=True)
        if server is not None:
            server.close()
    stats = {"served": server.served, "fallbacks": server.fallbacks} if server is not None else {}
    return BatchReport([done[item.path] for item in items], time.perf_counter() - t0, jobs, stats)
