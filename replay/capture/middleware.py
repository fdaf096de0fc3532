"""WSGI and ASGI middleware: each HTTP request is a recorded entry point.

``ReplayWSGIMiddleware(app)`` (Flask, Django, any WSGI app) and ``ReplayASGIMiddleware(app)``
(Starlette, FastAPI, any ASGI app) record every admitted request like ``@replay.capture``
records a call: the request as data is the entry argument, the boundary interactions the
app makes while it handles the request are the tape, and the response is the outcome
(:mod:`replay.capture.webdata` has the record shapes). A response with a 5xx status or an
exception escaping the app is a failure; on-error capture writes a snapshot for those only.
Every snapshot goes through :func:`replay.capture.api._finish` (policy, redaction,
background writing). See docs/web.md.

The body is read before the app runs, up to ``max_body_bytes`` (default 1 MiB), and given
to the app from memory; a larger body is passed through and the snapshot is marked not
replayable. What the client receives is never changed: chunks, ``close()``, ``len()`` and
the server's file wrapper pass through (PEP 3333). Per request, on-error capture costs a
recorder, a shallow copy of the environ or scope and a wrapper around the response; the
request is encoded only when a snapshot will be written, after the policy's rate limits
have let it through.

Replay (:mod:`replay.replayer.web`) imports the app by the module attribute recorded in
the entry (found in the loaded modules when the first request arrives, or given as
``name="pkg.module:app"``), rebuilds the request and drives it through the app.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from replay.capture import api
from replay.capture.boundary import ACTIVE
from replay.capture.interceptors import REAL, install, intercept
from replay.capture.logged import logged_exception
from replay.capture.policy import fingerprint as exception_fingerprint
from replay.capture.policy import resolve
from replay.capture.recorder import Recorder, count, log
from replay.capture.webdata import (
    ASGI,
    MAX_BODY_BYTES,
    WSGI,
    AppEntry,
    BodyBuffer,
    asgi_request,
    response_outcome,
    status_code,
)
from replay.capture.wsgi_exchange import PyWSGIExchange, fastcapture
from replay.errors import UsageError

_perf_counter_ns = REAL["time.perf_counter_ns"]

__all__ = ["MAX_BODY_BYTES", "ReplayASGIMiddleware", "ReplayWSGIMiddleware"]


class _Capture:
    """What both middlewares share: options, the policy, the entry, the snapshot write."""

    def __init__(self, app: Any, kind: str, on: str | None, directory: Any, name: str | None,
                 max_body_bytes: int, options: dict[str, Any]):
        if name is not None and (":" not in name or not all(name.partition(":")[::2])):
            raise UsageError(f"name={name!r}: expected 'package.module:attribute'")
        if isinstance(max_body_bytes, bool) or not isinstance(max_body_bytes, int) or max_body_bytes < 0:
            raise UsageError(f"max_body_bytes={max_body_bytes!r}: expected a number of bytes >= 0")
        self.app = app
        self.policy = resolve(on, **options)
        self.directory = os.fspath(directory) if directory is not None else None
        self.max_body_bytes = max_body_bytes
        self.entry = AppEntry(self, kind, name)
        setattr(self, api.ENTRY_ATTRIBUTE, app)  # replay imports this object: it calls `app`
        install()

    def admit(self) -> bool:
        """Whether to record this request: not inside a recording or a replay (then it is part
        of the outer call), and admitted by the policy (mode, sampling)."""
        return ACTIVE.get() is None and self.policy.admit()

    def always(self) -> bool:
        """Whether successful requests are written too (the response body must be kept)."""
        return self.policy.current().on == "always"

    def start(self) -> tuple[Recorder, int]:
        """A recorder for one admitted request, and its start time (ns)."""
        entry = self.entry
        entry.template()  # resolved at the first request
        rec = Recorder(max_interactions=self.policy.settings.max_interactions)
        rec.app_roots = entry.roots  # already absolute: saves normalising paths per request
        return rec, _perf_counter_ns()

    def write(self, exchange: Any, rec: Recorder, t0: int, exc: BaseException | None = None) -> None:
        """Hand a finished request to :func:`replay.capture.api._finish`; never raises.

        ``exchange`` gives ``status``, ``reasons``, ``failed()``, ``method()``, ``path()``,
        ``request()`` and ``response()``. A success in mode "error" is dropped before
        anything is encoded; a failure goes to the policy with its fingerprint first, and
        the request and the response are encoded only when the rate limits let the
        snapshot through (in a storm of one failure, the dropped ones cost no encoding).
        """
        try:
            failed = exc is not None or (exchange.status is not None and exchange.failed())
            if not failed and (exchange.status is None or not self.always()):
                return
            started = _perf_counter_ns()
            fingerprint, logged = self._fingerprint(exchange, rec, exc, failed)
            if not api.decide(self.policy, failed, fingerprint):
                return
            entry = self.entry.record(exchange.request(), exchange.reasons)
            outcome = None
            if exc is None:
                outcome = response_outcome(exchange.response(), logged, self.entry.roots)
            # the encoding done here counts against the snapshot's time budget, as a call's does
            entry[api._ENCODE_NS] = _perf_counter_ns() - started
        except Exception:  # noqa: BLE001 - fail open
            count("capture_errors")
            log.warning("replay: could not record the request", exc_info=True)
            return
        api._finish(entry, rec, self.directory, t0, exc=exc, outcome=outcome, failed=failed,
                    fingerprint=fingerprint, policy=self.policy, allowed=True)

    def _fingerprint(self, exchange: Any, rec: Recorder, exc: BaseException | None,
                     failed: bool) -> tuple[Any, BaseException | None]:
        """The failure's identity for the per-failure rate limit, and the exception the app
        logged (None if none); computed from the status and tracebacks, nothing encoded.

        An exception that escaped the app: its type and innermost application frame. A 5xx
        whose cause the app logged: the app, the status and that exception (one failure
        whatever the URL). Any other response: the app, method, path and status.
        """
        roots = self.entry.roots
        if exc is not None:
            return exception_fingerprint(exc, roots), None
        template = self.entry.template()
        code = status_code(exchange.status)
        logged = logged_exception(rec)
        if logged is not None and failed:
            return (template["module"], template["qualname"], code, *exception_fingerprint(logged, roots)), logged
        return (template["module"], template["qualname"], exchange.method(), exchange.path(), code), logged


# ------------------------------------------------------------------------ WSGI


class ReplayWSGIMiddleware(_Capture):
    """Record the requests of a WSGI app; write a snapshot for each failing one (or all).

    Usage: ``app.wsgi_app = ReplayWSGIMiddleware(app.wsgi_app)`` (Flask), ``application =
    ReplayWSGIMiddleware(get_wsgi_application())`` (Django), or wrap any WSGI callable.

    Args:
        app: The WSGI application.
        on: ``"error"`` (a 5xx response or an exception escaping the app), ``"always"`` or
            ``"off"``; default the process default (:func:`replay.capture.configure`, else
            ``$REPLAY_CAPTURE``, else ``"error"``).
        directory: Where snapshots go: a directory or an fsspec URL; default as for
            :func:`replay.capture.capture`.
        name: ``"package.module:attribute"`` of the app for replay, when the middleware
            cannot find it in the loaded modules (an app built in a factory and never bound
            at module level). The object named is called by replay with the rebuilt request.
        max_body_bytes: Request and response bodies are kept up to this many bytes.
        **options: Policy options for this app (``sample_rate``, ``rate_limit``,
            ``rate_limit_per_failure``, ...: see docs/production.md).

    Raises:
        UsageError: a bad ``on``, ``name``, ``max_body_bytes`` or policy option.

    Thread safety: one instance serves concurrent requests (each has its own recorder).
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], *, on: str | None = None,
                 directory: str | os.PathLike[str] | None = None, name: str | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES, **options: Any):
        super().__init__(app, WSGI, on, directory, name, max_body_bytes, options)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        # The per-request path is kept short: it runs for every request, on-error capture
        # included (benchmarks/bench_capture_load.py measures it under a real server).
        # With the C extension, replay.capture._fastcapture.wsgi_serve does all this (set
        # up at the end of this module, over wsgi_exchange.CWSGIExchange); this method then
        # only serves nested requests.
        if ACTIVE.get() is not None or not self.policy.admit():
            return self.app(environ, start_response)
        try:
            exchange = PyWSGIExchange(self, environ, start_response)
        except Exception as exc:  # noqa: BLE001 - fail open: serve the request unrecorded
            return self._serve_unrecorded(exc, environ, start_response)
        rec = exchange.rec
        token = ACTIVE.set(rec)
        try:
            result = self.app(environ, exchange.start_response)
            kind = type(result)
            body = None
            if kind is not list and kind is not tuple:
                wrapper = environ.get("wsgi.file_wrapper")
                if wrapper is None or kind is not wrapper:
                    # iter() may run app code (a generator's setup does not, a custom
                    # iterable's __iter__ may): inside the session, like the chunks after it
                    body = exchange.stream(result)
        except BaseException as exc:
            ACTIVE.reset(token)
            exchange.crashed(exc)
            raise  # unchanged, with its traceback
        ACTIVE.reset(token)
        if body is not None:
            return body
        rec.close()
        if kind is list or kind is tuple:
            # A materialised body runs no app code when iterated and has no close(): record
            # it now and give the server the very object the app returned.
            if exchange.out is not None:
                for chunk in result:
                    exchange.add(chunk)
        else:
            # The server sends its own file wrapper efficiently (sendfile); returning anything
            # else would change the response framing. Its body is a file, not recorded.
            exchange.file_body = True
        exchange.finish(None)
        return result

    def _serve_unrecorded(self, exc: Exception, environ: dict[str, Any],
                          start_response: Callable[..., Any]) -> Iterable[bytes]:
        """Recording could not start (``exc``): counted, logged, and the app serves the request."""
        count("capture_errors")
        log.warning("replay: could not start recording a request", exc_info=exc)
        return self.app(environ, start_response)


# ------------------------------------------------------------------------ ASGI


class ReplayASGIMiddleware(_Capture):
    """Record the HTTP requests of an ASGI app; write a snapshot for each failing one (or all).

    Usage: ``app = ReplayASGIMiddleware(app)`` (Starlette, FastAPI, any ASGI app). Lifespan
    and websocket connections pass through untouched. Arguments as for
    :class:`ReplayWSGIMiddleware`.

    Raises:
        UsageError: a bad ``on``, ``name``, ``max_body_bytes`` or policy option.
    """

    def __init__(self, app: Callable[..., Any], *, on: str | None = None,
                 directory: str | os.PathLike[str] | None = None, name: str | None = None,
                 max_body_bytes: int = MAX_BODY_BYTES, **options: Any):
        super().__init__(app, ASGI, on, directory, name, max_body_bytes, options)

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope.get("type") != "http" or not self.admit():
            await self.app(scope, receive, send)
            return
        exchange = _ASGIExchange(self, scope, receive, send)
        try:
            await exchange.read_body()
            rec, t0 = self.start()
        except Exception:  # noqa: BLE001 - fail open
            count("capture_errors")
            log.warning("replay: could not start recording a request", exc_info=True)
            await self.app(scope, exchange.receive, send)  # what was read of the body comes first
            return
        with api.Active(rec, lambda exc: self.write(exchange, rec, t0, exc)):
            await self.app(scope, exchange.receive, exchange.send)
        self.write(exchange, rec, t0)


class _ASGIExchange:
    """One ASGI request/response: the body messages read first, the response messages seen."""

    def __init__(self, owner: ReplayASGIMiddleware, scope: dict[str, Any], receive: Any, send: Any):
        self.owner = owner
        self.scope = dict(scope)  # a shallow copy: the app adds keys
        if isinstance(self.scope.get("headers"), list):
            self.scope["headers"] = list(self.scope["headers"])  # MutableHeaders edits it in place
        self.reasons: list[str] = []
        self.messages: list[dict[str, Any]] = []
        self._pending: list[dict[str, Any]] = []
        self._receive = receive
        self._send = send
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.out: BodyBuffer | None = None
        self.done = False  # the last response body message was sent

    async def read_body(self) -> None:
        """Receive the body messages (up to the cap) before the app runs; it gets them after."""
        size = 0
        while True:
            message = await self._receive()
            self._pending.append(message)
            if message.get("type") != "http.request":
                self.messages.append(dict(message))
                return
            size += len(message.get("body", b""))
            if size > self.owner.max_body_bytes:
                self.reasons.append(f"the request body is larger than the capture limit of "
                                    f"{self.owner.max_body_bytes} bytes")
                return
            self.messages.append(dict(message))
            if not message.get("more_body", False):
                return

    def method(self) -> str:
        return str(self.scope.get("method", ""))

    def path(self) -> str:
        return str(self.scope.get("root_path", "")) + str(self.scope.get("path", ""))

    def request(self) -> dict[str, Any]:
        return asgi_request(self.scope, self.messages, self.owner.max_body_bytes)

    async def receive(self) -> dict[str, Any]:
        if self._pending:
            return self._pending.pop(0)
        message = await self._receive()
        if message.get("type") == "http.disconnect" and not self.done:
            # The client left before the whole response: replay hands the app this message
            # in its turn (after a complete response, replay answers a disconnect anyway).
            self.messages.append(dict(message))
        return message

    async def send(self, message: dict[str, Any]) -> None:
        try:
            kind = message.get("type")
            if kind == "http.response.start":
                self.status = int(message.get("status", 0))
                self.headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
                if self.status >= 500 or self.owner.always():
                    self.out = BodyBuffer(self.owner.max_body_bytes)
            elif kind == "http.response.body":
                self.done = not message.get("more_body", False)
                if self.out is not None:
                    self.out.add(message.get("body", b""))
        except Exception:  # noqa: BLE001 - fail open
            count("capture_errors")
        await self._send(message)

    def failed(self) -> bool:
        return (self.status or 0) >= 500

    def response(self) -> dict[str, Any]:
        return (self.out or BodyBuffer(0)).record(self.status, self.headers)



if fastcapture is not None:
    # ReplayWSGIMiddleware.__call__ becomes wsgi_serve behind an interceptor front: outside
    # any session (every top-level request) the C path serves, inside one (a request made by
    # recorded or replayed code) the Python method passes it to the app.
    ReplayWSGIMiddleware.__call__ = intercept(  # type: ignore[method-assign]
        fastcapture.wsgi_serve, ReplayWSGIMiddleware.__call__, method=True)
