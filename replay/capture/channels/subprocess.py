"""The subprocess channel: processes the application starts, recorded and replayed.

``subprocess.Popen`` is replaced by a subclass; ``run``, ``call``, ``check_call``,
``check_output``, ``getoutput``, ``getstatusoutput`` and ``os.popen`` are all library code
built on it, so each process is recorded once, at the Popen level, and the errors those
functions raise on top of a return code (``CalledProcessError``, ``TimeoutExpired`` after
a kill) are raised by the same library code on replay. ``os.system`` is recorded as one
interaction (its output goes to the terminal, not to the program).

Record mode: the real process runs. Its pipes are re-stacked (same buffering, encoding and
text mode as CPython builds them) over a raw layer that tees the bytes, so what the child
wrote and what the application wrote to its stdin are captured whatever way they are read
(``communicate``, ``read``/``readline``/iteration, ``os.popen(...).read()``). Replay mode:
nothing is spawned. The Popen object is a fake whose pid, pipes, return code and
exceptions come from the tape; its pipes serve the recorded bytes from memory through the
same buffered/text stack, so line splitting and decoding are what the application saw.

One process is a few interactions, linked by the tape index of its ``spawn`` (the
``link``), so a candidate that starts processes in another order still gets each one's own
answers:

* ``spawn`` ``{cmd, shell, cwd, env, executable, stdin, stdout, stderr}`` -> ``{pid}``, or
  ``{oserror: [errno, strerror, filename]}`` (a missing program: FileNotFoundError is
  rebuilt with its file name), or another recorded exception (bad arguments).
* ``stdin`` ``[link, cmd, data]``: the bytes the application sent, recorded when it
  closed stdin (``communicate``, ``p.stdin.close()``, ``with``) or at the exit.
* ``output`` ``[link, cmd, streams]`` -> ``{stdout: bytes, stderr: bytes}``: every byte the
  child wrote to the piped streams, recorded when the application reached the end of all
  of them, or when it first saw the process finished (then the rest is drained from the
  pipes). On replay it is looked up (not consumed) at the first read, so output read while
  the process runs is served before the exit is known.
* ``wait`` ``[link, cmd, poll|wait|communicate]`` -> ``{returncode}`` (None: still
  running), or ``TimeoutExpired``: one per call of ``poll``/``wait``/``communicate`` made
  before the return code is known; later calls answer from the known code and record
  nothing. The pending ``stdin`` and ``output`` are recorded just before the ``wait`` that
  reveals the exit, in both modes, so strict in-order matching holds.
* ``signal`` ``[link, cmd, signum]`` -> ``{returncode}``: ``send_signal``/``terminate``/
  ``kill`` while the code is unknown (nothing is sent on replay).
* ``system`` ``[cmd]`` -> exit status (``os.system``).

Matching a candidate: ``spawn`` by (command, with shell lines' white space collapsed;
cwd), ``stdin`` by (link, data), ``output`` by (link, streams), ``signal`` by (link,
signal), ``wait`` by link alone (first-in first-out per process: a candidate that waits
where the recording polled is served the recorded states in order). Nothing here is an
effect: most commands a program runs read information, and a command that changes the
outside world cannot be told apart from one that does not. Paths under an application root
(cwd, program, arguments) are written ``<app>/...``. ``env`` holds only what differs from
the process environment: ``set`` (values of secret-looking names withheld) and ``unset``.

Not covered: asyncio subprocesses (the snapshot is marked not replayable), ``Popen``
subclasses defined before installation, ``os.spawn*``/``os.exec*``/``os.fork``, the
content of files a child reads or writes itself.
"""

from __future__ import annotations

import contextlib
import errno as _errno
import inspect
import io
import logging
import os
import subprocess
import sys
import threading
from typing import Any, Final

from replay.capture import identity
from replay.capture.boundary import (
    ACTIVE,
    ChannelSpec,
    app_path,
    normalise_space,
    not_replayable,
    register_channel,
    suspended,
)
from replay.capture.interceptors import replace

log = logging.getLogger("replay.capture")

CHANNEL: Final = "subprocess"
WITHHELD: Final = "<withheld>"

_RealPopen = subprocess.Popen
_real_system = os.system
_SIGNATURE = inspect.signature(_RealPopen.__init__)


# ------------------------------------------------------------------------------ requests


def _fail(session: Any, what: str) -> None:
    """A recording problem: logged, and the snapshot marked not replayable (never raised)."""
    log.warning("replay: subprocess channel: %s", what, exc_info=True)
    not_replayable(session, f"subprocess channel: {what}")


def _roots(session: Any) -> list[str]:
    return sorted((r for r in getattr(session, "app_roots", []) or [] if r and r != os.sep), key=len, reverse=True)


def _place(value: Any, roots: list[str]) -> Any:
    """A path argument: ``<app>/...`` under an application root, else as given (as text)."""
    if value is None:
        return None
    try:
        text = os.fsdecode(value)
    except TypeError:
        return repr(value)
    if os.path.isabs(text):
        return app_path(text, roots) or text
    return text


def _shell_line(text: str, roots: list[str]) -> str:
    for root in roots:
        text = text.replace(root + os.sep, "<app>/").replace(root, "<app>")
    return text


def _command(args: Any, shell: bool, roots: list[str]) -> Any:
    """The command: a list of strings, or one string (a shell line or a lone program)."""
    if isinstance(args, (str, bytes, os.PathLike)):
        text = os.fsdecode(args)
        return _shell_line(text, roots) if shell else _place(text, roots)
    out = [_place(a, roots) for a in args]
    if shell and out:
        out[0] = _shell_line(out[0], roots)
    return out


def _mode(value: Any) -> str:
    if value is None:
        return "inherit"
    if value == subprocess.PIPE:
        return "pipe"
    if value == subprocess.DEVNULL:
        return "devnull"
    if value == subprocess.STDOUT:
        return "stdout"
    return "fd" if isinstance(value, int) else "file"


def _base_environ(session: Any) -> tuple[dict[str, str], set[str]]:
    """The process environment an ``env=`` argument is compared with: values, withheld names.

    Recording: this process's environment. Replay: the recorded one (the replaying
    process's own environment differs), read from the player.
    """
    if session.replaying and getattr(session, "environ", None) is not None:
        return dict(session.environ), set(getattr(session, "withheld", ()) or ())
    values, withheld = identity.environ_snapshot()
    return values, set(withheld)


def _env_request(env: Any, session: Any) -> dict[str, Any] | None:
    """What ``env`` changes: ``{"set": {name: value}, "unset": [names]}``.

    Secret-looking names (the rule of the snapshot's environment record) never show their
    value; one is listed in ``set`` when it is new, in ``unset`` when it is dropped.
    """
    if env is None:
        return None
    given = {os.fsdecode(k): os.fsdecode(v) for k, v in env.items()}
    base, hidden = _base_environ(session)
    changed: dict[str, str] = {}
    for name in sorted(given):
        if name in hidden:
            continue  # its recorded value is not known: treated as unchanged
        if identity._SECRET_NAME.search(name):
            changed[name] = WITHHELD
        elif base.get(name) != given[name]:
            changed[name] = given[name]
    unset = sorted(n for n in set(base) | hidden if n not in given)
    return {"set": changed, "unset": unset}


def _request(p: dict[str, Any], session: Any) -> dict[str, Any]:
    roots = _roots(session)
    shell = bool(p["shell"])
    return {
        "cmd": _command(p["args"], shell, roots),
        "shell": shell,
        "cwd": _place(p["cwd"], roots),
        "env": _env_request(p["env"], session),
        "executable": _place(p["executable"], roots),
        "stdin": _mode(p["stdin"]),
        "stdout": _mode(p["stdout"]),
        "stderr": _mode(p["stderr"]),
    }


def _key(op: str, args: Any) -> Any:
    """Candidate matching key (see the module docstring)."""
    if op == "spawn":
        cmd = args.get("cmd")
        return [normalise_space(cmd) if isinstance(cmd, str) else list(cmd or []), args.get("cwd")]
    if op == "system":
        return [normalise_space(str(args[0]))]
    if op == "wait":
        return [args[0]]
    return [args[0], args[2]]


register_channel(ChannelSpec(CHANNEL, key=_key))


# ------------------------------------------------------------------------------ pipes


class _Pipe(io.RawIOBase):
    """The raw layer under one pipe of a recorded or replayed process.

    Recording: reads and writes go to the real pipe and the bytes are kept (``captured``).
    Replay (``real`` None): reads serve the recorded output from memory, writes are kept.
    ``pending`` holds bytes served before the real pipe (drained at the exit).
    """

    def __init__(self, proc: Popen, name: str, real: Any):
        super().__init__()
        self.proc = proc
        self.name = name
        self.real = real
        self.captured = bytearray()
        self.pending = bytearray()
        self.loaded = real is not None  # replay: the recorded output is fetched at the first read
        self.frozen = real is None  # no more reads from a real pipe: pending, then end of file
        self.recorded = False
        self.eof = False

    def readable(self) -> bool:
        return self.name != "stdin"

    def writable(self) -> bool:
        return self.name == "stdin"

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        if self.real is None:
            raise io.UnsupportedOperation("a replayed process has no real pipe")
        return int(self.real.fileno())

    def readinto(self, b: Any) -> int | None:
        if not self.loaded:
            self.proc._load_output()
        if self.pending:
            n = min(len(b), len(self.pending))
            b[:n] = self.pending[:n]
            del self.pending[:n]
            return n
        if self.frozen:
            n = 0
        else:
            got = self.real.readinto(b)
            if got is None:
                return None
            n = got
            if n and self.recorded:
                self.proc._late_output()
            elif n:
                self.captured += bytes(memoryview(b)[:n])
        if n == 0 and not self.eof:
            self.eof = True
            self.proc._pipe_eof()
        return n

    def write(self, b: Any) -> int | None:
        data = bytes(b)
        if self.real is None:
            n = len(data)
        else:
            got = self.real.write(data)
            if got is None:
                return None
            n = got
        self.captured += data[:n]
        return n

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.name == "stdin":
                self.proc._stdin_closed()
        finally:
            try:
                if self.real is not None:
                    self.real.close()
            finally:
                super().close()


def _detach(stream: Any) -> Any:
    """The raw file under a stream Popen built, with its wrappers detached (not closing it)."""
    if isinstance(stream, io.TextIOWrapper):
        stream = stream.detach()
    if isinstance(stream, (io.BufferedReader, io.BufferedWriter)):
        stream = stream.detach()
    return stream


def _stack(raw: _Pipe, text: bool, encoding: Any, errors: Any, bufsize: int, line_buffering: bool) -> Any:
    """The stream Popen would build over a pipe (``Popen.__init__``), over ``raw``."""
    writer = raw.name == "stdin"
    stream: Any = raw
    if bufsize != 0:
        size = bufsize if bufsize > 1 else io.DEFAULT_BUFFER_SIZE
        stream = io.BufferedWriter(raw, size) if writer else io.BufferedReader(raw, size)
    if text:
        if writer:
            stream = io.TextIOWrapper(stream, encoding=encoding, errors=errors, write_through=True,
                                      line_buffering=line_buffering)
        else:
            stream = io.TextIOWrapper(stream, encoding=encoding, errors=errors)
    return stream


def _text_encoding() -> str:
    fn = getattr(subprocess, "_text_encoding", None)
    if fn is not None:
        return str(fn())
    return "utf-8" if sys.flags.utf8_mode else io.text_encoding(None)


def _rc(value: Any) -> Any:
    return value.get("returncode") if isinstance(value, dict) else None


# ------------------------------------------------------------------------------ Popen


class Popen(_RealPopen):
    """``subprocess.Popen`` once installed: recorded, or (replay) a fake answered by the tape.

    A process started with no active session is a plain Popen (every method checks one
    attribute and defers to the real one).
    """

    _rs: Any = None  # the session of a recorded or replayed process

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        s = ACTIVE.get()
        if s is None:
            super().__init__(*args, **kwargs)
            return
        try:
            bound = _SIGNATURE.bind(self, *args, **kwargs)
        except TypeError:
            _RealPopen.__init__(self, *args, **kwargs)  # raises the TypeError itself, spawns nothing
            raise
        bound.apply_defaults()
        p = dict(bound.arguments)
        if s.replaying:
            self._init_replay(s, p)
            return
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if isinstance(caller, str) and caller.startswith("asyncio"):
            _fail(s, "asyncio subprocesses are not recorded")
            with suspended():
                super().__init__(*args, **kwargs)
            return
        try:
            with suspended():
                req = _request(p, s)
        except Exception:  # noqa: BLE001 - fail open: the process runs unrecorded
            _fail(s, "the request of a process could not be built")
            with suspended():
                super().__init__(*args, **kwargs)
            return
        with suspended():  # the spawn's own reads (PATH, ...) are not recorded
            try:
                super().__init__(*args, **kwargs)
            except OSError as exc:
                s.record(CHANNEL, "spawn", req, {"pid": None, "oserror": _oserror(exc)})
                raise
            except Exception as exc:
                s.record(CHANNEL, "spawn", req, None, exc)
                raise
        try:
            self._setup(s, s.record(CHANNEL, "spawn", req, {"pid": self.pid}), req, p)
            for name in ("stdin", "stdout", "stderr"):
                stream = getattr(self, name)
                if stream is not None:
                    raw = _Pipe(self, name, _detach(stream))
                    self._add_pipe(raw, p)
        except Exception:  # noqa: BLE001
            _fail(s, "the pipes of a process could not be recorded")
            self._rs = None

    # ------------------------------------------------------------------ setup

    def _setup(self, s: Any, link: int, req: dict[str, Any], p: dict[str, Any]) -> None:
        self._link = link
        self._cmd = req["cmd"]
        self._depth = 0
        self._stdin_pipe: _Pipe | None = None
        self._out_pipes: dict[str, _Pipe] = {}
        self._stdin_done = False
        self._output_done = False
        bufsize = p["bufsize"] if isinstance(p["bufsize"], int) else -1
        self._line_buffering = bool(self.text_mode) and bufsize == 1
        self._bufsize = -1 if bufsize == 1 else bufsize
        self._rs = s

    def _add_pipe(self, raw: _Pipe, p: dict[str, Any]) -> None:
        stream = _stack(raw, bool(self.text_mode), self.encoding, self.errors, self._bufsize, self._line_buffering)
        setattr(self, raw.name, stream)
        if raw.name == "stdin":
            self._stdin_pipe = raw
        else:
            self._out_pipes[raw.name] = raw

    def _init_replay(self, s: Any, p: dict[str, Any]) -> None:
        with suspended():
            req = _request(p, s)
        inter = s.find(CHANNEL, "spawn", req)
        answer = s.answer(CHANNEL, "spawn", inter)  # raises a recorded exception (bad arguments)
        if isinstance(answer, dict) and answer.get("oserror"):
            raise _rebuild_oserror(answer["oserror"])
        # the attributes Popen.__init__ sets; _child_created stays False: __del__ does nothing
        self._waitpid_lock = threading.Lock()
        self._input = None
        self._communication_started = False
        self._sigint_wait_secs = 0.25
        self._closed_child_pipe_fds = True
        self.args = p["args"]
        self.stdin = self.stdout = self.stderr = None
        self.pid = answer.get("pid") if isinstance(answer, dict) else None
        self.returncode = None
        self.pipesize = p["pipesize"]
        encoding, errors = p["encoding"], p["errors"]
        self.text_mode = encoding or errors or p["text"] or p["universal_newlines"]
        if self.text_mode and encoding is None:
            encoding = _text_encoding()
        self.encoding, self.errors = encoding, errors
        self._setup(s, inter.index, req, p)
        for name in ("stdin", "stdout", "stderr"):
            if p[name] == subprocess.PIPE:
                self._add_pipe(_Pipe(self, name, None), p)

    # ------------------------------------------------------------------ tape helpers

    def _args(self, what: Any) -> list[Any]:
        return [self._link, self._cmd, what]

    def _replaying(self) -> bool:
        return bool(self._rs is not None and self._rs.replaying)

    def _stdin_interaction(self) -> None:
        """Record (or consume, on replay) what the application sent to stdin."""
        if self._stdin_done or self._stdin_pipe is None:
            return
        self._stdin_done = True
        args = self._args(bytes(self._stdin_pipe.captured))
        if self._replaying():
            self._rs.find(CHANNEL, "stdin", args)
            return
        try:
            self._rs.record(CHANNEL, "stdin", args)
        except Exception:  # noqa: BLE001
            _fail(self._rs, "the stdin of a process could not be recorded")

    def _stdin_closed(self) -> None:
        # Only while the session is current: a pipe closed by the garbage collector after
        # the recorded call is not an interaction.
        if self._rs is not None and ACTIVE.get() is self._rs:
            self._stdin_interaction()

    def _load_output(self) -> None:
        """Replay: fill the pipes with the recorded output (looked up, not consumed)."""
        s = self._rs
        if not self._replaying():
            for raw in self._out_pipes.values():
                raw.loaded = True
            return
        args = self._args(sorted(self._out_pipes))
        inter = s.peek(CHANNEL, "output", args)
        if inter is None:
            got = s.find(CHANNEL, "output", args)  # raises: the tape has no output for this process
            self._output_done = True
            self._fill(s.answer(CHANNEL, "output", got))
            return
        self._fill(s.answer(CHANNEL, "output", inter))

    def _fill(self, data: Any) -> None:
        data = data if isinstance(data, dict) else {}
        for name, raw in self._out_pipes.items():
            if not raw.loaded:
                raw.pending = bytearray(data.get(name) or b"")
                raw.loaded = True

    def _output_interaction(self, drain: bool) -> None:
        """Record (replay: consume) the output of the piped streams, once."""
        if self._output_done or not self._out_pipes:
            return
        self._output_done = True
        args = self._args(sorted(self._out_pipes))
        s = self._rs
        if self._replaying():
            got = s.find(CHANNEL, "output", args)
            self._fill(s.answer(CHANNEL, "output", got))
            return
        try:
            chunks = getattr(self, "_fileobj2output", None) or {}  # what communicate() read itself
            result: dict[str, bytes] = {}
            for name, raw in sorted(self._out_pipes.items()):
                extra = b"".join(chunks.get(getattr(self, name), []))
                rest, complete = _drain(raw) if drain else (b"", True)
                raw.captured += extra + rest
                raw.pending += extra + rest
                raw.frozen = complete
                raw.recorded = True
                result[name] = bytes(raw.captured)
            s.record(CHANNEL, "output", args, result)
        except Exception:  # noqa: BLE001
            _fail(s, "the output of a process could not be recorded")

    def _pipe_eof(self) -> None:
        if self._rs is not None and all(r.eof for r in self._out_pipes.values()):
            self._output_interaction(drain=False)

    def _late_output(self) -> None:
        _fail(self._rs, f"output of {self._cmd!r} arrived after the process exited (a background "
                        "child kept the pipe open); the recording does not hold it")
        for raw in self._out_pipes.values():
            raw.recorded = False  # reported once

    def _pending_before_exit(self) -> None:
        self._stdin_interaction()
        self._output_interaction(drain=True)

    def _record_status(self, op: str, what: Any, call: Any) -> Any:
        """Recording: run ``call`` (a real poll/wait/communicate/signal) and record what it saw."""
        # Popen's own waiting (time.sleep, clock reads) is not recorded: the session is suspended
        if self.returncode is not None:  # known already: the answer is determined, nothing to record
            self._depth += 1
            try:
                with suspended():
                    return call()
            finally:
                self._depth -= 1
        error: Exception | None = None
        value: Any = None
        self._depth += 1
        try:
            with suspended():
                value = call()
        except Exception as exc:
            error = exc
        finally:
            self._depth -= 1
        try:
            if error is None and self.returncode is not None:
                self._pending_before_exit()
            self._rs.record(CHANNEL, op, self._args(what), None if error else {"returncode": self.returncode}, error)
        except Exception:  # noqa: BLE001
            _fail(self._rs, "the state of a process could not be recorded")
        if error is not None:
            raise error
        return value

    def _play_status(self, op: str, what: Any, timeout: Any = None) -> Any:
        """Replay: the recorded state for this poll/wait/communicate/signal; sets returncode."""
        s = self._rs
        args = self._args(what)
        keyed = getattr(s, "mode", "strict") != "strict"
        while True:
            inter = s.peek(CHANNEL, op, args)
            if inter is None:
                s.find(CHANNEL, op, args)  # raises: nothing on the tape answers this
                raise AssertionError("unreachable")
            final = inter.error is None and _rc(s.answer(CHANNEL, op, inter)) is not None
            if keyed and op == "wait" and not final:
                # a candidate may poll or wait differently than recorded: states in order
                if what == "poll":
                    s.find(CHANNEL, op, args)
                    return None
                if inter.error is None or timeout is None:
                    s.find(CHANNEL, op, args)
                    continue
            break
        if final:
            self._pending_before_exit()
        got = s.find(CHANNEL, op, args)
        rc = _rc(s.answer(CHANNEL, op, got))  # raises a recorded TimeoutExpired
        if rc is not None:
            self.returncode = rc
        return rc

    # ------------------------------------------------------------------ Popen API

    def poll(self) -> Any:
        if self._rs is None or self._depth:
            return _RealPopen.poll(self)
        if self.returncode is not None:
            return self.returncode
        if self._rs.replaying:
            return self._play_status("wait", "poll")
        return self._record_status("wait", "poll", lambda: _RealPopen.poll(self))

    def wait(self, timeout: float | None = None) -> Any:
        if self._rs is None or self._depth:
            return _RealPopen.wait(self, timeout)
        if self.returncode is not None:
            return self.returncode
        if self._rs.replaying:
            return self._play_status("wait", "wait", timeout)
        return self._record_status("wait", "wait", lambda: _RealPopen.wait(self, timeout))

    def _wait(self, timeout: Any) -> Any:
        if self._replaying():
            return self.wait(timeout)
        return _RealPopen._wait(self, timeout)  # type: ignore[attr-defined]

    def send_signal(self, sig: int) -> None:
        if self._rs is None or self._depth:
            return _RealPopen.send_signal(self, sig)
        if self.returncode is not None:
            return None  # Popen sends nothing to a process known to have ended
        if self._rs.replaying:
            self._play_status("signal", int(sig))
            return None
        return self._record_status("signal", int(sig), lambda: _RealPopen.send_signal(self, sig))  # type: ignore[no-any-return]

    def communicate(self, input: Any = None, timeout: float | None = None) -> Any:  # noqa: A002
        if self._rs is None or self._depth:
            return _RealPopen.communicate(self, input, timeout)
        if self._communication_started and input:
            raise ValueError("Cannot send input after starting communication")
        self._send_input(input)
        if not self._rs.replaying and not self._output_done:
            return self._record_status("wait", "communicate", lambda: _RealPopen.communicate(self, input, timeout))
        self._communication_started = True
        if self.returncode is None and self._rs.replaying:
            inter = self._rs.peek(CHANNEL, "wait", self._args("communicate"))
            if inter is not None and inter.error is not None and (timeout is not None or self._rs.mode == "strict"):
                self._play_status("wait", "communicate", timeout)  # raises the recorded TimeoutExpired
        if self._rs.replaying:
            out = self._read_rest()
            if self.returncode is None:
                self._play_status("wait", "communicate", timeout)
            return out
        # recording, the output already captured: the pipes answer from memory
        if self.returncode is None:
            self._record_status("wait", "communicate", lambda: _RealPopen.wait(self, timeout))
        return self._read_rest()

    def _send_input(self, input: Any) -> None:  # noqa: A002
        """The stdin part of communicate(): flush, record what is sent, write, close."""
        if self.stdin is None or self._communication_started:
            return
        with contextlib.suppress(BrokenPipeError):
            self.stdin.flush()
        if not self._stdin_done and self._stdin_pipe is not None:
            data = input
            if data is not None and self.text_mode and isinstance(data, str):
                data = data.encode(self.stdin.encoding, self.stdin.errors)
            if data:
                # what communicate() will send; the writes that follow are not recorded again
                self._stdin_pipe.captured += bytes(data)
            self._stdin_interaction()
        if self._rs.replaying or self._output_done:
            try:
                if input:
                    self.stdin.write(input)
                self.stdin.close()
            except BrokenPipeError:
                pass

    def _read_rest(self) -> tuple[Any, Any]:
        out: list[Any] = []
        for name in ("stdout", "stderr"):
            stream = getattr(self, name)
            if stream is None:
                out.append(None)
            elif stream.closed:
                out.append("" if self.text_mode else b"")
            else:
                out.append(stream.read())
                stream.close()
        return out[0], out[1]


def _drain(raw: _Pipe) -> tuple[bytes, bool]:
    """Read what an exited process left in a pipe without blocking; (bytes, reached the end)."""
    if raw.eof or raw.real is None or raw.real.closed:
        return b"", True
    fd = raw.real.fileno()
    chunks = []
    blocking = os.get_blocking(fd)
    try:
        os.set_blocking(fd, False)
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                return b"".join(chunks), False
            if not data:
                return b"".join(chunks), True
            chunks.append(data)
    finally:
        os.set_blocking(fd, blocking)


def _oserror(exc: OSError) -> list[Any]:
    return [exc.errno, exc.strerror,
            None if exc.filename is None else os.fsdecode(exc.filename)]


def _rebuild_oserror(spec: Any) -> OSError:
    number, message, filename = (list(spec) + [None, None, None])[:3]
    if filename is None:
        return OSError(number if number is not None else _errno.EIO, message or "")
    return OSError(number, message, filename)


Popen.__module__ = "subprocess"
Popen.__qualname__ = "Popen"


# ------------------------------------------------------------------------------ os.system


def _system(command: Any) -> int:
    s = ACTIVE.get()
    if s is None:
        return _real_system(command)
    return s.call(CHANNEL, "system", (_shell_line(os.fsdecode(command), _roots(s)),),  # type: ignore[no-any-return]
                  lambda: _real_system(command))


_system.__name__ = "system"


def install() -> None:
    """Replace ``subprocess.Popen`` and ``os.system`` (``os.popen`` goes through Popen)."""
    replace(subprocess, "Popen", Popen)
    replace(os, "system", _system)
