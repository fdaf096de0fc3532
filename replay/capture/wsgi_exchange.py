"""The exchange of a WSGI request: one object per request, in Python or over the C one.

:class:`replay.capture.middleware.ReplayWSGIMiddleware` makes one per admitted request
(its ``__call__`` in Python, or ``replay.capture._fastcapture.wsgi_serve`` in C): it holds
the recorder, the copy of the environ, the buffered request body and the response, and for
a streamed response it is the iterable the server gets. See :class:`_Exchange`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from replay.capture.boundary import ACTIVE
from replay.capture.interceptors import REAL
from replay.capture.recorder import Recorder, count
from replay.capture.webdata import BodyBuffer, buffer_input, status_code, wsgi_request

if TYPE_CHECKING:
    from replay.capture.middleware import ReplayWSGIMiddleware

try:  # the per-request path in C (setup.py); the Python one here is complete without it
    from replay.capture import _fastcapture as fastcapture
except ImportError:  # pragma: no cover - exercised by the tests that hide the extension
    fastcapture = None
if os.environ.get("REPLAY_NO_C_CAPTURE"):
    fastcapture = None

_NO_HEADERS: tuple[tuple[str, str], ...] = ()
_END = object()  # the end of a response iterable (next()'s default)


class _Exchange:
    """What both exchanges of a WSGI request share: the methods the snapshot write uses
    (:meth:`_Capture.write`) and those only a failing request or the app's ``write()`` call.

    The exchange is one object per request: the recorder, the request copy, the buffered
    body, the response. For a streamed response (any iterable but a list, a tuple or the
    server's file wrapper) it is also what the server gets back: the app's iterable passed
    through chunk by chunk while it is recorded. Boundary calls the app makes while
    producing chunks or in ``close()`` (a streaming generator, Flask's teardown) are on the
    tape: the recorder is active around each step. The snapshot is written at ``close()``,
    which the server calls (PEP 3333). Two implementations: :class:`PyWSGIExchange` (Python)
    and, with the C extension, ``_fastcapture.WSGIExchange`` under :class:`CWSGIExchange`.
    """

    __slots__ = ()
    owner: ReplayWSGIMiddleware
    environ: dict[str, Any]
    reasons: list[str]
    body: bytes | None
    server_write: Callable[[bytes], Any] | None
    status: str | None
    headers: list[tuple[str, str]] | tuple[()]
    out: BodyBuffer | None
    file_body: bool
    keep: bool
    rec: Recorder
    t0: int
    result: Iterable[bytes]

    def method(self) -> str:
        return str(self.environ.get("REQUEST_METHOD", ""))

    def path(self) -> str:
        return str(self.environ.get("SCRIPT_NAME", "")) + str(self.environ.get("PATH_INFO", ""))

    def request(self) -> dict[str, Any]:
        return wsgi_request(self.environ, self.body, self.owner.max_body_bytes)

    def write(self, data: bytes) -> Any:
        """The ``write()`` callable given to the app (PEP 3333): recorded, then the server's."""
        self.add(data)
        return self.server_write(data)  # type: ignore[misc]

    def add(self, chunk: bytes) -> None:
        """Account for a body chunk (kept while a snapshot may be written)."""
        if self.out is not None:
            try:
                self.out.add(chunk)
            except Exception:  # noqa: BLE001 - fail open
                count("capture_errors")

    def failed(self) -> bool:
        return status_code(self.status) >= 500

    def response(self) -> dict[str, Any]:
        out = (self.out or BodyBuffer(0)).record(self.status, self.headers)
        if self.file_body:
            out["body_file"] = True
        return out

    def crashed(self, exc: BaseException) -> None:
        """The app call raised (the session is reset): stop recording; an ``Exception`` is
        the request's failure (a ``KeyboardInterrupt`` or ``SystemExit`` is not recorded)."""
        self.rec.close()
        if isinstance(exc, Exception):
            self.owner.write(self, self.rec, self.t0, exc)

    def finish(self, exc: BaseException | None) -> None:
        """The response is over (the recorder is closed): write it if it may be a snapshot."""
        status = self.status
        if exc is None and not self.keep and (status is None or status[:1] != "5"):
            return  # a success in mode "error": the common case, nothing to encode
        self.owner.write(self, self.rec, self.t0, exc)


class PyWSGIExchange(_Exchange):
    """The exchange in Python (without the C extension; see :class:`_Exchange`)."""

    __slots__ = ("owner", "environ", "reasons", "body", "real_start_response", "server_write", "status",
                 "headers", "out", "file_body", "keep", "rec", "t0", "result", "chunks", "exc", "closed")

    def __init__(self, owner: ReplayWSGIMiddleware, environ: dict[str, Any], start_response: Callable[..., Any]):
        self.owner = owner
        self.environ = dict(environ)  # a shallow copy: the app adds and replaces keys
        self.reasons: list[str] = []
        length = environ.get("CONTENT_LENGTH")
        if (length and length != "0") or "HTTP_TRANSFER_ENCODING" in environ:
            self.body = buffer_input(environ, owner.max_body_bytes, self.reasons)
        else:
            self.body = b""  # no body (a GET): nothing to read or replace
        self.real_start_response = start_response
        self.server_write: Callable[[bytes], Any] | None = None
        self.status: str | None = None
        # kept only for a response that may be written (a 5xx, or any in mode "always")
        self.headers: list[tuple[str, str]] | tuple[()] = _NO_HEADERS
        self.out: BodyBuffer | None = None  # the response body, kept when a snapshot will be written
        self.file_body = False
        self.keep = owner.policy.settings.on == "always"  # as admit() just refreshed them
        self.rec, self.t0 = owner.start()

    def start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
        write = self.real_start_response(status, headers, exc_info) if exc_info else \
            self.real_start_response(status, headers)
        self.server_write = write
        try:
            # The last call wins (an error handler may replace a started response: PEP 3333)
            self.status = status
            if status[:1] == "5" or self.keep:
                self.headers = list(headers)
                if self.out is None:
                    self.out = BodyBuffer(self.owner.max_body_bytes)
            else:
                self.headers = _NO_HEADERS
        except Exception:  # noqa: BLE001 - fail open
            count("capture_errors")
            return write
        return self.write

    def stream(self, result: Iterable[bytes]) -> Iterable[bytes]:
        """What the server gets for the streamed ``result``: this exchange (with ``len()``
        through :class:`SizedBody` when ``result`` has one). Called inside the session:
        ``iter()`` may run app code (a custom iterable's ``__iter__``)."""
        self.result = result
        self.chunks = iter(result)
        self.exc: BaseException | None = None  # what a chunk raised
        self.closed = False
        return SizedBody(self) if hasattr(type(result), "__len__") else self

    def __iter__(self) -> Iterator[bytes]:
        # A generator, not __next__: its end is a plain return (a StopIteration raised and
        # caught in Python on every response costs more than the rest of the wrapper).
        rec = self.rec
        chunks = self.chunks
        while True:
            token = ACTIVE.set(rec)
            try:
                chunk = next(chunks, _END)
            except Exception as exc:
                self.exc = exc
                raise
            finally:
                ACTIVE.reset(token)
            if chunk is _END:
                return
            if self.out is not None:
                self.add(chunk)
            yield chunk

    def close(self) -> None:
        """The server is done with the streamed response: close the app's iterable (in the
        session), stop recording, and write the snapshot if the request failed."""
        if self.closed:
            return
        self.closed = True
        close = getattr(self.result, "close", None)
        exc: BaseException | None = None
        token = ACTIVE.set(self.rec)
        try:
            if close is not None:
                close()
        except Exception as error:
            exc = error
            raise
        finally:
            ACTIVE.reset(token)
            self.rec.close()
            self.finish(self.exc or exc)


class SizedBody:
    """A streamed response whose iterable has ``len()``: servers use it (one chunk: they
    set Content-Length from it), so the object they get has it too."""

    __slots__ = ("exchange",)

    def __init__(self, exchange: PyWSGIExchange):
        self.exchange = exchange

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.exchange)

    def __len__(self) -> int:
        return len(self.exchange.result)  # type: ignore[arg-type]

    def close(self) -> None:
        self.exchange.close()


if fastcapture is not None:
    class CWSGIExchange(_Exchange, fastcapture.WSGIExchange):  # type: ignore[misc]
        """The exchange in C (``_fastcapture.WSGIExchange``: start_response, iteration and
        close()) with the Python methods of :class:`_Exchange`; made by ``wsgi_serve``."""

        __slots__ = ()

    # the Python pieces the C exchange calls (see exchange.c)
    fastcapture.wsgi_setup(CWSGIExchange, SizedBody, ACTIVE, buffer_input, BodyBuffer, count, Recorder,
                           REAL["time.perf_counter_ns"])
