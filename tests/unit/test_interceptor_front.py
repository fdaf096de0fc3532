"""The C front of boundary interceptors (``replay.capture._fastcapture.Interceptor``).

Outside a session the front calls the real function with the caller's arguments; inside one
it calls the Python interceptor, which records. Installed interceptors must behave as the
functions they replace (binding, errors, introspection), and recording through them must be
what it is without the extension (a fresh interpreter with ``REPLAY_NO_C_CAPTURE=1``).
"""

from __future__ import annotations

import contextvars
import gc
import json
import os
import socket
import subprocess
import sys
import time
import weakref
from typing import Any

import pytest

from replay.capture import interceptors
from replay.capture.boundary import ACTIVE

fast = pytest.importorskip("replay.capture._fastcapture")

VAR: contextvars.ContextVar[Any] = contextvars.ContextVar("test_session", default=None)


def _pair() -> tuple[list[Any], Any, Any]:
    calls: list[Any] = []

    def real(*args: Any, **kwargs: Any) -> Any:
        calls.append(("real", args, kwargs))
        return "real"

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(("recording", args, kwargs))
        return "recording"

    return calls, real, recording


def test_the_front_calls_real_outside_a_session_and_recording_inside():
    calls, real, recording = _pair()
    front = fast.Interceptor(real, recording, VAR)
    assert front(1, key=2) == "real"
    token = VAR.set(object())
    try:
        assert front(3) == "recording"
    finally:
        VAR.reset(token)
    assert front() == "real"
    assert calls == [("real", (1,), {"key": 2}), ("recording", (3,), {}), ("real", (), {})]


def test_errors_of_the_real_call_reach_the_caller_unchanged():
    def real(size: int) -> bytes:
        raise OSError(5, "no entropy")

    front = fast.Interceptor(real, real, VAR)
    with pytest.raises(OSError, match="no entropy") as caught:
        front(4)
    assert caught.value.errno == 5
    with pytest.raises(TypeError):
        fast.Interceptor(real, 3, VAR)  # not callable
    with pytest.raises(TypeError):
        fast.Interceptor(real, real, "not a context variable")


def test_a_method_front_binds_like_a_function_and_a_plain_one_does_not():
    calls, real, recording = _pair()

    class Conn:
        send = fast.MethodInterceptor(real, recording, VAR)
        plain = fast.Interceptor(real, recording, VAR)

    conn = Conn()
    assert conn.send(b"x") == "real"  # LOAD_METHOD/CALL: no bound method made
    bound = conn.send
    assert bound.__self__ is conn and bound(b"y") == "real"
    assert Conn.send(conn, b"z") == "real"  # through the class: unbound
    assert conn.plain(b"p") == "real"  # a replaced built-in function does not bind
    assert [c[1] for c in calls] == [(conn, b"x"), (conn, b"y"), (conn, b"z"), (b"p",)]


def test_introspection_weak_references_and_collection():
    calls, real, recording = _pair()
    front = interceptors.intercept(real, recording)
    assert front.__name__ == "recording" and front.__wrapped__ is recording and front.real is real
    assert "replay interceptor of" in repr(front)
    ref = weakref.ref(front)
    front.cycle = front  # a reference cycle through its __dict__: the collector frees it
    del front
    gc.collect()
    assert ref() is None


def test_installed_interceptors_are_fronts_that_keep_the_real_behaviour():
    interceptors.install()
    assert type(time.time).__name__ == "Interceptor" and time.time.__name__ == "time"
    assert type(socket.socket.__dict__["send"]).__name__ == "MethodInterceptor"
    assert abs(time.time() - time.time_ns() / 1e9) < 1.0
    assert len(os.urandom(7)) == 7
    a, b = socket.socketpair()
    with a, b:
        assert a.send(b"ping") == 4 and b.recv(10) == b"ping"
        assert a.sendall(b"more") is None and b.recv_into(bytearray(8)) == 4
        assert isinstance(a.getsockname(), (str, bytes))
    assert ACTIVE.get() is None


PROGRAM = """
import json, os, socket, sys, time
import replay
from replay.snapshot import open_snapshot

def handler():
    a, b = socket.socketpair()
    with a, b:
        a.send(b"ping")
        data = b.recv(4)
    return [time.time() > 0, len(os.urandom(3)), data.decode()]

fn = replay.capture(handler, on="always", directory=sys.argv[1], background=False)
result = fn()
(snap,) = [os.path.join(d, f) for d, _, fs in os.walk(sys.argv[1]) for f in fs if f.endswith(".rsnap")]
with open_snapshot(snap) as s:
    ops = sorted({i.op for i in s.tape})
print(json.dumps({"result": result, "ops": ops, "front": type(time.time).__name__}))
"""


@pytest.mark.parametrize("pure", [False, True], ids=["c", "python"])
def test_recording_is_the_same_with_and_without_the_fronts(tmp_path, pure):
    env = dict(os.environ)
    env.pop("REPLAY_NO_C_CAPTURE", None)
    if pure:
        env["REPLAY_NO_C_CAPTURE"] = "1"
    out = subprocess.run([sys.executable, "-c", PROGRAM, str(tmp_path)], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    assert got["result"] == [True, 3, "ping"]
    assert {"time.time", "os.urandom"} <= set(got["ops"])
    assert got["front"] == ("function" if pure else "Interceptor")
