"""The subprocess channel: real processes run in a recorded process, replayed in another.

The commands print fresh randomness (``os.urandom`` in a child Python) and append to a
marker file: a replay that spawned anything would return other values and grow the file.
"""

from __future__ import annotations

import pytest

from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration

APIS = """
import os, subprocess, sys, replay

RANDOM = [sys.executable, "-c", "import os, sys; print(os.urandom(8).hex()); print('to stderr', file=sys.stderr)"]

@replay.capture(on="always")
def apis():
    out = {}
    r = subprocess.run(RANDOM, capture_output=True, text=True)
    out["run"] = [r.returncode, r.stdout, r.stderr]
    out["check_output"] = subprocess.check_output(["echo", "hello   world"])
    try:
        subprocess.check_output("echo failing; exit 3", shell=True)
    except subprocess.CalledProcessError as exc:
        out["failed"] = [exc.returncode, exc.output, str(exc)]
    try:
        subprocess.run(["no-such-program-for-replay"])
    except FileNotFoundError as exc:
        out["missing"] = [exc.errno, exc.filename, str(exc)]
    p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out["communicate"] = [p.communicate(b"sent through stdin"), p.returncode, p.pid > 0]
    with subprocess.Popen([sys.executable, "-c", "import os\\nfor i in range(3): print(i, os.urandom(4).hex())"],
                          stdout=subprocess.PIPE, text=True) as p:
        out["lines"] = [line for line in p.stdout]
    out["lines_rc"] = p.returncode
    out["getoutput"] = subprocess.getoutput("echo go; echo err >&2")
    out["getstatusoutput"] = subprocess.getstatusoutput("echo bad; exit 2")
    out["call"] = [subprocess.call(["true"]), subprocess.call(["false"])]
    try:
        subprocess.check_call(["false"])
    except subprocess.CalledProcessError as exc:
        out["check_call"] = str(exc)
    out["os.popen"] = os.popen("echo via popen").read()
    out["os.system"] = os.system("exit 4")
    return out
"""


def test_every_api_is_recorded_once_and_replayed_from_the_tape(app):
    app.write("apis.py", APIS)
    snap = app.record("import apis; apis.apis()")
    with open_snapshot(snap) as s:
        assert s.header["replayable"], s.header["reasons"]
        tape = [(i.op, decode(i.args)) for i in s.tape if i.channel == "subprocess"]
        recorded = decode(s.outcome["value"])
    spawns = [args["cmd"] for op, args in tape if op == "spawn"]
    assert spawns[1:] == [["echo", "hello   world"], "echo failing; exit 3", ["no-such-program-for-replay"], ["cat"],
                          spawns[5], "echo go; echo err >&2", "echo bad; exit 2", ["true"], ["false"], ["false"],
                          "echo via popen"]
    stdin = [args for op, args in tape if op == "stdin"]
    assert len(stdin) == 1 and stdin[0][1:] == [["cat"], b"sent through stdin"]
    assert ("system", ("exit 4",)) in tape
    # what the recorded process saw
    assert recorded["run"][0] == 0 and len(recorded["run"][1]) == 17 and recorded["run"][2] == "to stderr\n"
    assert recorded["check_output"] == b"hello   world\n"
    assert recorded["failed"] == [3, b"failing\n", "Command 'echo failing; exit 3' returned non-zero exit status 3."]
    assert recorded["missing"] == [2, "no-such-program-for-replay",
                                   "[Errno 2] No such file or directory: 'no-such-program-for-replay'"]
    assert recorded["communicate"] == [(b"sent through stdin", None), 0, True]
    assert [line.split()[0] for line in recorded["lines"]] == ["0", "1", "2"] and recorded["lines_rc"] == 0
    assert recorded["getoutput"] == "go\nerr" and recorded["getstatusoutput"] == (2, "bad")
    assert recorded["call"] == [0, 1]
    assert recorded["check_call"] == "Command '['false']' returned non-zero exit status 1."
    assert recorded["os.popen"] == "via popen\n" and recorded["os.system"] == 4 << 8
    # The children printed fresh random bytes: only a replay served from the tape reproduces them.
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert result.unconsumed == []


MARKER = """
import subprocess, sys, replay

@replay.capture(on="always")
def work(marker):
    count = subprocess.run(f"echo x >> {marker}; wc -l < {marker}", shell=True, capture_output=True, text=True)
    token = subprocess.check_output([sys.executable, "-c", "import os; print(os.urandom(6).hex())"], text=True)
    return {"count": count.stdout.strip(), "token": token.strip()}
"""


def test_replay_spawns_nothing_and_serves_the_recorded_output(app, tmp_path):
    marker = tmp_path / "marker.txt"
    app.write("marker_app.py", MARKER)
    snap = app.record(f"import marker_app; marker_app.work({str(marker)!r})")
    assert marker.read_text() == "x\n"
    with open_snapshot(snap) as s:
        recorded = decode(s.outcome["value"])
    assert recorded["count"] == "1" and recorded["token"].startswith("~redacted~token~")  # a value named token
    for _ in range(2):
        result = reproduce(snap)
        assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    # a candidate that runs the same two commands in the other order is matched per command
    cand = app.candidate("reordered", {"marker_app.py": MARKER.replace(
        '    count = subprocess.run(f"echo x >> {marker}; wc -l < {marker}", shell=True, capture_output=True, text=True)\n'
        '    token = subprocess.check_output([sys.executable, "-c", "import os; print(os.urandom(6).hex())"], text=True)\n',
        '    token = subprocess.check_output([sys.executable, "-c", "import os; print(os.urandom(6).hex())"], text=True)\n'
        '    count = subprocess.run(f"echo x  >>  {marker};\\n  wc -l < {marker}", shell=True, capture_output=True,'
        ' text=True)\n')})  # white space of a shell line does not matter
    assert "token = subprocess" in (cand / "marker_app.py").read_text().split("count =")[0]
    result = verify(snap, [str(cand)])
    assert result.verdict is Verdict.UNCHANGED, (result.reason, result.divergence)
    assert result.unconsumed == []
    assert marker.read_text() == "x\n"  # no replay ran the command


def test_candidate_running_a_new_command_diverges_with_the_command_in_the_report(app, tmp_path):
    marker = tmp_path / "marker.txt"
    app.write("marker_app.py", MARKER)
    snap = app.record(f"import marker_app; marker_app.work({str(marker)!r})")
    cand = app.candidate("new_command", {"marker_app.py": MARKER.replace(
        "    return {", '    subprocess.run(["uname", "-a"], capture_output=True)\n    return {')})
    result = verify(snap, [str(cand)])
    assert result.verdict is Verdict.DIVERGED
    assert result.divergence["channel"] == "subprocess" and result.divergence["op"] == "spawn"
    assert "'uname', '-a'" in result.divergence["asked"]
    assert any("marker_app.py" in frame for frame in result.divergence["stack"])
    assert marker.read_text() == "x\n"


STREAMS = """
import os, signal, subprocess, sys, time, replay

@replay.capture(on="always")
def streams():
    out = {}
    p = subprocess.Popen(["cat"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    p.stdin.write(b"first line\\nsecond line\\n")
    p.stdin.write(os.urandom(4).hex().encode())
    p.stdin.close()
    out["cat"] = [p.stdout.readline(), p.stdout.read(), p.wait()]
    p = subprocess.Popen([sys.executable, "-c", "import os, time; print(os.urandom(3).hex(), flush=True); time.sleep(30)"],
                         stdout=subprocess.PIPE, text=True)
    out["first"] = p.stdout.readline()
    polls = 0
    while p.poll() is None and polls < 3:
        polls += 1
    p.terminate()
    out["terminated"] = [polls, p.wait(), p.returncode, p.poll(), p.stdout.read()]
    try:
        subprocess.run(["sleep", "10"], timeout=0.2)
    except subprocess.TimeoutExpired as exc:
        out["timeout"] = [exc.cmd, exc.timeout > 0]
    p = subprocess.Popen(["sh", "-c", "echo out; echo err >&2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out["wait_then_read"] = [p.wait(), p.stdout.read(), p.stderr.read()]
    env = dict(os.environ, REPLAY_TEST_MODE="fast", SERVICE_TOKEN="s3cret")
    out["env"] = subprocess.run(["sh", "-c", "echo $REPLAY_TEST_MODE"], env=env, capture_output=True,
                                cwd=os.path.join(os.path.dirname(os.path.abspath(__file__)), "sub")).stdout
    return out
"""


def test_popen_pipes_polls_signals_timeouts_env_and_cwd(app):
    app.write("streams.py", STREAMS)
    (app.root / "sub").mkdir()
    snap = app.record("import streams; streams.streams()")
    with open_snapshot(snap) as s:
        assert s.header["replayable"], s.header["reasons"]
        tape = [(i.op, decode(i.args), decode(i.result) if i.error is None else None, i.error is not None)
                for i in s.tape if i.channel == "subprocess"]
        recorded = decode(s.outcome["value"])
    assert recorded["cat"][0] == b"first line\n" and recorded["cat"][1].startswith(b"second line\n")
    assert recorded["cat"][2] == 0
    assert len(recorded["first"]) == 7
    assert recorded["terminated"][1:] == [-15, -15, -15, ""]
    assert recorded["timeout"] == [["sleep", "10"], True]
    assert recorded["wait_then_read"] == [0, b"out\n", b"err\n"]
    assert recorded["env"] == b"fast\n"
    signals = [(args[2], result) for op, args, result, _ in tape if op == "signal"]
    assert signals[0] == (15, {"returncode": None})
    assert any(op == "wait" and err for op, _, _, err in tape)  # the TimeoutExpired
    spawn_env = [args for op, args, _, _ in tape if op == "spawn"][-1]
    assert spawn_env["env"]["set"] == {"REPLAY_TEST_MODE": "fast", "SERVICE_TOKEN": "<withheld>"}
    assert spawn_env["env"]["unset"] == []
    assert spawn_env["cwd"] == "<app>/sub"
    assert "s3cret" not in repr(tape)
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    # another copy of the code (another root): the cwd still matches
    cand = app.candidate("copy", {})
    result = verify(snap, [str(cand)])
    assert result.verdict is Verdict.UNCHANGED, (result.reason, result.divergence)


def test_candidate_sending_other_stdin_diverges(app):
    app.write("feed.py", """
        import subprocess, replay
        @replay.capture(on="always")
        def feed():
            return subprocess.run(["wc", "-c"], input=b"12345", capture_output=True).stdout
    """)
    snap = app.record("import feed; feed.feed()")
    cand = app.candidate("cand", {"feed.py": """
        import subprocess, replay
        @replay.capture(on="always")
        def feed():
            return subprocess.run(["wc", "-c"], input=b"1234567", capture_output=True).stdout
    """})
    result = verify(snap, [str(cand)])
    assert result.verdict is Verdict.DIVERGED
    assert result.divergence["op"] == "stdin" and "1234567" in result.divergence["asked"]
