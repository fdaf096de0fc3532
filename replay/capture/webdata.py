"""Web requests as data: the records the middleware writes and replay rebuilds (stdlib only).

The request (entry kind ``wsgi`` / ``asgi``, one argument, a map):

* WSGI: ``{"environ", "body", "file_wrapper", "body_limit"}``: the environ's string values
  (CGI and ``HTTP_*`` variables, ``wsgi.url_scheme``) and the plain ``wsgi.*`` flags
  (version, multithread, multiprocess, run_once, input_terminated) as they were when the
  request reached the middleware; ``body`` is what ``wsgi.input`` held (None when it was
  over the limit); ``file_wrapper`` whether the server offered one.
* ASGI: ``{"scope", "messages", "body_limit"}``: the scope's plain-data keys (a lifespan
  ``state`` becomes ``{}``) and the messages the app received, in order: the
  ``http.request`` messages of the body, then an ``http.disconnect`` if the client left
  before the response was complete (replay answers one after a complete response itself).

``body_limit`` is the middleware's ``max_body_bytes``, so replay cuts the response body at
the same size. The response (the outcome's value) is ``{"status", "headers", "body",
"body_size", "body_truncated"}`` (WSGI ``status`` is the status line, ASGI the integer
code; a body the server sent from a file wrapper is marked ``body_file``).

Also here: where the wrapped app lives (:func:`locate`, :class:`AppEntry`), so replay can
import it by ``module:attribute``.
"""

from __future__ import annotations

import io
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Final

from replay.capture.identity import project_root_of, vendored
from replay.capture.recorder import describe_exception, return_outcome
from replay.snapshot.codec import Encoder

MAX_BODY_BYTES: Final = 1 << 20
WSGI: Final = "wsgi"
ASGI: Final = "asgi"
KINDS: Final = frozenset({WSGI, ASGI})
_WSGI_FLAGS: Final = ("wsgi.version", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
                      "wsgi.input_terminated")
_PLAIN_ATOMS: Final = (str, bytes, int, float, bool, type(None))


def response_record(status: Any, headers: Iterable[Any], body: bytes, size: int) -> dict[str, Any]:
    """The response as data: ``status`` (WSGI line or ASGI code), headers, body cut at the cap.

    Args:
        status: ``"500 INTERNAL SERVER ERROR"`` (WSGI) or ``500`` (ASGI).
        headers: (name, value) pairs as the app gave them (ASGI pairs as bytes).
        body: The first bytes of the body (at most the cap).
        size: The body's full size in bytes.
    """
    return {"status": status, "headers": [tuple(h) for h in headers], "body": body, "body_size": size,
            "body_truncated": size > len(body)}


class BodyBuffer:
    """The first ``cap`` bytes of a response body and its full size (recording and replay alike)."""

    __slots__ = ("cap", "chunks", "kept", "size")

    def __init__(self, cap: int):
        self.cap = cap
        self.chunks: list[bytes] = []
        self.kept = 0
        self.size = 0

    def add(self, chunk: bytes) -> None:
        n = len(chunk)
        self.size += n
        room = self.cap - self.kept
        if room > 0:
            part = bytes(chunk[:room]) if n > room else bytes(chunk)
            self.chunks.append(part)
            self.kept += len(part)

    def record(self, status: Any, headers: Iterable[Any]) -> dict[str, Any]:
        """The response record with this body (see :func:`response_record`)."""
        return response_record(status, headers, b"".join(self.chunks), self.size)


def status_code(status: Any) -> int:
    """The integer code of a WSGI status line or an ASGI status (0 when it is malformed)."""
    if isinstance(status, int):
        return status
    try:
        return int(str(status)[:3])
    except ValueError:
        return 0


def response_outcome(response: dict[str, Any], logged: BaseException | None = None,
                     roots: list[str] | None = None, app_modules: set[str] | None = None) -> dict[str, Any]:
    """The outcome record of a request that produced ``response``: a failure when 5xx.

    A ``return`` outcome whose value is the response record, plus ``http_status`` (int) and
    ``failed`` (bool), which the verdicts use (:func:`replay.verify.verdict.failed`). A
    failure whose cause the app logged (``logged``: see :mod:`replay.capture.logged`) also
    has ``logged_exception``: that exception described as an exception outcome (type,
    message, traceback, the failing frames' locals, place; ``roots`` and ``app_modules`` as
    for :func:`~replay.capture.recorder.describe_exception`).
    """
    out = return_outcome(response)
    code = status_code(response.get("status"))
    out["http_status"] = code
    out["failed"] = code >= 500
    if logged is not None and code >= 500:
        out["logged_exception"] = describe_exception(logged, roots, app_modules)
    return out


def wsgi_request(environ: dict[str, Any], body: bytes | None, limit: int) -> dict[str, Any]:
    """The WSGI request as data (see the module docstring) from a copy of its environ.

    ``limit`` is the response body limit in bytes, kept so replay cuts the body alike.
    """
    data = {k: v for k, v in environ.items() if type(k) is str and type(v) is str}
    for key in _WSGI_FLAGS:
        if key in environ and _plain(environ[key]):
            data[key] = environ[key]
    return {"environ": data, "body": body, "file_wrapper": environ.get("wsgi.file_wrapper") is not None,
            "body_limit": limit}


def asgi_request(scope: dict[str, Any], messages: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """The ASGI request as data (see the module docstring) from a copy of its scope."""
    data: dict[str, Any] = {}
    for key, value in scope.items():
        if key == "state":
            data[key] = {}  # lifespan state holds objects (pools, clients), not request data
        elif _plain(value):
            data[key] = value
    return {"scope": data, "messages": messages, "body_limit": limit}


def _plain(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is plain data (atoms, lists, tuples, str-keyed dicts), 8 levels deep."""
    if isinstance(value, _PLAIN_ATOMS):
        return True
    if depth > 8:
        return False
    if isinstance(value, list | tuple):
        return all(_plain(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


# ------------------------------------------------------------------------ the entry point


def locate(objects: list[Any], hint: str | None = None) -> tuple[str, str] | None:
    """``(module, attribute)`` where the first findable of ``objects`` is bound at module level.

    Scans the loaded modules once (milliseconds). Earlier objects win; among the places of
    one object, the module named ``hint`` (a Flask app's ``import_name``), then a module
    other than ``__main__`` (or an alias of it: multiprocessing, which Django's sqlite
    backend imports, binds ``__mp_main__``), then public names and the shortest module name.
    """
    wanted = {id(o): rank for rank, o in enumerate(objects)}
    main = sys.modules.get("__main__")
    best: tuple[tuple[Any, ...], str, str] | None = None
    for name, module in list(sys.modules.items()):
        try:
            namespace = vars(module)
        except TypeError:
            continue
        for attr, value in list(namespace.items()):
            rank = wanted.get(id(value))
            if rank is None or value is not objects[rank] or not isinstance(attr, str):
                continue
            key = (rank, name != hint, module is main, attr.startswith("_"), len(name), name, attr)
            if best is None or key < best[0]:
                best = (key, name, attr)
    return None if best is None else (best[1], best[2])


class AppEntry:
    """Where the wrapped app lives, resolved once (at the first recorded request).

    Args:
        middleware: The middleware (its ``app`` is what is looked for, then itself).
        kind: ``"wsgi"`` or ``"asgi"``.
        name: ``"module:attribute"`` given by the user, which wins over the search.
    """

    def __init__(self, middleware: Any, kind: str, name: str | None):
        self.middleware = middleware
        self.kind = kind
        self.name = name
        self._lock = threading.Lock()
        self._template: dict[str, Any] | None = None
        self.roots: list[str] = []

    def template(self) -> dict[str, Any]:
        """The entry record without arguments: module, qualname, file, project root, reasons."""
        if self._template is None:
            with self._lock:
                if self._template is None:
                    self._template = self._resolve()
                    root = self._template["project_root"]
                    self.roots = [root] if root else []
        return self._template

    def _resolve(self) -> dict[str, Any]:
        app = self.middleware.app
        reasons: list[str] = []
        if self.name is not None:
            module, _, qualname = self.name.partition(":")
        else:
            inner = getattr(app, "__self__", app)  # `app.wsgi_app = Middleware(app.wsgi_app)`: the Flask app
            hint = getattr(inner, "import_name", None) or getattr(inner, "__module__", None)
            found = locate([inner, self.middleware], hint if isinstance(hint, str) else None)
            if found is None:
                module, qualname = type(app).__module__, type(app).__qualname__
                reasons.append(f"the {self.kind.upper()} app is not bound to a name in any loaded module: "
                               f"pass name='package.module:app' to the middleware")
            else:
                module, qualname = found
        file = getattr(sys.modules.get(module), "__file__", None)
        file = os.path.abspath(file) if isinstance(file, str) else None
        root = project_root_of(module, file)
        if root is not None and vendored(root):
            # An app installed as a library (httpbin in site-packages): it is identified by
            # its installed version in the environment record, not by embedded sources, and
            # replay imports the installed copy (or one given with --code).
            root = None
        elif root is None and not reasons:
            reasons.append(f"the app's module {module} has no source file")
        return {"module": module, "qualname": qualname, "file": file, "kind": self.kind, "project_root": root,
                "main_file": file if module == "__main__" else None, "reasons": reasons}

    def record(self, request: dict[str, Any], reasons: list[str]) -> dict[str, Any]:
        """The full entry record for one request (encoded now, when a snapshot is written)."""
        entry = dict(self.template())
        enc = Encoder()
        entry["args"] = enc.encode([request])
        entry["kwargs"] = enc.encode({})
        entry["reasons"] = entry["reasons"] + reasons + [f"request not exact: {r}" for r in enc.lossy]
        return entry


def buffer_input(environ: dict[str, Any], cap: int, reasons: list[str]) -> bytes | None:
    """Read the request body into memory (up to ``cap`` bytes) and give the app a copy.

    Returns the body, or None when it was larger than ``cap`` (the app then reads the rest
    from the original stream, after what was read here).
    """
    stream = environ.get("wsgi.input")
    length_text = environ.get("CONTENT_LENGTH")
    try:
        length = int(length_text) if length_text else 0
    except ValueError:
        length = 0
    # Without a length, only a chunked request has a body (the server then ends the stream
    # and says so with wsgi.input_terminated); waitress sets that flag on every request.
    chunked = (not length_text and bool(environ.get("wsgi.input_terminated"))
               and "chunked" in str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower())
    if stream is None or (length <= 0 and not chunked):
        return b""
    want = cap + 1 if chunked and length <= 0 else min(length, cap + 1)
    parts: list[bytes] = []
    got = 0
    while got < want:
        part = stream.read(want - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    body = b"".join(parts)
    if got > cap or length > cap:
        reasons.append(f"the request body is larger than the capture limit of {cap} bytes")
        environ["wsgi.input"] = PrefixedInput(body, stream)
        return None
    environ["wsgi.input"] = io.BytesIO(body)
    return body


class PrefixedInput:
    """``wsgi.input`` for a body larger than the cap: the bytes already read, then the rest."""

    def __init__(self, prefix: bytes, rest: Any):
        self._prefix = io.BytesIO(prefix)
        self._rest = rest

    def read(self, size: int | None = -1) -> bytes:
        data = self._prefix.read(-1 if size is None or size < 0 else size)
        if size is None or size < 0:
            return data + self._rest.read()
        return data + self._rest.read(size - len(data)) if len(data) < size else data

    def readline(self, size: int | None = -1) -> bytes:
        line = self._prefix.readline(-1 if size is None else size)
        if line.endswith(b"\n") or (size is not None and 0 <= size <= len(line)):
            return line
        rest = -1 if size is None or size < 0 else size - len(line)
        return line + self._rest.readline(rest) if rest else line

    def readlines(self, hint: int = -1) -> list[bytes]:
        return list(iter(self.readline, b""))

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.readline, b"")
