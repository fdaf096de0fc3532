"""The files channel: real files read and written in a recorded process, replayed in another.

Between recording and replay the tests change, delete or create the files on disk: a replay
that touched the disk would return something else (or recreate a file) and fail.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

import replay
from replay.capture.boundary import ACTIVE
from replay.capture.channels import files
from replay.capture.recorder import Recorder
from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration

READER = """
import glob, json, os, pathlib, replay

HERE = os.path.dirname(os.path.abspath(__file__))

@replay.capture(on="always")
def read_all(d):
    p = pathlib.Path(d)
    out = {}
    with open(os.path.join(d, "a.txt"), encoding="utf-8") as f:
        out["text"] = [f.readline(), f.read(), f.name, f.mode, f.encoding]
    with open(os.path.join(d, "b.bin"), "rb") as f:
        out["bin"] = [f.read(3), f.read(), f.mode]
    out["pathlib"] = [(p / "a.txt").read_text(), (p / "b.bin").read_bytes()]
    with open(os.path.join(HERE, "data", "config.json")) as f:
        out["config"] = json.load(f)
    out["listdir"] = sorted(os.listdir(d))
    with os.scandir(d) as it:
        out["scandir"] = sorted((e.name, e.path, e.is_dir(), e.is_file(), e.is_symlink(), e.stat().st_size)
                                for e in it)
    st = os.stat(os.path.join(d, "a.txt"))
    out["stat"] = [tuple(st), st.st_mtime_ns, st.st_mtime, st.st_blocks, type(st).__name__]
    out["checks"] = [os.path.exists(os.path.join(d, "a.txt")), os.path.exists(os.path.join(d, "nope")),
                     os.path.isfile(os.path.join(d, "b.bin")), os.path.isdir(os.path.join(d, "sub")),
                     os.path.getsize(os.path.join(d, "b.bin")), os.path.getmtime(os.path.join(d, "a.txt")),
                     (p / "a.txt").is_file(), (p / "zz").exists(), (p / "b.bin").stat().st_size]
    out["glob"] = [sorted(x.name for x in p.glob("*.txt")), sorted(os.path.basename(x) for x in glob.glob(d + "/*"))]
    out["iterdir"] = sorted(x.name for x in p.iterdir())
    try:
        open(os.path.join(d, "missing.txt"))
    except FileNotFoundError as exc:
        out["missing"] = [exc.errno, exc.filename, str(exc)]
    return out
"""


def _data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    (d / "a.txt").write_text("first line\nsécond line\n", encoding="utf-8")
    (d / "b.bin").write_bytes(bytes(range(10)))
    return d


def _recorded_value(snap: Path):
    with open_snapshot(snap) as s:
        return decode(s.outcome["value"])


def test_reads_are_served_from_the_tape_whatever_the_disk_holds_now(app, tmp_path):
    d = _data_dir(tmp_path)
    app.write("reader.py", READER)
    app.write("data/config.json", '{"currency": "EUR", "limit": 100}')
    snap = app.record(f"import reader; reader.read_all({str(d)!r})")
    recorded = _recorded_value(snap)
    assert recorded["text"] == ["first line\n", "sécond line\n", str(d / "a.txt"), "r", "utf-8"]
    assert recorded["bin"] == [b"\x00\x01\x02", bytes(range(3, 10)), "rb"]
    assert recorded["config"] == {"currency": "EUR", "limit": 100}
    assert recorded["listdir"] == ["a.txt", "b.bin", "sub"]
    assert recorded["checks"][:5] == [True, False, True, True, 10]
    assert recorded["glob"] == [["a.txt"], ["a.txt", "b.bin", "sub"]]
    assert recorded["missing"][:2] == [2, str(d / "missing.txt")]
    with open_snapshot(snap) as s:
        assert s.header["replayable"], s.header["reasons"]
        tape = [(i.channel, i.op, decode(i.args)) for i in s.tape]
    assert all(channel == "file" for channel, _, _ in tape)
    requests = {(op, args[0]) for _, op, args in tape}
    # a data file inside the application root is recorded relative to it; code is not recorded
    assert ("open", "<app>/data/config.json") in requests
    assert not any(path.endswith(".py") for _, path in requests)
    assert ("open", str(d / "missing.txt")) in requests
    assert {"open", "listdir", "scandir", "stat"} <= {op for op, _ in requests}

    # change everything on disk: the replay must not see it
    (d / "a.txt").write_text("CHANGED\n")
    (d / "b.bin").unlink()
    (d / "missing.txt").write_text("now it exists")
    (d / "new.txt").write_text("new")
    (app.root / "data" / "config.json").write_text('{"currency": "USD"}')
    time.sleep(0.01)
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert result.baseline is not None
    assert decode(result.baseline.outcome["value"]) == recorded
    assert not (d / "b.bin").exists()  # replay never recreates anything
    assert (d / "a.txt").read_text() == "CHANGED\n"


def test_stat_result_is_rebuilt_faithfully(app, tmp_path):
    d = _data_dir(tmp_path)
    app.write("st.py", """
        import os, replay
        @replay.capture(on="always")
        def info(path):
            st, lst = os.stat(path), os.lstat(path)
            return [type(st) is os.stat_result, tuple(st), st.st_mtime_ns, st.st_atime_ns, st.st_ctime_ns,
                    st.st_mtime, st.st_blksize, st.st_blocks, st.st_rdev, st.st_ino, tuple(lst), lst.st_mtime_ns]
    """)
    snap = app.record(f"import st; st.info({str(d / 'a.txt')!r})")
    recorded = _recorded_value(snap)
    real = os.stat(d / "a.txt")
    assert recorded[0] is True
    assert recorded[1] == tuple(real)
    assert recorded[2:5] == [real.st_mtime_ns, real.st_atime_ns, real.st_ctime_ns]
    assert recorded[9] == real.st_ino
    os.utime(d / "a.txt", ns=(1_000_000_000, 2_000_000_000))
    (d / "a.txt").write_text("longer content than before\n")
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert decode(result.baseline.outcome["value"]) == recorded


def test_missing_file_error_is_replayed_even_once_the_file_exists(app, tmp_path):
    app.write("cfg.py", """
        import replay
        @replay.capture(on="always")
        def load(path):
            with open(path) as f:
                return f.read()
    """)
    target = tmp_path / "settings.ini"
    proc = __import__("tests.conftest", fromlist=["run_recording"]).run_recording(
        app.root, f"import cfg; cfg.load({str(target)!r})", snap_dir=app.snaps, check=False)
    assert "FileNotFoundError" in proc.stderr
    [snap] = list(app.snaps.rglob("*.rsnap"))
    with open_snapshot(snap) as s:
        assert s.outcome["type"] == "builtins:FileNotFoundError"
    target.write_text("[now]\nit=exists\n")
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert result.baseline.outcome["kind"] == "exception"
    assert result.baseline.outcome["message"] == f"[Errno 2] No such file or directory: '{target}'"


WRITER = """
import os, pathlib, replay

@replay.capture(on="always")
def save(d, workdir):
    with open(os.path.join(d, "report.txt"), "w") as f:
        f.write("total: ")
        print(42, file=f)
        f.writelines(["a\\n", "b\\n"])
    pathlib.Path(d, "blob.bin").write_bytes(b"\\x00\\xff")
    with open(os.path.join(d, "log.txt"), "a") as f:
        f.write("appended\\n")
    os.chdir(workdir)
    with open("relative.txt", "w") as f:  # relative to the working directory
        f.write("rel")
    with open(os.path.join(d, "report.txt")) as f:  # reads back what it wrote
        back = f.read()
    return back, os.path.exists(os.path.join(d, "blob.bin"))
"""


def test_writes_are_effects_performed_when_recording_and_never_on_replay(app, tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (d / "log.txt").write_text("old\n")
    app.write("writer.py", WRITER)
    snap = app.record(f"import writer; writer.save({str(d)!r}, {str(work)!r})")
    # recording really wrote
    assert (d / "report.txt").read_text() == "total: 42\na\nb\n"
    assert (d / "blob.bin").read_bytes() == b"\x00\xff"
    assert (d / "log.txt").read_text() == "old\nappended\n"
    assert (work / "relative.txt").read_text() == "rel"
    assert _recorded_value(snap) == ("total: 42\na\nb\n", True)
    with open_snapshot(snap) as s:
        writes = [decode(i.args) for i in s.tape if i.op == "write"]
    assert writes == [(str(d / "report.txt"), "w", "total: 42\na\nb\n"), (str(d / "blob.bin"), "wb", b"\x00\xff"),
                      (str(d / "log.txt"), "a", "appended\n"), ("relative.txt", "w", "rel")]

    # delete or change every target: replay must neither recreate nor rewrite them
    (d / "report.txt").unlink()
    (d / "blob.bin").write_bytes(b"changed on disk")
    (d / "log.txt").write_text("rotated\n")
    (work / "relative.txt").unlink()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert not (d / "report.txt").exists()
    assert (d / "blob.bin").read_bytes() == b"changed on disk"
    assert (d / "log.txt").read_text() == "rotated\n"
    assert not (work / "relative.txt").exists()
    assert sorted(os.listdir(work)) == []
    effects = result.baseline.effects
    assert [(e["op"], e["status"]) for e in effects] == [("write", "same")] * 4


def test_os_effects_are_not_performed_on_replay(app, tmp_path):
    d = tmp_path / "fs"
    d.mkdir()
    (d / "old.txt").write_text("x")
    (d / "gone.txt").write_text("y")
    app.write("fsops.py", """
        import os, replay
        @replay.capture(on="always")
        def shuffle(d):
            os.makedirs(os.path.join(d, "new", "deep"), exist_ok=True)
            os.rename(os.path.join(d, "old.txt"), os.path.join(d, "new", "old.txt"))
            os.remove(os.path.join(d, "gone.txt"))
            try:
                os.rmdir(os.path.join(d, "absent"))
            except FileNotFoundError as exc:
                return exc.errno, exc.filename
    """)
    snap = app.record(f"import fsops; fsops.shuffle({str(d)!r})")
    assert (d / "new" / "old.txt").exists() and not (d / "gone.txt").exists()
    # put the world back as it was: a replay that performed the operations would change it
    (d / "new" / "old.txt").rename(d / "old.txt")
    (d / "new" / "deep").rmdir()
    (d / "new").rmdir()
    (d / "gone.txt").write_text("y")
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert sorted(os.listdir(d)) == ["gone.txt", "old.txt"]
    ops = [e["op"] for e in result.baseline.effects]
    assert ops.count("mkdir") == 2 and "rename" in ops and "remove" in ops and "rmdir" in ops


def test_shutil_walk_exclusive_update_and_unclosed_files_replay_without_touching_disk(app, tmp_path):
    from replay.replayer.runner import run_replay

    d = _data_dir(tmp_path)
    (d / "counter.txt").write_text("12345\n")
    app.write("misc.py", """
        import csv, os, shutil, replay
        @replay.capture(on="always")
        def go(d):
            out = []
            shutil.copy(d + "/a.txt", d + "/copy.txt")
            out.append(sorted((r, sorted(ds), sorted(fs)) for r, ds, fs in os.walk(d)))
            try:
                open(d + "/a.txt", "x")
            except FileExistsError as exc:
                out.append((exc.errno, exc.filename))
            with open(d + "/counter.txt", "r+") as f:
                out.append(f.read(2))
                f.seek(0)
                f.write("AB")
            with open(d + "/t.csv", "w", newline="") as f:
                csv.writer(f).writerow([1, "x,y"])
            f = open(d + "/leak.txt", "w")
            f.write("closed by the garbage collector")
            del f
            out.append(open(d + "/copy.txt").read())
            return out
    """)
    snap = app.record(f"import misc; misc.go({str(d)!r})")
    assert (d / "counter.txt").read_text() == "AB345\n"
    assert (d / "leak.txt").read_text() == "closed by the garbage collector"
    for name in ("copy.txt", "t.csv", "leak.txt"):
        (d / name).unlink()
    (d / "counter.txt").write_text("12345\n")
    run = run_replay(snap)  # sandboxed: nothing here may reach the disk for real
    assert run.blocked == []
    assert run.status == "ok" and run.divergence is None, (run.divergence, run.outcome)
    assert decode(run.outcome["value"]) == _recorded_value(snap)
    assert [(e["op"], e["status"]) for e in run.effects] == [
        ("write", "same"), ("chmod", "same"), ("write", "same"), ("write", "same"), ("write", "same")]
    assert sorted(os.listdir(d)) == ["a.txt", "b.bin", "counter.txt", "sub"]
    assert (d / "counter.txt").read_text() == "12345\n"


TWO_READS = """
import replay
@replay.capture(on="always")
def both(d):
    a = open(d + "/a.txt").read()
    b = open(d + "/b.bin", "rb").read()
    return a, b
"""


def test_candidate_reading_files_in_another_order_is_matched_by_path(app, tmp_path):
    d = _data_dir(tmp_path)
    app.write("two.py", TWO_READS)
    snap = app.record(f"import two; two.both({str(d)!r})")
    (d / "a.txt").write_text("changed")
    cand = app.candidate("cand", {"two.py": """
        import replay
        @replay.capture(on="always")
        def both(d):
            b = open(d + "/b.bin", "rb").read()
            a = open(d + "/a.txt", "rb").read().decode("utf-8")  # binary now: same content
            return a, b
    """})
    result = verify(snap, [str(cand)])
    assert result.verdict is Verdict.UNCHANGED, (result.reason, result.divergence)
    assert result.unconsumed == []


def test_candidate_reading_a_file_never_recorded_diverges_naming_it(app, tmp_path):
    d = _data_dir(tmp_path)
    app.write("two.py", TWO_READS)
    snap = app.record(f"import two; two.both({str(d)!r})")
    (d / "extra.cfg").write_text("exists on disk, but was never recorded")
    cand = app.candidate("cand", {"two.py": """
        import replay
        @replay.capture(on="always")
        def both(d):
            a = open(d + "/a.txt").read()
            extra = open(d + "/extra.cfg").read()
            b = open(d + "/b.bin", "rb").read()
            return a, b
    """})
    result = verify(snap, [str(cand)])
    assert result.verdict is Verdict.DIVERGED, result.reason
    div = result.divergence
    assert div["channel"] == "file" and div["op"] == "open"
    assert str(d / "extra.cfg") in div["asked"]
    assert any("two.py" in frame for frame in div["stack"])


def test_candidate_writing_other_data_to_the_same_file_is_a_changed_effect(app, tmp_path):
    d = tmp_path / "out"
    d.mkdir()
    app.write("pay.py", """
        import json, replay
        @replay.capture(on="always")
        def pay(d, amount):
            with open(d + "/payment.json", "w") as f:
                json.dump({"amount": amount}, f)
            return "sent"
    """)
    snap = app.record(f"import pay; pay.pay({str(d)!r}, 100)")
    (d / "payment.json").unlink()
    cand = app.candidate("cand", {"pay.py": """
        import json, replay
        @replay.capture(on="always")
        def pay(d, amount):
            with open(d + "/payment.json", "w") as f:
                json.dump({"amount": amount * 100}, f)
            return "sent"
    """})
    result = verify(snap, [str(cand)])
    assert result.verdict is not Verdict.DIVERGED, (result.reason, result.divergence)
    assert not (d / "payment.json").exists()
    effects = result.candidate.effects
    changed = [e for e in effects if e["status"] == "changed"]
    assert len(changed) == 1, effects
    assert changed[0]["op"] == "write"
    assert '{"amount": 10000}' in changed[0]["asked"] and '{"amount": 100}' in changed[0]["recorded"]


# ------------------------------------------------------------------ in this process


class _Session:
    def __init__(self, roots):
        self.app_roots = [str(r) for r in roots]


def test_which_paths_are_recorded(tmp_path, monkeypatch):
    import sys

    root = tmp_path / "proj"
    s = _Session([root])
    req = files._request_path
    assert req(s, root / "data" / "prices.json") == "<app>/data/prices.json"
    assert req(s, root / "pkg" / "mod.py") is None  # application code
    assert req(s, str(root / "pkg" / "mod.cpython-311.pyc")) is None
    assert req(s, tmp_path / "elsewhere.py") == str(tmp_path / "elsewhere.py")  # code outside the roots is data
    assert req(s, os.path.join(sys.prefix, "lib", "x.txt")) is None
    assert req(s, os.path.join(sys.base_prefix, "lib", "python3.11", "os.py")) is None
    assert req(s, "/opt/x/site-packages/lib/data.json") is None
    assert req(s, files.__file__) is None
    assert req(s, "/proc/self/status") is None
    assert req(s, 3) is None
    assert req(s, "./sub/../notes.txt") == "notes.txt"
    assert req(s, "script.py") is None
    try:
        files.configure(include=[str(tmp_path / "in")], exclude=[str(tmp_path / "in" / "secret")])
        assert req(s, tmp_path / "in" / "a.csv") == str(tmp_path / "in" / "a.csv")
        assert req(s, tmp_path / "in" / "secret" / "k") is None
        assert req(s, tmp_path / "out.csv") is None
        files.configure(exclude=[str(tmp_path / "skip")])
        assert req(s, tmp_path / "skip" / "k") is None
        assert req(s, tmp_path / "keep" / "k") == str(tmp_path / "keep" / "k")
    finally:
        files.configure()


def test_no_session_no_recording_and_oversized_files_are_not_recorded(tmp_path, monkeypatch):
    replay.capture(lambda: None)  # installs the interceptors in this process
    import builtins
    import io

    def installed(fn: Any) -> Any:  # the Python interceptor, behind its C front if built
        return getattr(fn, "__wrapped__", fn)

    assert installed(builtins.open) is files._open and installed(io.open) is files._open
    assert installed(os.stat) is files._stat
    p = tmp_path / "big.txt"
    p.write_text("0123456789" * 10)
    with open(p) as f:  # no session: the real file object
        assert type(f) is io.TextIOWrapper and f.buffer.raw.__class__ is io.FileIO
    rec = Recorder(app_roots=[str(tmp_path / "app")])
    token = ACTIVE.set(rec)
    try:
        with open(p) as f:
            assert f.read(5) == "01234"
        monkeypatch.setattr(files, "MAX_CONTENT", 50)
        with open(p, "rb") as f:
            assert type(f.raw) is io.FileIO  # too big: the real file
            assert len(f.read()) == 100
    finally:
        ACTIVE.reset(token)
    assert [r[1] for r in rec.tape] == ["open"]
    assert rec.reasons and "larger than 50 bytes" in rec.reasons[0]


def test_stat_plain_round_trip(tmp_path):
    st = os.stat(tmp_path)
    back = files.stat_result(files.stat_plain(st))
    assert back == st and type(back) is os.stat_result
    for name in ("st_mtime", "st_mtime_ns", "st_atime_ns", "st_ctime_ns", "st_blocks", "st_blksize", "st_ino"):
        assert getattr(back, name) == getattr(st, name)
