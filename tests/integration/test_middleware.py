"""WSGI and ASGI middleware under real servers: failing requests are captured and replay.

Each app (a Flask app and a Starlette app of our own, and httpbin, a real third-party Flask
app installed from the package index) runs in its own server process on loopback (waitress
for WSGI, uvicorn for ASGI) with the middleware in front, and is driven by real HTTP
requests. The snapshots the server writes are then replayed in fresh processes (the server
is gone by then) and must reproduce the recorded response; candidate fixes give FIXED.
"""

from __future__ import annotations

import asyncio
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpbin
import pytest

from replay.capture.middleware import ReplayASGIMiddleware, ReplayWSGIMiddleware
from replay.errors import UsageError
from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration

SERVE = """
import importlib, socket, sys

kind, target = sys.argv[1], sys.argv[2]
module, _, attr = target.partition(":")
app = getattr(importlib.import_module(module), attr)
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen(64)
print(sock.getsockname()[1], flush=True)
if kind == "wsgi":
    import waitress
    waitress.serve(app, sockets=[sock], threads=4, _quiet=True)
else:
    import uvicorn
    uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on")).run(sockets=[sock])
"""

FLASK_SHOP = """
import time
import uuid

from flask import Flask, jsonify, request

from replay.capture.middleware import ReplayWSGIMiddleware

app = Flask(__name__)
ORDERS = {}


@app.post("/orders")
def create_order():
    data = request.get_json()
    order = {"id": str(uuid.uuid4()), "item": data["item"], "qty": data["qty"], "at": time.time()}
    if order["qty"] > 10:
        raise ValueError(f"quantity {order['qty']} over the limit")
    ORDERS[order["id"]] = order
    return jsonify(order), 201


@app.get("/health")
def health():
    return {"ok": True, "coupon": request.args.get("coupon")}


app.wsgi_app = ReplayWSGIMiddleware(app.wsgi_app)
"""

STARLETTE_SHOP = """
import time

from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route

from replay.capture.middleware import ReplayASGIMiddleware


async def orders(request):
    data = await request.json()
    if data["qty"] > 10:
        raise ValueError(f"quantity {data['qty']} over the limit")
    return JSONResponse({"qty": data["qty"], "at": time.time()}, status_code=201)


async def echo(request):
    body = await request.body()
    return JSONResponse({"body": body.decode(), "query": request.url.query,
                         "trace": request.headers.get("x-trace"), "at": time.time()})


async def ticks(request):
    async def gen():
        for i in range(3):
            yield f"{i} {time.monotonic()}\\n"
    return StreamingResponse(gen(), media_type="text/plain")


async def storage(request):
    return PlainTextResponse(f"storage unavailable at {time.time()}", status_code=503)


inner = Starlette(routes=[Route("/orders", orders, methods=["POST"]), Route("/echo", echo, methods=["POST"]),
                          Route("/ticks", ticks), Route("/storage", storage)])
app = ReplayASGIMiddleware(inner)
"""


class Server:
    """One app served by a real server in a subprocess; the snapshots it writes."""

    def __init__(self, root: Path, kind: str, target: str, on: str = "error", extra_env: dict[str, str] | None = None):
        self.snaps = root / "snaps"
        env = {k: v for k, v in os.environ.items() if not k.startswith("REPLAY_")}
        env.update({"REPLAY_DIR": str(self.snaps), "REPLAY_CAPTURE": on, "REPLAY_RATE_LIMIT": "off",
                    "REPLAY_RATE_LIMIT_PER_FAILURE": "off", "PYTHONHASHSEED": "0", **(extra_env or {})})
        self.proc = subprocess.Popen([sys.executable, "-c", SERVE, kind, target], cwd=root / "app", env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.strip().isdigit():
            self.stop()
            raise AssertionError(f"server did not start: {line}{self.proc.stderr.read() if self.proc.stderr else ''}")
        self.url = f"http://127.0.0.1:{int(line)}"

    def request(self, path: str, *, body: bytes | None = None, headers: dict[str, str] | None = None,
                method: str | None = None) -> tuple[int, dict[str, str], bytes]:
        """One real HTTP request: (status, headers, body); 4xx/5xx are answers, not errors."""
        req = urllib.request.Request(self.url + path, data=body, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()

    def snapshots(self, expected: int, timeout_s: float = 20.0) -> list[Path]:
        """The snapshots written so far, waiting until there are ``expected`` (written after
        the response is sent, by a background thread)."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = sorted(glob.glob(str(self.snaps / "**" / "*.rsnap"), recursive=True), key=os.path.getmtime)
            if len(found) >= expected or time.monotonic() > deadline:
                return [Path(p) for p in found]
            time.sleep(0.05)

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.stderr.read() if self.proc.stderr else ""


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    (tmp_path / "app").mkdir()
    servers: list[Server] = []

    def start(kind: str, target: str, files: dict[str, str], on: str = "error",
              extra_env: dict[str, str] | None = None) -> Server:
        for name, source in files.items():
            (tmp_path / "app" / name).write_text(textwrap.dedent(source))
        servers.append(Server(tmp_path, kind, target, on, extra_env))
        return servers[-1]

    yield start
    for server in servers:
        server.stop()


def candidate(tmp_path: Path, name: str, files: dict[str, str]) -> str:
    """A candidate code root: a copy of the app with ``files`` replaced."""
    dest = tmp_path / name
    shutil.copytree(tmp_path / "app", dest)
    for rel, source in files.items():
        (dest / rel).write_text(textwrap.dedent(source))
    return str(dest)


def request_of(snap: Path) -> dict[str, Any]:
    with open_snapshot(snap) as s:
        return decode(s.entry["args"])[0]


def test_flask_failure_is_captured_replays_and_a_fix_verifies(serve, tmp_path):
    server = serve("wsgi", "shop:app", {"shop.py": FLASK_SHOP})
    assert server.request("/health?coupon=x")[0] == 200
    ok = server.request("/orders", body=b'{"item": "pen", "qty": 2}', headers={"Content-Type": "application/json"})
    assert ok[0] == 201
    status, _, body = server.request("/orders", body=b'{"item": "ink", "qty": 12}',
                                     headers={"Content-Type": "application/json"})
    assert status == 500 and b"Internal Server Error" in body
    snaps = server.snapshots(1)
    time.sleep(0.3)  # a snapshot for the successes would have been written by now
    snaps = server.snapshots(2, timeout_s=0)
    assert len(snaps) == 1, "successful requests must not produce snapshots under on-error"
    snap = snaps[0]
    with open_snapshot(snap) as s:
        assert s.header["entry"] == "shop:app" and s.entry["kind"] == "wsgi"
        assert s.header["replayable"], s.header["reasons"]
        assert s.outcome["http_status"] == 500 and s.outcome["failed"]
        assert {c["path"] for c in s.code_files} == {"shop.py"}
        # Flask handled the exception (a 500 page) and logged it: the outcome names the cause
        cause = s.outcome["logged_exception"]
        assert cause["type"] == "builtins:ValueError" and cause["message"] == "quantity 12 over the limit"
        assert cause["place"] == ["shop.py", "create_order"]
        failing = [f for f in cause["traceback"] if f["path"] == "shop.py"][-1]
        assert "raise ValueError" in failing["code"] and failing["locals"] is not None
    req = request_of(snap)
    assert req["body"] == b'{"item": "ink", "qty": 12}'
    assert req["environ"]["PATH_INFO"] == "/orders" and req["environ"]["REQUEST_METHOD"] == "POST"
    server.stop()

    assert reproduce(snap).verdict is Verdict.REPRODUCED
    fixed = candidate(tmp_path, "fixed", {"shop.py": FLASK_SHOP.replace(
        "raise ValueError(f\"quantity {order['qty']} over the limit\")",
        "return jsonify(error=f\"quantity {order['qty']} over the limit\"), 422")})
    result = verify(snap, [fixed])
    assert result.verdict is Verdict.FIXED, result.reason
    assert "responded HTTP 422" in result.reason
    same = candidate(tmp_path, "same", {})
    still = verify(snap, [same])
    assert still.verdict is Verdict.STILL_FAILING
    assert "ValueError('quantity 12 over the limit') in shop.py:create_order, logged" in still.recorded
    # another bug behind the same 500: the logged causes differ, so it is a new failure
    other = candidate(tmp_path, "other", {"shop.py": FLASK_SHOP.replace(
        "raise ValueError(f\"quantity {order['qty']} over the limit\")", "return order['missing'], 201")})
    assert verify(snap, [other]).verdict is Verdict.NEW_FAILURE


def test_httpbin_failing_requests_replay_to_the_same_response(serve, tmp_path):
    server = serve("wsgi", "websrv:application", {"websrv.py": """
        import httpbin
        from replay.capture.middleware import ReplayWSGIMiddleware

        application = ReplayWSGIMiddleware(httpbin.app)
    """})
    for path in ("/get?a=1", "/uuid", "/status/200", "/headers", "/anything/x?y=2"):
        assert server.request(path)[0] == 200, path
    assert server.request("/status/500")[0] == 500
    status, _, body = server.request("/status/502", method="POST", body=b"payload=1",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 502
    snaps = server.snapshots(2)
    time.sleep(0.3)
    assert len(server.snapshots(3, timeout_s=0)) == 2, "only the two 5xx requests are captured"
    server.stop()
    for snap in snaps:
        with open_snapshot(snap) as s:
            # httpbin lives in site-packages: a library, identified by version, sources not embedded
            assert s.header["entry"] == "httpbin.core:app"
            assert s.code_files == [] and s.entry["project_root"] is None
            assert "httpbin" in s.environment["libraries"]
            assert s.header["replayable"], s.header["reasons"]
        run = reproduce(snap)
        assert run.verdict is Verdict.REPRODUCED, run.reason

    # A fix to the library itself: a patched copy of the package given as a code root.
    source = Path(httpbin.__file__).parent
    cand = tmp_path / "patched"
    shutil.copytree(source, cand / "httpbin", ignore=shutil.ignore_patterns("__pycache__"))
    core = cand / "httpbin" / "core.py"
    text = core.read_text()
    anchor = "def view_status_code(codes):"
    assert anchor in text
    core.write_text(text.replace(anchor, anchor + '\n    if codes == "500":\n        return "recovered"\n', 1))
    first = next(s for s in snaps if request_of(s)["environ"]["PATH_INFO"] == "/status/500")
    result = verify(first, [str(cand)])
    assert result.verdict is Verdict.FIXED, result.reason


def test_httpbin_requests_round_trip_exactly(serve):
    # Redaction off: this test checks that the middleware records the request and response
    # byte for byte (httpbin echoes the client's address, which redaction replaces by a token).
    server = serve("wsgi", "websrv:application", {"websrv.py": """
        import httpbin
        from replay.capture import redact
        from replay.capture.middleware import ReplayWSGIMiddleware

        redact.configure(enabled=False)
        application = ReplayWSGIMiddleware(httpbin.app, on="always")
    """})
    payload = json.dumps({"name": "Zoë", "items": [1, 2.5, None], "nested": {"k": "v"}}).encode()
    form = urllib.parse.urlencode({"a": "1", "b": "x y&z", "c": "é"}).encode()
    sent = [
        ("/post?q=1&q=2&sp=a%20b", payload, {"Content-Type": "application/json", "X-Trace": "t-1"}),
        ("/anything/form?z=%F0%9F%98%80", form, {"Content-Type": "application/x-www-form-urlencoded",
                                                  "X-Trace": "t-2", "Accept-Language": "fr"}),
        ("/uuid", None, {"X-Trace": "t-3"}),
    ]
    answers = [server.request(path, body=body, headers=headers) for path, body, headers in sent]
    snaps = server.snapshots(3)
    assert len(snaps) == 3
    server.stop()
    by_trace = {request_of(s)["environ"]["HTTP_X_TRACE"]: s for s in snaps}
    for (path, body, headers), (status, _, answer) in zip(sent, answers, strict=True):
        snap = by_trace[headers["X-Trace"]]
        req = request_of(snap)
        environ = req["environ"]
        route, _, query = path.partition("?")
        assert environ["PATH_INFO"] == route and environ["QUERY_STRING"] == query
        assert req["body"] == (body or b"")
        for name, value in headers.items():
            key = name.upper().replace("-", "_")
            key = key if key == "CONTENT_TYPE" else "HTTP_" + key
            assert environ[key] == value
        with open_snapshot(snap) as s:
            response = decode(s.outcome["value"])
        assert response["status"].startswith(str(status)) and response["body"] == answer
        assert reproduce(snap).verdict is Verdict.REPRODUCED


def test_starlette_app_under_uvicorn(serve, tmp_path):
    server = serve("asgi", "shop:app", {"shop.py": STARLETTE_SHOP})
    json_headers = {"Content-Type": "application/json"}
    assert server.request("/orders", body=b'{"qty": 1}', headers=json_headers)[0] == 201
    assert server.request("/ticks")[0] == 200
    assert server.request("/orders", body=b'{"qty": 50}', headers=json_headers)[0] == 500
    assert server.request("/storage")[0] == 503
    snaps = server.snapshots(2)
    time.sleep(0.3)
    assert len(server.snapshots(3, timeout_s=0)) == 2
    server.stop()
    kinds = {}
    for snap in snaps:
        with open_snapshot(snap) as s:
            assert s.entry["kind"] == "asgi" and s.header["entry"] == "shop:inner"
            kinds[s.outcome["kind"]] = snap
        assert reproduce(snap).verdict is Verdict.REPRODUCED
    assert set(kinds) == {"exception", "return"}  # the ValueError escaped; the 503 is a response
    fixed = candidate(tmp_path, "fixed", {"shop.py": STARLETTE_SHOP.replace(
        "raise ValueError(f\"quantity {data['qty']} over the limit\")",
        "return JSONResponse({'error': 'too many'}, status_code=422)")})
    assert verify(kinds["exception"], [fixed]).verdict is Verdict.FIXED


def test_starlette_bodies_streams_and_headers_round_trip(serve):
    # bodies past the redaction scan limit (64 KiB) would end in a token: scan them whole here
    server = serve("asgi", "shop:app", {"shop.py": STARLETTE_SHOP}, on="always",
                   extra_env={"REPLAY_REDACT_SCAN_LIMIT": str(1 << 20)})
    chunks = [b"a" * 70_000, b"b" * 70_000]  # more than one http.request message
    status, _, echoed = server.request("/echo?x=1&y=%20", body=b"".join(chunks), headers={"X-Trace": "t9"})
    assert status == 200
    assert server.request("/ticks")[0] == 200
    snaps = server.snapshots(2)
    server.stop()
    for snap in snaps:
        req = request_of(snap)
        scope = req["scope"]
        if scope["path"] == "/echo":
            assert b"".join(m["body"] for m in req["messages"]) == b"".join(chunks)
            assert scope["query_string"] == b"x=1&y=%20" and (b"x-trace", b"t9") in scope["headers"]
            with open_snapshot(snap) as s:
                assert decode(s.outcome["value"])["body"] == echoed  # no address in it: not redacted
        assert reproduce(snap).verdict is Verdict.REPRODUCED


# -------------------------------------------------------------------- the WSGI contract, in process


def _environ(body: bytes = b"", **extra: Any) -> dict[str, Any]:
    env = {"REQUEST_METHOD": "POST", "PATH_INFO": "/", "QUERY_STRING": "", "SERVER_NAME": "x", "SERVER_PORT": "80",
           "SERVER_PROTOCOL": "HTTP/1.1", "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
           "wsgi.errors": sys.stderr, "wsgi.url_scheme": "http", "wsgi.version": (1, 0)}
    env.update(extra)
    return env


class _Iterable:
    """A response iterable with close() and len(), as servers see them."""

    def __init__(self, chunks: list[bytes]):
        self.chunks, self.closed = chunks, False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)

    def close(self) -> None:
        self.closed = True


def test_wsgi_passthrough_keeps_close_len_and_large_bodies(tmp_path):
    seen: dict[str, Any] = {}

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        seen["body"] = environ["wsgi.input"].read()
        start_response("500 Oops", [("Content-Type", "text/plain")])
        seen["iter"] = _Iterable([b"x" * 10, b"y" * 10])
        return seen["iter"]

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, max_body_bytes=16, rate_limit="off",
                              rate_limit_per_failure="off", background=False)
    big = b"0123456789" * 5
    statuses: list[str] = []
    result = mw(_environ(big), lambda status, headers, exc_info=None: statuses.append(status))
    assert len(result) == 2  # type: ignore[arg-type]
    assert b"".join(result) == b"x" * 10 + b"y" * 10
    result.close()  # type: ignore[attr-defined]
    assert seen["iter"].closed and seen["body"] == big and statuses == ["500 Oops"]
    (snap,) = glob.glob(str(tmp_path / "**" / "*.rsnap"), recursive=True)
    with open_snapshot(snap) as s:
        assert not s.header["replayable"]
        assert any("larger than the capture limit of 16 bytes" in r for r in s.header["reasons"])
        response = decode(s.outcome["value"])
    assert response["body"] == b"x" * 10 + b"y" * 6 and response["body_size"] == 20 and response["body_truncated"]


def test_wsgi_chunked_body_over_the_limit_is_still_read_whole(tmp_path):
    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        data = environ["wsgi.input"].read()
        start_response("200 OK", [])
        return [data]

    mw = ReplayWSGIMiddleware(app, directory=tmp_path, max_body_bytes=8)
    body = b"line one\nline two\n" * 3
    env = _environ(body, CONTENT_LENGTH="", HTTP_TRANSFER_ENCODING="chunked", **{"wsgi.input_terminated": True})
    assert b"".join(mw(env, lambda *a: None)) == body


def test_asgi_lifespan_and_websocket_pass_through(tmp_path):
    calls: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        message = await receive()
        await send({"type": message["type"] + ".echo"})

    mw = ReplayASGIMiddleware(app, directory=tmp_path)
    sent: list[dict[str, Any]] = []

    async def drive(kind: str, first: str) -> None:
        async def receive() -> dict[str, Any]:
            return {"type": first}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await mw({"type": kind}, receive, send)

    asyncio.run(drive("lifespan", "lifespan.startup"))
    asyncio.run(drive("websocket", "websocket.connect"))
    assert calls == ["lifespan", "websocket"]
    assert sent == [{"type": "lifespan.startup.echo"}, {"type": "websocket.connect.echo"}]
    assert not glob.glob(str(tmp_path / "**" / "*.rsnap"), recursive=True)


def test_bad_options_are_usage_errors():
    with pytest.raises(UsageError, match="package.module:attribute"):
        ReplayWSGIMiddleware(lambda e, s: [], name="no_colon")
    with pytest.raises(UsageError, match="max_body_bytes"):
        ReplayASGIMiddleware(lambda s, r, w: None, max_body_bytes=-1)
    with pytest.raises(UsageError, match="on="):
        ReplayWSGIMiddleware(lambda e, s: [], on="sometimes")


def test_httpbin_echo_endpoints_replay_under_default_redaction(serve):
    # The echo endpoints send back the client's address, the Host header and
    # `Access-Control-Allow-Credentials: true`: redaction must leave what is nobody's secret
    # (a loopback address, a flag) so that the replayed response is the recorded one.
    server = serve("wsgi", "websrv:application", {"websrv.py": """
        import httpbin
        from replay.capture.middleware import ReplayWSGIMiddleware
        application = ReplayWSGIMiddleware(httpbin.app, on="always")
    """})
    sent = [("/post?q=1", json.dumps({"name": "Zoë"}).encode(), {"Content-Type": "application/json"}),
            ("/anything", None, {}), ("/headers", None, {"Authorization": "Bearer s3cr3t-t0ken-abcdef"})]
    for path, body, headers in sent:
        server.request(path, body=body, headers=headers)
    snaps = server.snapshots(3)
    server.stop()
    for snap in snaps:
        with open(snap, "rb") as fh:
            assert b"s3cr3t-t0ken-abcdef" not in fh.read()
        result = reproduce(snap)
        assert result.verdict is Verdict.REPRODUCED, (request_of(snap)["environ"]["PATH_INFO"], result.reason)
