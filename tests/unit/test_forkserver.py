"""The fork server: a replay forked from a warm server is indistinguishable from a fresh one.

Two layers. A probe module (written per test, run by a real server process) reports what a
process sees - environment, working directory, time zone, temporary directory, argv, open
file descriptors, threads, stdin - and the report of a forked probe must equal the report
of the same probe started fresh. Then the real replay child: every sample snapshot replayed
through the server gives the same :class:`ReplayRun` as a fresh replay, baseline and
candidate, and a batch run gives the same verdicts either way.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from replay.replayer import forkserver
from replay.replayer.forkserver import ForkServerPool
from replay.replayer.runner import ReplayRun, run_replay
from replay.verify.batch import SnapshotInput, run_batch
from tests.conftest import SAMPLES

SAMPLE_SNAPSHOTS = sorted(glob.glob(str(SAMPLES / "snapshots" / "*" / "*.rsnap")))
CORRECT_FIX = str(SAMPLES / "fixes" / "correct")

PROBE = '''
import atexit, json, os, sys, tempfile, threading, time

def main(argv):
    info = {
        "argv": argv, "main": __name__, "cwd": os.getcwd(), "env": dict(os.environ),
        "tmp": tempfile.gettempdir(), "tz": [time.tzname, time.timezone, time.localtime(0).tm_hour],
        "fds": sorted(os.listdir("/proc/self/fd")), "threads": threading.active_count(),
        "stdin": os.readlink("/proc/self/fd/0"), "flags": list(sys.flags), "path": sys.path,
        "hash": hash("replay"),
    }
    atexit.register(print, "atexit ran")
    print("to stdout")
    print("to stderr", file=sys.stderr)
    with open(argv[2], "w") as fh:
        json.dump(info, fh)
    if os.path.exists("sleep"):
        time.sleep(30)
    if os.path.exists("exit"):
        with open("exit") as fh:
            value = fh.read()
        sys.exit(int(value) if value.isdigit() else value)
    return 0

if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        from replay.replayer.forkserver import serve
        sys.exit(serve(main, sys.argv))
    sys.exit(main(sys.argv))
'''


@pytest.fixture
def probe(tmp_path: Path) -> dict[str, Any]:
    """The probe module on a PYTHONPATH of its own, and a base environment for it."""
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / "fs_probe.py").write_text(textwrap.dedent(PROBE))
    env = {k: v for k, v in os.environ.items() if k != forkserver.ENV_SWITCH}
    env.update(PYTHONPATH=f"{lib}{os.pathsep}{Path(__file__).resolve().parents[2]}", PYTHONHASHSEED="77",
               TZ="Asia/Kolkata")
    return {"env": env, "root": tmp_path}


def workdir(root: Path, name: str) -> dict[str, str]:
    """A replay-like directory: cwd, TMPDIR inside it, files for the request's streams."""
    d = root / name
    (d / "tmp").mkdir(parents=True)
    return {"cwd": str(d), "tmp": str(d / "tmp"), "stdout": str(d / "out.txt"), "stderr": str(d / "err.txt"),
            "result": str(d / "result.json")}


def run_probe_fresh(env: dict[str, str], w: dict[str, str]) -> int:
    with open(w["stdout"], "wb") as out, open(w["stderr"], "wb") as err:
        return subprocess.run([sys.executable, "-P", "-m", "fs_probe", "REQ", w["result"]], env=env, cwd=w["cwd"],
                              stdin=subprocess.DEVNULL, stdout=out, stderr=err, check=False, timeout=60).returncode


def run_probe_forked(pool: ForkServerPool, env: dict[str, str], w: dict[str, str],
                     timeout_s: float = 60) -> tuple[int, bool] | None:
    return pool.run(["REQ", w["result"]], env, w["cwd"], w["stdout"], w["stderr"], timeout_s)


def probe_report(w: dict[str, str]) -> dict[str, Any]:
    with open(w["result"]) as fh:
        info = json.load(fh)
    info["cwd_is_workdir"] = info.pop("cwd") == w["cwd"]  # each run has its own directory
    info["tmp_is_workdir_tmp"] = info.pop("tmp") == w["tmp"]
    assert info["env"].pop("TMPDIR") == w["tmp"]
    info["argv"][2] = "RESULT"
    info["output"] = (Path(w["stdout"]).read_text(), Path(w["stderr"]).read_text())
    return info


def test_a_forked_process_sees_what_a_fresh_one_sees(probe):
    env = probe["env"]
    with ForkServerPool(module="fs_probe") as pool:
        reports = []
        for i, forked in enumerate([False, True, True]):  # the second fork: the server is not worn
            w = workdir(probe["root"], f"run{i}")
            run_env = {**env, "TMPDIR": w["tmp"]}
            status = run_probe_forked(pool, run_env, w) if forked else (run_probe_fresh(run_env, w), False)
            assert status == (0, False)
            reports.append(probe_report(w))
        assert pool.started == 1 and pool.served == 2 and pool.fallbacks == 0
    fresh, forked, again = reports
    assert fresh["cwd_is_workdir"] and fresh["tmp_is_workdir_tmp"] and fresh["fds"] == ["0", "1", "2", "3"]
    assert fresh["tz"][0] == ["IST", "IST"] and fresh["main"] == "__main__"
    assert fresh["output"] == ("to stdout\natexit ran\n", "to stderr\n")
    assert forked == fresh
    assert again == fresh


def test_the_server_applies_each_request_environment(probe):
    """One server per environment (hash seed and TZ are fixed at start-up); TMPDIR varies."""
    env = probe["env"]
    with ForkServerPool(module="fs_probe") as pool:
        seen = []
        for i, extra in enumerate([{}, {"TZ": "America/New_York"}, {}, {"PYTHONHASHSEED": "5"}]):
            w = workdir(probe["root"], f"env{i}")
            assert run_probe_forked(pool, {**env, **extra, "TMPDIR": w["tmp"]}, w) == (0, False)
            report = probe_report(w)
            seen.append((report["tz"][0][0], report["hash"], report["tmp_is_workdir_tmp"]))
        assert pool.started == 3 and pool.served == 4
    assert [s[0] for s in seen] == ["IST", "EST", "IST", "IST"]
    assert seen[0][1] == seen[2][1] != seen[3][1]  # the hash seed of the request's own server
    assert all(s[2] for s in seen)


def test_exit_status_and_timeouts_match_a_fresh_child(probe):
    env = probe["env"]
    with ForkServerPool(module="fs_probe") as pool:
        for value, code in [("3", 3), ("bye", 1)]:  # sys.exit(3), sys.exit("bye")
            w, v = workdir(probe["root"], f"exit{value}"), workdir(probe["root"], f"exit{value}-fresh")
            for d in (w, v):
                Path(d["cwd"], "exit").write_text(value)
            assert run_probe_forked(pool, {**env, "TMPDIR": w["tmp"]}, w) == (code, False)
            assert run_probe_fresh({**env, "TMPDIR": v["tmp"]}, v) == code
            assert probe_report(w)["output"] == probe_report(v)["output"]
        w = workdir(probe["root"], "slow")
        Path(w["cwd"], "sleep").touch()
        assert run_probe_forked(pool, {**env, "TMPDIR": w["tmp"]}, w, timeout_s=1) == (-9, True)
        w = workdir(probe["root"], "after")  # the server survives a killed request
        assert run_probe_forked(pool, {**env, "TMPDIR": w["tmp"]}, w) == (0, False)
        assert pool.started == 1 and pool.fallbacks == 0


def test_a_dead_server_falls_back_to_a_fresh_process(caplog):
    snapshot = SAMPLE_SNAPSHOTS[0]
    with ForkServerPool() as pool:
        first = run_replay(snapshot, server=pool)
        (_, server), = pool._idle
        server.proc.kill()
        server.proc.wait()
        with caplog.at_level(logging.WARNING, logger="replay.forkserver"):
            second = run_replay(snapshot, server=pool)
        assert pool.fallbacks == 1 and "fresh process" in caplog.text
        assert normalized(second) == normalized(first)
        run_replay(snapshot, server=pool)  # a new server replaces the dead one
        assert pool.started == 2 and pool.served == 2


def normalized(run: ReplayRun) -> str:
    """A run as JSON without what differs between any two replays: the duration and the
    names of the temporary directories."""
    data = dataclasses.asdict(run)
    data["outcome"].pop("duration_ns", None)
    text = json.dumps(data, sort_keys=True, default=repr)
    return re.sub(r"(replay-run-|src-)[A-Za-z0-9_]+", r"\1X", text)


@pytest.mark.parametrize("code_dirs", [[], [CORRECT_FIX]], ids=["baseline", "candidate"])
def test_every_sample_replays_identically_through_the_server(code_dirs):
    assert len(SAMPLE_SNAPSHOTS) == 6
    mode = "keyed" if code_dirs else "strict"
    with ForkServerPool() as pool:
        for snapshot in SAMPLE_SNAPSHOTS:
            fresh = run_replay(snapshot, mode=mode, code_dirs=code_dirs)
            forked = run_replay(snapshot, mode=mode, code_dirs=code_dirs, server=pool)
            assert fresh.status == "ok" and fresh.code and fresh.outcome["kind"] in ("return", "exception")
            assert normalized(forked) == normalized(fresh), snapshot
        assert pool.served == 6 and pool.fallbacks == 0
    # the comparison is not blind: two different snapshots do not compare equal
    assert normalized(run_replay(SAMPLE_SNAPSHOTS[0])) != normalized(run_replay(SAMPLE_SNAPSHOTS[1]))


def test_a_batch_uses_the_server_past_two_snapshots_with_the_same_verdicts(monkeypatch):
    monkeypatch.delenv(forkserver.ENV_SWITCH, raising=False)
    items = [SnapshotInput(p, p) for p in SAMPLE_SNAPSHOTS]
    roots = {p: [CORRECT_FIX] for p in SAMPLE_SNAPSHOTS}
    served = run_batch(items, roots, jobs=2)
    assert served.fork_server == {"served": 12, "fallbacks": 0}
    fresh = run_batch(items, roots, jobs=2, fork_server=False)
    assert fresh.fork_server == {}
    assert [o.label for o in served.outcomes] == [o.label for o in fresh.outcomes]
    assert [o.result.reason for o in served.outcomes] == [o.result.reason for o in fresh.outcomes]  # type: ignore[union-attr]
    assert run_batch(items[:2], roots, jobs=1).fork_server == {}  # two snapshots: fresh processes
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    assert run_batch(items, roots, jobs=1).fork_server == {}


def test_the_switch_forces_the_server_for_single_replays(monkeypatch):
    monkeypatch.setenv(forkserver.ENV_SWITCH, "1")
    pool = forkserver.shared_pool()
    before = pool.served
    run = run_replay(SAMPLE_SNAPSHOTS[0])
    assert run.status == "ok" and pool.served == before + 1
    assert forkserver.mode() == "always"
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    assert forkserver.mode() == "never"
    with ForkServerPool() as own:
        run_replay(SAMPLE_SNAPSHOTS[0], server=own)
        assert own.started == 0  # "0" wins over an explicit pool


def test_the_replay_child_imports_only_what_replaying_needs():
    """What every replay process (and every fork server) imports: no asyncio (async entry
    points import it), no runner, verdicts or fork-server client; subprocess before the
    interceptors, as in a recorded process."""
    code = (
        "import sys, replay.replayer.child\n"
        "print(sorted(m for m in ('asyncio', 'ssl', 'replay.replayer.runner', 'replay.verify.verdict',"
        " 'replay.replayer.forkserver', 'subprocess') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['subprocess']"


def test_the_capture_api_loads_on_first_use():
    code = (
        "import sys, replay\n"
        "print('replay.capture' in sys.modules)\n"
        "print(callable(replay.capture), replay.recording.__name__, replay.stats.__name__)\n"
        "from replay.replayer import run_replay, TapePlayer\n"
        "from replay.verify import Verdict, verify\n"
        "print(run_replay.__name__, TapePlayer.__name__, Verdict.FIXED.value, verify.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["False", "True recording stats", "run_replay TapePlayer FIXED verify"]
