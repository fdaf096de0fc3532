"""Fork server: replays forked from a warm interpreter, for verifying many snapshots.

A fresh replay process (:func:`replay.replayer.runner.run_replay`) spends most of its time
starting the interpreter and importing the replay child, not replaying. A fork server is
one such process, started exactly as a fresh child is (``python -P -m replay.replayer.child``
with the same environment, plus ``--serve``), that imports the child once and then forks one
process per replay request. The forked process is made indistinguishable from a fresh child
for the replay:

* the whole environment is the request's (``os.environ`` cleared and refilled, so the C
  environment matches too), ``TZ`` applied with :func:`time.tzset`, ``TMPDIR`` set and
  :data:`tempfile.tempdir` reset so it is read again, the working directory and
  ``sys.argv`` are those of a fresh child;
* stdout and stderr are files the parent reads afterwards (a fresh child gets files too),
  stdin stays ``/dev/null``, the server's protocol pipes are closed;
* the server runs no thread, installs no interceptor or sandbox (the forked process does,
  as a fresh child does) and never seeds anything: clock, ``random`` (at the source),
  ``os.urandom`` and ``uuid`` are served from the tape during the replay, and ``random``
  reseeds itself after a fork anyway;
* the process ends like an interpreter does (``atexit`` handlers, flushed streams, the exit
  status of ``SystemExit``), then with :func:`os._exit`, so nothing of the server runs twice.

The hash seed and the time zone are fixed at interpreter start-up, so :class:`ForkServerPool`
keeps servers per child environment (``TMPDIR`` aside): in practice one per recorded hash seed
and time zone. A request that runs longer than its timeout is killed (SIGKILL) by the server,
as ``subprocess.run`` does for a fresh child. When a server dies or cannot start, the pool
answers None and the caller runs a fresh process instead; :attr:`ForkServerPool.fallbacks`
counts those and each is logged (logger ``replay.forkserver``).

``$REPLAY_FORKSERVER`` chooses: ``1`` forces the server for every replay of this process
(single ``replay run`` too; the test suite runs this way to prove both paths agree), ``0``
never uses it, unset lets batch verification use it for more than two snapshots.

Protocol (private): each message is a 4-byte big-endian length and a msgpack map. The
server says ``{"ready": pid}`` once, then answers each request ``{"args", "env", "cwd",
"stdout", "stderr", "timeout_s"}`` with ``{"returncode", "timed_out"}``; ``returncode`` is
negative for a signal, as :attr:`subprocess.Popen.returncode` is.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import select
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import msgpack

SERVE_FLAG = "--serve"
CHILD_MODULE = "replay.replayer.child"
ENV_SWITCH = "REPLAY_FORKSERVER"
START_TIMEOUT_S = 60.0
# Past the request's own timeout, how long the parent waits for the server's answer (the
# server kills the replay at its timeout; this only catches a server that hangs).
ANSWER_MARGIN_S = 30.0
_HEADER = 4


def mode() -> str:
    """``always``, ``never`` or ``auto``, from ``$REPLAY_FORKSERVER`` (``1``, ``0``, unset)."""
    value = os.environ.get(ENV_SWITCH, "").strip().lower()
    if value in ("1", "true", "yes", "on"):
        return "always"
    if value in ("0", "false", "no", "off"):
        return "never"
    return "auto"


def _send(fd: int, message: dict[str, Any]) -> None:
    data = msgpack.packb(message, use_bin_type=True)
    view = memoryview(len(data).to_bytes(_HEADER, "big") + data)
    while view:
        view = view[os.write(fd, view):]


def _read_exact(fd: int, size: int) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _recv(fd: int) -> dict[str, Any] | None:
    """The next message, or None at end of file (the other side is gone)."""
    header = _read_exact(fd, _HEADER)
    if header is None:
        return None
    data = _read_exact(fd, int.from_bytes(header, "big"))
    return None if data is None else msgpack.unpackb(data, raw=False)


# ---------------------------------------------------------------------------------------
# Server side (runs in the server process, a fresh child that got --serve)


def serve(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """The server loop: ``argv`` is ``[child path, "--serve", READ_FD, WRITE_FD]``.

    ``main`` is the child's own entry (:func:`replay.replayer.child.main`), called in each
    forked process with ``[child path, REQUEST, RESULT]`` as a fresh child's ``sys.argv``.
    Returns when the parent closes the request pipe.
    """
    read_fd, write_fd = int(argv[2]), int(argv[3])
    program = argv[0]
    _send(write_fd, {"ready": os.getpid()})
    try:
        while (request := _recv(read_fd)) is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                _become_replay(request, main, program, (read_fd, write_fd))  # never returns
            returncode, timed_out = _wait(pid, float(request["timeout_s"]))
            _send(write_fd, {"returncode": returncode, "timed_out": timed_out})
    except (KeyboardInterrupt, BrokenPipeError):  # Ctrl-C reaches the whole process group
        return 1
    return 0


def _wait(pid: int, timeout_s: float) -> tuple[int, bool]:
    """Wait for a forked replay; kill it (SIGKILL) past ``timeout_s``. (exit code, timed out)."""
    timed_out = False
    try:
        pidfd = os.pidfd_open(pid)  # Linux 5.3+: readable when the process ends
    except (AttributeError, OSError):
        pidfd = None
    if pidfd is not None:
        try:
            ready, _, _ = select.select([pidfd], [], [], timeout_s)
        finally:
            os.close(pidfd)
        timed_out = not ready
    else:
        deadline = time.monotonic() + timeout_s
        while not timed_out:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status), False
            timed_out = time.monotonic() > deadline
            time.sleep(0.005)
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), timed_out


def _become_replay(request: dict[str, Any], main: Callable[[list[str]], int], program: str,
                   server_fds: tuple[int, int]) -> None:
    """In the forked process: look like a fresh child, run ``main``, exit. Never returns."""
    code = 1
    try:
        for fd in server_fds:
            os.close(fd)
        for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(target, fd)
            os.close(target)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        # Servers are keyed by the environment and never call gettempdir(), so both resets
        # are no-ops today; they keep the forked process from depending on that.
        time.tzset()
        tempfile.tempdir = None  # gettempdir() caches; the next call reads the new TMPDIR
        sys.argv = [program, *request["args"]]
        code = _exit_status(main, sys.argv)
    except BaseException:  # noqa: BLE001 - reported on the replay's stderr, as a crash would be
        traceback.print_exc()
    finally:
        code = _shutdown(code)
        os._exit(code)


def _exit_status(main: Callable[[list[str]], int], argv: list[str]) -> int:
    """What ``sys.exit(main(argv))`` would make the interpreter exit with."""
    try:
        raise SystemExit(main(argv))
    except SystemExit as exc:
        if exc.code is None:
            return 0
        if isinstance(exc.code, int):
            return exc.code & 0xFF
        print(exc.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        traceback.print_exc()
        return 128 + signal.SIGINT


def _shutdown(code: int) -> int:
    """The interpreter's exit work: ``atexit`` handlers, then flushed standard streams."""
    try:
        atexit._run_exitfuncs()  # the functions a fresh child would run at exit
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except BaseException:  # noqa: BLE001 - an exit handler failed; a fresh child prints it too
        with contextlib.suppress(BaseException):
            traceback.print_exc()
        return code or 120  # the status CPython uses when flushing stdout fails at exit
    return code


# ---------------------------------------------------------------------------------------
# Parent side


class ServerGone(Exception):
    """The server process died, hung or could not start."""


class _Server:
    """One server process and its pipes; used by one thread at a time."""

    def __init__(self, env: dict[str, str], home: str, module: str) -> None:
        import subprocess

        to_server_r, self._to_server = os.pipe()
        self._from_server, from_server_w = os.pipe()
        self.log = os.path.join(home, f"server-{id(self):x}.err")
        cmd = [sys.executable, "-P", "-m", module, SERVE_FLAG, str(to_server_r), str(from_server_w)]
        try:
            with open(os.path.join(home, "server.out"), "ab") as out, open(self.log, "wb") as err:
                self.proc = subprocess.Popen(cmd, env={**env, "TMPDIR": home}, cwd=home, stdin=subprocess.DEVNULL,
                                             stdout=out, stderr=err, pass_fds=(to_server_r, from_server_w))
        except OSError as exc:
            self._close_pipes()
            raise ServerGone(f"cannot start a replay server: {exc}") from exc
        finally:
            os.close(to_server_r)
            os.close(from_server_w)
        hello = self._answer(START_TIMEOUT_S)
        if "ready" not in hello:
            self.close()
            raise ServerGone(f"the replay server said {hello!r} instead of ready")

    def run(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request and wait for its answer.

        Raises:
            ServerGone: the server died or did not answer in time (it is killed then).
        """
        try:
            _send(self._to_server, request)
        except OSError as exc:  # BrokenPipeError: the server is gone
            self.close()
            raise ServerGone(f"the replay server is gone ({exc}){self._log_tail()}") from exc
        return self._answer(float(request["timeout_s"]) + ANSWER_MARGIN_S)

    def _answer(self, timeout_s: float) -> dict[str, Any]:
        ready, _, _ = select.select([self._from_server], [], [], timeout_s)
        message = _recv(self._from_server) if ready else None
        if message is None:
            self.close()
            why = "exited" if ready else f"did not answer in {timeout_s:g} s"
            raise ServerGone(f"the replay server {why}{self._log_tail()}")
        return message

    def _log_tail(self) -> str:
        try:
            with open(self.log, "rb") as fh:
                text = fh.read()[-1500:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f":\n{text}" if text else ""

    def _close_pipes(self) -> None:
        for fd in (self._to_server, self._from_server):
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        """Stop the server: closing its request pipe ends its loop; kill it if it lingers."""
        self._close_pipes()
        proc = getattr(self, "proc", None)
        if proc is None:
            return
        try:
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired; the server hangs
            proc.kill()
            proc.wait()


class ForkServerPool:
    """Replay servers shared by the threads of a batch; see the module docstring.

    Thread-safe: each :meth:`run` checks a server out for its request, so ``jobs`` threads
    use up to ``jobs`` servers per environment at once. Use as a context manager, or call
    :meth:`close`.

    Attributes:
        started: Servers started so far.
        fallbacks: Requests the pool could not serve (the caller ran a fresh process).
        served: Requests served by a server.
    """

    def __init__(self, max_idle: int = 4, module: str = CHILD_MODULE) -> None:
        """Args:
            max_idle: Servers kept waiting across environments (the oldest are stopped).
            module: What the servers run (``python -P -m MODULE --serve ...``); it must call
                :func:`serve` with its ``main`` for ``--serve``, as the replay child does.
        """
        self._module = module
        self._lock = threading.Lock()
        self._idle: list[tuple[tuple[tuple[str, str], ...], _Server]] = []
        self._busy: set[_Server] = set()
        self._max_idle = max(1, max_idle)
        self._home = tempfile.mkdtemp(prefix="replay-forkserver-")
        self._closed = False
        self._failed_starts = 0
        self.started = self.fallbacks = self.served = 0

    def __enter__(self) -> ForkServerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, args: list[str], env: dict[str, str], cwd: str, stdout: str, stderr: str,
            timeout_s: float) -> tuple[int, bool] | None:
        """Run the child module's ``main`` with ``args`` in a process forked from a server.

        Args:
            args: The child's arguments (``[REQUEST, RESULT]``).
            env: Its whole environment (as a fresh child's ``env=``).
            cwd: Its working directory.
            stdout: File that receives its stdout (created or truncated).
            stderr: File that receives its stderr.
            timeout_s: Wall-clock limit, in seconds.

        Returns:
            ``(exit code, timed out)``; or None when no server could serve it (logged and
            counted in :attr:`fallbacks`): the caller then runs a fresh process.
        """
        key = tuple(sorted((k, v) for k, v in env.items() if k != "TMPDIR"))
        request = {"args": args, "env": env, "cwd": cwd, "stdout": stdout, "stderr": stderr, "timeout_s": timeout_s}
        server = None
        try:
            server = self._checkout(key, env)
            answer = server.run(request)
        except ServerGone as exc:
            with self._lock:
                self.fallbacks += 1
                if server is not None:
                    self._busy.discard(server)
            import logging

            logging.getLogger("replay.forkserver").warning("replaying in a fresh process instead: %s", exc)
            return None
        self._checkin(key, server)
        with self._lock:
            self.served += 1
        return int(answer["returncode"]), bool(answer["timed_out"])

    def _checkout(self, key: tuple[tuple[str, str], ...], env: dict[str, str]) -> _Server:
        with self._lock:
            if self._closed:
                raise ServerGone("the pool is closed")
            if self._failed_starts >= 3:
                raise ServerGone("replay servers failed to start three times; not trying again")
            for i, (k, server) in enumerate(self._idle):
                if k == key:
                    del self._idle[i]
                    self._busy.add(server)
                    return server
        try:
            server = _Server(env, self._home, self._module)
        except ServerGone:
            with self._lock:
                self._failed_starts += 1
            raise
        with self._lock:
            self.started += 1
            self._busy.add(server)
        return server

    def _checkin(self, key: tuple[tuple[str, str], ...], server: _Server) -> None:
        stop = []
        with self._lock:
            self._busy.discard(server)
            if self._closed:
                stop.append(server)
            else:
                self._idle.append((key, server))
                while len(self._idle) > self._max_idle:
                    stop.append(self._idle.pop(0)[1])
        for s in stop:
            s.close()

    def close(self) -> None:
        """Stop the idle servers (busy ones stop when their request ends) and remove the
        pool's directory. Idempotent."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for _, server in idle:
            server.close()
        import shutil

        shutil.rmtree(self._home, ignore_errors=True)


_shared: ForkServerPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> ForkServerPool:
    """The process-wide pool used when ``$REPLAY_FORKSERVER=1`` forces the server for every
    replay; closed at exit."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ForkServerPool()
            atexit.register(_shared.close)
        return _shared
