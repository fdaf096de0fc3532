"""Replay of recorded web requests (entry kinds ``wsgi`` and ``asgi``).

The replay child (:mod:`replay.replayer.child`) imports the recorded app object (the
middleware, when that is what was found, unwraps to the app it wraps) and hands the
decoded request here: the WSGI environ or ASGI scope is rebuilt from the recorded data
with the recorded body, the app is called with a collector for the response, the body is
drained and ``close()`` called, all with the tape player active. The result is the same
response record the middleware writes (:func:`replay.capture.middleware.response_record`),
so a baseline replay reproduces when the app gives the same status, headers and body.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable, Iterator
from typing import Any

from replay.capture.boundary import ACTIVE
from replay.capture.webdata import (
    ASGI,
    KINDS,
    MAX_BODY_BYTES,
    WSGI,
    BodyBuffer,
    response_outcome,
)
from replay.errors import ReplaySetupError

__all__ = ["KINDS", "FileWrapper", "invoke", "response_outcome", "wsgi_environ"]


class FileWrapper:
    """``wsgi.file_wrapper`` of a replayed request whose recorded server offered one (PEP 3333).

    Like a server's wrapper, its body is a file the server sends itself: the response record
    marks it (``body_file``) instead of holding its bytes, as the recording did.
    """

    def __init__(self, filelike: Any, block_size: int = 8192):
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self) -> Iterator[bytes]:
        return iter(lambda: self.filelike.read(self.block_size), b"")

    def close(self) -> None:
        close = getattr(self.filelike, "close", None)
        if close is not None:
            close()


def invoke(app: Any, kind: str, request: dict[str, Any], player: Any) -> dict[str, Any]:
    """Drive one recorded request through ``app`` with ``player`` serving the tape.

    Args:
        app: The WSGI or ASGI application.
        kind: ``"wsgi"`` or ``"asgi"``.
        request: The decoded entry argument (see :mod:`replay.capture.middleware`).
        player: The tape player (the boundary session of the replay).

    Returns:
        The response record; an exception of the app propagates (it is the outcome).

    Raises:
        ReplaySetupError: the request was not recorded whole.
    """
    if kind == WSGI:
        return _invoke_wsgi(app, request, player)
    if kind == ASGI:
        import asyncio  # only ASGI replays pay for it (and for ssl, which it loads)

        return asyncio.run(_invoke_asgi(app, request, player))
    raise ReplaySetupError(f"not a web entry kind: {kind!r}")


def wsgi_environ(request: dict[str, Any]) -> dict[str, Any]:
    """The WSGI environ of a recorded request: recorded variables, the body, fresh streams."""
    body = request.get("body")
    if body is None:
        raise ReplaySetupError("the request body was not recorded (it was over the capture limit)")
    environ = dict(request["environ"])
    environ.setdefault("wsgi.version", (1, 0))
    environ.setdefault("wsgi.url_scheme", "http")
    environ.setdefault("wsgi.multithread", False)
    environ.setdefault("wsgi.multiprocess", False)
    environ.setdefault("wsgi.run_once", False)
    environ["wsgi.input"] = io.BytesIO(body)
    environ["wsgi.errors"] = sys.stderr
    if request.get("file_wrapper"):
        environ["wsgi.file_wrapper"] = FileWrapper
    return environ


def _invoke_wsgi(app: Callable[..., Any], request: dict[str, Any], player: Any) -> dict[str, Any]:
    environ = wsgi_environ(request)
    out = BodyBuffer(request.get("body_limit", MAX_BODY_BYTES))
    response: dict[str, Any] = {"status": None, "headers": []}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info and out.size:
            raise exc_info[1].with_traceback(exc_info[2])  # headers already sent (PEP 3333)
        response["status"], response["headers"] = status, list(headers)
        return out.add

    token = ACTIVE.set(player)
    try:
        result = app(environ, start_response)
        if type(result) is FileWrapper:
            result.close()
            record = BodyBuffer(0).record(response["status"], response["headers"])
            record["body_file"] = True
            return record
        try:
            for chunk in result:
                out.add(chunk)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
    finally:
        ACTIVE.reset(token)
    return out.record(response["status"], response["headers"])


async def _invoke_asgi(app: Callable[..., Any], request: dict[str, Any], player: Any) -> dict[str, Any]:
    import asyncio

    scope = dict(request["scope"])
    pending = [dict(m) for m in request.get("messages", [])]
    out = BodyBuffer(request.get("body_limit", MAX_BODY_BYTES))
    response: dict[str, Any] = {"status": None, "headers": []}
    complete = asyncio.Event()  # the last body message was sent

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)  # the body, then a disconnect the client made mid-request
        # After the body a server's receive() blocks until the client goes away, and the
        # client goes away once it has the whole response (uvicorn and hypercorn then answer
        # http.disconnect). Answering earlier would cancel a streaming response that listens
        # for a disconnect; never answering would hang an app that awaits it after its body.
        await complete.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "http.response.start":
            response["status"] = int(message.get("status", 0))
            response["headers"] = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
        elif kind == "http.response.body":
            out.add(message.get("body", b""))
            if not message.get("more_body", False):
                complete.set()

    token = ACTIVE.set(player)  # only the request's task (and tasks it starts) is served from the tape
    try:
        await app(scope, receive, send)
    finally:
        ACTIVE.reset(token)
    return out.record(response["status"], response["headers"])
