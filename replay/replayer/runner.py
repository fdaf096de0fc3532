"""Run one replay in a fresh subprocess and return what happened.

The parent opens the snapshot (so a bad file fails here, with a :class:`SnapshotError`),
prepares the child's environment (the recorded hash seed and time zone), starts
``replay.replayer.child`` (or has a fork server fork one, see
:mod:`replay.replayer.forkserver`) and reads its result. The child's stdout and stderr go to
files in the replay's temporary directory, in both cases.
"""

from __future__ import annotations

import dataclasses
import locale
import os
import subprocess
import sys
import tempfile
from typing import Any

import msgpack

from replay.errors import ReplaySetupError, UsageError
from replay.replayer import forkserver
from replay.replayer.forkserver import ForkServerPool
from replay.snapshot import open_snapshot

DEFAULT_TIMEOUT_S = 300.0


@dataclasses.dataclass
class ReplayRun:
    """The result of one replay.

    Attributes:
        status: ``ok``, ``not_replayable`` (the snapshot says why), ``setup_error`` (the entry
            point or code could not be loaded) or ``timeout``.
        mode: ``strict`` (baseline) or ``keyed`` (candidate).
        outcome: Outcome map like the snapshot's: ``kind`` is ``return``, ``exception`` or
            ``diverged``.
        divergence: The first divergence as a map (see :class:`replay.replayer.tape.Divergence`)
            or None.
        unconsumed: Recorded interactions never asked for (rendered, at most 20).
        unconsumed_count: How many there were in all.
        unconsumed_channels: How many per channel.
        synthesized: Clock/random values invented because the tape ran out, per stream.
        reused: Answers of constant channels (host facts) served again, per channel.
        effects: Effects the replay asked for, compared with the recording: maps with
            ``status`` (``same``, ``changed`` with a ``diff``, ``missing``: recorded but not
            asked, ``blocked``: stopped by the sandbox), ``channel``, ``op``, ``index`` (tape
            index of the recorded effect), ``asked`` and ``recorded`` (rendered requests).
        blocked: Attempts to touch a real system stopped by the sandbox (``kind``,
            ``detail``, ``stack``).
        from_environment: Env reads answered from the recorded environment, not the tape.
        code: sha256 of each application file the replay loaded, by relative path.
        reason: Why the replay could not run (status other than ok).
        warnings: Things the user should know (unknown hash seed, time zone guessed).
        output: Tail of the child's stdout and stderr.
        trace: When a trace was asked for: ``path``, ``steps``, ``truncated``.
    """

    status: str
    mode: str
    outcome: dict[str, Any] = dataclasses.field(default_factory=dict)
    divergence: dict[str, Any] | None = None
    unconsumed: list[str] = dataclasses.field(default_factory=list)
    unconsumed_count: int = 0
    unconsumed_channels: dict[str, int] = dataclasses.field(default_factory=dict)
    synthesized: dict[str, int] = dataclasses.field(default_factory=dict)
    reused: dict[str, int] = dataclasses.field(default_factory=dict)
    effects: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    blocked: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    from_environment: int = 0
    code: dict[str, str] = dataclasses.field(default_factory=dict)
    reason: str = ""
    warnings: list[str] = dataclasses.field(default_factory=list)
    output: str = ""
    trace: dict[str, Any] | None = None


def child_environment(snapshot_env: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Environment variables for the replay child, and warnings about what is guessed."""
    env = dict(os.environ)
    warnings: list[str] = []
    seed = snapshot_env.get("hash_seed")
    if seed is None:
        env["PYTHONHASHSEED"] = "0"
        warnings.append(
            "the recorded process used a random hash seed: the iteration order of sets of "
            "strings may differ on replay"
        )
    else:
        env["PYTHONHASHSEED"] = str(seed)
    tz = snapshot_env.get("timezone") or {}
    if tz.get("key"):
        env["TZ"] = tz["key"]
    elif tz.get("tzname"):
        west = int(tz.get("timezone", 0))
        hours, minutes = divmod(abs(west) // 60, 60)
        env["TZ"] = f"<{tz['tzname'][0]}>{'-' if west < 0 else ''}{hours}:{minutes:02d}"
        warnings.append(f"the recorded time zone has no name; replaying with the fixed offset {env['TZ']}")
    env.pop("PYTHONPATH", None)  # sys.path is built by the child from the snapshot and code roots
    env.pop("REPLAY_DIR", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env, warnings


def run_replay(
    snapshot: str | os.PathLike[str],
    *,
    mode: str = "strict",
    code_dirs: list[str] | None = None,
    use_recorded_sources: bool = True,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    sandbox: bool = True,
    trace: dict[str, Any] | None = None,
    server: ForkServerPool | None = None,
) -> ReplayRun:
    """Replay a snapshot once in a fresh subprocess (or one forked by a fork server).

    Args:
        snapshot: The ``.rsnap`` file.
        mode: ``"strict"`` for a baseline (every interaction in order) or ``"keyed"`` for a
            candidate (see :mod:`replay.replayer.tape`).
        code_dirs: Candidate code roots, put first on the child's ``sys.path`` in order.
        use_recorded_sources: Also put the snapshot's embedded sources on ``sys.path``
            (after ``code_dirs``).
        timeout_s: Wall-clock limit for the child, in seconds.
        sandbox: Block real network connections, subprocess spawns and file writes outside
            the replay's temporary directory (see :mod:`replay.replayer.sandbox`).
        trace: Record the trace while replaying (see :func:`replay.replayer.traces.regenerate`):
            ``path`` (absolute), ``include``, ``exclude``, ``max_steps``, ``backend``,
            ``header`` (extra trace header keys).
        server: Fork the child from a warm server of this pool instead of starting an
            interpreter (same result, much less start-up; see
            :mod:`replay.replayer.forkserver`); a fresh process is used when the pool cannot
            serve. ``$REPLAY_FORKSERVER=1`` uses a process-wide pool when None is given,
            ``$REPLAY_FORKSERVER=0`` never uses one.

    Returns:
        A :class:`ReplayRun`.

    Raises:
        SnapshotError: the file is missing or bad.
        UsageError: a code directory does not exist, or ``mode`` is unknown.
        ReplaySetupError: the replay process ended without a result.
    """
    if mode not in ("strict", "keyed"):
        raise UsageError(f"unknown replay mode {mode!r}")
    code_dirs = [os.path.abspath(d) for d in code_dirs or []]
    for d in code_dirs:
        if not os.path.isdir(d):
            raise UsageError(f"code directory {d} does not exist")
    with open_snapshot(snapshot) as snap:
        env, warnings = child_environment(snap.environment)
        snap.tape  # noqa: B018 - read and check the tape here, so a bad file fails in the parent
    request = {
        "snapshot": os.path.abspath(os.fspath(snapshot)),
        "mode": mode,
        "code_dirs": code_dirs,
        "use_recorded_sources": use_recorded_sources,
        "sandbox": sandbox,
        "trace": trace,
    }
    switch = forkserver.mode()
    if switch == "always" and server is None:
        server = forkserver.shared_pool()
    if server is not None and switch != "never":
        run = _replay_in_tempdir(request, env, warnings, timeout_s, server)
        if run is not None:
            return run
    run = _replay_in_tempdir(request, env, warnings, timeout_s, None)
    assert run is not None  # only a pool declines
    return run


def _replay_in_tempdir(request: dict[str, Any], env: dict[str, str], warnings: list[str], timeout_s: float,
                       server: ForkServerPool | None) -> ReplayRun | None:
    """One replay in a new temporary directory: a fresh child, or a forked one with ``server``.

    Returns None when ``server`` could not serve (the caller starts a fresh child then).
    """
    mode = request["mode"]
    with tempfile.TemporaryDirectory(prefix="replay-run-") as tmp:
        request = {**request, "workdir": tmp}
        scratch = os.path.join(tmp, "tmp")
        os.mkdir(scratch)
        env = {**env, "TMPDIR": scratch}  # tempfile writes land inside the sandbox's allowed directory
        req_path = os.path.join(tmp, "request.msgpack")
        res_path = os.path.join(tmp, "result.msgpack")
        out_path, err_path = os.path.join(tmp, "stdout.txt"), os.path.join(tmp, "stderr.txt")
        with open(req_path, "wb") as fh:
            fh.write(msgpack.packb(request, use_bin_type=True))
        if server is not None:
            status = server.run([req_path, res_path], env, tmp, out_path, err_path, timeout_s)
            if status is None:
                return None
            returncode, timed_out = status
        else:
            returncode, timed_out = _run_fresh([req_path, res_path], env, tmp, out_path, err_path, timeout_s)
        if timed_out:
            return ReplayRun(status="timeout", mode=mode, reason=f"the replay did not finish in {timeout_s:g} s",
                             warnings=warnings)
        output = (_read_text(out_path)[-2000:] + _read_text(err_path)[-4000:]).strip()
        if not os.path.exists(res_path):
            raise ReplaySetupError(
                f"the replay process exited with code {returncode} without a result:\n{output[-1500:]}"
            )
        with open(res_path, "rb") as fh:
            result = msgpack.unpackb(fh.read(), raw=False, strict_map_key=False)
    known = {f.name for f in dataclasses.fields(ReplayRun)}
    fields = {k: v for k, v in result.items() if k in known}
    warnings = warnings + [str(n) for n in result.get("notes") or []]  # what the tape player had to bend
    if result.get("traceback"):
        output = (output + "\n" + result["traceback"]).strip()
    return ReplayRun(mode=mode, warnings=warnings, output=output, **fields)


def _run_fresh(args: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str,
               timeout_s: float) -> tuple[int, bool]:
    """``python -P -m replay.replayer.child ARGS`` in a new interpreter: (exit code, timed out)."""
    cmd = [sys.executable, "-P", "-m", forkserver.CHILD_MODULE, *args]
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        try:
            proc = subprocess.run(cmd, env=env, cwd=cwd, stdout=out, stderr=err, timeout=timeout_s,
                                  stdin=subprocess.DEVNULL, check=False)
        except subprocess.TimeoutExpired:
            return -9, True
    return proc.returncode, False


def _read_text(path: str) -> str:
    """A captured stream as text: decoded as ``subprocess`` would (the locale's encoding,
    universal newlines), but an undecodable byte becomes U+FFFD instead of an error."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return ""
    text = data.decode(locale.getpreferredencoding(False), "replace")
    return text.replace("\r\n", "\n").replace("\r", "\n")
