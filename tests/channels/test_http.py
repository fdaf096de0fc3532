"""The http channel: http.client (urllib, urllib3, requests) and httpx, against a real loopback server.

Each program is recorded in a fresh process while the server runs; the server is then
stopped (its port refuses connections) before the replay, so a replay that reproduces the
recorded result proves the answers came from the tape, and ``server.hits`` proves no request
reached the server during replay.
"""

from __future__ import annotations

import socket

import pytest

from replay.snapshot import open_snapshot
from replay.snapshot.codec import decode
from replay.verify import Verdict, reproduce, verify
from tests.channels.http_server import LoopbackServer, self_signed_cert

pytestmark = pytest.mark.integration


@pytest.fixture
def server():
    srv = LoopbackServer().start()
    yield srv
    srv.stop()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_tape(snap):
    with open_snapshot(snap) as s:
        return [i for i in s.tape if i.channel == "http"], decode(s.outcome["value"]) if s.outcome.get("value") else None


def _replay_offline(server, snap):
    """Stop the server, replay the baseline; assert it reproduced and nothing reached the server."""
    hits = list(server.hits)
    server.stop()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert server.hits == hits
    return result


REQUESTS_APP = """
import os, requests, replay

BASE = ""  # read inside the recorded call (module import is not recorded)

@replay.capture(on="always")
def run(dead_port):
    global BASE
    BASE = os.environ["HTTP_BASE"]
    out = {}
    with requests.Session() as http:
        r = http.get(BASE + "/json", params={"b": "2", "a": "1"})
        out["json"] = (r.status_code, r.json(), r.headers["Content-Type"])
        r = http.post(BASE + "/echo", json={"amount": 10000})
        out["post"] = (r.status_code, r.json(), r.headers["X-Seen"])
        r = http.get(BASE + "/stream", params={"n": 5}, stream=True)
        out["stream"] = (r.headers.get("Transfer-Encoding"), [c for c in r.iter_content(7)])
        r = http.get(BASE + "/gzip")
        out["gzip"] = (r.headers["Content-Encoding"], r.json()["items"][-1], len(r.content))
        r = http.get(BASE + "/fail")
        out["fail"] = (r.status_code, r.text)
        r = http.get(BASE + "/redirect")
        out["redirect"] = (r.url, [h.status_code for h in r.history], r.json()["query"])
    try:
        requests.get(BASE + "/slow", params={"s": "1"}, timeout=0.2)
    except requests.exceptions.ReadTimeout as exc:
        out["timeout"] = type(exc).__name__
    try:
        requests.get(f"http://127.0.0.1:{dead_port}/nothing", timeout=2)
    except requests.exceptions.ConnectionError as exc:
        out["refused"] = (type(exc).__name__, "[Errno 111] Connection refused" in str(exc))
    return out
"""


def test_requests_recorded_and_replayed_without_the_server(app, server):
    app.write("client.py", REQUESTS_APP)
    dead = _closed_port()
    snap = app.record(f"import client; client.run({dead})", env={"HTTP_BASE": server.url})
    tape, out = _http_tape(snap)
    assert out["json"] == (200, {"path": "/json", "query": {"b": "2", "a": "1"}, "agent": "python-"}, "application/json")
    assert out["post"] == (201, {"got": '{"amount": 10000}', "method": "POST"}, "17")
    # urllib3 hands out a chunked body chunk by chunk (cut at 7 bytes): the wire framing shows through
    assert out["stream"] == ("chunked", [b for i in range(5) for b in (f"piece-{i}".encode(), b";")])
    assert out["gzip"][0] == "gzip" and out["gzip"][1] == 19
    assert out["fail"] == (500, "boom: the server failed")
    assert out["redirect"] == (server.url + "/json?from=redirect", [302], {"from": "redirect"})
    assert out["timeout"] == "ReadTimeout"
    assert out["refused"] == ("ConnectionError", True)
    requests_ = [decode(i.args) for i in tape if i.op == "request"]
    assert [(m, u.removeprefix(server.url)) for m, u, _b, _h in requests_] == [
        ("GET", "/json?b=2&a=1"), ("POST", "/echo"), ("GET", "/stream?n=5"), ("GET", "/gzip"), ("GET", "/fail"),
        ("GET", "/redirect"), ("GET", "/json?from=redirect"), ("GET", "/slow?s=1"),
    ]
    assert requests_[1][2] == b'{"amount": 10000}'
    assert ["Content-Type", "application/json"] in requests_[1][3]
    raw_stream = tape[2].result
    assert b"Transfer-Encoding: chunked" in raw_stream and raw_stream.endswith(b"8\r\npiece-4;\r\n0\r\n\r\n")
    assert tape[7].error is not None  # the read timeout, after no bytes
    connects = [decode(i.args) for i in tape if i.op == "connect"]
    assert connects == [("http", "127.0.0.1", dead, 8, "socket")]
    _replay_offline(server, snap)


URLLIB_APP = """
import os, json, http.client, urllib.request, urllib.error, replay


@replay.capture(on="always")
def run(dead_port):
    global BASE
    BASE = os.environ["HTTP_BASE"]
    out = {}
    with urllib.request.urlopen(BASE + "/json?z=1&y=2") as r:
        out["get"] = json.load(r)
    req = urllib.request.Request(BASE + "/echo", data=b"plain body", method="PUT")
    with urllib.request.urlopen(req) as r:
        out["put"] = (r.status, json.load(r))
    try:
        urllib.request.urlopen(BASE + "/fail")
    except urllib.error.HTTPError as exc:
        out["fail"] = (exc.code, exc.read())
    HOST, PORT = BASE.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(HOST, int(PORT), timeout=5)
    conn.request("GET", "/stream?n=3")
    resp = conn.getresponse()
    pieces = []
    while chunk := resp.read(4):
        pieces.append(chunk)
    out["stream"] = (resp.status, resp.getheader("Transfer-Encoding"), pieces)
    conn.close()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{dead_port}/x", timeout=2)
    except urllib.error.URLError as exc:
        out["refused"] = str(exc.reason)
    return out
"""


def test_urllib_and_http_client_replayed_without_the_server(app, server):
    app.write("client.py", URLLIB_APP)
    dead = _closed_port()
    snap = app.record(f"import client; client.run({dead})", env={"HTTP_BASE": server.url})
    tape, out = _http_tape(snap)
    assert out["get"]["query"] == {"z": "1", "y": "2"}
    assert out["put"] == (201, {"got": "plain body", "method": "PUT"})
    assert out["fail"] == (500, b"boom: the server failed")
    assert out["stream"] == (200, "chunked", [b"piec", b"e-0;", b"piec", b"e-1;", b"piec", b"e-2;"])
    assert out["refused"] == "[Errno 111] Connection refused"
    assert [i.op for i in tape] == ["request"] * 4 + ["connect"]
    assert decode(tape[1].args)[2] == b"plain body"
    _replay_offline(server, snap)


HTTPX_APP = """
import os, asyncio, httpx, replay

BASE = ""  # read inside the recorded call (module import is not recorded)

async def fetch_async():
    async with httpx.AsyncClient() as client:
        r = await client.get(BASE + "/json", params={"via": "async"})
        posted = await client.post(BASE + "/echo", content=b"async body")
        async with client.stream("GET", BASE + "/stream", params={"n": 3}) as s:
            chunks = [c async for c in s.aiter_raw()]
        return r.json()["query"], posted.json(), chunks

@replay.capture(on="always")
def run(dead_port):
    global BASE
    BASE = os.environ["HTTP_BASE"]
    out = {}
    with httpx.Client() as client:
        r = client.get(BASE + "/json", params={"q": "x", "a": "b"})
        out["json"] = (r.status_code, r.json(), r.http_version, r.reason_phrase)
        r = client.post(BASE + "/echo", json={"amount": 5})
        out["post"] = (r.status_code, r.json())
        with client.stream("GET", BASE + "/stream", params={"n": 4}) as s:
            out["stream"] = b"".join(s.iter_bytes())
        out["gzip"] = client.get(BASE + "/gzip").json()["compressed"]
        out["fail"] = client.get(BASE + "/fail").status_code
        r = client.get(BASE + "/redirect", follow_redirects=True)
        out["redirect"] = (str(r.url), r.json()["query"])
    out["async"] = asyncio.run(fetch_async())
    try:
        httpx.get(f"http://127.0.0.1:{dead_port}/", timeout=2)
    except httpx.ConnectError as exc:
        out["refused"] = (type(exc).__name__, str(exc), str(exc.request.url))
    return out
"""


def test_httpx_sync_and_async_replayed_without_the_server(app, server):
    app.write("client.py", HTTPX_APP)
    dead = _closed_port()
    snap = app.record(f"import client; client.run({dead})", env={"HTTP_BASE": server.url})
    tape, out = _http_tape(snap)
    assert out["json"] == (200, {"path": "/json", "query": {"q": "x", "a": "b"}, "agent": "python-"}, "HTTP/1.1", "OK")
    assert out["post"] == (201, {"got": '{"amount":5}', "method": "POST"})
    assert out["stream"] == b"piece-0;piece-1;piece-2;piece-3;"
    assert out["gzip"] is True and out["fail"] == 500
    assert out["redirect"] == (server.url + "/json?from=redirect", {"from": "redirect"})
    assert out["async"] == ({"via": "async"}, {"got": "async body", "method": "POST"},
                            [b"piece-0;", b"piece-1;", b"piece-2;"])  # one raw chunk per network read
    assert out["refused"] == ("ConnectError", "[Errno 111] Connection refused", f"http://127.0.0.1:{dead}/")
    urls = [decode(i.args)[1].removeprefix(server.url) for i in tape]
    assert urls[:7] == ["/json?q=x&a=b", "/echo", "/stream?n=4", "/gzip", "/fail", "/redirect", "/json?from=redirect"]
    status, _reason, _version, headers, body, sizes = decode(tape[3].result)
    assert sum(sizes) == len(body)
    assert status == 200 and ["content-encoding", "gzip"] in [[k.lower(), v] for k, v in headers]
    assert body[:2] == b"\x1f\x8b"  # the body is kept content-encoded, as the transport returned it
    assert tape[-1].error is not None and tape[-1].result is None
    _replay_offline(server, snap)


# trust_env=False: requests otherwise stats ~/.netrc and reads proxy variables for every request,
# so a candidate adding a request would diverge on those (file/env channels) before its HTTP request.
ORDERS_APP = """
import os, requests as _requests, replay

BASE = ""  # read inside the recorded call (module import is not recorded)
requests = _requests.Session()
requests.trust_env = False

@replay.capture(on="always")
def run():
    global BASE
    BASE = os.environ["HTTP_BASE"]
    a = requests.get(BASE + "/json", params={"item": "a"}).json()["query"]
    b = requests.get(BASE + "/json", params={"item": "b"}).json()["query"]
    posted = requests.post(BASE + "/echo", json={"amount": 10000}).json()
    return a, b, posted
"""


def test_candidates_reordered_new_request_and_changed_post(app, server):
    app.write("orders.py", ORDERS_APP)
    snap = app.record("import orders; orders.run()", env={"HTTP_BASE": server.url})
    hits = list(server.hits)
    server.stop()

    reordered = app.candidate("reordered", {"orders.py": ORDERS_APP.replace(
        '    a = requests.get(BASE + "/json", params={"item": "a"}).json()["query"]\n'
        '    b = requests.get(BASE + "/json", params={"item": "b"}).json()["query"]\n',
        '    b = requests.get(BASE + "/json", params={"item": "b"}).json()["query"]\n'
        '    a = requests.get(BASE + "/json", params={"item": "a"}).json()["query"]\n')})
    result = verify(snap, [str(reordered)])
    assert result.verdict is Verdict.UNCHANGED, (result.reason, result.divergence)
    assert result.unconsumed == []

    # the same GET through httpx is the same request (same key): served the recorded answer
    via_httpx = app.candidate("via_httpx", {"orders.py": ORDERS_APP.replace(
        "requests.trust_env = False", "requests.trust_env = False\nimport httpx\nhx = httpx.Client(trust_env=False)").replace(
        'requests.get(BASE + "/json", params={"item": "b"})', 'hx.get(BASE + "/json?item=b")')})
    result = verify(snap, [str(via_httpx)])
    assert result.verdict is Verdict.UNCHANGED, (result.reason, result.divergence)

    added = app.candidate("added", {"orders.py": ORDERS_APP.replace(
        "    posted = ", '    requests.get(BASE + "/json", params={"item": "c"})\n    posted = ')})
    result = verify(snap, [str(added)])
    assert result.verdict is Verdict.DIVERGED
    d = result.divergence
    assert d["channel"] == "http" and d["op"] == "request"
    assert "'GET'" in d["asked"] and f"{server.url}/json?item=c" in d["asked"]
    # the nearest unconsumed recorded requests: the POST not reached yet
    # nearest first: the GETs of the same endpoint (already answered), then the rest
    assert "http request('GET'" in d["candidates"][0] and "/json?item=" in d["candidates"][0]
    assert d["candidates"][0].endswith("(already answered)")
    assert any("orders.py" in line for line in d["stack"])

    changed = app.candidate("changed", {"orders.py": ORDERS_APP.replace('{"amount": 10000}', '{"amount": 100}')})
    result = verify(snap, [str(changed)])
    assert result.verdict in (Verdict.UNCHANGED, Verdict.CHANGED), (result.reason, result.divergence)
    assert result.divergence is None
    # served the recorded answer of the POST to the same URL: the candidate saw amount 10000 echoed
    assert "10000" in result.observed
    effects = getattr(result, "effects", None)
    if effects is None and result.candidate is not None:
        effects = getattr(result.candidate, "effects", None)
    if effects is not None:
        changed_effects = [e for e in effects if e["status"] == "changed"]
        assert len(changed_effects) == 1 and changed_effects[0]["channel"] == "http"
        assert 'b\'{"amount": 100}\'' in changed_effects[0]["asked"]
        assert 'b\'{"amount": 10000}\'' in changed_effects[0]["recorded"]
        assert [d[0] for d in changed_effects[0]["diff"]][:1] == ["[2]"], changed_effects[0]["diff"]
    assert server.hits == hits


HTTPS_APP = """
import os, ssl, json, urllib.request, requests, httpx, replay

@replay.capture(on="always")
def run():
    base, cafile = os.environ["HTTP_BASE"], os.environ["CA_FILE"]
    ctx = ssl.create_default_context(cafile=cafile)
    with requests.Session() as http:
        http.trust_env = False
        got = http.get(base + "/json", params={"tls": "requests"}, verify=cafile).json()["query"]
        posted = http.post(base + "/echo", data=b"secret", verify=cafile).json()
    with urllib.request.urlopen(base + "/stream?n=2", context=ctx) as r:
        streamed = r.read()
    with httpx.Client(verify=ctx, trust_env=False) as client:
        via_httpx = client.get(base + "/gzip").json()["compressed"]
    return got, posted, streamed, via_httpx
"""


def test_https_records_the_plaintext_and_replays_without_tls_or_network(app, tmp_path):
    tls = self_signed_cert(str(tmp_path))
    if tls is None:
        pytest.skip("the openssl command is not available to make a certificate")
    server = LoopbackServer(tls=tls).start()
    try:
        app.write("client.py", HTTPS_APP)
        snap = app.record("import client; client.run()", env={"HTTP_BASE": server.url, "CA_FILE": tls[0]})
        tape, out = _http_tape(snap)
        assert out == ({"tls": "requests"}, {"got": "secret", "method": "POST"}, b"piece-0;piece-1;", True)
        args = [decode(i.args) for i in tape]
        assert [a[1] for a in args] == [server.url + "/json?tls=requests", server.url + "/echo",
                                        server.url + "/stream?n=2", server.url + "/gzip"]
        assert args[1][2] == b"secret"  # the plaintext above TLS
        assert tape[2].result.startswith(b"HTTP/1.1 200 OK\r\n")
    finally:
        hits = list(server.hits)
        server.stop()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, (result.reason, result.divergence)
    assert server.hits == hits
