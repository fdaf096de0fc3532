"""The WSGI middleware's per-request path, in process: what the server gets back, when the
session is active, and that the policy decides before anything is encoded.

Every test runs twice: through the C path (``replay.capture._fastcapture.wsgi_serve``, what
``ReplayWSGIMiddleware.__call__`` is when the extension is built) and through the Python
``__call__`` it stands in front of. Apps are real (httpbin from the package index, and small
WSGI callables); snapshots are written to a temporary directory on the calling thread
(``background=False``) and read back with the snapshot reader.
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

from replay.capture import configure, stats
from replay.capture import middleware as middleware_module
from replay.capture import policy as policy_module
from replay.capture.boundary import ACTIVE
from replay.capture.middleware import ReplayWSGIMiddleware
from replay.capture.webdata import AppEntry
from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode

_C_CALL = ReplayWSGIMiddleware.__call__
_PY_CALL = getattr(_C_CALL, "__wrapped__", _C_CALL)  # the Python method behind the C front


@pytest.fixture(autouse=True, params=["c", "python"])
def implementation(request, monkeypatch):
    """Run the test through the C per-request path, then through the Python one (each with
    fresh rate-limit buckets: they are shared by every policy of the process)."""
    monkeypatch.setattr(policy_module, "_global_buckets", {})
    monkeypatch.setattr(policy_module, "_failure_limiters", {})
    if request.param == "c":
        if middleware_module.fastcapture is None:
            pytest.skip("the C extension replay.capture._fastcapture is not built")
        assert type(_C_CALL).__name__ == "MethodInterceptor"
    else:
        monkeypatch.setattr(ReplayWSGIMiddleware, "__call__", _PY_CALL)
    return request.param


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


def test_a_body_is_buffered_and_the_app_reads_it_whole(tmp_path):
    seen: list[bytes] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ["wsgi.input"].read())
        start_response("502 Bad Gateway", [("Content-Type", "text/plain")])
        return [b"upstream down"]

    environ = _environ("/orders", "POST")
    environ.update({"CONTENT_LENGTH": "11", "wsgi.input": io.BytesIO(b'{"qty": 30}')})
    mw = ReplayWSGIMiddleware(app, directory=tmp_path, rate_limit="off", background=False)
    assert _serve(mw, environ) == (["502 Bad Gateway"], b"upstream down")
    assert seen == [b'{"qty": 30}']
    (snap,) = _snapshots(tmp_path)
    with open_snapshot(snap) as s:
        request = decode(s.entry["args"])[0]
        assert request["body"] == b'{"qty": 30}' and request["environ"]["REQUEST_METHOD"] == "POST"
        response = decode(s.outcome["value"])
        assert response["status"] == "502 Bad Gateway" and response["body"] == b"upstream down"
        assert ["Content-Type", "text/plain"] in [list(h) for h in response["headers"]]


def test_each_request_has_its_own_recorder_bounded_by_the_policy(tmp_path):
    recorders: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        recorders.append(ACTIVE.get())
        for _ in range(5):
            time.time()
        start_response("500 Oops" if environ["PATH_INFO"] == "/fail" else "200 OK", [])
        return [b""]

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, rate_limit="off", background=False, max_interactions=3)
    for path in ("/", "/", "/fail"):  # the first resolves the app's entry; the others reuse it
        _serve(mw, _environ(path))
    assert len({id(r) for r in recorders}) == 3 and all(r.closed for r in recorders)
    assert all(r.app_roots == mw.entry.roots and r.max_interactions == 3 for r in recorders)
    (snap,) = _snapshots(tmp_path)
    with open_snapshot(snap) as s:
        assert not s.header["replayable"]
        assert any("tape limit of 3 interactions" in reason for reason in s.header["reasons"])


def test_configure_and_sampling_decide_each_request(tmp_path):
    sessions: list[Any] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        sessions.append(ACTIVE.get())
        start_response("200 OK", [])
        return [b"ok"]

    mw = ReplayWSGIMiddleware(app, directory=tmp_path)
    sampled = ReplayWSGIMiddleware(app, directory=tmp_path, sample_rate=0.0)
    try:
        _serve(mw, _environ())
        configure(on="off")  # the process default changes between requests
        _serve(mw, _environ())
        configure(reset=True)
        _serve(mw, _environ())
        _serve(sampled, _environ())
    finally:
        configure(reset=True)
    assert [s is not None for s in sessions] == [True, False, True, False]


def test_odd_statuses_and_a_keyword_exc_info_are_served(tmp_path):
    before = stats().get("capture_errors", 0)
    statuses: list[Any] = []
    writes: list[bytes] = []

    def server_start_response(status: Any, headers: Any, exc_info: Any = None) -> Any:
        statuses.append((status, exc_info is not None))
        return writes.append

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        write = start_response(int(environ["PATH_INFO"][1:]), [])  # not a str: counted, served
        write(b"w")
        try:
            raise RuntimeError("late")
        except RuntimeError:
            start_response("500 Late", [], exc_info=sys.exc_info())
        return [b"x"]

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, rate_limit="off", background=False)
    result = mw(_environ("/200"), server_start_response)
    assert result == [b"x"] and writes == [b"w"]
    assert statuses == [(200, False), ("500 Late", True)]
    assert stats().get("capture_errors", 0) - before == 1
    (snap,) = _snapshots(tmp_path)
    with open_snapshot(snap) as s:
        assert decode(s.outcome["value"])["status"] == "500 Late"
