"""The ``http`` channel for httpx: its sync and async HTTP transports.

Same interaction and key as :mod:`replay.capture.channels.http` (``("http", "request",
(method, url, body, headers))``), so a candidate may switch between requests and httpx.
The answer is ``(status, reason, http_version, headers, body, chunk sizes)`` with the body
still content-encoded; recording tees the response stream as the application reads it;
replay returns an ``httpx.Response`` rebuilt from the tape, without any transport.
Installed by ``http.install()`` through ``hooks.when_imported("httpx", ...)``: httpx is never
imported by replay itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from replay.capture.boundary import ACTIVE, suspended
from replay.capture.channels.http import (
    CHANNEL,
    DEFAULT_PORTS,
    _host_text,
    _next_seq,
    _not_replayable,
    _parts_from_raw,
    _record_slot,
    _Slot,
    _split_answer,
    log,
)
from replay.snapshot.codec import Encoder


def _httpx_args(request: Any, body: bytes) -> tuple[str, str, bytes, list[list[str]]]:
    url = request.url
    scheme = url.scheme
    port = url.port or DEFAULT_PORTS.get(scheme, 0)
    host = url.raw_host.decode("ascii", "replace")
    target = url.raw_path.decode("ascii", "replace")
    headers = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw]
    return request.method.upper(), f"{scheme}://{_host_text(host)}:{port}{target}", body, headers


def _httpx_head(response: Any) -> tuple[Any, ...]:
    ext = response.extensions
    return (response.status_code, ext.get("reason_phrase", b""), ext.get("http_version", b"HTTP/1.1"),
            [[k.decode("latin-1"), v.decode("latin-1")] for k, v in response.headers.raw])


def _httpx_result_node(head: tuple[Any, ...], buf: bytearray, sizes: list[Any]) -> Any:
    """``(status, reason, version, headers, body, chunk sizes)`` as a codec node.

    ``buf`` and ``sizes`` (a list node ``["l", n1, n2, ...]``) are the live objects the
    stream appends to, so the tape always holds what was read so far. Chunk sizes keep the
    boundaries the application saw (``iter_raw`` yields what each network read returned).
    """
    node = Encoder().encode(head)
    return [*node, buf, sizes]


def instrument_httpx(httpx: Any) -> None:
    """Patch ``httpx.HTTPTransport.handle_request`` and the async transport (once httpx is imported)."""
    sync_cls = httpx.HTTPTransport
    async_cls = httpx.AsyncHTTPTransport
    real_handle = sync_cls.handle_request
    real_ahandle = async_cls.handle_async_request

    class ReplayStream(httpx.SyncByteStream, httpx.AsyncByteStream):  # type: ignore[misc,name-defined]
        """The recorded body in the recorded chunks, then the recorded error (if any)."""

        def __init__(self, body: bytes, sizes: list[int], error: BaseException | None):
            self._body, self._sizes, self._error = body, sizes, error

        def _chunks(self) -> Iterator[bytes]:
            pos = 0
            for n in self._sizes:
                if n > 0:
                    yield self._body[pos : pos + n]
                pos += n
            if pos < len(self._body):
                yield self._body[pos:]

        def __iter__(self) -> Iterator[bytes]:
            yield from self._chunks()
            if self._error is not None:
                raise self._error

        async def __aiter__(self) -> Any:
            for chunk in self._chunks():
                yield chunk
            if self._error is not None:
                raise self._error

    class TeeStream(httpx.SyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any, buf: bytearray, sizes: list[Any], slot: _Slot | None, head: Any):
            self._inner, self._buf, self._sizes, self._slot, self._head = inner, buf, sizes, slot, head

        def __iter__(self) -> Iterator[bytes]:
            it = iter(self._inner)
            while True:
                try:
                    with suspended():
                        chunk = next(it)
                except StopIteration:
                    return
                except Exception as exc:
                    if self._slot is not None:
                        self._slot.set(_httpx_result_node(self._head, self._buf, self._sizes), exc)
                    raise
                self._buf += chunk
                self._sizes.append(len(chunk))
                yield chunk

        def close(self) -> None:
            with suspended():
                self._inner.close()

    class AsyncTeeStream(httpx.AsyncByteStream):  # type: ignore[misc,name-defined]
        def __init__(self, inner: Any, buf: bytearray, sizes: list[Any], slot: _Slot | None, head: Any):
            self._inner, self._buf, self._sizes, self._slot, self._head = inner, buf, sizes, slot, head

        async def __aiter__(self) -> Any:
            it = self._inner.__aiter__()
            while True:
                token = ACTIVE.set(None)
                try:
                    chunk = await it.__anext__()
                except StopAsyncIteration:
                    return
                except Exception as exc:
                    if self._slot is not None:
                        self._slot.set(_httpx_result_node(self._head, self._buf, self._sizes), exc)
                    raise
                finally:
                    ACTIVE.reset(token)
                self._buf += chunk
                self._sizes.append(len(chunk))
                yield chunk

        async def aclose(self) -> None:
            token = ACTIVE.set(None)
            try:
                await self._inner.aclose()
            finally:
                ACTIVE.reset(token)

    def replayed(s: Any, request: Any, args: Any) -> Any:
        _next_seq(s)
        inter = s.find(CHANNEL, "request", args)
        answer, error = _split_answer(s, inter)
        if answer is None and error is not None:  # the transport raised (connect failure, timeout)
            raise error
        if isinstance(answer, bytes | bytearray):  # recorded through http.client
            answer = _parts_from_raw(bytes(answer), args[0])
        status, reason, version, headers, body = answer[:5]
        sizes = [int(n) for n in answer[5]] if len(answer) > 5 else [len(body)]
        return httpx.Response(status, headers=[tuple(h) for h in headers], stream=ReplayStream(bytes(body), sizes, error),
                              extensions={"http_version": version, "reason_phrase": reason}, request=request)

    def record_start(s: Any, args: Any) -> tuple[_Slot | None, bytearray, list[Any]]:
        _next_seq(s)
        return _record_slot(s, args), bytearray(), ["l"]

    def record_failed(s: Any, slot: _Slot | None, exc: BaseException) -> None:
        if slot is not None:
            slot.set(None, exc)

    def record_response(response: Any, slot: _Slot | None, buf: bytearray, sizes: list[Any], stream_cls: type) -> None:
        head = _httpx_head(response)
        if slot is not None:
            slot.set(_httpx_result_node(head, buf, sizes))
        response.stream = stream_cls(response.stream, buf, sizes, slot, head)

    def handle_request(self: Any, request: Any) -> Any:
        s = ACTIVE.get()
        if s is None:
            return real_handle(self, request)
        args = _httpx_args(request, request.read())
        if s.replaying:
            return replayed(s, request, args)
        try:
            slot, buf, sizes = record_start(s, args)
        except Exception:  # noqa: BLE001 - fail open
            log.warning("replay: could not record an httpx request", exc_info=True)
            _not_replayable(s, "an httpx request could not be recorded")
            with suspended():
                return real_handle(self, request)
        try:
            with suspended():
                response = real_handle(self, request)
        except Exception as exc:
            record_failed(s, slot, exc)
            raise
        try:
            record_response(response, slot, buf, sizes, TeeStream)
        except Exception:  # noqa: BLE001
            log.warning("replay: could not record an httpx response", exc_info=True)
            _not_replayable(s, "an httpx response could not be recorded")
        return response

    async def handle_async_request(self: Any, request: Any) -> Any:
        s = ACTIVE.get()
        if s is None:
            return await real_ahandle(self, request)
        args = _httpx_args(request, await request.aread())
        if s.replaying:
            return replayed(s, request, args)
        try:
            slot, buf, sizes = record_start(s, args)
        except Exception:  # noqa: BLE001 - fail open
            log.warning("replay: could not record an httpx request", exc_info=True)
            _not_replayable(s, "an httpx request could not be recorded")
            token = ACTIVE.set(None)
            try:
                return await real_ahandle(self, request)
            finally:
                ACTIVE.reset(token)
        token = ACTIVE.set(None)
        try:
            response = await real_ahandle(self, request)
        except Exception as exc:
            ACTIVE.reset(token)
            record_failed(s, slot, exc)
            raise
        ACTIVE.reset(token)
        try:
            record_response(response, slot, buf, sizes, AsyncTeeStream)
        except Exception:  # noqa: BLE001
            log.warning("replay: could not record an httpx response", exc_info=True)
            _not_replayable(s, "an httpx response could not be recorded")
        return response

    handle_request.__wrapped__ = real_handle  # type: ignore[attr-defined]
    handle_async_request.__wrapped__ = real_ahandle  # type: ignore[attr-defined]
    sync_cls.handle_request = handle_request
    async_cls.handle_async_request = handle_async_request
