"""ASGI under a real server: apps that await ``http.disconnect``, clients that leave early.

A Starlette app runs under uvicorn on loopback with :class:`ReplayASGIMiddleware` in front
(the harness of test_middleware.py), is driven by real HTTP requests, and its snapshots are
replayed in fresh processes with a timeout.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time

import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from replay.replayer.web import invoke
from replay.verify import Verdict, reproduce
from tests.integration.test_middleware import request_of, serve  # noqa: F401 - serve is a fixture

pytestmark = pytest.mark.integration

LISTENER = """
import time

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.background import BackgroundTask
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from replay.capture.middleware import ReplayASGIMiddleware

SEEN = []


async def wait_for_disconnect(request):
    # What log streamers and SSE helpers do once the response is out: wait for the client
    # to go away before releasing what the request held.
    message = await request.receive()
    if message["type"] != "http.disconnect":
        raise RuntimeError(f"expected http.disconnect, got {message}")
    SEEN.append(message["type"])


async def upload(request):
    body = await request.body()
    status = 500 if b"corrupt" in body[:100] else 200
    return JSONResponse({"size": len(body), "ok": status == 200}, status_code=status,
                        background=BackgroundTask(wait_for_disconnect, request))


async def poll(request):
    await request.body()
    message = await request.receive()  # a long poll: nothing to answer until the client leaves
    return PlainTextResponse(f"nobody to answer: {message['type']}", status_code=500)


async def archive(request):
    body = await request.body()
    return PlainTextResponse(f"archive of {len(body)} bytes failed", status_code=503)


inner = Starlette(routes=[Route("/upload", upload, methods=["POST"]), Route("/archive", archive, methods=["POST"]),
                          Route("/poll", poll)])
app = ReplayASGIMiddleware(inner)
"""


def test_app_awaiting_disconnect_after_its_body_replays(serve) -> None:  # noqa: F811
    server = serve("asgi", "shop:app", {"shop.py": LISTENER})
    assert server.request("/upload", body=b"fine data")[0] == 200
    status, _, body = server.request("/upload", body=b"corrupt data")
    assert status == 500 and json.loads(body) == {"size": 12, "ok": False}
    snaps = server.snapshots(1)
    server.stop()
    assert len(snaps) == 1
    # the disconnect came after the response: replay answers it, the recording need not hold it
    assert [m["type"] for m in request_of(snaps[0])["messages"]] == ["http.request"]
    run = reproduce(snaps[0], timeout_s=30)  # before the fix: receive() never returned
    assert run.verdict is Verdict.REPRODUCED, run.reason


def test_client_leaving_mid_request_is_recorded_and_replayed(serve) -> None:  # noqa: F811
    server = serve("asgi", "shop:app", {"shop.py": LISTENER})
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /poll HTTP/1.1\r\nHost: x\r\n\r\n")
        time.sleep(0.5)  # the app is waiting in receive()
    snaps = server.snapshots(1)
    server.stop()
    assert len(snaps) == 1
    assert [m["type"] for m in request_of(snaps[0])["messages"]] == ["http.request", "http.disconnect"]
    run = reproduce(snaps[0], timeout_s=30)
    assert run.verdict is Verdict.REPRODUCED, run.reason


# -------------------------------------------------------------------- replay's receive(), in process


async def _ticks(request: Request) -> StreamingResponse:
    async def gen():  # noqa: ANN202
        for i in range(5):
            await asyncio.sleep(0)
            yield f"tick {i}\n"

    return StreamingResponse(gen(), media_type="text/plain")


def _invoke_within(app, request: dict, timeout_s: float = 10.0) -> dict:  # noqa: ANN001
    """invoke() on a thread: a replay that hangs fails the test instead of hanging it."""
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(invoke(app, "asgi", request, player=None)), daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), "the replayed app is still waiting in receive()"
    return result


def _scope(method: str, path: str, spec_version: str = "2.4") -> dict:
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": spec_version}, "http_version": "1.1",
            "method": method, "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
            "query_string": b"", "headers": [(b"host", b"127.0.0.1")], "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 5000)}


def test_replayed_receive_answers_disconnect_after_the_response() -> None:
    seen: list[dict] = []

    async def wait_for_disconnect(request: Request) -> None:
        seen.append(await request.receive())

    async def upload(request: Request) -> JSONResponse:
        body = await request.body()
        return JSONResponse({"size": len(body)}, status_code=500,
                            background=BackgroundTask(wait_for_disconnect, request))

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"])])
    request = {"scope": _scope("POST", "/upload"), "body_limit": 1 << 20,
               "messages": [{"type": "http.request", "body": b"abc", "more_body": False}]}
    response = _invoke_within(app, request)
    assert response["status"] == 500 and response["body"] == b'{"size":3}'
    assert seen == [{"type": "http.disconnect"}]


@pytest.mark.parametrize("spec_version", ["2.3", "2.4"])
def test_replayed_stream_is_not_cut_by_the_disconnect_answer(spec_version: str) -> None:
    """Starlette listens for ``http.disconnect`` while it streams (ASGI spec < 2.4): replay's
    receive() must answer only once the response is complete, or the stream would be cut."""
    app = Starlette(routes=[Route("/ticks", _ticks)])
    request = {"scope": _scope("GET", "/ticks", spec_version), "body_limit": 1 << 20,
               "messages": [{"type": "http.request", "body": b"", "more_body": False}]}
    response = _invoke_within(app, request)
    assert response["status"] == 200
    assert response["body"] == b"".join(f"tick {i}\n".encode() for i in range(5))


def test_recorded_disconnect_before_the_response_is_handed_over_in_order() -> None:
    """A client that left mid-request: the app sees the recorded disconnect, not a hang."""
    seen: list[str] = []

    async def app(scope, receive, send):  # noqa: ANN001, ANN202
        seen.append((await receive())["type"])
        seen.append((await receive())["type"])  # waits for the client (a long poll)
        await send({"type": "http.response.start", "status": 499, "headers": []})
        await send({"type": "http.response.body", "body": b"gone"})

    request = {"scope": {"type": "http", "method": "GET", "path": "/poll", "headers": []},
               "messages": [{"type": "http.request", "body": b"", "more_body": False},
                            {"type": "http.disconnect"}], "body_limit": 1 << 20}
    response = _invoke_within(app, request)
    assert seen == ["http.request", "http.disconnect"] and response["status"] == 499
