"""Host channel: facts about the machine and the process that replay must see as production did.

Recorded (channel ``host``, operation = the function's dotted name):

* ``os.getpid``, ``os.getppid``, ``os.getcwd``, ``os.getcwdb``, ``os.uname``, ``os.chdir``;
* ``socket.gethostname``;
* ``platform.uname``, ``platform.node/system/release/version/machine/processor``,
  ``platform.platform(aliased, terse)`` and ``platform.freedesktop_os_release``.

Interpreter facts (``platform.python_version``, ``python_implementation``, ``sys.platform``,
``platform.architecture``, ``platform.libc_ver``) are not recorded: the replaying interpreter
runs the code, so the code must see the interpreter that runs it. The snapshot's
environment section keeps the recorded interpreter's version for comparison.

The channel is *constant*: within a process these answers do not change, so a candidate
that asks more often than the recording did is answered with the last recorded answer.
The exception is the working directory. ``os.chdir`` is recorded and not performed on
replay, where the recorded directory may not exist (its recorded error, if any, is
raised); its target is recorded relative as given, or as ``<app>/...`` under an
application root, so the candidate's copy of the code asks for the same directory.
``os.getcwd`` requests carry the number of ``chdir`` calls the call had made before them
(``os.getcwd()`` before any, ``os.getcwd(1)`` after the first), so a candidate matches each
reading with the directory it was made in; the recorded answer is ``(directory, its
<app>/... form)``, and the application gets the directory production saw. A ``chdir``
back to a served directory (``contextlib.chdir``) is matched through that form.

The replay machinery's own questions (``os.path.abspath`` in a divergence report, the
sandbox resolving a path, a log record's process id) are answered for real and not
recorded: a call whose nearest caller outside the path helpers and logging is this
package is not the application's.

Platform functions call each other and ``os.uname`` internally; the outermost call is the
interaction (the session is suspended while the real function runs). ``platform.uname()``'s
``processor`` field, normally resolved lazily by running ``uname -p``, is resolved when the
call is recorded so replay never runs it.
"""

from __future__ import annotations

import genericpath
import logging
import ntpath
import os
import pathlib
import platform
import posixpath
import socket
import sys
import weakref
from collections.abc import Callable
from typing import Any, Final

from replay.capture.boundary import (
    ACTIVE,
    PACKAGE_DIR,
    ChannelSpec,
    app_path,
    register_channel,
    suspended,
)
from replay.capture.interceptors import replace

log = logging.getLogger("replay.capture")

CHANNEL: Final = "host"

register_channel(ChannelSpec(CHANNEL, constant=True))

_real_getpid = os.getpid
_real_getppid = os.getppid
_real_getcwd = os.getcwd
_real_getcwdb = os.getcwdb
_real_chdir = os.chdir
_real_os_uname = getattr(os, "uname", None)
_real_gethostname = socket.gethostname
_real_platform_uname = platform.uname
_real_platform_platform = platform.platform
_real_freedesktop = getattr(platform, "freedesktop_os_release", None)



def _code_files(*objects: Any) -> frozenset[str]:
    files = set()
    for obj in objects:
        for value in list(vars(obj).values()) + [obj]:
            code = getattr(getattr(value, "__func__", value), "__code__", None)
            if code is not None and not code.co_filename.startswith(PACKAGE_DIR):
                files.add(code.co_filename)
    return frozenset(files)


# Standard-library code that asks these questions on its caller's behalf: path helpers
# (os.path.abspath/realpath and pathlib call os.getcwd), logging (os.getpid per record).
_ON_BEHALF: Final = _code_files(posixpath, genericpath, ntpath, os, logging, *pathlib.Path.__mro__[:-1])


def _from_machinery() -> bool:
    """True when the replay machinery itself asks (through path helpers or logging).

    Its questions are not the application's: they are answered for real and not recorded
    (a divergence report resolving ``<frozen posixpath>`` must not ask the tape for the
    working directory).
    """
    frame: Any = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name not in _ON_BEHALF:
            return name.startswith(PACKAGE_DIR)
        frame = frame.f_back
    return False


# session -> its working-directory state (see _CwdState)
_cwd_state: weakref.WeakKeyDictionary[Any, _CwdState] = weakref.WeakKeyDictionary()


def _getpid() -> int:
    s = ACTIVE.get()
    if s is None or _from_machinery():
        return _real_getpid()
    return s.call(CHANNEL, "os.getpid", (), _real_getpid)  # type: ignore[no-any-return]


def _getppid() -> int:
    s = ACTIVE.get()
    if s is None or _from_machinery():
        return _real_getppid()
    return s.call(CHANNEL, "os.getppid", (), _real_getppid)  # type: ignore[no-any-return]


class _CwdState:
    """Per session: ``chdir`` calls made so far, and (replay) the recorded application roots."""

    __slots__ = ("chdirs", "recorded_roots")

    def __init__(self) -> None:
        self.chdirs = 0
        self.recorded_roots: list[str] = []


_NO_STATE = _CwdState()


def _state(s: Any) -> _CwdState:
    try:
        state = _cwd_state.get(s)
        if state is None:
            state = _cwd_state[s] = _CwdState()
        return state
    except TypeError:  # a session that cannot be weakly referenced
        return _NO_STATE


def _path_request(s: Any, path: str) -> str:
    """The recorded form of a ``chdir`` target: relative as given, ``<app>/...`` under a root."""
    if not os.path.isabs(path):
        return os.path.normpath(path)
    path = os.path.normpath(path)
    form = app_path(path, s.app_roots)
    if form is None and s.replaying:  # a path served by getcwd: under the *recorded* root
        form = app_path(path, _state(s).recorded_roots)
    return path if form is None else form


def _cwd(op: str, real: Callable[[], Any]) -> Any:
    """``os.getcwd``/``os.getcwdb`` in a session.

    Recorded answer: ``(directory, its <app>/... form or None)``; the application gets the
    directory. On replay the second part tells where the recorded application root was, so
    a ``chdir`` back to a served directory is recorded and matched as ``<app>/...`` too.
    """
    s = ACTIVE.get()
    assert s is not None
    state = _state(s)
    args = (state.chdirs,) if state.chdirs else ()
    if s.replaying:
        answer = s.call(CHANNEL, op, args, real)
        try:
            value, form = answer
        except (TypeError, ValueError):
            return answer
        if form is not None:
            text = os.fsdecode(value)
            rel = form[len("<app>"):].strip("/").replace("/", os.sep)
            root = text[: len(text) - len(rel)].rstrip(os.sep) if rel else text
            if root and root not in state.recorded_roots:
                state.recorded_roots.append(root)
        return value
    token = ACTIVE.set(None)  # what real() asks itself is not recorded
    try:
        value = real()
    except Exception as exc:
        ACTIVE.reset(token)
        s.record(CHANNEL, op, args, error=exc)
        raise
    ACTIVE.reset(token)
    s.record(CHANNEL, op, args, (value, app_path(os.fsdecode(value), s.app_roots)))
    return value


def _getcwd() -> str:
    s = ACTIVE.get()
    if s is None or _from_machinery():
        return _real_getcwd()
    return _cwd("os.getcwd", _real_getcwd)  # type: ignore[no-any-return]


def _getcwdb() -> bytes:
    s = ACTIVE.get()
    if s is None or _from_machinery():
        return _real_getcwdb()
    return _cwd("os.getcwdb", _real_getcwdb)  # type: ignore[no-any-return]


def _chdir(path: Any) -> None:
    s = ACTIVE.get()
    if s is None or _from_machinery():
        _real_chdir(path)
        return
    try:
        target = os.fsdecode(path) if isinstance(path, (str, bytes, os.PathLike)) else None
    except Exception:  # noqa: BLE001 - an odd path object: let the real call judge it
        target = None
    if target is None:  # a file descriptor, or a bad argument: not recorded
        _real_chdir(path)
        return
    state = _state(s)
    request = (_path_request(s, target),)
    try:
        s.call(CHANNEL, "os.chdir", request, lambda: _real_chdir(path))
    finally:
        state.chdirs += 1


def _gethostname() -> str:
    s = ACTIVE.get()
    if s is None or _from_machinery():
        return _real_gethostname()
    return s.call(CHANNEL, "socket.gethostname", (), _real_gethostname)  # type: ignore[no-any-return]


def _structured(op: str, real: Callable[[], Any], to_plain: Callable[[Any], Any],
                from_plain: Callable[[Any], Any]) -> Any:
    """A call whose answer is a structured object: recorded as plain data, rebuilt on replay.

    While recording, the application gets the real object itself.
    """
    s = ACTIVE.get()
    if s is None:
        return real()
    if s.replaying:
        return from_plain(s.call(CHANNEL, op, (), real))
    with suspended():
        try:
            value = real()
        except Exception as exc:
            s.record(CHANNEL, op, (), error=exc)
            raise
        try:
            plain = to_plain(value)
        except Exception:  # noqa: BLE001 - fail open: the application gets its answer
            log.warning("replay: could not record %s", op, exc_info=True)
            return value
    s.record(CHANNEL, op, (), plain)
    return value


def _os_uname() -> Any:
    assert _real_os_uname is not None
    return _structured("os.uname", _real_os_uname, tuple, os.uname_result)  # type: ignore[attr-defined]


def _rebuild_platform_uname(fields: Any) -> Any:
    fields = list(fields)
    result = platform.uname_result(*fields[:5])
    if len(fields) > 5:
        result.__dict__["processor"] = fields[5]  # the cached_property's slot: `uname -p` never runs
    return result


def _platform_uname() -> Any:
    return _structured("platform.uname", _real_platform_uname, tuple, _rebuild_platform_uname)


def _platform_field(name: str) -> Callable[[], str]:
    real = getattr(platform, name)
    op = f"platform.{name}"

    def field() -> str:
        s = ACTIVE.get()
        if s is None:
            return real()  # type: ignore[no-any-return]
        return s.call(CHANNEL, op, (), real)  # type: ignore[no-any-return]

    field.__name__ = field.__qualname__ = name
    field.__doc__ = real.__doc__
    field.__module__ = "platform"
    return field


def _platform_platform(aliased: Any = False, terse: Any = False) -> str:
    s = ACTIVE.get()
    if s is None:
        return _real_platform_platform(aliased, terse)
    return s.call(CHANNEL, "platform.platform", (bool(aliased), bool(terse)),  # type: ignore[no-any-return]
                  lambda: _real_platform_platform(aliased, terse))


def _freedesktop_os_release() -> dict[str, str]:
    assert _real_freedesktop is not None
    s = ACTIVE.get()
    if s is None:
        return _real_freedesktop()  # type: ignore[no-any-return]
    # platform caches the parsed file and returns a copy each time: so do we
    return dict(s.call(CHANNEL, "platform.freedesktop_os_release", (), _real_freedesktop))


for _fn, _name, _real in ((_getpid, "getpid", _real_getpid), (_getppid, "getppid", _real_getppid),
                          (_getcwd, "getcwd", _real_getcwd), (_getcwdb, "getcwdb", _real_getcwdb),
                          (_chdir, "chdir", _real_chdir), (_gethostname, "gethostname", _real_gethostname),
                          (_os_uname, "uname", _real_os_uname), (_platform_uname, "uname", _real_platform_uname),
                          (_platform_platform, "platform", _real_platform_platform),
                          (_freedesktop_os_release, "freedesktop_os_release", _real_freedesktop)):
    _fn.__name__ = _fn.__qualname__ = _name
    _fn.__doc__ = getattr(_real, "__doc__", None)

PLATFORM_FIELDS: Final = ("node", "system", "release", "version", "machine", "processor")


def install() -> None:
    """Install the interceptors (once, under the lock of ``interceptors.install``)."""
    replace(os, "getpid", _getpid, gate=True)
    replace(os, "getppid", _getppid, gate=True)
    replace(os, "getcwd", _getcwd, gate=True)
    replace(os, "getcwdb", _getcwdb, gate=True)
    replace(os, "chdir", _chdir, gate=True)
    if _real_os_uname is not None:
        replace(os, "uname", _os_uname)
    replace(socket, "gethostname", _gethostname, gate=True)
    replace(platform, "uname", _platform_uname)
    for name in PLATFORM_FIELDS:
        replace(platform, name, _platform_field(name))
    replace(platform, "platform", _platform_platform, gate=True)
    if _real_freedesktop is not None:
        replace(platform, "freedesktop_os_release", _freedesktop_os_release, gate=True)
