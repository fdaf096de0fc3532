"""The replay sandbox: real network connections, process spawns and file writes are blocked
during replay and reported as blocked effects (audit hooks, replay/replayer/sandbox.py).

The programs below reach the outside world through paths no channel records (``os.open``,
``os.posix_spawn``, the C-level ``_socket`` type), which is exactly what the sandbox is for.
"""

from __future__ import annotations

import os
import socket
import threading

import pytest

from replay.replayer import run_replay
from replay.replayer.sandbox import Sandbox
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration


def _sandbox(tmp_path):
    seen = []
    return Sandbox([str(tmp_path)], lambda kind, detail: seen.append((kind, detail))), seen


@pytest.mark.parametrize(("event", "args", "blocked"), [
    ("open", ("/etc/passwd", "r", 0), False),
    ("open", ("/tmp/outside-sandbox.txt", "w", 0), True),
    ("open", ("/tmp/outside-sandbox.txt", "a", 0), True),
    ("open", ("/tmp/outside-sandbox.txt", "r+", 0), True),
    ("open", ("/tmp/outside-sandbox.txt", None, os.O_WRONLY | os.O_CREAT), True),
    ("open", ("/tmp/outside-sandbox.txt", None, os.O_RDONLY), False),
    ("open", (3, "w", 0), False),
    ("socket.connect", (None, ("127.0.0.1", 80)), True),
    ("socket.getaddrinfo", ("example.com", 80, 0, 0, 0), True),
    ("subprocess.Popen", ("ls", ["ls"], None, None), True),
    ("os.system", (b"ls",), True),
    ("os.remove", ("/tmp/x",), True),
    ("os.rename", ("/tmp/x", "/tmp/y"), True),
    ("sqlite3.connect", (":memory:",), False),
    ("sqlite3.connect", ("/tmp/prod.db",), True),
    ("sys._getframe", (None,), False),
])
def test_sandbox_rules(tmp_path, event, args, blocked):
    box, _ = _sandbox(tmp_path)
    assert (box.verdict(event, args) is not None) is blocked


def test_sandbox_allows_writes_inside_its_directory(tmp_path):
    box, _ = _sandbox(tmp_path)
    assert box.verdict("open", (str(tmp_path / "scratch.txt"), "w", 0)) is None
    assert box.verdict("os.remove", (str(tmp_path / "scratch.txt"),)) is None
    assert box.verdict("os.rename", (str(tmp_path / "a"), "/etc/b")) is not None
    # a symlink out of the directory does not count as inside
    (tmp_path / "link").symlink_to("/tmp")
    assert box.verdict("open", (str(tmp_path / "link" / "escape.txt"), "w", 0)) is not None


def test_inactive_sandbox_blocks_nothing(tmp_path):
    box, seen = _sandbox(tmp_path)
    box.hook("open", ("/tmp/outside.txt", "w", 0))
    assert seen == []
    box.active = True
    with pytest.raises(PermissionError, match="replay sandbox: blocked open"):
        box.hook("open", ("/tmp/outside.txt", "w", 0))
    assert seen and seen[0][0] == "file"


WRITER = """
import os, replay

@replay.capture(on="always")
def save(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)  # below the file channel
    os.write(fd, b"saved")
    os.close(fd)
    return "ok"
"""


def test_an_unrecorded_write_is_blocked_and_makes_the_baseline_not_reproducible(app, tmp_path):
    target = tmp_path / "outside" / "out.txt"
    target.parent.mkdir()
    app.write("writer.py", WRITER)
    snap = app.record(f"import writer; writer.save({str(target)!r})")
    assert target.read_bytes() == b"saved"
    target.unlink()
    result = reproduce(snap)
    assert result.verdict is Verdict.NOT_REPRODUCIBLE
    assert "tried to reach a real system" in result.reason
    assert not target.exists(), "the replay wrote outside its sandbox"
    blocked = [e for e in result.effects if e["status"] == "blocked"]
    assert blocked and str(target) in blocked[0]["asked"]
    assert any("writer.py" in line for line in blocked[0]["stack"])


def test_the_sandbox_can_be_switched_off_for_a_trusted_replay(app, tmp_path):
    target = tmp_path / "out.txt"
    app.write("writer.py", WRITER)
    snap = app.record(f"import writer; writer.save({str(target)!r})")
    target.unlink()
    run = run_replay(snap, sandbox=False)
    assert run.outcome["kind"] == "return"
    assert target.read_bytes() == b"saved"


@pytest.fixture
def listener():
    """A real TCP server on loopback counting the connections it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()


def test_a_candidate_that_connects_and_spawns_is_blocked_and_reported(app, tmp_path, listener):
    port, accepted = listener
    marker = tmp_path / "spawned"
    app.write("svc.py", """
        import replay

        @replay.capture(on="always")
        def handle(x):
            return x * 2
    """)
    snap = app.record("import svc; svc.handle(21)")
    cand = app.candidate("cand", {"svc.py": f"""
        import os, _socket, replay

        @replay.capture(on="always")
        def handle(x):
            notes = []
            try:
                s = _socket.socket()
                s.connect(("127.0.0.1", {port}))
            except PermissionError as exc:
                notes.append(str(exc))
            try:
                os.posix_spawn("/usr/bin/touch", ["touch", {str(marker)!r}], {{}})
            except PermissionError as exc:
                notes.append(str(exc))
            return x * 2
    """})
    result = verify(snap, [str(cand)])
    assert accepted == [], "the replay reached the server"
    assert not marker.exists(), "the replay spawned a process"
    blocked = [e for e in result.effects if e["status"] == "blocked"]
    assert [b["channel"] for b in blocked] == ["socket", "subprocess"]  # the channels that should have answered
    assert f"{port}" in blocked[0]["asked"] and "touch" in blocked[1]["asked"]
    assert result.verdict is Verdict.CHANGED  # same value, but effects the recording never made
