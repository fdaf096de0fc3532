"""``replay check``: record a program once, replay it several times, report leaked channels."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from replay.snapshot.model import open_snapshot
from replay.verify.check import check_program, check_snapshot, record_program, strip_interpreter

pytestmark = pytest.mark.integration

CLEAN = """
import os, random, time, uuid
print("t", time.time(), time.monotonic_ns())
print("r", random.random(), random.randint(1, 6), uuid.uuid4(), os.urandom(4).hex())
print("e", os.environ.get("HOME"), len(os.environ))
print("s", sorted({"b", "a", "c"}))
"""

HASH_ORDER = """
print(list({"alpha", "beta", "gamma", "delta", "epsilon"}))
"""

RAW_SOCKET = """
import _socket, sys
s = _socket.socket()
try:
    s.connect(("127.0.0.1", int(sys.argv[1])))
    print("connected")
except OSError as exc:
    print("refused", type(exc).__name__)
"""

EXIT = """
import sys, time
print(time.time())
sys.exit(4)
"""


def write(tmp_path, name, source):
    path = tmp_path / name
    path.write_text(textwrap.dedent(source))
    return path


def test_a_program_whose_nondeterminism_is_all_recorded_is_deterministic(tmp_path):
    prog = write(tmp_path, "clean.py", CLEAN)
    report = check_program(["python", str(prog)], runs=3, env={"PYTHONHASHSEED": "random"})
    assert report.deterministic, report.leaks
    assert report.reproduced == 3
    assert report.channels["clock"] == 2 and report.channels["random"] >= 4 and report.channels["env"] >= 2


def test_set_order_under_a_random_hash_seed_is_reported(tmp_path):
    prog = write(tmp_path, "order.py", HASH_ORDER)
    # run the check until the recorded order differs from the order under the replay seed
    for _ in range(8):
        report = check_program([str(prog)], runs=1, env={"PYTHONHASHSEED": "random"})
        if not report.deterministic:
            break
    assert not report.deterministic
    assert report.leaked_channels() == ["hash seed"]
    assert report.leaks[0].kind == "output" and "line 1" in report.leaks[0].detail
    # with a fixed seed the same program is deterministic
    fixed = check_program([str(prog)], runs=2, env={"PYTHONHASHSEED": "123"})
    assert fixed.deterministic, fixed.leaks


def test_an_unrecorded_network_connection_is_a_blocked_leak(tmp_path):
    import socket

    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        prog = write(tmp_path, "raw.py", RAW_SOCKET)
        report = check_program([str(prog), str(port)], runs=2)
    finally:
        server.close()
    assert not report.deterministic
    assert "socket" in report.leaked_channels()
    blocked = [leak for leak in report.leaks if leak.kind == "blocked"]
    assert blocked and str(port) in blocked[0].detail


def test_exit_status_is_the_outcome_and_is_reproduced(tmp_path):
    prog = write(tmp_path, "ex.py", EXIT)
    report = check_program([str(prog)], runs=2)
    assert report.exit_status == 4
    assert report.deterministic, report.leaks


def test_check_an_existing_snapshot(tmp_path):
    prog = write(tmp_path, "clean.py", CLEAN)
    status, path, output = record_program([str(prog)], str(tmp_path / "snaps"))
    assert status == 0 and "t " in output
    report = check_snapshot(path, runs=2)
    assert report.deterministic and report.snapshot == path


def test_cli_check_exit_codes_and_json(tmp_path):
    clean = write(tmp_path, "clean.py", CLEAN)
    order = write(tmp_path, "order.py", HASH_ORDER)
    ok = subprocess.run([sys.executable, "-m", "replay", "check", "--runs", "2", "--", "python", str(clean)],
                        capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "DETERMINISTIC" in ok.stdout
    for _ in range(8):
        bad = subprocess.run([sys.executable, "-m", "replay", "check", "--json", "--runs", "1", "--", str(order)],
                             capture_output=True, text=True, check=False, env={**__import__("os").environ,
                                                                                "PYTHONHASHSEED": "random"})
        if bad.returncode == 1:
            break
    assert bad.returncode == 1, bad.stdout + bad.stderr
    data = json.loads(bad.stdout)
    assert data["deterministic"] is False and data["leaked_channels"] == ["hash seed"]
    usage = subprocess.run([sys.executable, "-m", "replay", "check", "--", "missing.py"],
                           capture_output=True, text=True, check=False)
    assert usage.returncode == 2 and "no such script" in usage.stderr


def test_cli_record_writes_a_snapshot_and_keeps_the_exit_status(tmp_path):
    prog = write(tmp_path, "ex.py", EXIT)
    proc = subprocess.run([sys.executable, "-m", "replay", "record", "-o", str(tmp_path / "s"), "--", "python",
                           str(prog)], capture_output=True, text=True, check=False)
    assert proc.returncode == 4
    assert "snapshot written to" in proc.stderr
    assert len(list((tmp_path / "s").glob("*.rsnap"))) == 1


def test_cli_record_passes_bytes_written_to_stdout_buffer(tmp_path):
    prog = tmp_path / "binary_out.py"
    prog.write_text("import sys\nsys.stdout.write('text ')\nsys.stdout.buffer.write(b'bytes\\n')\nsys.stdout.flush()\n")
    proc = subprocess.run([sys.executable, "-m", "replay", "record", "-o", str(tmp_path / "s"), "--", "python",
                           str(prog)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "text bytes\n"
    (snap,) = (tmp_path / "s").glob("*.rsnap")
    with open_snapshot(snap) as s:
        assert "text bytes" in str(s.outcome)


def test_strip_interpreter():
    assert strip_interpreter(["python", "a.py"]) == ["a.py"]
    assert strip_interpreter(["/usr/bin/python3.11", "-m", "x"]) == ["-m", "x"]
    assert strip_interpreter(["python_helper.py"]) == ["python_helper.py"]


@pytest.mark.parametrize("program", [
    ["-m", "calendar"],
    ["-m", "platform"],
    ["-m", "json.tool", "{dir}/in.json"],
    ["-m", "sqlite_utils", "tables", "{dir}/data.db", "--counts"],  # a click CLI over sqlite3, from PyPI
    ["-m", "sqlite_utils", "insert", "{dir}/data.db", "t", "{dir}/in.json"],  # a write: an effect on replay
])
def test_real_programs_we_did_not_write_are_deterministic(tmp_path, program):
    import sqlite3

    (tmp_path / "in.json").write_text('{"b": 1, "a": [1, 2]}')
    db = sqlite3.connect(tmp_path / "data.db")
    db.execute("CREATE TABLE runs (id INTEGER)")
    db.execute("INSERT INTO runs VALUES (1)")
    db.commit()
    db.close()
    argv = [a.replace("{dir}", str(tmp_path)) for a in program]
    report = check_program(argv, runs=2, env={"PYTHONHASHSEED": "0"})
    assert report.exit_status == 0
    assert report.deterministic, report.leaks
    assert report.interactions > 0
