"""The determinism self-check: record once, replay several times, report what leaked.

A channel *leaks* when something the program received from the outside world was not
recorded, so replay cannot reproduce it. The check finds leaks by their symptoms:

* ``divergence``: a replay asked for something other than what was recorded (a value the
  tape did not hold changed what the program did next);
* ``unconsumed``: recorded interactions a replay never asked for;
* ``blocked``: the replay tried to reach a real system (the sandbox stopped it): the
  recording did not capture that channel at all;
* ``outcome``: a replay's outcome differs from the recording;
* ``output``: what a replayed script printed differs from what the recorded run printed
  (with a hint when the recorded process used a random hash seed);
* ``unstable``: two replays of the same snapshot differ from each other.

Used by ``replay check``; also callable: :func:`check_snapshot`, :func:`check_program`.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
from typing import Any

from replay.errors import ReplaySetupError
from replay.replayer.runner import DEFAULT_TIMEOUT_S, ReplayRun, run_replay
from replay.snapshot import open_snapshot
from replay.verify.verdict import describe_effect, matches_recording, summarize_outcome


@dataclasses.dataclass
class Leak:
    """One symptom of unrecorded nondeterminism.

    Attributes:
        kind: ``divergence``, ``unconsumed``, ``blocked``, ``outcome``, ``output`` or ``unstable``.
        channel: The channel that leaked when it can be named (``clock``, ``file``, ...), else ``?``.
        detail: What differed, for a person.
        replay: Which replay (from 1) showed it.
    """

    kind: str
    channel: str
    detail: str
    replay: int

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON)."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class CheckReport:
    """The result of a determinism check.

    Attributes:
        snapshot: The snapshot replayed.
        runs: Number of replays.
        reproduced: Replays that reproduced the recording without any leak symptom.
        leaks: Symptoms found, first replay first (each symptom once).
        interactions: Tape length; ``channels``: interactions per channel.
        warnings: Caveats of the replays (hash seed, time zone).
        exit_status: The recorded program's exit status (program checks only).
    """

    snapshot: str
    runs: int
    reproduced: int = 0
    leaks: list[Leak] = dataclasses.field(default_factory=list)
    interactions: int = 0
    channels: dict[str, int] = dataclasses.field(default_factory=dict)
    warnings: list[str] = dataclasses.field(default_factory=list)
    exit_status: int | None = None

    @property
    def deterministic(self) -> bool:
        """True when every replay reproduced the recording and nothing leaked."""
        return not self.leaks and self.reproduced == self.runs

    def leaked_channels(self) -> list[str]:
        """The channels named by the leaks, in order of first appearance."""
        return list(dict.fromkeys(leak.channel for leak in self.leaks))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON)."""
        out = dataclasses.asdict(self)
        out["deterministic"] = self.deterministic
        out["leaked_channels"] = self.leaked_channels()
        return out


def _first_difference(a: str, b: str) -> str:
    la, lb = a.splitlines(), b.splitlines()
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else "<no line>"
        y = lb[i] if i < len(lb) else "<no line>"
        if x != y:
            return f"line {i + 1}: recorded {x[:120]!r}, replay {y[:120]!r}"
    return "the output differs"


def _symptoms(run: ReplayRun, recorded: dict[str, Any], index: int, hash_seed_known: bool) -> list[Leak]:
    leaks: list[Leak] = []
    if run.status != "ok":
        return [Leak("outcome", "?", f"the replay could not run: {run.reason or run.status}", index)]
    d = run.divergence
    if d:
        leaks.append(Leak("divergence", d["channel"], f"interaction #{d['index']}: {d['reason']}; asked "
                          f"{d['channel']} {d['op']}{d['asked']}, recorded {d.get('recorded') or 'nothing'}", index))
    for effect in run.effects:
        if effect.get("status") == "blocked":
            leaks.append(Leak("blocked", str(effect.get("channel")), describe_effect(effect), index))
    if not d:
        for channel, n in run.unconsumed_channels.items():
            leaks.append(Leak("unconsumed", channel, f"{n} recorded interaction(s) never asked for", index))
    ok, why = matches_recording(recorded, run)
    if not ok and not d and not any(x.kind == "blocked" for x in leaks):
        leaks.append(Leak("outcome", "?", why, index))
    if "stdout" in recorded and run.outcome.get("stdout") != recorded["stdout"]:
        hint = "" if hash_seed_known else (" (the recorded process used a random hash seed: set and dict "
                                           "iteration order of strings may be what differs)")
        # only printed output differs and the seed was random: most likely the set order
        channel = "hash seed" if not hash_seed_known and not leaks else "?"
        leaks.append(Leak("output", channel, _first_difference(recorded["stdout"], run.outcome.get("stdout") or "")
                          + hint, index))
    return leaks


def check_snapshot(snapshot: str | os.PathLike[str], *, runs: int = 3,
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> CheckReport:
    """Replay a snapshot ``runs`` times against its recorded code and report leaks.

    Raises:
        SnapshotError: the file is missing or bad.
        ValueError: ``runs`` < 1.
    """
    if runs < 1:
        raise ValueError("runs must be at least 1")
    with open_snapshot(snapshot) as snap:
        recorded = snap.outcome
        counts = dict(snap.channel_counts())
        length = snap.tape_length
        hash_seed_known = snap.environment.get("hash_seed") is not None
    report = CheckReport(snapshot=os.fspath(snapshot), runs=runs, interactions=length, channels=counts)
    seen: set[tuple[str, str, str]] = set()
    first: ReplayRun | None = None
    for i in range(1, runs + 1):
        run = run_replay(snapshot, mode="strict", timeout_s=timeout_s)
        report.warnings = list(dict.fromkeys(report.warnings + run.warnings))
        leaks = _symptoms(run, recorded, i, hash_seed_known)
        if first is None:
            first = run
        elif run.outcome.get("value") != first.outcome.get("value") or \
                run.outcome.get("stdout") != first.outcome.get("stdout"):
            leaks.append(Leak("unstable", "?", f"replay {i} differs from replay 1: "
                              f"{summarize_outcome(first.outcome)} vs {summarize_outcome(run.outcome)}", i))
        if not leaks:
            report.reproduced += 1
        for leak in leaks:
            key = (leak.kind, leak.channel, leak.detail)
            if key not in seen:
                seen.add(key)
                report.leaks.append(leak)
    return report


def record_program(argv: list[str], directory: str, *, timeout_s: float = DEFAULT_TIMEOUT_S,
                   env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """Record a whole program in a fresh interpreter; returns (exit status, snapshot, output).

    Args:
        argv: ``[script.py, args...]`` or ``["-m", module, args...]`` (a leading ``python``
            word is dropped: the program runs under this interpreter).

    Raises:
        ReplaySetupError: the recorder wrote no snapshot (the output says why).
    """
    argv = strip_interpreter(argv)
    path_file = os.path.join(directory, ".snapshot-path")
    cmd = [sys.executable, "-m", "replay.capture.script", "--on", "always", "--dir", directory,
           "--path-file", path_file, "--", *argv]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False,
                          env={**os.environ, **(env or {})})
    if not os.path.exists(path_file):
        raise ReplaySetupError(f"recording {' '.join(argv)} wrote no snapshot (exit {proc.returncode}):\n"
                               f"{(proc.stdout + proc.stderr)[-2000:]}")
    with open(path_file, encoding="utf-8") as fh:
        return proc.returncode, fh.read(), proc.stdout + proc.stderr


def strip_interpreter(argv: list[str]) -> list[str]:
    """Drop a leading ``python`` / ``python3.x`` / path to an interpreter from a command line."""
    if argv and os.path.basename(argv[0]).startswith("python") and not argv[0].endswith(".py"):
        return argv[1:]
    return list(argv)


def check_program(argv: list[str], *, runs: int = 3, keep: str | None = None,
                  timeout_s: float = DEFAULT_TIMEOUT_S, env: dict[str, str] | None = None) -> CheckReport:
    """Record ``python argv...`` once, then :func:`check_snapshot` it ``runs`` times.

    Args:
        argv: The program (``script.py args`` or ``-m module args``, optionally after ``python``).
        runs: Replays to run.
        keep: Directory to keep the snapshot in (default: a temporary one, removed).
        env: Extra environment variables for the recorded run.
    """
    with tempfile.TemporaryDirectory(prefix="replay-check-") as tmp:
        directory = keep or tmp
        os.makedirs(directory, exist_ok=True)
        status, path, _ = record_program(argv, directory, timeout_s=timeout_s, env=env)
        report = check_snapshot(path, runs=runs, timeout_s=timeout_s)
        report.exit_status = status
        if keep is None:
            report.snapshot = f"(temporary) {os.path.basename(path)}"
        return report
