"""The ``http`` channel: ``http.client`` (so urllib, urllib3 2.x and requests) and httpx
(its transports are in :mod:`replay.capture.channels.httpx_transport`).

Every HTTP exchange is one interaction ``("http", "request", (method, url, body, headers))``:

* ``method``: upper-case method; ``url``: ``scheme://host:port`` plus the request target as
  sent (path and query, or the absolute URL sent to a forwarding proxy); ``body``: the
  request body bytes (de-chunked); ``headers``: the request headers as sent, a list of
  ``[name, value]`` pairs (recorded and compared by a baseline replay, never part of the
  candidate key). Headers come last so reports show method, URL and body first.
* answer, ``http.client``: the raw response bytes http.client read from the connection
  (status line, headers, body with its chunk framing and content encoding untouched);
  httpx: ``(status, reason, http_version, headers, body)`` with the body still
  content-encoded. The error slot holds an exception the connection raised while reading
  (a read timeout, a reset) after the bytes that were read.
* ``("http", "connect", (scheme, host, port, n))`` with an error: a connection that could
  not be opened (refused, DNS failure, connect timeout, TLS handshake). ``n`` counts the
  strand's earlier HTTP interactions so a baseline replay fails the same connect attempt.
  Connections that open are not recorded (connection reuse depends on timing).

Recording never changes what the application sees: ``http.client`` parses the server's
bytes through a tee (so streamed and chunked bodies stay streamed), httpx's response stream
is teed the same way. The bytes read so far are on the tape at every moment; what the
application had read when the snapshot was written is what replay serves.

Replay never opens a connection: ``connect()`` of ``http.client.HTTPConnection`` and every
subclass (urllib3's HTTP and HTTPS connections included) gives the connection a fake socket
that collects the request and serves the recorded bytes, so http.client, urllib3 and
requests parse them exactly as they did in production (TLS is not replayed: the tape holds
the plaintext above it). httpx transports return a response rebuilt from the tape.

Candidate matching (:data:`SPEC`): the key is the method, the normalised URL (lower-case
scheme and host, explicit port, query parameters sorted) and the body; effects are requests
whose method is not GET, HEAD, OPTIONS or TRACE; an effect's target is the method and the
URL without its query, so a POST of a different body (or with a different query) to the
same URL is reported as a changed effect.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import http.client
import io
import itertools
import logging
import os
import ssl
import threading
import urllib.parse
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final

from replay.capture import hooks
from replay.capture.boundary import (
    ACTIVE,
    STRAND,
    ChannelSpec,
    claim_socket,
    not_replayable,
    register_channel,
    suspended,
)
from replay.snapshot.codec import Encoder

log = logging.getLogger("replay.capture")

CHANNEL: Final = "http"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
DEFAULT_PORTS: Final = {"http": 80, "https": 443}

_Conn = http.client.HTTPConnection
_real_send = _Conn.send
_real_getresponse = _Conn.getresponse
_REAL_CONNECT: dict[type, Callable[..., Any]] = {}  # class -> its own connect, before patching
_installed = False
_lock = threading.Lock()
_marker_ids = itertools.count()
# (session -> {strand: number of HTTP interactions so far}); connect failures carry it
_SEQ: weakref.WeakKeyDictionary[Any, dict[str, int]] = weakref.WeakKeyDictionary()
# set while a replayed connect re-runs the library's connect to raise the recorded error
_FAIL_CONNECT: contextvars.ContextVar[BaseException | None] = contextvars.ContextVar("replay_http_fail", default=None)


# ------------------------------------------------------------------------------ keys


def normalise_url(url: str) -> str:
    """``url`` with lower-case scheme and host, an explicit port, sorted query, no fragment."""
    try:
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").lower()
        port = parts.port or DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        return url
    if ":" in host:
        host = f"[{host}]"
    query = urllib.parse.urlencode(sorted(urllib.parse.parse_qsl(parts.query, keep_blank_values=True)))
    return f"{scheme}://{host}:{port}{parts.path or '/'}" + (f"?{query}" if query else "")


def _strip_query(url: str) -> str:
    return normalise_url(url).partition("?")[0]


def _key(op: str, args: Any) -> Any:
    if op == "request":
        method, url, body = args[0], args[1], args[2]
        return (str(method).upper(), normalise_url(url), bytes(body or b""))
    if op == "connect":
        return tuple(args[:3])  # without the sequence number: failures are served per host, in order
    return args


def _effect(op: str, args: Any) -> bool:
    return op == "request" and str(args[0]).upper() not in SAFE_METHODS


def _target(op: str, args: Any) -> Any:
    return (str(args[0]).upper(), _strip_query(args[1]))


SPEC: Final = register_channel(ChannelSpec(CHANNEL, key=_key, effect=_effect, target=_target))


# ------------------------------------------------------------------------------ shared helpers


def _next_seq(session: Any) -> int:
    """Number of HTTP interactions the current strand made before this one (then counts it)."""
    try:
        counts = _SEQ.setdefault(session, {})
    except TypeError:
        return 0
    strand = STRAND.get()
    n = counts.get(strand, 0)
    counts[strand] = n + 1
    return n


def _host_text(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _not_replayable(session: Any, reason: str) -> None:
    log.warning("replay: %s", reason)
    not_replayable(session, reason)


class _Slot:
    """A recorded ``request`` interaction whose answer is filled in while the body is read.

    The recorder keeps tape records until the snapshot is written, so the record's answer
    can be the live buffer: what the application had read by then is what is written.
    """

    def __init__(self, tape: list[Any], index: int):
        self.tape = tape
        self.index = index

    def set(self, result: Any, error: BaseException | None = None) -> None:
        try:
            record = self.tape[self.index]
            err = None
            if error is not None:
                enc = Encoder()
                err = enc.encode(error)
            self.tape[self.index] = (record[0], record[1], record[2], result, err)
        except Exception:  # noqa: BLE001 - fail open
            log.warning("replay: could not complete an http interaction", exc_info=True)


def _record_slot(session: Any, args: Any, error: BaseException | None = None) -> _Slot | None:
    """Record a request now (its place on the tape); the answer is set through the slot."""
    marker = f"\x00replay-http-pending-{next(_marker_ids)}"
    index = session.record(CHANNEL, "request", args, marker, error)
    tape = getattr(session, "tape", None)
    if isinstance(tape, list):
        for i in range(min(index, len(tape) - 1), max(-1, index - 256), -1):
            rec = tape[i]
            if len(rec) >= 5 and rec[0] == CHANNEL and rec[3] is marker:
                return _Slot(tape, i)
        if getattr(session, "closed", False):
            return None  # recorded after the call ended: dropped anyway
    _not_replayable(session, "an http response could not be attached to its request on the tape")
    return None


def _rebuilt(exc: BaseException) -> BaseException:
    """``exc`` with its OSError fields (errno, strerror) restored from its arguments.

    The codec rebuilds exceptions with ``cls.__new__(cls)`` and assigns ``args``, which leaves
    ``errno`` None and changes ``str()`` of an OSError (``(111, 'Connection refused')``
    instead of ``[Errno 111] Connection refused``).
    """
    if isinstance(exc, OSError) and exc.errno is None and len(exc.args) in (2, 3) and isinstance(exc.args[0], int):
        try:
            fixed = type(exc)(*exc.args)
            fixed.__dict__.update(exc.__dict__)
            return fixed
        except Exception:  # noqa: BLE001 - keep the codec's rebuild
            return exc
    return exc


def _split_answer(session: Any, inter: Any) -> tuple[Any, BaseException | None]:
    """The recorded answer of ``inter`` and the exception recorded after it (or None)."""
    error: BaseException | None = None
    if getattr(inter, "error", None) is not None:
        try:
            session.answer(CHANNEL, "request", inter)
        except Exception as exc:  # the recorded exception, rebuilt (ReplayDiverged passes)
            error = _rebuilt(exc)
        inter = dataclasses.replace(inter, error=None)
    return session.answer(CHANNEL, "request", inter), error


def _raw_from_parts(parts: Any) -> bytes:
    """Raw HTTP/1.1 response bytes from an httpx-recorded ``(status, reason, version, headers, body)``."""
    status, reason, version, headers, body = parts[:5]
    body = bytes(body)
    version = version.decode("ascii", "replace") if isinstance(version, bytes) else str(version or "HTTP/1.1")
    if not version.startswith("HTTP/1"):
        version = "HTTP/1.1"
    reason = reason.decode("latin-1") if isinstance(reason, bytes) else str(reason or "")
    lines = [f"{version} {status} {reason}"]
    for name, value in headers:
        if name.lower() in ("transfer-encoding", "content-length"):
            continue
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _parts_from_raw(raw: bytes, method: str) -> tuple[int, bytes, bytes, list[tuple[str, str]], bytes]:
    """``(status, reason, version, headers, body)`` from raw response bytes (http.client parses)."""
    sock = _FakeSocket(None)
    sock.serve(raw, None)
    resp = http.client.HTTPResponse(sock, method=method)  # type: ignore[arg-type]
    resp.begin()
    body = resp.read()
    version = {9: b"HTTP/0.9", 10: b"HTTP/1.0", 11: b"HTTP/1.1"}.get(resp.version, b"HTTP/1.1")
    sock.close()
    return resp.status, resp.reason.encode("latin-1"), version, list(resp.msg.items()), body


# ------------------------------------------------------------------------------ http.client


def _request_args(conn: Any, sent: bytes) -> tuple[str, str, bytes, list[list[str]]]:
    """``(method, url, body, headers)`` of the raw request bytes a connection sent."""
    head, _, body = sent.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    target = rest.rpartition(" ")[0] or rest
    headers: list[list[str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            headers[-1][1] += " " + line.strip()
            continue
        name, _, value = line.partition(":")
        headers.append([name.strip(), value.strip()])
    if any(n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in headers):
        body = _dechunk(body)
    if target.startswith(("http://", "https://")):
        url = target
    else:
        scheme = "https" if getattr(conn, "default_port", 80) == 443 else "http"
        host = getattr(conn, "_tunnel_host", None) or conn.host
        port = getattr(conn, "_tunnel_port", None) or conn.port or DEFAULT_PORTS[scheme]
        url = f"{scheme}://{_host_text(host)}:{port}{target}"
    return method.upper(), url, bytes(body), headers


def _dechunk(data: bytes) -> bytes:
    out = bytearray()
    pos = 0
    try:
        while True:
            end = data.index(b"\r\n", pos)
            size = int(data[pos:end].split(b";")[0], 16)
            if size == 0:
                return bytes(out)
            out += data[end + 2 : end + 2 + size]
            pos = end + 4 + size
    except ValueError:
        return data  # not valid chunking: keep what was sent


def _conn_scheme(conn: Any) -> str:
    return "https" if getattr(conn, "default_port", 80) == 443 else "http"


def _connect_args(conn: Any, n: int) -> tuple[str, str, int, int]:
    scheme = _conn_scheme(conn)
    host = getattr(conn, "_tunnel_host", None) or conn.host
    port = getattr(conn, "_tunnel_port", None) or conn.port or DEFAULT_PORTS[scheme]
    return scheme, str(host).lower(), int(port), n


def _socket_error(exc: BaseException) -> OSError | None:
    """The OSError behind a failure to open the TCP connection (not a TLS error), if any."""
    seen = set()
    cur: BaseException | None = exc
    found: OSError | None = None
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ssl.SSLError | ssl.CertificateError):
            return None
        if isinstance(cur, OSError) and type(cur).__module__ in ("builtins", "socket"):
            found = cur
        cur = cur.__cause__ or cur.__context__
    return found


class _FakeSocket:
    """The socket of a replayed connection: collects the request, serves the recorded bytes.

    ``fileno()`` is the read end of a pipe nobody writes to: valid for ``select``/``poll``
    (urllib3's dropped-connection check) and never readable.
    """

    def __init__(self, conn: Any):
        self._fds: tuple[int, int] | None = None
        self._raw = b""
        self._error: BaseException | None = None
        self.timeout: float | None = None

    def serve(self, raw: bytes, error: BaseException | None) -> None:
        self._raw, self._error = raw, error

    # socket API used by http.client / urllib3 / requests
    def makefile(self, mode: str = "r", buffering: int | None = None, **_kw: Any) -> Any:
        raw = _ReplayRaw(self._raw, self._error)
        self._raw, self._error = b"", None
        if buffering == 0:
            return raw
        return io.BufferedReader(raw, io.DEFAULT_BUFFER_SIZE)

    def sendall(self, data: Any, flags: int = 0) -> None:
        return None

    def send(self, data: Any, flags: int = 0) -> int:
        return len(memoryview(data))

    def settimeout(self, value: float | None) -> None:
        self.timeout = value

    def gettimeout(self) -> float | None:
        return self.timeout

    def setsockopt(self, *args: Any) -> None:
        return None

    def setblocking(self, flag: bool) -> None:
        return None

    def fileno(self) -> int:
        if self._fds is None:
            self._fds = os.pipe()
        return self._fds[0]

    def shutdown(self, how: int) -> None:
        return None

    def close(self) -> None:
        fds, self._fds = self._fds, None
        if fds is not None:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __del__(self) -> None:
        self.close()


class _ReplayRaw(io.RawIOBase):
    """Serves recorded bytes, then the recorded read error (if any), then end of stream."""

    def __init__(self, data: bytes, error: BaseException | None):
        self._data = memoryview(bytes(data))
        self._pos = 0
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = min(len(b), len(self._data) - self._pos)
        if n <= 0:
            if self._error is not None:
                err, self._error = self._error, None
                raise err
            return 0
        b[:n] = self._data[self._pos : self._pos + n]
        self._pos += n
        return n


class _TeeRaw(io.RawIOBase):
    """Reads the real connection and keeps every byte read (recording)."""

    def __init__(self, inner: Any, buf: bytearray, slot: _Slot | None):
        self._inner = inner
        self._buf = buf
        self._slot = slot

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        try:
            with suspended():
                n = self._inner.readinto(b)
        except Exception as exc:
            if self._slot is not None:
                self._slot.set(self._buf, exc)
            raise
        if n:
            with contextlib.suppress(BufferError):  # the snapshot is being written right now: it is complete
                self._buf += memoryview(b)[:n]
        return n or 0

    def fileno(self) -> int:
        return self._inner.fileno()  # type: ignore[no-any-return]

    def close(self) -> None:
        if not self.closed:
            with suspended():
                self._inner.close()
        super().close()


class _TeeSocket:
    """What the response class is given while recording: a socket whose file tees."""

    def __init__(self, sock: Any, buf: bytearray, slot: _Slot | None, conn: Any):
        self._sock = sock
        self._buf = buf
        self._slot = slot
        self._conn = conn

    def makefile(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        try:
            inner = self._sock.makefile("rb", 0)
        except Exception:  # noqa: BLE001 - fail open: not teed, the snapshot cannot replay this
            _not_replayable(ACTIVE.get(), "an http response could not be recorded (socket without makefile)")
            return self._sock.makefile(mode, *args, **kwargs)
        return io.BufferedReader(_TeeRaw(inner, self._buf, self._slot), io.DEFAULT_BUFFER_SIZE)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _send(self: Any, data: Any) -> None:
    s = ACTIVE.get()
    if s is None:
        return _real_send(self, data)
    if self.sock is None and self.auto_open:
        self.connect()  # recorded (failures) / replayed here, in the application's context
    sent = self.__dict__.get("_replay_sent")
    if sent is None:
        sent = self.__dict__["_replay_sent"] = bytearray()
    for block in _blocks(self, data):
        sent += block
        if s.replaying:
            _real_send(self, block)  # to the fake socket
        else:
            claim_socket(self.sock)
            with suspended():
                _real_send(self, block)
    return None


def _blocks(conn: Any, data: Any) -> Iterator[bytes]:
    if hasattr(data, "read"):
        encode = conn._is_textIO(data)
        while True:
            block = data.read(conn.blocksize)
            if not block:
                return
            yield block.encode("iso-8859-1") if encode else block
    try:
        yield bytes(memoryview(data))
    except TypeError:
        for d in data:
            yield bytes(memoryview(d))


def _getresponse(self: Any) -> Any:
    s = ACTIVE.get()
    if s is None:
        return _real_getresponse(self)
    sent = self.__dict__.pop("_replay_sent", None)
    if sent is None:  # nothing sent inside the session: not ours to answer
        if s.replaying and isinstance(self.sock, _FakeSocket):
            self.sock.serve(b"", None)
        return _real_getresponse(self)
    try:
        args = _request_args(self, bytes(sent))
    except Exception:  # noqa: BLE001
        log.warning("replay: could not parse an http request", exc_info=True)
        args = ("?", f"{_conn_scheme(self)}://{self.host}:{self.port}", bytes(sent), [])
    if s.replaying:
        return _replay_getresponse(self, s, args)
    return _record_getresponse(self, s, args)


def _record_getresponse(self: Any, s: Any, args: Any) -> Any:
    try:
        _next_seq(s)
        buf = bytearray()
        slot = _record_slot(s, args)
        if slot is not None:
            slot.set(buf)
        tee = _TeeSocket(self.sock, buf, slot, self)
        claim_socket(self.sock)
        had = "response_class" in self.__dict__
        cls = self.response_class

        def factory(sock: Any, *a: Any, **kw: Any) -> Any:
            return cls(tee if sock is tee._sock else sock, *a, **kw)

        self.response_class = factory
    except Exception:  # noqa: BLE001 - fail open
        log.warning("replay: could not record an http response", exc_info=True)
        _not_replayable(s, "an http response could not be recorded")
        with suspended():
            return _real_getresponse(self)
    try:
        with suspended():
            return _real_getresponse(self)
    finally:
        if had:
            self.response_class = cls
        else:
            self.__dict__.pop("response_class", None)


def _replay_getresponse(self: Any, s: Any, args: Any) -> Any:
    _next_seq(s)
    inter = s.find(CHANNEL, "request", args)
    answer, error = _split_answer(s, inter)
    if isinstance(answer, list | tuple):
        answer = _raw_from_parts(answer)  # recorded through httpx
    sock = self.sock
    if not isinstance(sock, _FakeSocket):  # a connection opened before the replay started
        sock = self.sock = _FakeSocket(self)
    sock.serve(bytes(answer or b""), error)
    return _real_getresponse(self)


def _make_connect(cls: type, real: Callable[..., Any]) -> Callable[..., Any]:
    def connect(self: Any, *args: Any, **kwargs: Any) -> Any:
        s = ACTIVE.get()
        if s is None or self.__dict__.get("_replay_connecting"):
            return real(self, *args, **kwargs)
        self.__dict__["_replay_connecting"] = True
        try:
            self.__dict__.pop("_replay_sent", None)
            if s.replaying:
                return _replay_connect(self, s, real, args, kwargs)
            try:
                with suspended():
                    result = real(self, *args, **kwargs)
            except Exception as exc:
                _record_connect_failure(self, s, exc)
                raise
            claim_socket(self.sock)
            self.__dict__.pop("_replay_sent", None)  # a proxy tunnel's CONNECT is not the request
            return result
        finally:
            self.__dict__.pop("_replay_connecting", None)

    connect.__wrapped__ = real  # type: ignore[attr-defined]
    connect.__qualname__ = f"{cls.__qualname__}.connect"
    connect.__module__ = cls.__module__
    return connect


def _record_connect_failure(conn: Any, s: Any, exc: Exception) -> None:
    try:
        args = _connect_args(conn, _next_seq(s))
        low = _socket_error(exc)
        if low is not None:
            s.record(CHANNEL, "connect", (*args, "socket"), None, low)
        else:
            s.record(CHANNEL, "connect", (*args, "tls"), None, exc)
    except Exception:  # noqa: BLE001 - fail open
        log.warning("replay: could not record an http connect failure", exc_info=True)
        _not_replayable(s, "an http connect failure could not be recorded")


def _replay_connect(conn: Any, s: Any, real: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    base = _connect_args(conn, -1)[:3]
    counts = _SEQ.get(s, {})
    n = counts.get(STRAND.get(), 0)
    for stage in ("socket", "tls"):
        ask = (*base, n, stage)
        if s.peek(CHANNEL, "connect", ask) is None:
            continue
        _next_seq(s)
        inter = s.find(CHANNEL, "connect", ask)
        try:
            s.answer(CHANNEL, "connect", inter)
        except Exception as raised:
            exc = _rebuilt(raised)
            if stage == "tls" or not isinstance(exc, OSError):
                raise exc from None
            # let the library wrap the socket error exactly as it did (urllib3's NewConnectionError)
            token = _FAIL_CONNECT.set(exc)
            saved = conn.__dict__.get("_create_connection")
            conn.__dict__["_create_connection"] = _failing_create_connection
            try:
                return real(conn, *args, **kwargs)
            finally:
                _FAIL_CONNECT.reset(token)
                if saved is None:
                    conn.__dict__.pop("_create_connection", None)
                else:
                    conn.__dict__["_create_connection"] = saved
        return None
    conn.sock = _FakeSocket(conn)
    if hasattr(conn, "is_verified"):  # urllib3 HTTPS: verified as it was when recorded
        conn.is_verified = _would_verify(conn)
    if hasattr(conn, "_has_connected_to_proxy"):
        conn._has_connected_to_proxy = bool(getattr(conn, "proxy", None))
    return None


def _would_verify(conn: Any) -> bool:
    if getattr(conn, "default_port", 80) != 443:
        return False
    reqs = getattr(conn, "cert_reqs", None)
    if reqs in (ssl.CERT_NONE, "CERT_NONE", "NONE"):
        return False
    ctx = getattr(conn, "ssl_context", None)
    return not (reqs is None and ctx is not None and getattr(ctx, "verify_mode", None) == ssl.CERT_NONE)


def _failing_create_connection(*args: Any, **kwargs: Any) -> Any:
    err = _FAIL_CONNECT.get()
    if err is None:
        raise OSError("replay: no network during replay")
    raise err


def _patch_class(cls: type) -> None:
    own = cls.__dict__.get("connect")
    if own is None or getattr(own, "__wrapped__", None) is not None or cls in _REAL_CONNECT:
        return
    _REAL_CONNECT[cls] = own
    cls.connect = _make_connect(cls, own)  # type: ignore[attr-defined]


def _init_subclass(cls: type, **kwargs: Any) -> None:
    super(_Conn, cls).__init_subclass__(**kwargs)  # type: ignore[misc]
    try:
        _patch_class(cls)
    except Exception:  # noqa: BLE001 - never break a class definition
        log.warning("replay: could not instrument %s", cls.__qualname__, exc_info=True)


def _all_subclasses(cls: type) -> Iterator[type]:
    sub: type
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _instrument_urllib3_connection(module: Any) -> None:
    """urllib3 opens sockets with its own ``create_connection``: fail it on a replayed refusal."""
    real = module.create_connection

    def create_connection(*args: Any, **kwargs: Any) -> Any:
        err = _FAIL_CONNECT.get()
        if err is not None:
            raise err
        return real(*args, **kwargs)

    create_connection.__wrapped__ = real  # type: ignore[attr-defined]
    module.create_connection = create_connection


# ------------------------------------------------------------------------------ install


def install() -> None:
    """Instrument http.client (now) and httpx / urllib3's socket opening (when imported)."""
    global _installed
    with _lock:
        if _installed:
            return
        _Conn.send = _send  # type: ignore[method-assign]
        _Conn.getresponse = _getresponse  # type: ignore[method-assign]
        _patch_class(_Conn)
        for sub in list(_all_subclasses(_Conn)):
            _patch_class(sub)
        _Conn.__init_subclass__ = classmethod(_init_subclass)  # type: ignore[assignment,method-assign]
        _installed = True
    hooks.when_imported("urllib3.util.connection", _instrument_urllib3_connection)
    from replay.capture.channels.httpx_transport import instrument_httpx

    hooks.when_imported("httpx", instrument_httpx)
