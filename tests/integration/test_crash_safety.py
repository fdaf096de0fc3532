"""A snapshot writer SIGKILLed at random moments never leaves a damaged file under its name.

Writers stream tape records 0, 1, 2, ... (append, periodic flush, random frame sizes) and
die by SIGKILL: killed by another process after a random delay, killing themselves after a
random number of records, or killing themselves inside ``close()`` (before the fsync, before
or after the rename, in the directory fsync). After every death:

* a file under the final name exists only if ``close()`` got as far as the rename, and
  then it opens, passes ``validate()`` and holds every record;
* a leftover temporary file is recoverable with ``recover()`` (or raises a SnapshotError
  when not even the header reached the disk) and the recovered file passes ``validate()``
  and holds the records 0..k-1 in order, k at least the count reported flushed before death.

Most writers are forked from one helper interpreter (a fresh interpreter costs ~150 ms);
a few are fresh ``python -c`` processes killed by this test process.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replay.errors import SnapshotError
from replay.snapshot import Section, SnapshotFile, recover, validate

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

FORKED_ROUNDS = 200
FRESH_ROUNDS = 12
CLOSE_PHASES = ("before-fsync", "before-rename", "after-rename", "in-dir-fsync")

WRITER = textwrap.dedent('''
    import os, random, signal, sys
    from replay.snapshot import Section, SnapshotWriter

    HEADER = {"kind": "crash-test", "pad": "p" * 100}
    ENTRY = {"module": "crash", "qualname": "run", "args": ["t"], "kwargs": ["d"]}
    ENVIRONMENT = {"python": sys.version.split()[0]}

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def record(i):
        return ["seq", "next", ["t", i], i, None]

    def write_run(path, seed, kill_after, close_phase, report_fd):
        """Stream tape records 0..total-1 into ``path``; report progress on ``report_fd``.

        Lines: "T <temp path>" once the writer exists, "F <n>" after a flush() that returned
        with n tape records appended, "C <n>" when close() starts, "D" when it returned.
        """
        rng = random.Random(seed)
        def report(line):
            os.write(report_fd, (line + "\\n").encode())
        w = SnapshotWriter(path, dict(HEADER, seed=seed), level=rng.choice([-3, 1, 3]),
                           frame_records=rng.choice([1, 5, 64, 4096]), frame_bytes=rng.choice([48, 700, 1 << 16]))
        report("T " + w.temp_path)
        w.append(Section.ENTRY, ENTRY)
        w.append(Section.ENVIRONMENT, ENVIRONMENT)
        total = rng.randint(0, 2500)
        flush_every = rng.randint(1, 300)
        batch = rng.random() < 0.3
        i = 0
        while i < total:
            if kill_after is not None and i >= kill_after:
                die()
            if batch:
                n = min(rng.randint(1, 50), total - i)
                w.write_section(Section.TAPE, [record(j) for j in range(i, i + n)])
            else:
                n = 1
                w.append(Section.TAPE, record(i))
            i += n
            if i % flush_every < n:
                w.flush(fsync=rng.random() < 0.05)
                report(f"F {i}")
        if kill_after is not None and kill_after >= total and close_phase is None:
            die()  # everything appended, some of it never flushed
        w.append(Section.OUTCOME, {"kind": "return", "value": total})
        if close_phase is not None:
            arm(close_phase)
        report(f"C {total}")
        w.close()
        report("D")

    def arm(phase):
        """Make close() die at ``phase`` (it calls os.fsync and os.replace at run time)."""
        real_fsync, real_replace = os.fsync, os.replace
        calls = {"fsync": 0}
        def fsync(fd):
            calls["fsync"] += 1
            if phase == "before-fsync" or (phase == "in-dir-fsync" and calls["fsync"] == 2):
                die()
            real_fsync(fd)
        def replace(src, dst):
            if phase == "before-rename":
                die()
            real_replace(src, dst)
            if phase == "after-rename":
                die()
        os.fsync, os.replace = fsync, replace
''')

HARNESS = WRITER + textwrap.dedent('''
    import json, time

    def main():
        base, rounds, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
        rng = random.Random(seed)
        for n in range(rounds):
            directory = os.path.join(base, f"forked-{n:03d}")
            os.mkdir(directory)
            style = rng.choice(["external", "external", "self", "self", "close"])
            kill_after = rng.randint(0, 2600) if style == "self" else None
            phase = rng.choice(__CLOSE_PHASES__) if style == "close" else None
            delay = rng.uniform(0, 0.012) if style == "external" else None
            r, w = os.pipe()
            sys.stdout.flush()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                code = 0
                try:
                    write_run(os.path.join(directory, "run.rsnap"), seed * 1000 + n, kill_after, phase, w)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    code = 3
                os._exit(code)
            os.close(w)
            if delay is not None:
                time.sleep(delay)
                os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            chunks = []
            while True:
                chunk = os.read(r, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
            os.close(r)
            print(json.dumps({"dir": directory, "style": style, "phase": phase, "kill_after": kill_after,
                              "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                              "exit": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                              "log": b"".join(chunks).decode()}), flush=True)

    main()
''').replace("__CLOSE_PHASES__", repr(CLOSE_PHASES))

FRESH = WRITER + textwrap.dedent('''
    path, seed = sys.argv[1], int(sys.argv[2])
    write_run(path, seed, None, None, sys.stdout.fileno())
''')

def header_on_disk(path: Path) -> bool:
    """True when the preamble and the whole header it announces are in the file."""
    data = path.read_bytes()
    return len(data) >= 24 and len(data) >= 24 + struct.unpack_from("<I", data, 16)[0]


def record(i: int) -> list[Any]:
    return ["seq", "next", ["t", i], i, None]


@contextlib.contextmanager
def scratch_dir(tmp_path: Path) -> Iterator[Path]:
    """tmpfs when available: SIGKILL safety does not need a disk, and fsync there is free."""
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):
        d = Path(tempfile.mkdtemp(prefix="rsnap-crash-", dir="/dev/shm"))
        try:
            yield d
        finally:
            shutil.rmtree(d, ignore_errors=True)
    else:
        yield tmp_path


def parse_log(log: str) -> dict[str, Any]:
    out: dict[str, Any] = {"temp": None, "flushed": 0, "closing": None, "done": False}
    for line in log.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "T":
            out["temp"] = rest
        elif kind == "F":
            out["flushed"] = int(rest)
        elif kind == "C":
            out["closing"] = int(rest)
        elif kind == "D":
            out["done"] = True
    return out


def tape_of(path: Path) -> tuple[list[Any], dict[int, int]]:
    with SnapshotFile(path) as f:
        return list(f.iter_records(Section.TAPE)), dict(f.sections)


def verify_round(directory: Path, log: str, *, phase: str | None, recovered_dir: Path) -> str:
    """Check what one dead writer left behind; returns a short outcome label."""
    info = parse_log(log)
    names = sorted(os.listdir(directory))
    finals = [n for n in names if not n.startswith(".")]
    temps = [n for n in names if n.startswith(".run.rsnap.") and n.endswith(".tmp")]
    assert sorted(finals + temps) == names, names
    assert finals in ([], ["run.rsnap"]), names
    assert len(temps) <= 1, names
    final = directory / "run.rsnap"

    if info["done"]:
        assert finals and not temps, f"close() returned but left {names}"
    if finals:
        # The rename happens inside close(): the file is complete.
        assert info["closing"] is not None, f"a final file exists although close() never started: {log!r}"
        assert not temps
        report = validate(final)
        assert report.ok, report.error
        tape, sections = tape_of(final)
        assert tape == [record(i) for i in range(info["closing"])]
        assert sections.get(Section.ENTRY) == sections.get(Section.OUTCOME) == sections.get(Section.ENVIRONMENT) == 1
        return "final"
    if info["temp"] is not None:
        assert temps == [os.path.basename(info["temp"])], (names, info["temp"])
    if not temps:
        assert info["temp"] is None, "the writer existed but left no file at all"
        return "nothing"

    temp = directory / temps[0]
    out = recovered_dir / (directory.name + ".rsnap")
    if not header_on_disk(temp):
        # Buffered: preamble and header reach the OS with the first flush or full buffer.
        with pytest.raises(SnapshotError) as caught:
            recover(temp, out)
        assert caught.value.path == str(temp)
        assert not out.exists()
        assert info["flushed"] == 0
        return "no-header"
    result = recover(temp, out)
    report = validate(out)
    assert report.ok, report.error
    tape, sections = tape_of(out)
    k = len(tape)
    assert tape == [record(i) for i in range(k)], "recovered records are not a prefix 0..k-1"
    assert result.records.get("tape", 0) == k
    assert k >= info["flushed"], f"{info['flushed']} records were flushed but only {k} recovered"
    if info["closing"] is not None:
        assert k <= info["closing"]
    if info["flushed"]:
        # entry and environment were appended first and went out with the first flush()
        assert sections.get(Section.ENTRY) == sections.get(Section.ENVIRONMENT) == 1
    if phase in ("before-fsync", "before-rename"):
        # close() had written the index and trailer: the temp file is complete
        assert result.frames and k == info["closing"]
        assert sections.get(Section.OUTCOME) == 1
    return "recovered"


def check_rounds(rounds: list[dict[str, Any]], recovered_dir: Path) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    for r in rounds:
        assert r["exit"] in (None, 0), f"writer failed (exit {r['exit']}): {r}"
        label = verify_round(Path(r["dir"]), r["log"], phase=r.get("phase"), recovered_dir=recovered_dir)
        outcomes[label] = outcomes.get(label, 0) + 1
        outcomes["killed"] = outcomes.get("killed", 0) + (r["signal"] == signal.SIGKILL)
    return outcomes


@pytest.mark.timeout(120)
def test_sigkilled_writers_leave_only_complete_or_recoverable_files(tmp_path):
    seed = int(os.environ.get("CRASH_TEST_SEED") or random.randrange(1 << 30))
    print(f"CRASH_TEST_SEED={seed}")  # shown with a failure: rerun with the same schedule
    with scratch_dir(tmp_path) as base:
        recovered = base / "recovered"
        recovered.mkdir()
        forked = base / "forked"
        forked.mkdir()
        harness = subprocess.Popen(
            [sys.executable, "-c", HARNESS, str(forked), str(FORKED_ROUNDS), str(seed)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)

        # Meanwhile: writers in fresh interpreters, killed from here once they are writing.
        rng = random.Random(seed)
        fresh_rounds = []
        for n in range(FRESH_ROUNDS):
            directory = base / f"fresh-{n:02d}"
            directory.mkdir()
            proc = subprocess.Popen([sys.executable, "-c", FRESH, str(directory / "run.rsnap"), str(n)],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
            first = proc.stdout.readline()  # "T <temp>": the writer exists
            time.sleep(rng.uniform(0, 0.008))
            proc.send_signal(signal.SIGKILL)
            rest = proc.stdout.read()  # not communicate(): it would skip what readline() buffered
            err = proc.stderr.read()
            status = proc.wait(timeout=30)
            fresh_rounds.append({"dir": str(directory), "log": (first + rest).decode(), "phase": None,
                                 "signal": -status if status < 0 else None, "exit": status if status >= 0 else None,
                                 "stderr": err.decode()})
        fresh = check_rounds(fresh_rounds, recovered)

        rounds = [json.loads(line) for line in harness.stdout]
        err = harness.stderr.read()
        assert harness.wait(timeout=60) == 0, err
        assert len(rounds) == FORKED_ROUNDS, err
        outcomes = check_rounds(rounds, recovered)

    kills = outcomes["killed"] + fresh["killed"]
    print(f"seed {seed}: forked {outcomes}, fresh {fresh}")
    assert kills >= 100, (outcomes, fresh)
    # The random schedule reaches every kind of ending.
    for label in ("final", "recovered", "no-header"):
        assert outcomes.get(label, 0) + fresh.get(label, 0) > 0, (label, outcomes, fresh)
    phases = {r["phase"] for r in rounds if r["signal"] == signal.SIGKILL and r["phase"]}
    assert phases == set(CLOSE_PHASES), phases
