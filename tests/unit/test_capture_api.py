"""The capture API: exceptions propagate unchanged, capture fails open, modes and directories."""

from __future__ import annotations

import asyncio
import glob
import os
import random
import time

import pytest

import replay
from replay.capture import recorder
from replay.errors import UsageError
from replay.snapshot import open_snapshot


class CheckoutError(Exception):
    pass


@pytest.fixture(autouse=True)
def _no_rate_limits():
    """These tests are about what a snapshot holds; the production rate limits (which would
    drop most of them) are tested in test_capture_policy.py."""
    replay.capture.configure(reset=True, rate_limit=None, rate_limit_per_failure=None)
    yield
    replay.capture.configure(reset=True)


def snapshots_in(path) -> list[str]:
    replay.capture.flush()  # snapshots are written by a background thread
    return sorted(glob.glob(os.path.join(str(path), "*.rsnap")))


def test_exception_propagates_unchanged_and_a_snapshot_is_written(tmp_path):
    err = CheckoutError("card declined")

    @replay.capture(directory=tmp_path)
    def charge(amount):
        time.time()
        raise err

    with pytest.raises(CheckoutError) as info:
        charge(100)
    assert info.value is err
    # The traceback still ends in the application's frame, and capture adds only its wrapper.
    assert info.traceback[-1].name == "charge"
    ours = [e.name for e in info.traceback if f"{os.sep}replay{os.sep}capture{os.sep}" in str(e.path)]
    assert ours == ["wrapper"]
    (path,) = snapshots_in(tmp_path)
    with open_snapshot(path) as snap:
        assert snap.header["outcome"] == "exception"
        assert snap.outcome["type"].endswith(":CheckoutError")
        assert snap.outcome["message"] == "card declined"
        assert snap.entry["qualname"].endswith("charge")
        assert [i.op for i in snap.tape] == ["time.time"]


def test_no_snapshot_on_success_by_default_and_one_with_always(tmp_path):
    @replay.capture(directory=tmp_path / "e")
    def ok_error_mode():
        return 1

    @replay.capture(on="always", directory=tmp_path / "a")
    def ok_always_mode():
        return {"total": 2}

    assert ok_error_mode() == 1
    assert ok_always_mode() == {"total": 2}
    assert not (tmp_path / "e").exists()
    (path,) = snapshots_in(tmp_path / "a")
    with open_snapshot(path) as snap:
        assert snap.outcome["kind"] == "return"


def test_replay_dir_environment_variable_and_default_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLAY_DIR", str(tmp_path / "from-env"))

    @replay.capture
    def boom():
        raise ValueError("x")

    with pytest.raises(ValueError):
        boom()
    assert len(snapshots_in(tmp_path / "from-env")) == 1
    monkeypatch.delenv("REPLAY_DIR")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError):
        boom()
    assert len(snapshots_in(tmp_path / "snapshots")) == 1


def test_replay_capture_environment_variable_sets_the_default_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("REPLAY_CAPTURE", "always")

    @replay.capture(directory=tmp_path)
    def fine():
        return 3

    fine()
    assert len(snapshots_in(tmp_path)) == 1
    monkeypatch.setenv("REPLAY_CAPTURE", "sometimes")
    with pytest.raises(UsageError):
        replay.capture(fine)


def test_bad_mode_is_a_usage_error():
    with pytest.raises(UsageError):
        replay.capture(on="never")
    with pytest.raises(UsageError):
        replay.recording(on="never")


def test_a_failure_inside_capture_never_reaches_the_application(tmp_path, monkeypatch):
    def broken_writer(**kwargs):
        raise OSError("disk full")

    from replay.capture import store

    monkeypatch.setattr(store, "write_snapshot", broken_writer)
    monkeypatch.setattr(store, "_state", store._State())  # the pause after a write error ends with the test
    before = replay.stats()

    @replay.capture(directory=tmp_path)
    def boom():
        raise KeyError("order-7")

    with pytest.raises(KeyError, match="order-7"):
        boom()

    @replay.capture(on="always", directory=tmp_path)
    def fine():
        return "ok"

    assert fine() == "ok"
    replay.capture.flush()
    after = replay.stats()
    # the first write fails; writing pauses, so the second snapshot is dropped unwritten
    assert after.get("dropped_write_error", 0) == before.get("dropped_write_error", 0) + 1
    assert after.get("dropped_io_backoff", 0) == before.get("dropped_io_backoff", 0) + 1
    assert after["capture_errors"] == before["capture_errors"]


def test_unencodable_argument_marks_the_snapshot_not_replayable(tmp_path):
    @replay.capture(directory=tmp_path)
    def use_lock(lock):
        raise RuntimeError("no")

    import threading

    with pytest.raises(RuntimeError):
        use_lock(threading.Lock())
    (path,) = snapshots_in(tmp_path)
    with open_snapshot(path) as snap:
        assert snap.header["replayable"] is False
        assert any("lock" in r.lower() for r in snap.header["reasons"])


def test_arguments_are_recorded_as_they_were_when_the_call_started(tmp_path):
    @replay.capture(directory=tmp_path)
    def mutate(items):
        items.append("added during the call")
        raise ValueError("after mutation")

    with pytest.raises(ValueError):
        mutate(["original"])
    (path,) = snapshots_in(tmp_path)
    with open_snapshot(path) as snap:
        assert snap.entry["args"] == ["l", ["l", "original"]]


def test_failing_frames_locals_are_recorded_for_display(tmp_path):
    @replay.capture(directory=tmp_path)
    def total(prices):
        subtotal = sum(prices)
        discount = random.random() * 0 + 0.5
        return subtotal / (discount - 0.5)

    with pytest.raises(ZeroDivisionError):
        total([1, 2])
    (path,) = snapshots_in(tmp_path)
    with open_snapshot(path) as snap:
        frame = snap.outcome["traceback"][-1]
        names = frame["locals"][1::2]
        assert frame["function"].endswith("total")
        assert {"prices", "subtotal", "discount"} <= set(names)
        assert snap.outcome["place"][1].endswith("total")


def test_nested_captured_calls_belong_to_the_outer_recording(tmp_path):
    @replay.capture(directory=tmp_path)
    def inner():
        time.time()
        raise ValueError("inner")

    @replay.capture(directory=tmp_path)
    def outer():
        time.monotonic()
        inner()

    with pytest.raises(ValueError):
        outer()
    (path,) = snapshots_in(tmp_path)
    with open_snapshot(path) as snap:
        assert snap.entry["qualname"].endswith("outer")
        assert [i.op for i in snap.tape] == ["time.monotonic", "time.time"]


def test_async_entry_point_is_recorded(tmp_path):
    @replay.capture(directory=tmp_path)
    async def fetch():
        await asyncio.sleep(0)
        time.time()
        raise TimeoutError("upstream")

    with pytest.raises(TimeoutError):
        asyncio.run(fetch())
    (path,) = snapshots_in(tmp_path)
    with open_snapshot(path) as snap:
        assert snap.entry["kind"] == "async"
        assert [i.op for i in snap.tape] == ["time.time"]


def test_recording_block_names_the_enclosing_function(tmp_path):
    def handler(order_id, *, retries=2):
        with replay.recording(directory=tmp_path):
            time.time()
            raise LookupError(order_id)

    with pytest.raises(LookupError):
        handler("o-1")
    (path,) = snapshots_in(tmp_path)
    with open_snapshot(path) as snap:
        assert snap.entry["kind"] == "block"
        assert snap.entry["args"] == ["l", "o-1"]
        assert snap.entry["kwargs"] == ["d", "retries", 2]
        # A nested function cannot be imported by replay: said, not hidden.
        assert snap.header["replayable"] is False
        assert any("nested function" in r for r in snap.header["reasons"])


def test_calls_outside_a_recording_are_not_recorded_and_values_are_real():
    replay.capture(lambda: None)  # installs the interceptors
    a = time.time()
    b = time.time()
    assert b >= a
    assert abs(a - time.time_ns() / 1e9) < 5


@pytest.mark.parametrize("value", [("HOME",), ("a", None, 1.5, True), "text", None, KeyError("MISSING"),
                                   (1, 2**70), KeyError(3), ValueError("x")])
def test_recorder_fast_paths_encode_exactly_like_the_codec(value):
    import msgpack

    from replay.snapshot.codec import encode

    def norm(node):
        return msgpack.unpackb(msgpack.packb(node, use_bin_type=True), raw=False)

    assert norm(recorder.Recorder()._encode(value)) == norm(encode(value))
