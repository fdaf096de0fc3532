"""The replay sandbox: audit hooks that stop a replay from touching real systems.

Replay serves every recorded channel from the tape, so a replayed program never needs the
network, a subprocess or a write outside its temporary directory. Anything that still
tries - a channel the recording did not cover, a C extension, code a candidate added - is
stopped here (:pep:`578` audit hooks) and reported as a *blocked effect*: the operation
raises :class:`SandboxViolation` (a ``PermissionError``) in the replayed program, and the
attempt is logged with the replayed code's stack.

Blocked while active:

* network: ``socket.connect`` (and ``connect_ex``), ``socket.sendto``, ``socket.sendmsg``,
  name resolution (``socket.getaddrinfo``, ``gethostbyname``, ``gethostbyaddr``,
  ``getnameinfo``);
* processes: ``subprocess.Popen``, ``os.system``, ``os.exec*``, ``os.posix_spawn``,
  ``os.spawn*``, ``os.fork``, ``os.forkpty``, ``os.kill``;
* files: ``open`` for writing (mode with ``w``, ``a``, ``x`` or ``+``, or write flags of
  ``os.open``), ``os.remove``, ``os.rename``, ``os.mkdir``, ``os.rmdir``, ``os.chmod``,
  ``os.chown``, ``os.link``, ``os.symlink``, ``os.truncate``, ``os.utime``,
  ``shutil.rmtree`` and ``sqlite3.connect`` of a file, outside the allowed
  directories (the replay's temporary directory).

Audit hooks cannot be removed: :func:`install` adds one per process (the replay child) and
:func:`activate` switches it on around the replayed call only. What audit hooks cannot see
(a C library making system calls directly) is outside this sandbox; CPython raises events
for all the operations above.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any, Final

from replay.capture.boundary import ACTIVE

_NETWORK: Final = frozenset({
    "socket.connect", "socket.sendto", "socket.sendmsg", "socket.getaddrinfo", "socket.gethostbyname",
    "socket.gethostbyaddr", "socket.getnameinfo",
})
_PROCESS: Final = frozenset({
    "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty",
    "os.kill", "os.killpg", "pty.spawn",
})
_PATH_EFFECTS: Final = frozenset({
    "os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.chmod", "os.chown", "os.link", "os.symlink",
    "os.truncate", "os.utime", "shutil.rmtree",
})
# shutil.copyfile/copytree/move raise their own events before the os-level calls they make;
# those calls are answered by the file channel (or raise their own blocked events), so the
# shutil-level events are not watched.
_WATCHED: Final = _NETWORK | _PROCESS | _PATH_EFFECTS | {"open", "sqlite3.connect"}


def channel_of(event: str) -> str:
    """The boundary channel that should have answered an audited operation."""
    if event in _NETWORK:
        return "socket"
    if event in _PROCESS:
        return "subprocess"
    return "db" if event == "sqlite3.connect" else "file"
_WRITE_FLAGS: Final = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC


class SandboxViolation(PermissionError):
    """Raised in the replayed program when it tries to touch a real system."""


class Sandbox:
    """The state of this process's replay sandbox.

    Args:
        allowed: Directories under which file writes are allowed (absolute).
        report: ``report(channel, detail)`` called for each blocked attempt, with the
            channel that should have answered it (``socket``, ``subprocess``, ``file``, ``db``).
    """

    def __init__(self, allowed: list[str], report: Callable[[str, str], None]):
        self.allowed = [os.path.realpath(a) + os.sep for a in allowed]
        self.report = report
        self.active = False
        self._local = threading.local()

    def _inside(self, path: Any) -> bool:
        if isinstance(path, int):
            return True  # an already open descriptor
        try:
            full = os.path.realpath(os.fsdecode(path)) + os.sep
        except Exception:  # noqa: BLE001 - an odd path object: treat as outside
            return False
        return any(full.startswith(a) for a in self.allowed)

    def verdict(self, event: str, args: tuple[Any, ...]) -> str | None:
        """The reason to block ``event``, or None to let it through."""
        if event in _NETWORK:
            target = args[1] if len(args) > 1 else args[0] if args else ""
            return f"{event} {target!r}"
        if event in _PROCESS:
            return f"{event} {args[1] if event == 'subprocess.Popen' and len(args) > 1 else args[0] if args else ''!r}"
        if event == "open":
            path, mode, flags = (tuple(args) + (None, None, None))[:3]
            writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & _WRITE_FLAGS)
            if writing and not self._inside(path):
                return f"open {path!r} for writing (mode {mode or flags!r})"
            return None
        if event == "sqlite3.connect":
            database = args[0] if args else None
            if database in (":memory:", "", b":memory:") or self._inside(database or ""):
                return None
            return f"sqlite3.connect {database!r}"
        if event in _PATH_EFFECTS:
            paths = [a for a in args if isinstance(a, str | bytes | os.PathLike)][:2]
            if all(self._inside(p) for p in paths) and paths:
                return None
            return f"{event} {', '.join(repr(p) for p in paths)}"
        return None

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        """The audit hook (:func:`sys.addaudithook`)."""
        if not self.active or event not in _WATCHED or getattr(self._local, "busy", False):
            return
        self._local.busy = True  # judging and reporting must not audit themselves
        token = ACTIVE.set(None)  # nor ask the replay's boundary (realpath calls os.lstat)
        try:
            why = self.verdict(event, args)
            if why is not None:
                self.report(channel_of(event), why)
        finally:
            ACTIVE.reset(token)
            self._local.busy = False
        if why is None:
            return
        raise SandboxViolation(f"replay sandbox: blocked {why} (replay never touches real systems)")


_SANDBOX: Sandbox | None = None


def install(allowed: list[str], report: Callable[[str, str], None]) -> Sandbox:
    """Add the audit hook to this process (once) and return the sandbox, inactive.

    Also stops the interpreter writing ``.pyc`` files, which would be blocked writes.
    """
    global _SANDBOX
    sys.dont_write_bytecode = True
    if _SANDBOX is None:
        _SANDBOX = Sandbox(allowed, report)
        sys.addaudithook(_SANDBOX.hook)
    else:
        _SANDBOX.allowed = [os.path.realpath(a) + os.sep for a in allowed]
        _SANDBOX.report = report
    return _SANDBOX


def activate(on: bool) -> None:
    """Switch the installed sandbox on or off (no effect if none is installed)."""
    if _SANDBOX is not None:
        _SANDBOX.active = on
