"""The socket channel: raw sockets as the fallback for clients no higher channel covers,
and the ``dns`` channel: name resolution.

Recorded (channel ``socket``), on blocking (``timeout != 0``) ``AF_INET``/``AF_INET6``/
``AF_UNIX`` stream or datagram sockets connected through ``connect``/``connect_ex`` inside
the recorded call, and on ``AF_INET``/``AF_INET6`` datagram sockets used with
``sendto``/``recvfrom`` there:

* ``connect``/``connect_ex`` ``(peer,)``: the answer, or the error (refused, timed out);
* ``send``/``sendall``/``sendto`` ``(peer, data)``: effects, target ``peer``;
* ``recv``/``recv_into`` as ``recv`` ``(peer, size)`` -> the bytes received (``peek`` for
  ``MSG_PEEK``), ``recvfrom``/``recvfrom_into`` as ``recvfrom`` -> ``(bytes, address)``;
* ``shutdown``, ``getpeername``, ``getsockname`` of those sockets.

``makefile()`` (``SocketIO`` reads with ``recv_into`` and writes with ``send``) and
``create_connection`` (``getaddrinfo`` then ``connect``) are covered through these;
``sendfile`` on a recorded socket goes through ``send``. ``peer`` is the address as the
program gave it to ``connect`` (for ``create_connection``: the resolved address), port
included: it is the identity of the service.

Replay: the socket object exists (creating one touches nothing) but ``connect`` does not
connect, sends are matched against the tape and not sent, receives return the recorded
bytes. With keyed matching (a candidate) the bytes received from a peer are one stream:
they are served in the recorded order whatever buffer sizes the candidate asks with.

Not recorded: sockets a higher channel claims (:func:`replay.capture.boundary.claim_socket`),
non-blocking sockets (asyncio's transports and its self-pipe, selectors: readiness is not
recorded), socket pairs and other sockets never connected through ``connect`` (server side:
``accept``), TLS (``ssl.SSLSocket``; wrapping a recorded connection in TLS makes the
snapshot not replayable, with a reason), ``sendmsg``/``recvmsg``, connections opened
outside the recorded call (reusing one opened in an earlier recorded call makes the
snapshot not replayable, with a reason).

Name resolution (channel ``dns``): ``getaddrinfo``, ``gethostbyname``,
``gethostbyname_ex``, ``gethostbyaddr`` (hence ``getfqdn``) and ``getnameinfo`` with their
arguments as the key; answers are constant within a replay (a candidate resolving a name
more often than recorded gets the last recorded answer).
"""

from __future__ import annotations

import _socket
import logging
import os
import socket as _sock
import sys
import weakref
from typing import Any, Final

from replay.capture.boundary import (
    ACTIVE,
    ChannelSpec,
    is_claimed,
    not_replayable,
    register_channel,
)

log = logging.getLogger("replay.capture")

CHANNEL: Final = "socket"
DNS: Final = "dns"
SEND_OPS: Final = frozenset({"send", "sendall", "sendto"})
STREAM_OPS: Final = frozenset({"recv", "peek", "recvfrom"})
_FAMILIES: Final = frozenset({_sock.AF_INET, _sock.AF_INET6, getattr(_sock, "AF_UNIX", -1)})
_INET: Final = frozenset({_sock.AF_INET, _sock.AF_INET6})
_TYPES: Final = frozenset({_sock.SOCK_STREAM, _sock.SOCK_DGRAM})
_MSG_PEEK: Final = getattr(_sock, "MSG_PEEK", 2)

_C = _socket.socket
_c_connect = _C.connect
_c_connect_ex = _C.connect_ex
_c_send = _C.send
_c_sendall = _C.sendall
_c_sendto = _C.sendto
_c_recv = _C.recv
_c_recv_into = _C.recv_into
_c_recvfrom = _C.recvfrom
_c_recvfrom_into = _C.recvfrom_into
_c_shutdown = _C.shutdown
_c_getpeername = _C.getpeername
_c_getsockname = _C.getsockname
_c_gettimeout = _C.gettimeout
_c_family = _C.family.__get__  # type: ignore[attr-defined]
_c_type = _C.type.__get__  # type: ignore[attr-defined]
_real_sendfile = _sock.socket.sendfile
_ACTIVE_get = ACTIVE.get

_real_getaddrinfo = _sock.getaddrinfo
_real_gethostbyname = _sock.gethostbyname
_real_gethostbyname_ex = _sock.gethostbyname_ex
_real_gethostbyaddr = _sock.gethostbyaddr
_real_getnameinfo = _sock.getnameinfo


class _Conn:
    """What the channel knows of a recorded socket."""

    __slots__ = ("peer", "session", "pending", "dgram")

    def __init__(self, peer: Any, session: Any, dgram: bool):
        self.peer = peer
        self.session = weakref.ref(session)
        self.pending = b""  # keyed replay: bytes of a recorded receive not yet handed out
        self.dgram = dgram


_STATE: Final[weakref.WeakKeyDictionary[Any, _Conn]] = weakref.WeakKeyDictionary()
_FLAGGED: Final[weakref.WeakSet[Any]] = weakref.WeakSet()


def _plain(value: Any) -> Any:
    """An address as plain data: tuples of str/int/bytes, a path string."""
    if isinstance(value, (tuple, list)):
        return tuple(_plain(v) for v in value)
    if value is None:
        return None
    for kind in (bool, int, float, str, bytes):
        if isinstance(value, kind):
            return kind(value)  # enums and other subclasses as their plain base
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    try:
        return os.fspath(value)
    except TypeError:
        return repr(value)


def _peer_key(peer: Any) -> Any:
    """A peer for matching: an IPv6 address without its flow info and scope id."""
    if isinstance(peer, (tuple, list)) and len(peer) >= 2:
        return (peer[0], peer[1])
    return peer


def _key(op: str, args: Any) -> Any:
    if op in STREAM_OPS:
        return _peer_key(args[0])  # receives: one byte stream per peer, whatever the sizes
    return (_peer_key(args[0]), *args[1:])


def _target(op: str, args: Any) -> Any:
    return _peer_key(args[0])


def _effect(op: str, args: Any) -> bool:
    return op in SEND_OPS


register_channel(ChannelSpec(CHANNEL, key=_key, effect=_effect, target=_target))
register_channel(ChannelSpec(DNS, constant=True))


def _eligible(sock: Any) -> bool:
    """A socket this channel records: blocking inet/unix stream or datagram, unclaimed, not TLS."""
    if _c_family(sock) not in _FAMILIES or _c_type(sock) not in _TYPES:
        return False
    if _c_gettimeout(sock) == 0.0 or is_claimed(sock):
        return False
    ssl = sys.modules.get("ssl")
    return not (ssl is not None and isinstance(sock, ssl.SSLSocket))


def _conn(sock: Any, s: Any) -> _Conn | None:
    """The recorded connection of ``sock`` in session ``s`` (None: not this channel's)."""
    try:
        conn = _STATE.get(sock)
    except TypeError:
        return None
    if conn is None:
        return None
    if conn.session() is not s:
        if not s.replaying and sock not in _FLAGGED:
            _FLAGGED.add(sock)
            not_replayable(s, f"socket channel: a connection to {conn.peer!r} opened outside the recorded call "
                               "was used (its traffic is not recorded)")
        return None
    return conn


def _datagram(sock: Any, s: Any) -> _Conn | None:
    """``sendto``/``recvfrom`` on an inet datagram socket: recorded even if never connected."""
    conn = _conn(sock, s)
    if conn is not None:
        return conn
    try:
        if sock in _STATE or _c_family(sock) not in _INET or _c_type(sock) != _sock.SOCK_DGRAM or not _eligible(sock):
            return None
        conn = _Conn(None, s, True)
        _STATE[sock] = conn
        return conn
    except Exception:  # noqa: BLE001 - fail open
        log.warning("replay: socket channel could not inspect a datagram socket", exc_info=True)
        return None


def _serve(s: Any, op: str, args: tuple[Any, ...]) -> Any:
    """Replay: the recorded answer (an OSError rebuilt with its errno)."""
    try:
        return s.call(CHANNEL, op, args, None)
    except OSError as exc:
        if exc.errno is None and len(exc.args) >= 2 and isinstance(exc.args[0], int):
            # the codec rebuilds exceptions without running OSError.__new__, so errno/strerror are lost
            raise type(exc)(*exc.args).with_traceback(exc.__traceback__) from None
        raise


# ------------------------------------------------------------------------------ connect


def _connect_common(sock: Any, s: Any, address: Any, op: str) -> Any:
    real = _c_connect if op == "connect" else _c_connect_ex
    try:
        eligible = _eligible(sock)
        peer = _plain(address) if eligible else None
        dgram = _c_type(sock) == _sock.SOCK_DGRAM
    except Exception:  # noqa: BLE001 - fail open
        log.warning("replay: socket channel could not inspect a socket", exc_info=True)
        return real(sock, address)
    if not eligible:
        return real(sock, address)
    if s.replaying:
        result = _serve(s, op, (peer,))
    else:
        result = s.call(CHANNEL, op, (peer,), lambda: real(sock, address))
    if op == "connect" or result == 0:
        _STATE[sock] = _Conn(peer, s, dgram)
    return result


def _connect(self: Any, address: Any) -> None:
    s = _ACTIVE_get()
    if s is None:
        return _c_connect(self, address)
    return _connect_common(self, s, address, "connect")


def _connect_ex(self: Any, address: Any) -> int:
    s = _ACTIVE_get()
    if s is None:
        return _c_connect_ex(self, address)
    return _connect_common(self, s, address, "connect_ex")


# ------------------------------------------------------------------------------ send


def _send_common(s: Any, op: str, peer: Any, data: Any, real: Any) -> Any:
    payload = bytes(data)
    if not s.replaying:
        return s.call(CHANNEL, op, (peer, payload), real)
    inter = s.find(CHANNEL, op, (peer, payload))
    try:
        result = s.answer(CHANNEL, op, inter)
    except OSError as exc:
        if exc.errno is None and len(exc.args) >= 2 and isinstance(exc.args[0], int):
            raise type(exc)(*exc.args).with_traceback(exc.__traceback__) from None
        raise
    if isinstance(result, int) and result != len(payload):
        # a changed effect (keyed): the recorded send of other data answers; a complete send stays complete
        recorded = _recorded_payload(inter)
        result = len(payload) if recorded is None or result >= len(recorded) else min(result, len(payload))
    return result


def _recorded_payload(inter: Any) -> bytes | None:
    try:
        from replay.snapshot.codec import decode

        args = decode(inter.args)
        return bytes(args[1])
    except Exception:  # noqa: BLE001
        return None


def _send(self: Any, data: Any, flags: int = 0) -> int:
    s = _ACTIVE_get()
    if s is None:
        return _c_send(self, data, flags)
    conn = _conn(self, s)
    if conn is None:
        return _c_send(self, data, flags)
    return _send_common(s, "send", conn.peer, data, lambda: _c_send(self, data, flags))


def _sendall(self: Any, data: Any, flags: int = 0) -> None:
    s = _ACTIVE_get()
    if s is None:
        return _c_sendall(self, data, flags)
    conn = _conn(self, s)
    if conn is None:
        return _c_sendall(self, data, flags)
    return _send_common(s, "sendall", conn.peer, data, lambda: _c_sendall(self, data, flags))


def _sendto(self: Any, data: Any, *rest: Any) -> int:
    s = _ACTIVE_get()
    if s is None:
        return _c_sendto(self, data, *rest)
    conn = _datagram(self, s)
    if conn is None or not rest:
        return _c_sendto(self, data, *rest)
    return _send_common(s, "sendto", _plain(rest[-1]), data, lambda: _c_sendto(self, data, *rest))


def _sendfile(self: Any, file: Any, offset: int = 0, count: int | None = None) -> int:
    s = _ACTIVE_get()
    if s is not None and _conn(self, s) is not None:
        return self._sendfile_use_send(file, offset, count)  # through send(): recorded
    return _real_sendfile(self, file, offset, count)


# ------------------------------------------------------------------------------ receive


def _stream_bytes(s: Any, conn: _Conn, size: int, flags: int) -> bytes:
    """Replay: the next ``size`` bytes at most of the connection's recorded stream."""
    args = (conn.peer, size) if not flags else (conn.peer, size, flags)
    if flags & _MSG_PEEK:
        return bytes(_serve(s, "peek", args))
    if conn.pending and size:
        data, conn.pending = conn.pending[:size], conn.pending[size:]
        return data
    data = bytes(_serve(s, "recv", args))
    if len(data) > size:  # keyed: the candidate asks with a smaller buffer than recorded
        data, conn.pending = data[:size], data[size:]
    return data


def _recv(self: Any, bufsize: int, flags: int = 0) -> bytes:
    s = _ACTIVE_get()
    if s is None:
        return _c_recv(self, bufsize, flags)
    conn = _conn(self, s)
    if conn is None:
        return _c_recv(self, bufsize, flags)
    if s.replaying:
        return _stream_bytes(s, conn, bufsize, flags)
    args = (conn.peer, bufsize) if not flags else (conn.peer, bufsize, flags)
    return s.call(CHANNEL, "peek" if flags & _MSG_PEEK else "recv", args, lambda: _c_recv(self, bufsize, flags))


def _into(buffer: Any, data: bytes) -> int:
    view = memoryview(buffer).cast("B")
    view[:len(data)] = data
    return len(data)


def _recv_into(self: Any, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
    s = _ACTIVE_get()
    if s is None:
        return _c_recv_into(self, buffer, nbytes, flags)
    conn = _conn(self, s)
    if conn is None:
        return _c_recv_into(self, buffer, nbytes, flags)
    size = nbytes or memoryview(buffer).nbytes
    if s.replaying:
        return _into(buffer, _stream_bytes(s, conn, size, flags))
    args = (conn.peer, size) if not flags else (conn.peer, size, flags)
    op = "peek" if flags & _MSG_PEEK else "recv"

    def real() -> bytes:
        n = _c_recv_into(self, buffer, nbytes, flags)
        return bytes(memoryview(buffer).cast("B")[:n])

    return len(s.call(CHANNEL, op, args, real))


def _recvfrom_replay(s: Any, conn: _Conn, size: int, flags: int) -> tuple[bytes, Any]:
    answer = _serve(s, "recvfrom", (conn.peer, size) if not flags else (conn.peer, size, flags))
    data, address = answer
    return bytes(data)[:size], address  # a datagram longer than the buffer is cut, the rest lost


def _recvfrom(self: Any, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
    s = _ACTIVE_get()
    if s is None:
        return _c_recvfrom(self, bufsize, flags)
    conn = _datagram(self, s)
    if conn is None:
        return _c_recvfrom(self, bufsize, flags)
    if s.replaying:
        return _recvfrom_replay(s, conn, bufsize, flags)
    args = (conn.peer, bufsize) if not flags else (conn.peer, bufsize, flags)
    return s.call(CHANNEL, "recvfrom", args, lambda: _c_recvfrom(self, bufsize, flags))


def _recvfrom_into(self: Any, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
    s = _ACTIVE_get()
    if s is None:
        return _c_recvfrom_into(self, buffer, nbytes, flags)
    conn = _datagram(self, s)
    if conn is None:
        return _c_recvfrom_into(self, buffer, nbytes, flags)
    size = nbytes or memoryview(buffer).nbytes
    if s.replaying:
        data, address = _recvfrom_replay(s, conn, size, flags)
        return _into(buffer, data), address
    args = (conn.peer, size) if not flags else (conn.peer, size, flags)

    def real() -> tuple[bytes, Any]:
        n, address = _c_recvfrom_into(self, buffer, nbytes, flags)
        return bytes(memoryview(buffer).cast("B")[:n]), address

    data, address = s.call(CHANNEL, "recvfrom", args, real)
    return len(data), address


# ------------------------------------------------------------------------------ other socket calls


def _shutdown(self: Any, how: int) -> None:
    s = _ACTIVE_get()
    if s is None:
        return _c_shutdown(self, how)
    conn = _conn(self, s)
    if conn is None:
        return _c_shutdown(self, how)
    if s.replaying:
        return _serve(s, "shutdown", (conn.peer, int(how)))
    return s.call(CHANNEL, "shutdown", (conn.peer, int(how)), lambda: _c_shutdown(self, how))


def _getpeername(self: Any) -> Any:
    s = _ACTIVE_get()
    if s is None:
        return _c_getpeername(self)
    conn = _conn(self, s)
    if conn is None:
        return _c_getpeername(self)
    if s.replaying:
        return _serve(s, "getpeername", (conn.peer,))
    return s.call(CHANNEL, "getpeername", (conn.peer,), lambda: _c_getpeername(self))


def _getsockname(self: Any) -> Any:
    s = _ACTIVE_get()
    if s is None:
        return _c_getsockname(self)
    conn = _conn(self, s)
    if conn is None:
        return _c_getsockname(self)
    if s.replaying:
        return _serve(s, "getsockname", (conn.peer,))
    return s.call(CHANNEL, "getsockname", (conn.peer,), lambda: _c_getsockname(self))


def _ssl_hook(ssl: Any) -> None:
    real_wrap = ssl.SSLContext.wrap_socket

    def wrap_socket(self: Any, sock: Any, *args: Any, **kwargs: Any) -> Any:
        s = _ACTIVE_get()
        if s is not None and not s.replaying and _conn(sock, s) is not None:
            not_replayable(s, "socket channel: TLS over a recorded raw connection is not recorded "
                               f"(peer {_STATE[sock].peer!r})")
        return real_wrap(self, sock, *args, **kwargs)

    wrap_socket.__wrapped__ = real_wrap  # type: ignore[attr-defined]
    ssl.SSLContext.wrap_socket = wrap_socket


# ------------------------------------------------------------------------------ dns


def _enum(value: Any, cls: Any) -> Any:
    try:
        return cls(value)
    except ValueError:
        return value


def _getaddrinfo(host: Any, port: Any, family: Any = 0, type: Any = 0, proto: int = 0, flags: int = 0) -> list[Any]:  # noqa: A002
    s = _ACTIVE_get()
    if s is None:
        return _real_getaddrinfo(host, port, family, type, proto, flags)
    args = (_plain(host), _plain(port), int(family), int(type), int(proto), int(flags))

    def real() -> list[Any]:
        return [(int(f), int(t), p, c, _plain(sa)) for f, t, p, c, sa in
                _real_getaddrinfo(host, port, family, type, proto, flags)]

    answer = _serve_dns(s, "getaddrinfo", args, real)
    return [(_enum(f, _sock.AddressFamily), _enum(t, _sock.SocketKind), p, c, tuple(sa)) for f, t, p, c, sa in answer]


def _serve_dns(s: Any, op: str, args: tuple[Any, ...], real: Any) -> Any:
    if not s.replaying:
        return s.call(DNS, op, args, real)
    try:
        return s.call(DNS, op, args, None)
    except OSError as exc:
        if exc.errno is None and len(exc.args) >= 2 and isinstance(exc.args[0], int):
            raise type(exc)(*exc.args).with_traceback(exc.__traceback__) from None
        raise


def _gethostbyname(hostname: str) -> str:
    s = _ACTIVE_get()
    if s is None:
        return _real_gethostbyname(hostname)
    return _serve_dns(s, "gethostbyname", (_plain(hostname),), lambda: _real_gethostbyname(hostname))


def _gethostbyname_ex(hostname: str) -> tuple[str, list[str], list[str]]:
    s = _ACTIVE_get()
    if s is None:
        return _real_gethostbyname_ex(hostname)
    return _serve_dns(s, "gethostbyname_ex", (_plain(hostname),), lambda: _real_gethostbyname_ex(hostname))


def _gethostbyaddr(ip_address: str) -> tuple[str, list[str], list[str]]:
    s = _ACTIVE_get()
    if s is None:
        return _real_gethostbyaddr(ip_address)
    return _serve_dns(s, "gethostbyaddr", (_plain(ip_address),), lambda: _real_gethostbyaddr(ip_address))


def _getnameinfo(sockaddr: Any, flags: int) -> tuple[str, str]:
    s = _ACTIVE_get()
    if s is None:
        return _real_getnameinfo(sockaddr, flags)
    return _serve_dns(s, "getnameinfo", (_plain(sockaddr), int(flags)), lambda: _real_getnameinfo(sockaddr, flags))


_getaddrinfo.__name__ = "getaddrinfo"
_gethostbyname.__name__ = "gethostbyname"
_gethostbyname_ex.__name__ = "gethostbyname_ex"
_gethostbyaddr.__name__ = "gethostbyaddr"
_getnameinfo.__name__ = "getnameinfo"

_METHODS: Final = {
    "connect": _connect, "connect_ex": _connect_ex, "send": _send, "sendall": _sendall, "sendto": _sendto,
    "recv": _recv, "recv_into": _recv_into, "recvfrom": _recvfrom, "recvfrom_into": _recvfrom_into,
    "shutdown": _shutdown, "getpeername": _getpeername, "getsockname": _getsockname, "sendfile": _sendfile,
}

_REAL_METHODS: Final = {
    "connect": _c_connect, "connect_ex": _c_connect_ex, "send": _c_send, "sendall": _c_sendall,
    "sendto": _c_sendto, "recv": _c_recv, "recv_into": _c_recv_into, "recvfrom": _c_recvfrom,
    "recvfrom_into": _c_recvfrom_into, "shutdown": _c_shutdown, "getpeername": _c_getpeername,
    "getsockname": _c_getsockname, "sendfile": _real_sendfile,
}


def install() -> None:
    """Patch ``socket.socket``'s methods and the resolver functions (once per process)."""
    from replay.capture.hooks import when_imported
    from replay.capture.interceptors import intercept, replace

    cls = _sock.socket
    installed = cls.__dict__.get("connect")
    if getattr(installed, "__wrapped__", installed) is _connect:
        return
    for name, fn in _METHODS.items():
        fn.__name__ = name
        fn.__qualname__ = f"socket.{name}"
        # outside a session each method calls the real one with the same arguments
        setattr(cls, name, intercept(_REAL_METHODS[name], fn, method=True))
    replace(_sock, "getaddrinfo", _getaddrinfo, gate=True)
    replace(_sock, "gethostbyname", _gethostbyname, gate=True)
    replace(_sock, "gethostbyname_ex", _gethostbyname_ex, gate=True)
    replace(_sock, "gethostbyaddr", _gethostbyaddr, gate=True)
    replace(_sock, "getnameinfo", _getnameinfo, gate=True)
    when_imported("ssl", _ssl_hook)
