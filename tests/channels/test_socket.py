"""The socket and dns channels against real servers on loopback.

Each test starts a real TCP server in a background thread of the test process, records a
client program in a fresh process (the server's port reaches it through an environment
variable, itself recorded, so the replay asks for the same address), then replays it with
the server's request counter watched or the server stopped.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from pathlib import Path

import pytest

from replay.snapshot import open_snapshot
from replay.verify import Verdict, reproduce, verify

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


class _Counters:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections = 0
        self.requests = 0
        self.queued = 0

    def bump(self, name: str) -> int:
        with self.lock:
            setattr(self, name, getattr(self, name) + 1)
            return getattr(self, name)


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, handler: type) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.counters = _Counters()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return self.server_address[1]

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        self.thread.join(5)


class LineHandler(socketserver.StreamRequestHandler):
    """Line protocol: ``INCR`` answers a counter, ``QUIT`` closes, anything else comes back upper-cased."""

    def handle(self) -> None:
        counters = self.server.counters
        counters.bump("connections")
        for raw in self.rfile:
            line = raw.decode().strip()
            counters.bump("requests")
            if line == "QUIT":
                return
            reply = str(counters.bump("queued")) if line == "INCR" else line.upper()
            # two writes per reply: the client sees the line in more than one piece
            self.wfile.write(reply[:2].encode())
            self.wfile.flush()
            self.wfile.write(reply[2:].encode() + b"\n")
            self.wfile.flush()


class SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP for smtplib: EHLO, MAIL, RCPT, DATA (queue id from a counter), QUIT."""

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")

    def handle(self) -> None:
        counters = self.server.counters
        counters.bump("connections")
        self.reply("220 test.local ESMTP ready")
        while True:
            line = self.rfile.readline().decode().rstrip("\r\n")
            if not line:
                return
            counters.bump("requests")
            verb = line.split(" ")[0].upper()
            if verb == "EHLO":
                self.reply("250-test.local greets you")
                self.reply("250 8BITMIME")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 end with .")
                body = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body.append(chunk)
                self.reply(f"250 queued as Q{counters.bump('queued')} ({len(body)} lines)")
            elif verb == "QUIT":
                self.reply("221 bye")
                return
            else:
                self.reply("500 what?")


@pytest.fixture
def line_server():
    server = _Server(LineHandler)
    yield server
    server.stop()


@pytest.fixture
def smtp_server():
    server = _Server(SMTPHandler)
    yield server
    server.stop()


CLIENT = """
import os, socket, replay

def address():
    return ("127.0.0.1", int(os.environ["SVC_PORT"]))

def read_line(sock, size):
    buf = b""
    while not buf.endswith(b"\\n"):
        chunk = sock.recv(size)
        if not chunk:
            break
        buf += chunk
    return buf.decode().strip()

@replay.capture(on="always")
def raw(words, size=3):
    out = []
    with socket.create_connection(address(), timeout=5) as s:
        for w in words:
            s.sendall(w.encode() + b"\\n")
            out.append(read_line(s, size))
        s.sendall(b"QUIT\\n")
    return out

@replay.capture(on="always")
def with_file(commands):
    with socket.create_connection(address(), timeout=5) as s:
        f = s.makefile("rwb")
        out = []
        for c in commands:
            f.write(c.encode() + b"\\n")
            f.flush()
            out.append(f.readline().decode().strip())
        f.write(b"QUIT\\n")
        f.flush()
        f.close()
    return out

@replay.capture(on="always")
def refused():
    try:
        socket.create_connection(address(), timeout=5)
    except ConnectionRefusedError as exc:
        return ["refused", exc.errno]
    return ["connected"]
"""


def _tape(snap: Path) -> list:
    with open_snapshot(snap) as s:
        return list(s.tape)


def test_raw_client_is_recorded_and_replayed_without_touching_the_server(app, line_server):
    app.write("client.py", CLIENT)
    env = {"SVC_PORT": str(line_server.port)}
    snap = app.record("import client; print(client.raw(['hello', 'INCR', 'world']))", env=env)
    tape = _tape(snap)
    ops = [(i.channel, i.op) for i in tape if i.channel in ("socket", "dns")]
    assert ops[0] == ("dns", "getaddrinfo")
    assert ops[1] == ("socket", "connect")
    assert tape[[i.op for i in tape].index("connect")].args is not None
    sends = [i for i in tape if i.channel == "socket" and i.op == "sendall"]
    assert len(sends) == 4
    assert any(i.op == "recv" for i in tape)
    counts = (line_server.counters.connections, line_server.counters.requests, line_server.counters.queued)
    assert counts == (1, 4, 1)

    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    # the server saw nothing of the replay
    assert (line_server.counters.connections, line_server.counters.requests, line_server.counters.queued) == counts
    with open_snapshot(snap) as s:
        from replay.snapshot.codec import decode

        assert decode(s.outcome["value"]) == ["HELLO", "1", "WORLD"]


def test_makefile_readline_client_replays_with_the_server_stopped(app, line_server):
    app.write("client.py", CLIENT)
    snap = app.record("import client; client.with_file(['abc', 'INCR', 'INCR'])",
                      env={"SVC_PORT": str(line_server.port)})
    ops = {(i.channel, i.op) for i in _tape(snap)}
    assert {("socket", "send"), ("socket", "recv")} <= ops  # SocketIO writes with send, reads with recv_into
    line_server.stop()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    assert result.baseline is None or result.baseline.blocked == []


def test_candidate_with_other_buffer_sizes_is_served_the_same_byte_stream(app, line_server):
    app.write("client.py", CLIENT)
    snap = app.record("import client; client.raw(['hello', 'world'])", env={"SVC_PORT": str(line_server.port)})
    line_server.stop()
    # reads one byte at a time, then 4096 at a time: the recorded chunks are cut and joined as needed
    for size in (1, 4096):
        candidate = app.candidate(f"cand{size}", {"client.py": CLIENT.replace("size=3", f"size={size}")})
        result = verify(snap, [str(candidate)])
        assert result.verdict is Verdict.UNCHANGED, (size, result.reason, result.divergence)


def test_candidate_sending_a_new_command_diverges_with_a_report(app, line_server):
    app.write("client.py", CLIENT)
    snap = app.record("import client; client.raw(['hello'])", env={"SVC_PORT": str(line_server.port)})
    line_server.stop()
    candidate = app.candidate("cand", {"client.py": CLIENT.replace(
        's.sendall(b"QUIT\\n")', 's.sendall(b"QUIT\\n"); s.sendall(b"STATS\\n")')})
    assert "STATS" in (candidate / "client.py").read_text()
    result = verify(snap, [str(candidate)])
    assert result.verdict is Verdict.DIVERGED, result.reason
    div = result.divergence
    assert div["channel"] == "socket" and div["op"] == "sendall"
    assert "STATS" in div["asked"]
    assert any("client.py" in frame for frame in div["stack"])


def test_candidate_sending_other_data_to_the_same_peer_is_a_changed_effect(app, line_server):
    app.write("client.py", CLIENT)
    snap = app.record("import client; client.raw(['hello'])", env={"SVC_PORT": str(line_server.port)})
    line_server.stop()
    # sends "hello!" where the recording sent "hello"; the reply is the recorded one
    candidate = app.candidate("cand", {"client.py": CLIENT.replace(
        "s.sendall(w.encode() + b\"\\n\")", "s.sendall(w.encode() + b\"!\\n\")")})
    assert '"!' in (candidate / "client.py").read_text()
    result = verify(snap, [str(candidate)])
    assert result.verdict is not Verdict.DIVERGED, (result.reason, result.divergence)
    run = result.candidate
    assert run is not None
    changed = [e for e in run.effects if e["status"] == "changed"]
    assert len(changed) == 1, run.effects
    assert changed[0]["channel"] == "socket" and changed[0]["op"] == "sendall"
    assert "hello!" in changed[0]["asked"] and "hello!" not in changed[0]["recorded"]
    same = [e for e in run.effects if e["status"] == "same"]
    assert [e["op"] for e in same] == ["sendall"]  # QUIT


def test_connection_refused_is_replayed_with_its_errno(app):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    app.write("client.py", CLIENT)
    snap = app.record("import client; print(client.refused())", env={"SVC_PORT": str(port)})
    connects = [i for i in _tape(snap) if i.op == "connect"]
    assert len(connects) == 1 and connects[0].error is not None
    with open_snapshot(snap) as s:
        from replay.snapshot.codec import decode

        assert decode(s.outcome["value"]) == ["refused", 111]
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


SMTP_APP = """
import os, smtplib, replay

@replay.capture(on="always")
def send_mail(to):
    with smtplib.SMTP("127.0.0.1", int(os.environ["SVC_PORT"]), timeout=5) as smtp:
        smtp.ehlo("client.test")
        smtp.mail("app@client.test")
        smtp.rcpt(to)
        code, message = smtp.data("Subject: hi\\r\\n\\r\\nhello " + to + "\\r\\n")
    return code, message.decode()
"""


def test_smtplib_is_recorded_through_raw_sockets_and_replayed_with_the_server_stopped(app, smtp_server):
    app.write("mailer.py", SMTP_APP)
    snap = app.record("import mailer; print(mailer.send_mail('bob@example.com'))",
                      env={"SVC_PORT": str(smtp_server.port)})
    tape = _tape(snap)
    sent = [i for i in tape if i.channel == "socket" and i.op == "sendall"]
    assert len(sent) == 6  # EHLO, MAIL, RCPT, DATA, the message, QUIT
    with open_snapshot(snap) as s:
        from replay.snapshot.codec import decode

        assert decode(s.outcome["value"]) == (250, "queued as Q1 (3 lines)")
    assert smtp_server.counters.queued == 1
    smtp_server.stop()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
    # a candidate that mails someone else: the RCPT and the message are changed effects
    candidate = app.candidate("cand", {"mailer.py": SMTP_APP.replace("smtp.rcpt(to)", "smtp.rcpt('eve@example.com')")})
    result = verify(snap, [str(candidate)])
    changed = [e for e in result.candidate.effects if e["status"] == "changed"]
    assert [e["op"] for e in changed] == ["sendall"] and "eve@example.com" in changed[0]["asked"]


ASYNC_APP = """
import asyncio, os, socket, threading, replay

def blocking_call():
    with socket.create_connection(("127.0.0.1", int(os.environ["SVC_PORT"])), timeout=5) as s:
        s.sendall(b"from a thread\\n")
        data = s.makefile("rb").readline()
        s.sendall(b"QUIT\\n")
    return data.decode().strip()

async def main():
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    threading.Thread(target=lambda: loop.call_soon_threadsafe(done.set)).start()  # the self-pipe
    await done.wait()
    reply = await asyncio.to_thread(blocking_call)
    await asyncio.sleep(0)
    return reply

@replay.capture(on="always")
def run():
    return asyncio.run(main())
"""


def test_asyncio_program_is_not_disturbed_and_its_self_pipe_is_not_recorded(app, line_server):
    app.write("aio.py", ASYNC_APP)
    snap = app.record("import aio; print(aio.run())", env={"SVC_PORT": str(line_server.port)})
    tape = _tape(snap)
    socket_ops = [i for i in tape if i.channel == "socket"]
    # only the thread's TCP connection: no socketpair traffic, no non-blocking loop sockets
    assert {i.op for i in socket_ops} == {"connect", "sendall", "recv"}
    assert all("127.0.0.1" in repr(i.args) for i in socket_ops)
    with open_snapshot(snap) as s:
        from replay.snapshot.codec import decode

        assert decode(s.outcome["value"]) == "FROM A THREAD"
    line_server.stop()
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


def test_dns_lookups_are_recorded_and_served_on_replay(app):
    app.write("resolve.py", """
        import socket, replay
        @replay.capture(on="always")
        def lookups():
            info = socket.getaddrinfo("localhost", 80, socket.AF_INET, socket.SOCK_STREAM)
            family = info[0][0]
            try:
                socket.gethostbyname("no-such-host.invalid")
            except socket.gaierror as exc:
                missing = exc.errno
            return [isinstance(family, socket.AddressFamily), info[0][4], socket.gethostbyname("localhost"),
                    socket.getnameinfo(("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV), missing]
    """)
    snap = app.record("import resolve; print(resolve.lookups())")
    ops = [(i.channel, i.op) for i in _tape(snap)]
    assert ops == [("dns", "getaddrinfo"), ("dns", "gethostbyname"), ("dns", "gethostbyname"), ("dns", "getnameinfo")]
    with open_snapshot(snap) as s:
        from replay.snapshot.codec import decode

        value = decode(s.outcome["value"])
    assert value[:4] == [True, ("127.0.0.1", 80), "127.0.0.1", ("127.0.0.1", "80")]
    assert isinstance(value[4], int) and value[4] < 0
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


class UDPHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        n = self.server.counters.bump("requests")
        sock.sendto(data.upper() + b" #%d" % n, self.client_address)


def test_udp_sendto_and_recvfrom_are_recorded_and_replayed(app):
    server = socketserver.ThreadingUDPServer(("127.0.0.1", 0), UDPHandler)
    server.counters = _Counters()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app.write("udp.py", """
        import os, socket, replay
        @replay.capture(on="always")
        def ask(words):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            out = []
            for w in words:
                s.sendto(w.encode(), ("127.0.0.1", int(os.environ["SVC_PORT"])))
                data, peer = s.recvfrom(100)
                out.append([data.decode(), peer[0]])
            s.close()
            return out
    """)
    try:
        snap = app.record("import udp; udp.ask(['a', 'b'])", env={"SVC_PORT": str(server.server_address[1])})
    finally:
        server.shutdown()
        server.server_close()
    ops = [i.op for i in _tape(snap) if i.channel == "socket"]
    assert ops == ["sendto", "recvfrom", "sendto", "recvfrom"]
    with open_snapshot(snap) as s:
        from replay.snapshot.codec import decode

        assert decode(s.outcome["value"]) == [["A #1", "127.0.0.1"], ["B #2", "127.0.0.1"]]
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason


HTTP_APP = """
import http.client, os, replay

@replay.capture(on="always")
def fetch():
    conn = http.client.HTTPConnection("127.0.0.1", int(os.environ["SVC_PORT"]), timeout=5)
    conn.request("GET", "/thing")
    body = conn.getresponse().read()
    conn.close()
    return body.decode()
"""


@pytest.mark.skipif(not (REPO / "replay/capture/channels/http.py").exists(), reason="the http channel is not built yet")
def test_http_client_traffic_is_not_recorded_twice(app):
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"thing!"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app.write("web.py", HTTP_APP)
        snap = app.record("import web; web.fetch()", env={"SVC_PORT": str(server.server_address[1])})
    finally:
        server.shutdown()
        server.server_close()
    tape = _tape(snap)
    assert any(i.channel == "http" for i in tape)
    assert [i for i in tape if i.channel == "socket"] == []
    result = reproduce(snap)
    assert result.verdict is Verdict.REPRODUCED, result.reason
