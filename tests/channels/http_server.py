"""A real WSGI application served by a real HTTP server on loopback, for the http channel tests.

``wsgiref`` with a threading mixin, in a background thread on ``127.0.0.1`` port 0. The
handler answers HTTP/1.1 with ``Connection: close`` and sends bodies of unknown length with
chunked transfer encoding (``wsgiref`` itself only speaks HTTP/1.0 framing).

Endpoints: ``/json`` (JSON GET echoing the query), ``/echo`` (POST: echoes the body),
``/stream`` (chunked, several pieces), ``/gzip`` (gzip content encoding), ``/slow?s=`` (sleeps
first), ``/fail`` (500), ``/redirect`` (302 to ``/json?from=redirect``). ``server.hits``
lists ``(method, path)`` of every request that really reached the server.
"""

from __future__ import annotations

import gzip
import json
import socketserver
import ssl
import subprocess
import threading
import time
import urllib.parse
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer


def app(environ: dict[str, Any], start_response: Any) -> Any:
    path = environ["PATH_INFO"]
    query = dict(urllib.parse.parse_qsl(environ.get("QUERY_STRING", "")))
    environ["replay.server"].hits.append((environ["REQUEST_METHOD"], path + ("?" + environ["QUERY_STRING"] if environ.get("QUERY_STRING") else "")))
    if path == "/json":
        body = json.dumps({"path": path, "query": query, "agent": environ.get("HTTP_USER_AGENT", "")[:7]}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]
    if path == "/echo":
        size = int(environ.get("CONTENT_LENGTH") or 0)
        data = environ["wsgi.input"].read(size) if size else b""
        start_response("201 Created", [("Content-Type", "application/json"), ("X-Seen", str(len(data)))])
        return [json.dumps({"got": data.decode("utf-8", "replace"), "method": environ["REQUEST_METHOD"]}).encode()]
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])

        def pieces() -> Any:
            for i in range(int(query.get("n", "4"))):
                yield f"piece-{i};".encode()
        return pieces()
    if path == "/gzip":
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Encoding", "gzip")])
        return [gzip.compress(json.dumps({"compressed": True, "items": list(range(20))}).encode())]
    if path == "/slow":
        time.sleep(float(query.get("s", "0.5")))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slow"]
    if path == "/fail":
        start_response("500 Internal Server Error", [("Content-Type", "text/plain")])
        return [b"boom: the server failed"]
    if path == "/redirect":
        start_response("302 Found", [("Location", "/json?from=redirect"), ("Content-Type", "text/plain")])
        return [b"moved"]
    start_response("404 Not Found", [("Content-Type", "text/plain")])
    return [b"not found"]


class _Handler(ServerHandler):
    http_version = "1.1"
    _chunked = False

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        self._chunked = "Content-Length" not in self.headers and self.environ.get("SERVER_PROTOCOL") == "HTTP/1.1"
        if self._chunked:
            self.headers["Transfer-Encoding"] = "chunked"
        self.headers["Connection"] = "close"

    def write(self, data: bytes) -> None:
        if not self.headers_sent:
            self.bytes_sent = len(data)
            self.send_headers()
        else:
            self.bytes_sent += len(data)
        if self._chunked:
            if data:
                self._write(b"%x\r\n%s\r\n" % (len(data), data))
        else:
            self._write(data)
        self._flush()

    def finish_content(self) -> None:
        if not self.headers_sent:
            super().finish_content()
        if self._chunked:
            self._write(b"0\r\n\r\n")
            self._flush()


class _RequestHandler(WSGIRequestHandler):
    def handle(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or not self.parse_request():
            return
        env = self.get_environ()
        env["replay.server"] = self.server
        handler = _Handler(self.rfile, self.wfile, self.get_stderr(), env, multithread=True)
        handler.request_handler = self
        handler.run(self.server.get_app())

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        return None


class LoopbackServer(socketserver.ThreadingMixIn, WSGIServer):
    """The server; ``url`` is its base URL, ``hits`` the requests that reached it."""

    daemon_threads = True

    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate file, key file) to serve HTTPS instead of HTTP."""
        super().__init__(("127.0.0.1", 0), _RequestHandler)
        self.set_app(app)
        self.hits: list[tuple[str, str]] = []
        scheme = "http"
        if tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.socket = ctx.wrap_socket(self.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server_port}"
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket: the port refuses connections."""
        self.shutdown()
        self.server_close()
        self._thread.join(5)


def self_signed_cert(directory: str) -> tuple[str, str] | None:
    """A certificate for 127.0.0.1 and its key, made with the ``openssl`` CLI (None without it)."""
    cert, key = f"{directory}/cert.pem", f"{directory}/key.pem"
    try:
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return cert, key
