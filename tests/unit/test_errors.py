"""The exception tree in replay.errors: roots, built-in bases and structured fields."""

from __future__ import annotations

import inspect
import pathlib

import pytest

import replay.errors as errors
from replay.errors import (
    CaptureError,
    CorruptSnapshotError,
    DivergenceError,
    EncodingError,
    NotASnapshotError,
    ReplayDiverged,
    ReplayError,
    ReplaySetupError,
    SnapshotError,
    SnapshotLimitError,
    SnapshotNotFoundError,
    TruncatedSnapshotError,
    UnsupportedVersionError,
    UsageError,
)

ALL_CLASSES = sorted(
    (obj for _, obj in inspect.getmembers(errors, inspect.isclass)
     if obj.__module__ == errors.__name__ and issubclass(obj, BaseException)),
    key=lambda cls: cls.__name__,
)


def test_module_defines_the_expected_classes():
    names = {cls.__name__ for cls in ALL_CLASSES}
    assert {
        "ReplayError", "SnapshotError", "SnapshotNotFoundError", "NotASnapshotError",
        "UnsupportedVersionError", "CorruptSnapshotError", "TruncatedSnapshotError",
        "SnapshotLimitError", "CaptureError", "EncodingError", "ReplaySetupError", "UsageError",
        "DivergenceError", "ReplayDiverged",
    } <= names


@pytest.mark.parametrize("cls", [c for c in ALL_CLASSES if c is not ReplayDiverged], ids=lambda c: c.__name__)
def test_every_error_is_a_replay_error(cls):
    assert issubclass(cls, ReplayError)
    assert issubclass(cls, Exception)


def test_replay_diverged_is_a_base_exception_only():
    assert issubclass(ReplayDiverged, BaseException)
    assert not issubclass(ReplayDiverged, Exception)
    assert not issubclass(ReplayDiverged, ReplayError)
    # ``except Exception`` in application code cannot swallow it.
    with pytest.raises(ReplayDiverged) as info:
        try:
            raise ReplayDiverged("tape diverged at #3")
        except Exception:  # pragma: no cover - must not be reached
            pytest.fail("except Exception caught ReplayDiverged")
    assert info.value.divergence == "tape diverged at #3"
    assert str(info.value) == "tape diverged at #3"


@pytest.mark.parametrize(
    ("cls", "bases"),
    [
        (SnapshotNotFoundError, (SnapshotError, FileNotFoundError, OSError)),
        (NotASnapshotError, (SnapshotError, ValueError)),
        (CorruptSnapshotError, (SnapshotError, ValueError)),
        (TruncatedSnapshotError, (CorruptSnapshotError, SnapshotError, ValueError)),
        (UnsupportedVersionError, (SnapshotError,)),
        (SnapshotLimitError, (SnapshotError,)),
        (EncodingError, (CaptureError, ValueError)),
        (UsageError, (ReplayError, ValueError)),
        (ReplaySetupError, (ReplayError,)),
        (DivergenceError, (ReplayError,)),
    ],
    ids=lambda x: getattr(x, "__name__", None),
)
def test_builtin_bases(cls, bases):
    for base in bases:
        assert issubclass(cls, base), f"{cls.__name__} should derive from {base.__name__}"


def test_snapshot_not_found_is_caught_as_file_not_found():
    with pytest.raises(FileNotFoundError):
        raise SnapshotNotFoundError("/no/such.rsnap", "no such snapshot file")


@pytest.mark.parametrize("cls", [SnapshotError, NotASnapshotError, CorruptSnapshotError,
                                 TruncatedSnapshotError, SnapshotNotFoundError])
def test_snapshot_error_message_has_path_and_offset(cls):
    exc = cls("/data/run.rsnap", "bad thing", offset=1234)
    assert exc.path == "/data/run.rsnap"
    assert exc.offset == 1234
    assert exc.detail == "bad thing"
    text = str(exc)
    assert "/data/run.rsnap" in text
    assert "at byte 1234" in text
    assert "bad thing" in text


def test_snapshot_error_without_offset_says_no_byte():
    exc = SnapshotError("/data/run.rsnap", "cannot open")
    assert exc.offset is None
    assert "at byte" not in str(exc)
    assert "/data/run.rsnap" in str(exc)


def test_snapshot_error_offset_zero_is_reported():
    assert "at byte 0" in str(SnapshotError("f.rsnap", "bad magic", offset=0))


def test_snapshot_error_accepts_pathlike_and_none():
    exc = SnapshotError(pathlib.Path("dir") / "x.rsnap", "m", offset=3)
    assert exc.path == str(pathlib.Path("dir") / "x.rsnap")
    assert isinstance(exc.path, str)
    anonymous = SnapshotError(None, "m", offset=7)
    assert anonymous.path is None
    assert "<snapshot>" in str(anonymous)
    assert "at byte 7" in str(anonymous)


def test_unsupported_version_fields():
    exc = UnsupportedVersionError("v.rsnap", (2, 5), 1)
    assert exc.found == (2, 5)
    assert exc.supported == 1
    assert exc.offset == 8
    assert "v.rsnap" in str(exc)
    assert "2.5" in str(exc)
    assert "at byte 8" in str(exc)
    assert isinstance(exc, SnapshotError)


def test_snapshot_limit_error_fields():
    exc = SnapshotLimitError("l.rsnap", "frame content size", 500, 100, offset=42)
    assert (exc.limit, exc.value, exc.maximum, exc.offset) == ("frame content size", 500, 100, 42)
    text = str(exc)
    assert "l.rsnap" in text and "at byte 42" in text
    assert "frame content size" in text and "500" in text and "100" in text
    assert "at byte" not in str(SnapshotLimitError("l.rsnap", "x", 1, 0, offset=None))


def test_structured_fields_of_other_errors():
    assert ReplaySetupError("entry point gone").reason == "entry point gone"
    assert str(ReplaySetupError("entry point gone")) == "entry point gone"
    marker = object()
    assert DivergenceError(marker).divergence is marker
    assert ReplayDiverged(marker).divergence is marker


def test_errors_are_caught_by_the_root():
    for exc in (
        SnapshotError("p", "m", offset=1),
        UnsupportedVersionError("p", (9, 0), 1),
        SnapshotLimitError("p", "index size", 2, 1, offset=None),
        UsageError("bad"),
        EncodingError("bad"),
    ):
        with pytest.raises(ReplayError):
            raise exc
