"""The WSGI middleware's per-request path, in process: what the server gets back, when the
session is active, and that the policy decides before anything is encoded.

Apps are real (httpbin from the package index, and small WSGI callables); snapshots are
written to a temporary directory on the calling thread (``background=False``) and read
back with the snapshot reader.
"""

from __future__ import annotations

import glob
import io
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpbin
import pytest

from replay.capture import stats
from replay.capture.boundary import ACTIVE
from replay.capture.middleware import ReplayWSGIMiddleware
from replay.capture.webdata import AppEntry
from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode


def _environ(path: str = "/", method: str = "GET") -> dict[str, Any]:
    return {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "x",
            "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": "x", "wsgi.input": io.BytesIO(b""),
            "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http", "wsgi.version": (1, 0)}


def _serve(app: Any, environ: dict[str, Any]) -> tuple[list[str], bytes]:
    """Drive one request the way a server does: call, iterate, close."""
    statuses: list[str] = []
    result = app(environ, lambda status, headers, exc_info=None: statuses.append(status))
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    return statuses, body


def _snapshots(directory: Any) -> list[str]:
    return sorted(glob.glob(str(directory / "**" / "*.rsnap"), recursive=True))


def test_rate_limited_failures_cost_no_encoding(tmp_path, monkeypatch):
    # A storm of one failure: the per-failure limit lets the first snapshot through; the
    # others must be refused before their request is encoded (the costly part of a write).
    encoded: list[str] = []
    real_record = AppEntry.record

    def record(self: AppEntry, request: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
        encoded.append(request["environ"]["PATH_INFO"])
        return real_record(self, request, reasons)

    monkeypatch.setattr(AppEntry, "record", record)
    mw = ReplayWSGIMiddleware(httpbin.app, directory=tmp_path, rate_limit="off",
                              rate_limit_per_failure="1/3600s", background=False)
    before = stats().get("dropped_fingerprint_limited", 0)
    for _ in range(5):
        assert _serve(mw, _environ("/status/500"))[0] == ["500 INTERNAL SERVER ERROR"]
    assert _serve(mw, _environ("/status/503"))[0] == ["503 SERVICE UNAVAILABLE"]  # another failure
    assert _serve(mw, _environ("/get"))[0] == ["200 OK"]  # a success: nothing encoded either
    assert encoded == ["/status/500", "/status/503"]
    assert stats().get("dropped_fingerprint_limited", 0) - before == 4
    paths = []
    for snap in _snapshots(tmp_path):
        with open_snapshot(snap) as s:
            paths.append(decode(s.entry["args"])[0]["environ"]["PATH_INFO"])
            assert s.header["replayable"], s.header["reasons"]
    assert sorted(paths) == ["/status/500", "/status/503"]


def _clock_ops(snap: str) -> list[str]:
    with open_snapshot(snap) as s:
        return [i.op for i in s.tape if i.channel == "clock"]


def test_streamed_chunks_and_close_are_recorded_and_nothing_after(tmp_path):
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def chunks() -> Iterator[bytes]:
            try:
                for n in range(3):
                    time.monotonic()  # read while producing each chunk: in the session
                    yield b"%d" % n
            finally:
                time.perf_counter()  # the generator's close (the server's close()): in the session

        return chunks()

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, on="always", rate_limit="off", background=False)
    result = mw(_environ(), lambda status, headers, exc_info=None: None)
    seen["chunks"] = list(result)
    assert ACTIVE.get() is None  # between the server's steps, no session is left behind
    result.close()  # type: ignore[attr-defined]
    result.close()  # type: ignore[attr-defined]  # a second close is a no-op (no second snapshot)
    time.monotonic()  # after the response: not recorded
    assert seen["chunks"] == [b"0", b"1", b"2"]
    (snap,) = _snapshots(tmp_path)
    assert _clock_ops(snap) == ["time.monotonic"] * 3 + ["time.perf_counter"]
    with open_snapshot(snap) as s:
        assert decode(s.outcome["value"])["body"] == b"012"


def test_a_chunk_that_raises_is_the_failure_and_reaches_the_server(tmp_path):
    def app(environ: dict[str, Any], start_response: Any) -> Iterator[bytes]:
        start_response("200 OK", [("Content-Type", "text/plain")])

        def chunks() -> Iterator[bytes]:
            yield b"first"
            time.time()
            raise LookupError("no second chunk")

        return chunks()

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, rate_limit="off", background=False)
    result = mw(_environ(), lambda status, headers, exc_info=None: None)
    got = []
    with pytest.raises(LookupError, match="no second chunk"):
        for chunk in result:
            got.append(chunk)
    result.close()  # type: ignore[attr-defined]
    assert got == [b"first"]
    (snap,) = _snapshots(tmp_path)
    with open_snapshot(snap) as s:
        assert s.outcome["kind"] == "exception" and s.outcome["type"] == "builtins:LookupError"
    assert _clock_ops(snap) == ["time.time"]


def test_an_exception_escaping_the_app_propagates_unchanged(tmp_path):
    error = ValueError("bad order")

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        time.time()
        raise error

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, rate_limit="off", background=False)
    with pytest.raises(ValueError) as caught:
        mw(_environ(), lambda status, headers, exc_info=None: None)
    assert caught.value is error
    assert any(entry.name == "app" for entry in caught.traceback)  # the app's frame is kept
    assert ACTIVE.get() is None
    (snap,) = _snapshots(tmp_path)
    with open_snapshot(snap) as s:
        assert s.outcome["type"] == "builtins:ValueError" and s.outcome["message"] == "bad order"
    assert _clock_ops(snap) == ["time.time"]


def test_an_interrupt_is_not_a_failure(tmp_path):
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        raise KeyboardInterrupt

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, rate_limit="off", background=False)
    with pytest.raises(KeyboardInterrupt):
        mw(_environ(), lambda status, headers, exc_info=None: None)
    assert ACTIVE.get() is None and not _snapshots(tmp_path)


def test_a_list_body_is_returned_as_is_and_a_sized_one_keeps_len(tmp_path):
    body = [b"a", b"b"]

    def listed(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("500 Oops", [])
        return body

    class Sized:
        def __init__(self) -> None:
            self.closed = False

        def __iter__(self) -> Iterator[bytes]:
            return iter([b"only"])

        def __len__(self) -> int:
            return 1

        def close(self) -> None:
            self.closed = True

    sized = Sized()
    mw = ReplayWSGIMiddleware(listed, directory=tmp_path, rate_limit="off", background=False)
    assert mw(_environ(), lambda status, headers, exc_info=None: None) is body
    mw2 = ReplayWSGIMiddleware(lambda e, s: (s("200 OK", []), sized)[1], directory=tmp_path / "b")
    result = mw2(_environ(), lambda status, headers, exc_info=None: None)
    assert len(result) == 1 and list(result) == [b"only"]  # type: ignore[arg-type]
    result.close()  # type: ignore[attr-defined]
    assert sized.closed
    (snap,) = _snapshots(tmp_path)
    with open_snapshot(snap) as s:
        assert decode(s.outcome["value"])["body"] == b"ab"
