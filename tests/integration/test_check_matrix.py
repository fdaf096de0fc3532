"""``replay check`` over a matrix: one small program per boundary channel, and programs that leak.

Each channel program prints every value it received from the outside world, so a value the
recording missed shows up as an output difference. It is recorded once in a fresh process
(``record_program``), then the outside world is changed or taken away (files rewritten and
removed, the HTTP and echo servers stopped, the database deleted), and the snapshot is
replayed twice (``check_snapshot``): every program must come out deterministic, and the real
systems must not have been touched by the replays.

The negative side: programs that reach the outside world through a path no channel records
must be reported with the channel that leaked.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from replay.verify.check import check_program, check_snapshot, record_program
from tests.channels.http_server import LoopbackServer

pytestmark = pytest.mark.integration

RUNS = 2


# --------------------------------------------------------------------------- real services


class EchoServer:
    """A real TCP server on loopback: answers each line with ``echo:<line>:<random nonce>``.

    The nonce changes on every connection, so an unrecorded receive shows in the output.
    ``connections`` counts the connections that reached the server.
    """

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        self.sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            with conn:
                conn.settimeout(5)
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(1024)
                    if not chunk:
                        break
                    data += chunk
                conn.sendall(b"echo:" + data.strip() + b":" + os.urandom(4).hex().encode() + b"\n")

    def start(self) -> EchoServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


# --------------------------------------------------------------------------- the programs

CLOCK = """
import datetime, time
print("wall", time.time(), time.time_ns(), time.monotonic(), time.monotonic_ns(), time.perf_counter())
print("calendar", tuple(time.localtime())[:6], tuple(time.gmtime())[:6], time.strftime("%Y-%m-%d %H:%M:%S"),
      time.ctime(), time.asctime())
print("cpu", time.process_time(), time.process_time_ns(), time.thread_time_ns())
t0 = time.monotonic()
time.sleep(0.05)
print("slept", time.monotonic() - t0)
print("datetime", datetime.datetime.now(), datetime.datetime.now(datetime.timezone.utc), datetime.date.today())
"""

RANDOM = """
import os, random, secrets, uuid
print("module", random.random(), random.randint(1, 10**9), random.choice("abcdefghij"), random.sample(range(100), 3))
r = random.Random()
print("instance", r.random(), r.getrandbits(64), r.uniform(0, 16))
print("system", random.SystemRandom().random(), random.SystemRandom().getrandbits(32))
print("secrets", secrets.token_hex(8), secrets.randbelow(10**6), secrets.token_urlsafe(6))
print("uuid", uuid.uuid4(), uuid.uuid1())
print("urandom", os.urandom(8).hex())
"""

ENV_HOST = """
import os, platform, socket
print("env", os.environ.get("REPLAY_MATRIX_TOKEN"), os.getenv("HOME"), "PATH" in os.environ, len(os.environ))
print("host", os.getpid(), os.getppid(), socket.gethostname(), platform.node(), os.getcwd())
"""

FILES = """
import os, pathlib, sys
d = sys.argv[1]
with open(os.path.join(d, "a.txt")) as f:
    print("open", f.read().strip())
p = pathlib.Path(d)
print("pathlib", (p / "b.txt").read_text().strip(), (p / "a.txt").read_bytes())
print("listdir", sorted(os.listdir(d)))
print("scandir", sorted((e.name, e.is_file()) for e in os.scandir(d)))
st = os.stat(os.path.join(d, "a.txt"))
print("stat", st.st_size, st.st_mtime_ns, st.st_ino)
print("exists", os.path.exists(os.path.join(d, "b.txt")), os.path.exists(os.path.join(d, "missing.txt")),
      (p / "sub").is_dir())
with open(os.path.join(d, "out.txt"), "w") as f:
    print("wrote", f.write("written by the program\\n"))
"""

SUBPROCESS = """
import subprocess, sys
cmd = [sys.executable, "-c", "import os; print(os.urandom(8).hex())"]
print("run", subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip())
print("check_output", subprocess.check_output(cmd).decode().strip())
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
out, _ = p.communicate()
print("popen", out.strip(), p.returncode, p.pid)
print("date", subprocess.check_output(["date", "+%N"], text=True).strip())
"""

HTTP = """
import json, sys, urllib.request
import httpx, requests
base = sys.argv[1]
r = requests.get(base + "/json", params={"q": "requests"})
print("requests", r.status_code, r.json())
with urllib.request.urlopen(base + "/json?q=urllib") as resp:
    print("urllib", resp.status, json.loads(resp.read()))
r = httpx.post(base + "/echo", content=b"from httpx")
print("httpx", r.status_code, r.json(), r.headers["x-seen"])
"""

DB = """
import os, sqlite3, sys
import sqlite_utils
d = sys.argv[1]
con = sqlite3.connect(os.path.join(d, "raw.db"))
con.execute("create table if not exists t (id integer primary key, v text)")
con.execute("insert into t (v) values (?)", (os.urandom(4).hex(),))
con.commit()
print("sqlite3", con.execute("select id, v from t order by id").fetchall())
con.close()
db = sqlite_utils.Database(os.path.join(d, "utils.db"))
db["items"].insert({"name": "widget", "token": os.urandom(4).hex()}, pk="id")
print("sqlite-utils", list(db["items"].rows), db["items"].count)
"""

SOCKET = """
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"ping\\n")
data = b""
while not data.endswith(b"\\n"):
    data += s.recv(1024)
s.close()
print("socket", data)
"""

THREADS = """
import asyncio, concurrent.futures, os, random, threading, time
results = {}

def work(n):
    time.sleep(0.01 * (3 - n))
    results[n] = (random.random(), time.time(), os.urandom(2).hex())

threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("threads", [results[i] for i in range(3)])
with concurrent.futures.ThreadPoolExecutor(2) as pool:
    print("pool", list(pool.map(lambda i: (i, random.random(), os.urandom(2).hex()), range(4))))

async def task(i):
    await asyncio.sleep(0.01 * (3 - i))
    return i, random.random(), time.time()

async def main():
    tasks = await asyncio.gather(*(task(i) for i in range(3)))
    in_thread = await asyncio.to_thread(lambda: (random.random(), os.urandom(2).hex()))
    return tasks, in_thread

print("asyncio", asyncio.run(main()))
"""

# Whether submit() starts a new worker depends on timing (an idle worker takes the item): in
# the recording the items sleep and the pool grows to 3 threads; replay does not sleep, so
# one worker may serve them all. Work items are strands; the pool's own threads must not be.
POOL_TIMING = """
import concurrent.futures, random, time

def item(i):
    time.sleep(0.05)
    return i, round(random.random(), 6)

with concurrent.futures.ThreadPoolExecutor(3) as pool:
    futures = []
    for i in range(4):
        futures.append(pool.submit(item, i))
        time.sleep(0.08 if i % 2 else 0.001)
    print("pool-timing", [f.result() for f in futures])
"""


# --------------------------------------------------------------------------- the matrix


@dataclass
class Case:
    """One channel program: its source, the channels its snapshot must hold, and its world."""

    name: str
    source: str
    channels: dict[str, int]  # channel -> minimum number of interactions on the tape
    expect_output: list[str] = field(default_factory=list)  # substrings of the recorded output
    env: dict[str, str] = field(default_factory=dict)


CASES = [
    Case("clock", CLOCK, {"clock": 15}, ["wall ", "calendar (", "slept 0.0"]),
    Case("random", RANDOM, {"random": 10, "uuid": 1}, ["uuid ", "urandom "]),
    Case("env_host", ENV_HOST, {"env": 4, "host": 5}, ["env matrix-secret-value "],
         env={"REPLAY_MATRIX_TOKEN": "matrix-secret-value"}),
    Case("files", FILES, {"file": 11}, ["open first version", "pathlib second version b'first version\\n'",
                                       "exists True False True", "wrote 23"]),
    Case("subprocess", SUBPROCESS, {"subprocess": 12}, ["run ", "popen "]),
    Case("http", HTTP, {"http": 3}, ["requests 200 {'path': '/json', 'query': {'q': 'requests'}",
                                     "urllib 200 {'path': '/json', 'query': {'q': 'urllib'}",
                                     "httpx 201 {'got': 'from httpx', 'method': 'POST'} 10"]),
    Case("db", DB, {"db": 20}, ["sqlite3 [(1, '", "sqlite-utils [{'id': 1, 'name': 'widget', 'token': '"]),
    Case("socket", SOCKET, {"socket": 3, "dns": 1}, ["socket b'echo:ping:"]),
    Case("threads", THREADS, {"random": 15, "clock": 10}, ["threads [(", "pool [(0, ", "asyncio ([(0, "]),
    Case("pool_timing", POOL_TIMING, {"random": 4, "clock": 8}, ["pool-timing [(0, "]),
]


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The outside world of one program: a data directory outside the project, and servers."""
    data = tmp_path_factory.mktemp("matrix-world")
    (data / "a.txt").write_text("first version\n")
    (data / "b.txt").write_text("second version\n")
    (data / "sub").mkdir()
    http = LoopbackServer().start()
    echo = EchoServer().start()
    state = {"data": data, "http": http, "echo": echo}
    yield state
    for server in (http, echo):
        with contextlib.suppress(OSError):
            server.stop()


def _argv(case: Case, prog: Path, world: dict[str, Any]) -> list[str]:
    extra = {"files": [str(world["data"])], "db": [str(world["data"])], "http": [world["http"].url],
             "socket": [str(world["echo"].port)]}.get(case.name, [])
    return ["python", str(prog), *extra]


def _take_the_world_away(case: Case, world: dict[str, Any]) -> Callable[[], None]:
    """Change or remove what the program read; returns a check that replay touched none of it."""
    data: Path = world["data"]
    if case.name == "files":
        assert (data / "out.txt").read_text() == "written by the program\n"
        (data / "out.txt").unlink()
        (data / "a.txt").write_text("CHANGED after the recording, and longer\n")
        (data / "b.txt").unlink()
        (data / "sub").rmdir()

        def untouched() -> None:
            assert not (data / "out.txt").exists()
            assert sorted(os.listdir(data)) == ["a.txt"]
        return untouched
    if case.name == "db":
        assert sorted(p.name for p in data.glob("*.db")) == ["raw.db", "utils.db"]
        for p in data.glob("*.db*"):
            p.unlink()

        def not_recreated() -> None:
            assert sorted(p.name for p in data.glob("*.db*")) == []
        return not_recreated
    if case.name == "http":
        hits = list(world["http"].hits)
        assert hits == [("GET", "/json?q=requests"), ("GET", "/json?q=urllib"), ("POST", "/echo")]
        world["http"].stop()
        return lambda: _assert_equal(world["http"].hits, hits)
    if case.name == "socket":
        assert world["echo"].connections == 1
        world["echo"].stop()
        return lambda: _assert_equal(world["echo"].connections, 1)
    return lambda: None


def _assert_equal(a: Any, b: Any) -> None:
    assert a == b


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_every_channel_program_is_deterministic(case: Case, world: dict[str, Any], tmp_path: Path) -> None:
    prog = tmp_path / f"prog_{case.name}.py"  # not http.py: that would shadow the stdlib
    prog.write_text(textwrap.dedent(case.source))
    status, snap, output = record_program(_argv(case, prog, world), str(tmp_path / "snaps"),
                                          env={"PYTHONHASHSEED": "0", **case.env})
    assert status == 0, output
    for expected in case.expect_output:
        assert expected in output, output
    untouched = _take_the_world_away(case, world)
    report = check_snapshot(snap, runs=RUNS)
    assert report.deterministic, [leak.to_dict() for leak in report.leaks]
    assert report.reproduced == RUNS and report.leaked_channels() == []
    for channel, minimum in case.channels.items():
        assert report.channels.get(channel, 0) >= minimum, report.channels
    untouched()


def test_the_recorded_values_are_the_ones_replay_prints(tmp_path: Path) -> None:
    """The comparison has teeth: two recordings of the same program print different values."""
    prog = tmp_path / "random.py"
    prog.write_text(textwrap.dedent(RANDOM))
    outputs = [record_program([str(prog)], str(tmp_path / f"s{i}"))[2] for i in range(2)]
    assert outputs[0] != outputs[1]
    assert [line.split()[0] for line in outputs[0].splitlines()] == \
        ["module", "instance", "system", "secrets", "uuid", "urandom"]


# --------------------------------------------------------------------------- leaks

RAW_SOCKET = """
import _socket, sys
s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
s.connect(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"ping\\n")
print("raw", s.recv(1024))
s.close()
"""

POSIX_SPAWN = """
import os, sys
r, w = os.pipe()
pid = os.posix_spawn(sys.executable, [sys.executable, "-c", "import os; os.write(1, os.urandom(4).hex().encode())"],
                     os.environ, file_actions=[(os.POSIX_SPAWN_DUP2, w, 1)])
os.close(w)
_, status = os.waitpid(pid, 0)
print("spawned", os.read(r, 100), status)
"""

OS_READ = """
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
data = os.read(fd, 1000)
os.close(fd)
print("read", data)
sys.exit(len(data) % 100)
"""


def test_a_c_level_socket_is_a_blocked_socket_leak(tmp_path: Path) -> None:
    echo = EchoServer().start()
    try:
        prog = tmp_path / "raw.py"
        prog.write_text(textwrap.dedent(RAW_SOCKET))
        report = check_program([str(prog), str(echo.port)], runs=RUNS, env={"PYTHONHASHSEED": "0"})
        assert echo.connections == 1  # the recording, not the replays
    finally:
        echo.stop()
    assert report.exit_status == 0
    assert not report.deterministic and report.reproduced == 0
    assert report.leaked_channels()[0] == "socket"
    blocked = [leak for leak in report.leaks if leak.kind == "blocked"]
    assert blocked[0].channel == "socket" and f"127.0.0.1', {echo.port}" in blocked[0].detail
    assert "socket" not in report.channels  # nothing on the tape: the channel did not see it


def test_a_process_started_with_posix_spawn_is_a_blocked_subprocess_leak(tmp_path: Path) -> None:
    prog = tmp_path / "spawn.py"
    prog.write_text(textwrap.dedent(POSIX_SPAWN))
    report = check_program([str(prog)], runs=RUNS, env={"PYTHONHASHSEED": "0"})
    assert report.exit_status == 0
    assert not report.deterministic and report.reproduced == 0
    assert report.leaked_channels()[0] == "subprocess"
    blocked = [leak for leak in report.leaks if leak.kind == "blocked"]
    assert blocked and blocked[0].channel == "subprocess" and "posix_spawn" in blocked[0].detail


def test_a_file_read_through_os_read_is_an_output_and_outcome_leak(tmp_path: Path) -> None:
    data = tmp_path / "world" / "input.bin"
    data.parent.mkdir()
    data.write_bytes(b"recorded content")  # 16 bytes: exit status 16
    prog = tmp_path / "osread.py"
    prog.write_text(textwrap.dedent(OS_READ))
    status, snap, output = record_program([str(prog), str(data)], str(tmp_path / "snaps"),
                                          env={"PYTHONHASHSEED": "0"})
    assert status == 16 and "read b'recorded content'" in output
    # unchanged world: the unrecorded read happens to give the same answer
    same = check_snapshot(snap, runs=1)
    assert same.deterministic, same.leaks
    data.write_bytes(b"content changed after the recording")  # 35 bytes: exit status 35
    report = check_snapshot(snap, runs=RUNS)
    assert not report.deterministic and report.reproduced == 0
    kinds = {leak.kind: leak for leak in report.leaks}
    assert set(kinds) == {"outcome", "output"}, report.leaks
    assert "16" in kinds["outcome"].detail and "35" in kinds["outcome"].detail
    assert kinds["output"].detail == ("line 1: recorded \"read b'recorded content'\", "
                                      "replay \"read b'content changed after the recording'\"")
    assert kinds["output"].channel == "?"  # a fixed hash seed: no false blame on the seed
    assert "file" not in report.channels


# --------------------------------------------------------------------------- the CLI


def test_cli_check_json_over_the_clock_program(tmp_path: Path) -> None:
    prog = tmp_path / "clock.py"
    prog.write_text(textwrap.dedent(CLOCK))
    proc = subprocess.run([sys.executable, "-m", "replay", "check", "--json", "--runs", "2", "--", "python", str(prog)],
                          capture_output=True, text=True, check=False, timeout=120,
                          env={**os.environ, "PYTHONHASHSEED": "0"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["deterministic"] is True and data["leaks"] == [] and data["leaked_channels"] == []
    assert data["runs"] == 2 and data["reproduced"] == 2 and data["exit_status"] == 0
    assert data["channels"]["clock"] >= 14 and data["interactions"] == sum(data["channels"].values())
    assert data["snapshot"].startswith("(temporary) ") and data["snapshot"].endswith(".rsnap")
