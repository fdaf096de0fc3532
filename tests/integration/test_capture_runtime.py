"""The production capture runtime: background writer, drops by reason, budgets, stores,
I/O failures (a real full filesystem, a read-only one), hostile values, fork, exit, kill -9.

Real parts throughout: the real writer thread and files, fsspec's real memory filesystem
(a subclass of it plays a full remote store), a real 64 KiB tmpfs in a private mount
namespace for the full disk, real ``os.fork()`` and real SIGKILLed subprocesses.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import inspect
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

import replay
from replay.capture import store, writer
from replay.snapshot import open_snapshot, validate

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _runtime():
    """No rate limits (tests below set their own), a clean store state, nothing left queued."""
    replay.capture.configure(reset=True, rate_limit=None, rate_limit_per_failure=None)
    store.reset()
    yield
    replay.capture.flush(10)
    replay.capture.configure(reset=True)
    store.reset()


def rsnaps(directory) -> list[str]:
    return sorted(glob.glob(os.path.join(str(directory), "*.rsnap")))


def delta(before: dict[str, int], name: str) -> int:
    return replay.stats().get(name, 0) - before.get(name, 0)


class Gate:
    """Holds the writer thread inside write_snapshot until opened."""

    def __init__(self, monkeypatch):
        self.open = threading.Event()
        self.entered = threading.Event()
        real = store.write_snapshot

        def gated(**kwargs):
            self.entered.set()
            self.open.wait(30)
            return real(**kwargs)

        monkeypatch.setattr(store, "write_snapshot", gated)


def failing(kinds=(ValueError,)):
    def fail(i):
        time.time()
        raise kinds[i % len(kinds)](f"failure {i}")

    return fail


def call_all(fn, n):
    for i in range(n):
        with pytest.raises(Exception):  # noqa: B017, PT011 - each kind checked by the callers
            fn(i)


# ------------------------------------------------------------------ background writer and drops


def test_the_call_returns_before_the_snapshot_is_written_and_flush_waits(tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    fn = replay.capture(failing(), directory=tmp_path)
    t = time.perf_counter()
    with pytest.raises(ValueError, match="failure 0"):
        fn(0)
    assert time.perf_counter() - t < 5
    assert gate.entered.wait(10)
    assert rsnaps(tmp_path) == [] and writer._writer.pending() == 1
    assert not replay.capture.flush(0.2)  # still held: flush says so instead of hanging
    gate.open.set()
    assert replay.capture.flush(10)
    (path,) = rsnaps(tmp_path)
    assert validate(path).ok


def test_a_full_queue_drops_the_newest_and_the_counters_add_up(tmp_path, monkeypatch):
    gate = Gate(monkeypatch)
    fn = replay.capture(failing([ValueError]), on="always", directory=tmp_path, queue_size=3)
    before = replay.stats()
    call_all(fn, 10)
    gate.open.set()
    replay.capture.flush(30)
    written, dropped = len(rsnaps(tmp_path)), delta(before, "dropped_queue_full")
    assert written + dropped == 10
    assert 3 <= written <= 4 and dropped >= 6  # 3 queued (+1 the thread may have taken first)
    assert delta(before, "snapshots_written") == written


def test_the_queue_is_bounded_in_bytes_too(tmp_path):
    fn = replay.capture(failing(), directory=tmp_path, queue_bytes=16)
    before = replay.stats()
    call_all(fn, 1)
    replay.capture.flush()
    assert rsnaps(tmp_path) == [] and delta(before, "dropped_queue_full") == 1


def test_global_and_per_failure_rate_limits_count_their_drops(tmp_path):
    kinds = (ValueError, KeyError, TypeError, LookupError, ArithmeticError)
    fn = replay.capture(failing(kinds), directory=tmp_path, rate_limit="3/1h", rate_limit_per_failure="1/1h")
    before = replay.stats()
    call_all(fn, 10)  # each kind twice: five fingerprints
    replay.capture.flush()
    assert len(rsnaps(tmp_path)) == 3
    assert delta(before, "dropped_rate_limited") == 4  # 2 new kinds, then their repeats
    assert delta(before, "dropped_fingerprint_limited") == 3  # the repeats of the 3 written
    types = sorted(open_snapshot(p).outcome["type"] for p in rsnaps(tmp_path))
    assert types == ["builtins:KeyError", "builtins:TypeError", "builtins:ValueError"]


def test_sync_mode_writes_before_the_call_returns(tmp_path):
    fn = replay.capture(failing(), directory=tmp_path, background=False)
    call_all(fn, 1)
    (path,) = rsnaps(tmp_path)  # no flush
    assert validate(path).ok


# ------------------------------------------------------------------------------------ budgets


def test_a_tape_over_the_size_budget_is_dropped(tmp_path):
    @replay.capture(directory=tmp_path, max_snapshot_bytes=4000)
    def big(n):
        os.urandom(n)
        raise ValueError(n)

    before = replay.stats()
    for n in (100, 10_000):
        with pytest.raises(ValueError):
            big(n)
    replay.capture.flush()
    (path,) = rsnaps(tmp_path)
    assert open_snapshot(path).outcome["message"] == "100"
    assert delta(before, "dropped_over_budget") == 1


def test_capture_work_over_the_time_budget_is_dropped(tmp_path):
    fn = replay.capture(failing(), directory=tmp_path, time_budget_ms=0.001)
    before = replay.stats()
    call_all(fn, 1)
    replay.capture.flush()
    assert rsnaps(tmp_path) == [] and delta(before, "dropped_over_budget") == 1


def test_a_tape_over_its_interaction_budget_is_cut_and_says_so(tmp_path):
    @replay.capture(directory=tmp_path, max_interactions=3)
    def chatty():
        for _ in range(10):
            time.time()
        raise ValueError("after 10 clock reads")

    before = replay.stats()
    with pytest.raises(ValueError):
        chatty()
    replay.capture.flush()
    (path,) = rsnaps(tmp_path)
    snap = open_snapshot(path)
    assert snap.header["replayable"] is False
    assert any("tape limit of 3" in r for r in snap.header["reasons"])
    assert delta(before, "tapes_cut") == 1


# ------------------------------------------------------------------------------------- stores


def test_memory_store_receives_the_snapshot_and_the_spool_is_emptied(tmp_path):
    url = f"memory://replay-test-{os.getpid()}/snaps"
    spool = tmp_path / "spool"
    fn = replay.capture(failing(), directory=url, spool=str(spool))
    before = replay.stats()
    call_all(fn, 1)
    assert replay.capture.flush(10)
    fs = fsspec.filesystem("memory")
    (remote,) = fs.glob(f"/replay-test-{os.getpid()}/snaps/*.rsnap")
    local = tmp_path / "downloaded.rsnap"
    local.write_bytes(fs.cat_file(remote))
    assert validate(local).ok
    assert open_snapshot(local).outcome["message"] == "failure 0"
    assert rsnaps(spool) == [] and oct(spool.stat().st_mode & 0o777) == "0o700"
    assert delta(before, "snapshots_uploaded") == 1


class FullMemoryFileSystem(MemoryFileSystem):
    """fsspec's memory filesystem whose uploads fail with ENOSPC while ``full`` is set."""

    protocol = "fullmem"
    full = True

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.replace("fullmem://", "memory://", 1))

    def put_file(self, lpath, rpath, **kwargs):
        if type(self).full:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().put_file(lpath, rpath, **kwargs)


def test_a_full_remote_store_keeps_the_snapshot_in_the_spool_and_retries(tmp_path):
    fsspec.register_implementation("fullmem", FullMemoryFileSystem, clobber=True)
    FullMemoryFileSystem.full = True
    spool = tmp_path / "spool"
    fn = replay.capture(failing([ValueError, KeyError]), directory=f"fullmem://full-{os.getpid()}",
                        spool=str(spool))
    before = replay.stats()
    call_all(fn, 1)
    replay.capture.flush()
    assert len(rsnaps(spool)) == 1 and delta(before, "upload_errors") >= 1  # flush() retries too
    FullMemoryFileSystem.full = False  # space again: the next snapshot uploads both
    call_all(fn, 1)
    replay.capture.flush()
    assert rsnaps(spool) == [] and delta(before, "snapshots_uploaded") == 2
    assert len(fsspec.filesystem("fullmem").glob(f"/full-{os.getpid()}/*.rsnap")) == 2


def test_the_spool_cap_drops_new_snapshots_and_keeps_old_ones(tmp_path):
    fn = replay.capture(failing(), directory=tmp_path, spool_max_files=2)
    before = replay.stats()
    for i in range(4):
        call_all(lambda _i, i=i: fn(i), 1)
        replay.capture.flush()  # one at a time: the cap is checked when each is written
    names = rsnaps(tmp_path)
    assert len(names) == 2 and delta(before, "dropped_spool_full") == 2
    assert sorted(open_snapshot(p).outcome["message"] for p in names) == ["failure 0", "failure 1"]


def test_stale_temporary_files_of_killed_writers_are_removed(tmp_path):
    stale = tmp_path / ".f-1.rsnap.999.1.tmp"
    fresh = tmp_path / ".f-2.rsnap.999.2.tmp"
    stale.write_bytes(b"partial")
    fresh.write_bytes(b"being written by another process")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    call_all(replay.capture(failing(), directory=tmp_path), 1)
    replay.capture.flush()
    assert not stale.exists() and fresh.exists() and len(rsnaps(tmp_path)) == 1


# ------------------------------------------------------------------------ real I/O failures

SCRIPT_HEAD = """
import json, os, sys
import replay

@replay.capture(directory=sys.argv[1])
def handler(i, blob):
    raise (ValueError, KeyError, TypeError)[i % 3](f"request {i}")

out = []
for i in range(3):
    try:
        handler(i, os.urandom(int(sys.argv[2])))
    except Exception as exc:
        out.append([type(exc).__name__, str(exc)])
replay.capture.flush(10)
left = sorted(os.listdir(sys.argv[1])) if os.path.isdir(sys.argv[1]) else None
print(json.dumps({"app": out, "stats": replay.capture.stats(), "left": left}))
"""
EXPECTED_APP = [["ValueError", "request 0"], ["KeyError", "'request 1'"], ["TypeError", "request 2"]]
ENV = {**{k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")},
       "REPLAY_RATE_LIMIT": "off", "REPLAY_RATE_LIMIT_PER_FAILURE": "off"}


def run_in_private_mount(mount_opts: str, target: Path, size: int) -> dict:
    """Run SCRIPT_HEAD writing into a fresh tmpfs at ``target`` (a private mount namespace:
    nothing is mounted for anyone else). Skips when this machine does not allow it."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) for a private tmpfs")
    target.mkdir()
    shell = f"mount -t tmpfs -o {mount_opts} tmpfs {target} && exec {sys.executable} -c \"$0\" {target} {size}"
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", shell, SCRIPT_HEAD],
                          capture_output=True, text=True, env=ENV, timeout=120)
    if proc.returncode != 0 and ("mount" in proc.stderr or "unshare" in proc.stderr):
        pytest.skip(f"cannot mount a private tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_a_full_filesystem_never_reaches_the_application(tmp_path):
    # 64 KiB of tmpfs; every snapshot carries 200 KB of incompressible argument bytes
    result = run_in_private_mount("size=64k", tmp_path / "full", 200_000)
    assert result["app"] == EXPECTED_APP
    assert result["stats"]["dropped_write_error"] == 1  # then writes pause: no retry storm
    assert result["stats"]["dropped_io_backoff"] == 2
    assert result["stats"].get("snapshots_written", 0) == 0 and result["stats"]["capture_errors"] == 0
    assert result["left"] == []  # no partial file, not even a temporary one


def test_a_read_only_directory_never_reaches_the_application(tmp_path):
    if os.geteuid() != 0:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o555)
        proc = subprocess.run([sys.executable, "-c", SCRIPT_HEAD, str(target), "10"], capture_output=True,
                              text=True, env=ENV, timeout=120, check=True)
        result = json.loads(proc.stdout)
    else:  # root writes through chmod: a read-only mount is the real thing
        result = run_in_private_mount("ro,size=64k", tmp_path / "ro", 10)
    assert result["app"] == EXPECTED_APP
    assert result["stats"]["dropped_write_error"] == 1 and result["stats"]["dropped_io_backoff"] == 2
    assert result["left"] == []


# ---------------------------------------------------------------------- host transparency


class Hostile:
    """Every dunder an inspector might call raises; a property has a side effect."""

    def __init__(self, effects):
        object.__setattr__(self, "effects", effects)

    def __repr__(self):
        raise RuntimeError("repr")

    def __eq__(self, other):
        raise RuntimeError("eq")

    __hash__ = object.__hash__

    def __getattr__(self, name):
        raise RuntimeError(f"getattr {name}")

    def __len__(self):
        raise RuntimeError("len")

    def __iter__(self):
        raise RuntimeError("iter")

    def __reduce_ex__(self, protocol):
        raise RuntimeError("reduce")

    @property
    def charge(self):
        self.effects.append("charged")
        return 1


def scenario_hostile(effects):
    h = Hostile(effects)
    effects.append("ran")
    raise ValueError("with a hostile local", h)


def scenario_hostile_return(effects):
    effects.append("ran")
    return [Hostile(effects)]


def scenario_self_referential(effects):
    a: list = [1]
    a.append(a)
    d: dict = {"self": None}
    d["self"] = d
    effects.append(len(a))
    raise KeyError(d)


def scenario_huge(effects):
    big = list(range(1_000_000))
    effects.append(sum(big))
    raise ValueError(len(big))


def scenario_deep_value(effects):
    deep: list = []
    for _ in range(20_000):
        deep = [deep]
    effects.append("deep")
    return deep is not None


def scenario_recursion(effects):
    def down(n):
        return down(n + 1)

    try:
        down(0)
    except RecursionError:
        effects.append("recursed")
        raise


def scenario_concurrent_mutation(effects, shared):
    total = sum(i * i for i in range(50_000))
    effects.append(total)
    if total % 2 == 0:
        raise RuntimeError("even", shared)
    return total


def outcome_of(fn, *args):
    effects: list = []
    try:
        value = fn(effects, *args)
        result = ("return", type(value).__name__, value if isinstance(value, (int, bool, str)) else None)
    except BaseException as exc:  # noqa: BLE001
        result = ("raise", type(exc).__name__, len(exc.args))
    return result, effects


@pytest.mark.parametrize("scenario", [scenario_hostile, scenario_hostile_return, scenario_self_referential,
                                      scenario_huge, scenario_deep_value, scenario_recursion])
def test_hostile_huge_cyclic_deep_values_behave_the_same_with_capture_on_and_off(tmp_path, scenario):
    plain = outcome_of(scenario)
    before = replay.stats()
    captured = outcome_of(replay.capture(scenario, on="always", directory=tmp_path))
    replay.capture.flush(30)
    assert captured == plain
    assert "charged" not in captured[1]  # no property was evaluated by capture
    for path in rsnaps(tmp_path):  # whatever was written is a valid file
        assert validate(path).ok
    accounted = sum(delta(before, k) for k in ("snapshots_written", "capture_errors", "dropped_over_budget"))
    assert accounted >= 1  # written, or dropped and counted: never silent, never raised


def test_arguments_mutated_by_another_thread_during_the_call(tmp_path):
    shared = {i: i for i in range(1000)}
    stop = threading.Event()

    def mutate():
        n = 1000
        while not stop.is_set():
            shared[n] = n
            shared.pop(n - 1000, None)
            n += 1

    thread = threading.Thread(target=mutate)
    thread.start()
    try:
        plain = [outcome_of(scenario_concurrent_mutation, shared) for _ in range(20)]
        fn = replay.capture(scenario_concurrent_mutation, on="always", directory=tmp_path)
        captured = [outcome_of(fn, shared) for _ in range(20)]
    finally:
        stop.set()
        thread.join()
    replay.capture.flush(30)
    assert captured == plain
    assert all(validate(p).ok for p in rsnaps(tmp_path))


# ----------------------------------------------------------------------------- fork and exit


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_gets_a_fresh_writer_fresh_locks_and_full_buckets(tmp_path):
    from replay.capture import recorder

    replay.capture.configure(rate_limit="1/1h")
    fn = replay.capture(failing([ValueError, KeyError]), directory=tmp_path / "parent")
    call_all(fn, 2)  # the parent's global bucket is now empty
    replay.capture.flush()
    assert len(rsnaps(tmp_path / "parent")) == 1
    child_fn = replay.capture(failing([TypeError]), directory=tmp_path / "child")
    # held at fork time: without the at-fork reset the child would deadlock on both
    with recorder._stats_lock, writer._writer._cond:
        pid = os.fork()
        if pid == 0:  # the child: report through its exit status only
            code = 1
            try:
                call_all(child_fn, 1)
                ok = replay.capture.flush(10)
                s = replay.stats()
                code = 0 if ok and s.get("snapshots_written") == 1 and s.get("dropped_rate_limited", 0) == 0 else 2
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    (path,) = rsnaps(tmp_path / "child")
    assert validate(path).ok and open_snapshot(path).outcome["type"] == "builtins:TypeError"
    assert replay.stats()["dropped_rate_limited"] >= 1  # the parent's counters are its own


SLOW_EXIT = """
import logging, sys, time
logging.basicConfig(level=logging.INFO, format="%(message)s")
from fsspec.implementations.memory import MemoryFileSystem
import fsspec, replay

class Slow(MemoryFileSystem):
    protocol = "slowmem"
    def put_file(self, *a, **k):
        time.sleep(60)

fsspec.register_implementation("slowmem", Slow, clobber=True)
replay.capture.configure(store="slowmem://x", spool=sys.argv[1], exit_timeout_s=0.5)

@replay.capture
def fail():
    raise ValueError("at exit")

try:
    fail()
except ValueError:
    print("app done", flush=True)
"""


def test_interpreter_exit_waits_briefly_and_never_hangs(tmp_path):
    t = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", SLOW_EXIT, str(tmp_path)], capture_output=True, text=True,
                          env=ENV, timeout=60)
    elapsed = time.monotonic() - t
    assert proc.returncode == 0 and proc.stdout == "app done\n"
    assert elapsed < 15, elapsed  # the upload sleeps 60 s; exit waited 0.5 s
    assert "capture counters" in proc.stderr and "dropped_at_exit=1" in proc.stderr
    assert all(validate(p).ok for p in rsnaps(tmp_path))  # at most the spooled file, never a partial one


# ----------------------------------------------------------------------------------- kill -9


def handler_loop(i):
    data = os.urandom(1 + (i * 7919) % 300_000)
    if i % 2:
        raise ValueError(i, len(data))
    return len(data)


def capture_forever(fn):
    i = 0
    while True:
        with contextlib.suppress(ValueError):
            fn(i)
        i += 1


LOOP = f"""
import contextlib, os, sys
import replay
{textwrap.dedent(inspect.getsource(handler_loop))}
{textwrap.dedent(inspect.getsource(capture_forever))}
handler = replay.capture(handler_loop, on="always", directory=sys.argv[1])
handler(0)
replay.capture.flush(60)
print("ready", flush=True)
capture_forever(handler)
"""


def test_kill_9_while_writing_never_leaves_a_partial_final_file(tmp_path):
    """SIGKILL at random moments, while the writer thread streams snapshots: 20 forked
    children of this (warmed-up) process, and 3 fresh interpreters."""
    rng = random.Random(7)
    target = tmp_path / "snaps"
    fn = replay.capture(handler_loop, on="always", directory=target)
    fn(0)
    replay.capture.flush(60)  # library versions and file hashes are now cached: children write at once
    for _ in range(20):
        pid = os.fork()
        if pid == 0:
            try:
                capture_forever(fn)
            finally:
                os._exit(1)
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", LOOP, str(target)], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        time.sleep(rng.uniform(0.05, 0.6))
        proc.kill()
        proc.wait(timeout=30)
    finals = rsnaps(target)
    temps = glob.glob(os.path.join(str(target), ".*.tmp"))
    assert len(finals) > 23, len(finals)
    cli = subprocess.run([sys.executable, "-m", "replay", "validate", str(target)], capture_output=True,
                         text=True, timeout=600)
    assert cli.returncode == 0, cli.stdout[-2000:] + cli.stderr[-2000:]
    print(f"{len(finals)} final files valid; {len(temps)} temporary files left by killed writers")


def test_a_local_store_never_imports_fsspec(tmp_path):
    script = SCRIPT_HEAD + "\nprint(sorted(m for m in sys.modules if m.split('.')[0] in ('fsspec', 'click', 'rich')))"
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), "10"], capture_output=True, text=True,
                          env=ENV, timeout=120, check=True)
    assert proc.stdout.splitlines()[-1] == "[]"
    assert len(rsnaps(tmp_path)) == 3
