"""`replay validate [--recover]` and `replay show --records`, and what opening a file reads."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import replay.snapshot.reader as reader_mod
from replay.cli import ExitCode, main
from replay.snapshot import Section, SnapshotFile, SnapshotWriter, open_snapshot, validate
from tests.integration.test_sample_corpus import snapshot_of

TAPE = [["clock", "time.time", ["t"], 1.7e9 + i, None] for i in range(5000)]


def streamed(path: Path, *, close: bool = True, tape: list[Any] = TAPE) -> SnapshotWriter:
    """A snapshot with every required section, tape in small frames; optionally left unclosed."""
    w = SnapshotWriter(path, {"entry": "jobs:nightly", "replayable": True}, frame_records=1000)
    w.append(Section.ENTRY, {"module": "jobs", "qualname": "nightly", "args": ["l"], "kwargs": ["d"]})
    w.append(Section.ENVIRONMENT, {"python": "3.11"})
    w.write_section(Section.TAPE, tape)
    w.flush()
    if close:
        w.append(Section.OUTCOME, {"kind": "return", "value": None})
        w.close({"outcome": "return", "interactions": len(tape)})
    return w


def test_validate_sample_corpus_exit_0(capsys):
    directory = str(Path(snapshot_of("jan31-monthly")).parent.parent)
    assert main(["validate", directory]) == ExitCode.OK
    out = capsys.readouterr().out
    assert out.count("valid ") == 6
    assert "format 1.1" in out and "records: entry 1" in out


def test_validate_reports_the_error_with_offset_and_exit_3(tmp_path, capsys):
    good = shutil.copy(snapshot_of("jan31-monthly"), tmp_path / "good.rsnap")
    data = bytearray(Path(good).read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "bad.rsnap"
    bad.write_bytes(bytes(data))
    assert main(["validate", str(good), str(bad)]) == ExitCode.BAD_SNAPSHOT
    out = capsys.readouterr().out
    assert "valid     " in out and "invalid   " in out and "at byte" in out


def test_validate_json(tmp_path, capsys):
    (tmp_path / "x.rsnap").write_bytes(b"hello")
    assert main(["validate", "--json", str(tmp_path / "x.rsnap"), snapshot_of("feb15-monthly")]) == 3
    data = json.loads(capsys.readouterr().out)
    first, second = data["results"]
    assert first["ok"] is False and first["error"]["type"] == "NotASnapshotError" and first["error"]["offset"] == 0
    assert second["ok"] is True and second["records"]["tape"] == 5
    assert data["exit_code"] == 3


def test_validate_missing_file_exit_3(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "nope.rsnap")]) == ExitCode.BAD_SNAPSHOT
    assert "SnapshotNotFoundError" in capsys.readouterr().out


def test_recover_a_crashed_writers_temp_file(tmp_path, capsys):
    final = tmp_path / "job.rsnap"
    w = streamed(final, close=False)
    temp = Path(w.temp_path)
    w._file.flush()  # what the OS holds when the process is killed now
    assert not final.exists() and temp.exists()
    assert main(["validate", str(temp)]) == ExitCode.BAD_SNAPSHOT
    assert "no trailer" in capsys.readouterr().out
    assert main(["validate", "--recover", str(temp)]) == ExitCode.OK
    out = capsys.readouterr().out
    recovered = tmp_path / "job.recovered.rsnap"
    assert str(recovered) in out and "missing sections: outcome" in out
    with open_snapshot(recovered) as snap:
        assert [i.result for i in snap.tape] == [r[3] for r in TAPE]
        assert snap.header["replayable"] is False and "recovered" in snap.header
        assert snap.entry["qualname"] == "nightly"
    assert validate(recovered).ok  # a recovered file may lack its outcome; it says so
    w.abort()


def test_recover_truncated_download_to_chosen_output(tmp_path, capsys):
    src = tmp_path / "full.rsnap"
    streamed(src)
    with SnapshotFile(src) as f:
        cut_frame = [fr for fr in f.frames if fr.section == Section.TAPE][3]
    cut = tmp_path / "cut.rsnap"
    cut.write_bytes(src.read_bytes()[: cut_frame.offset + 20])  # inside the 4th tape frame
    out_path = tmp_path / "fixed.rsnap"
    assert main(["validate", "--recover", "-o", str(out_path), str(cut)]) == ExitCode.OK
    with SnapshotFile(out_path) as f:
        assert list(f.iter_records(Section.TAPE)) == TAPE[:3000]  # three whole frames of 1000
    assert "file ends inside a frame" in capsys.readouterr().out


def test_recover_fails_cleanly_without_a_header(tmp_path, capsys):
    bad = tmp_path / "bad.rsnap"
    bad.write_bytes(b"\x89RSN\r\n\x1a\n\x01\x00")
    assert main(["validate", "--recover", str(bad)]) == ExitCode.BAD_SNAPSHOT
    assert "not recoverable" in capsys.readouterr().out
    assert not (tmp_path / "bad.recovered.rsnap").exists()


def test_output_option_needs_recover_and_one_file(tmp_path):
    assert main(["validate", "-o", str(tmp_path / "o.rsnap"), snapshot_of("jan31-monthly")]) == ExitCode.USAGE


def test_show_records_lists_every_record_with_offsets(tmp_path, capsys):
    path = tmp_path / "s.rsnap"
    streamed(path, tape=TAPE[:3])
    assert main(["show", "--records", str(path)]) == ExitCode.OK
    lines = capsys.readouterr().out.splitlines()
    rows = [ln.split() for ln in lines[2:]]
    assert [(r[0], r[1]) for r in rows] == [("entry", "0"), ("environment", "0"), ("tape", "0"), ("tape", "1"),
                                            ("tape", "2"), ("outcome", "0")]
    with SnapshotFile(path) as f:
        tape_frame = next(fr for fr in f.frames if fr.section == Section.TAPE)
    assert rows[2][2] == str(tape_frame.offset) and rows[2][3] == "0"
    assert int(rows[3][3]) == int(rows[2][4])  # record 1 starts where record 0 ends


def test_show_records_json_one_section(capsys):
    assert main(["show", "--records", "--json", "--section", "code", snapshot_of("jan31-monthly")]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["record"] for r in records] == list(range(5))
    assert all(r["section"] == "code" and r["value"]["path"].endswith(".py") for r in records)


def test_show_records_escapes_control_characters(tmp_path):
    path = tmp_path / "esc.rsnap"
    streamed(path, tape=[["env", "environ.get", ["t", "X"], "\x1b[31mred\x1b]0;title\x07", None]])
    out = subprocess.run([sys.executable, "-m", "replay", "show", "--records", str(path)], capture_output=True,
                         text=True, check=True).stdout
    assert "\x1b" not in out and "\x07" not in out and "red" in out


def test_show_of_a_recovered_file_without_outcome(tmp_path, capsys):
    w = streamed(tmp_path / "job.rsnap", close=False)
    w._file.flush()
    assert main(["validate", "--recover", w.temp_path]) == 0
    capsys.readouterr()
    assert main(["show", str(tmp_path / "job.recovered.rsnap")]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "recovered" in out and "missing: the recording was cut short" in out
    w.abort()


class CountingFile:
    """Wraps the reader's file to count bytes read."""

    def __init__(self, real: Any):
        self.real = real
        self.read_bytes = 0

    def read(self, n: int = -1) -> bytes:
        data = self.real.read(n)
        self.read_bytes += len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def __enter__(self) -> CountingFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.real.close()


def test_opening_reads_only_preamble_header_index_and_trailer(tmp_path, monkeypatch):
    path = tmp_path / "big.rsnap"
    tape = [["random", "os.urandom", ["t", 64], os.urandom(64), None] for _ in range(40000)]
    streamed(path, tape=tape)  # ~3 MB of incompressible frames
    opened: list[CountingFile] = []
    real_open = reader_mod.open_file

    def counting_open(p: str) -> Any:
        opened.append(CountingFile(real_open(p)))
        return opened[-1]

    monkeypatch.setattr(reader_mod, "open_file", counting_open)
    with SnapshotFile(path) as f:
        metadata = f.size_bytes - f.index_offset + f.header_end  # preamble+header, index+trailer
        assert opened[0].read_bytes == metadata
        assert metadata < 5000 < f.size_bytes // 500
        before = opened[0].read_bytes
        assert f.record(Section.TAPE, 31234) == tape[31234]
        one_frame = opened[0].read_bytes - before
        biggest = max(fr.size for fr in f.frames) + 9
        assert one_frame <= biggest  # random access read one frame, not the file
