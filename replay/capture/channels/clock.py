"""Clock channel, second part: calendar functions, CPU clocks, ``time.sleep`` and asyncio's loop time.

The clocks of :mod:`replay.capture.interceptors` (``time.time``, ``time.monotonic``,
``datetime.now``, ...) are joined here by:

* ``time.localtime/gmtime/ctime/asctime/strftime`` called without a time argument: the wall
  clock is read through the boundary (stream ``wall``) and the real function computes its
  answer from that reading, so the result is what production saw. With a time argument
  they are pure functions and run directly.
* ``time.process_time(_ns)`` and ``time.thread_time(_ns)`` (streams ``process``, ``thread``).
* ``time.sleep``: slept and recorded while recording; matched but not slept on replay.
* ``asyncio`` loop time (``BaseEventLoop.time``): reads made by the recorded code (tasks,
  ``call_later`` behind ``asyncio.sleep``, timeouts) are interactions ``loop.time`` of the
  ``monotonic`` stream. The loop's own scheduler (``_run_once``) is not recorded: how
  often it looks at the clock depends on timing. On replay the scheduler sees the real
  monotonic clock moved by the offset between the last served recorded reading and the
  real clock at that moment, so a timer set for "recorded reading + 1 s" fires one real
  second later, wherever the recorded clock was.
"""

from __future__ import annotations

import asyncio.base_events
import sys
import time as _time
from typing import Any, Final

from replay.capture.boundary import ACTIVE
from replay.capture.interceptors import REAL, replace

_real_time_ns = REAL["time.time_ns"]
_real_monotonic_ns = REAL["time.monotonic_ns"]
_real_localtime = _time.localtime
_real_gmtime = _time.gmtime
_real_ctime = _time.ctime
_real_asctime = _time.asctime
_real_strftime = _time.strftime
_real_process_time_ns = _time.process_time_ns
_real_thread_time_ns = _time.thread_time_ns
_real_sleep = _time.sleep
_RealBaseEventLoop = asyncio.base_events.BaseEventLoop
_real_loop_time = _RealBaseEventLoop.time
_RUN_ONCE_CODE: Final = getattr(getattr(_RealBaseEventLoop, "_run_once", None), "__code__", None)

_NS: Final = 1_000_000_000
_MISSING: Any = object()


def _wall_seconds(op: str) -> int | None:
    """The wall clock in whole seconds through the boundary (None: no session)."""
    s = ACTIVE.get()
    if s is None:
        return None
    return s.clock_ns(op, _real_time_ns) // _NS  # time(NULL) truncates as this floor does (t >= 0)


def _localtime(secs: Any = None, /) -> _time.struct_time:
    if secs is not None:
        return _real_localtime(secs)
    now = _wall_seconds("time.localtime")
    return _real_localtime() if now is None else _real_localtime(now)


def _gmtime(secs: Any = None, /) -> _time.struct_time:
    if secs is not None:
        return _real_gmtime(secs)
    now = _wall_seconds("time.gmtime")
    return _real_gmtime() if now is None else _real_gmtime(now)


def _ctime(secs: Any = None, /) -> str:
    if secs is not None:
        return _real_ctime(secs)
    now = _wall_seconds("time.ctime")
    return _real_ctime() if now is None else _real_ctime(now)


def _asctime(t: Any = _MISSING, /) -> str:
    if t is not _MISSING:
        return _real_asctime(t)
    now = _wall_seconds("time.asctime")
    return _real_asctime() if now is None else _real_asctime(_real_localtime(now))


def _strftime(format: str, t: Any = _MISSING, /) -> str:  # noqa: A002 - the real parameter name
    if t is not _MISSING:
        return _real_strftime(format, t)
    now = _wall_seconds("time.strftime")
    return _real_strftime(format) if now is None else _real_strftime(format, _real_localtime(now))


def _process_time() -> float:
    s = ACTIVE.get()
    if s is None:
        return _real_process_time_ns() / 1e9
    return s.clock_ns("time.process_time", _real_process_time_ns) / 1e9


def _process_time_ns() -> int:
    s = ACTIVE.get()
    return _real_process_time_ns() if s is None else s.clock_ns("time.process_time_ns", _real_process_time_ns)


def _thread_time() -> float:
    s = ACTIVE.get()
    if s is None:
        return _real_thread_time_ns() / 1e9
    return s.clock_ns("time.thread_time", _real_thread_time_ns) / 1e9


def _thread_time_ns() -> int:
    s = ACTIVE.get()
    return _real_thread_time_ns() if s is None else s.clock_ns("time.thread_time_ns", _real_thread_time_ns)


def _sleep(secs: Any, /) -> None:
    s = ACTIVE.get()
    if s is None:
        _real_sleep(secs)
        return
    # Only plain non-negative numbers are recorded; anything else (a negative or NaN delay,
    # a wrong type) raises the same error for real in both modes, or sleeps unrecorded.
    if isinstance(secs, float):
        value: Any = float(secs)
    elif isinstance(secs, int):
        value = int(secs)
    else:
        _real_sleep(secs)
        return
    if not value >= 0:
        _real_sleep(secs)
        return
    s.sleep("time.sleep", (value,), lambda: _real_sleep(secs))


for _fn, _name in ((_localtime, "localtime"), (_gmtime, "gmtime"), (_ctime, "ctime"), (_asctime, "asctime"),
                   (_strftime, "strftime"), (_process_time, "process_time"), (_process_time_ns, "process_time_ns"),
                   (_thread_time, "thread_time"), (_thread_time_ns, "thread_time_ns"), (_sleep, "sleep")):
    _fn.__name__ = _fn.__qualname__ = _name
    _fn.__doc__ = getattr(_time, _name).__doc__


# --------------------------------------------------------------------------- loop time

# id(loop) -> offset in ns added to the real monotonic clock for the loop's own reads.
# Written only by replaying sessions; empty in production, where it costs one truth test.
_loop_offsets: dict[int, int] = {}


def _loop_time(self: Any) -> float:
    """``BaseEventLoop.time``: recorded when the recorded code asks, offset on replay otherwise."""
    s = ACTIVE.get()
    if s is not None and sys._getframe(1).f_code is not _RUN_ONCE_CODE:
        if not s.replaying:
            return s.clock_ns("loop.time", _real_monotonic_ns) / 1e9
        value = s.clock_ns("loop.time", _real_monotonic_ns)
        _loop_offsets[id(self)] = value - _real_monotonic_ns()
        return value / 1e9
    if _loop_offsets:
        return (_real_monotonic_ns() + _loop_offsets.get(id(self), 0)) / 1e9
    return _real_monotonic_ns() / 1e9


_loop_time.__name__ = "time"
_loop_time.__qualname__ = "BaseEventLoop.time"
_loop_time.__doc__ = _real_loop_time.__doc__


def install() -> None:
    """Install the interceptors (once, under the lock of ``interceptors.install``)."""
    replace(_time, "localtime", _localtime, gate=True)
    replace(_time, "gmtime", _gmtime, gate=True)
    replace(_time, "ctime", _ctime, gate=True)
    replace(_time, "asctime", _asctime, gate=True)
    replace(_time, "strftime", _strftime, gate=True)
    replace(_time, "process_time", _process_time, gate=True)
    replace(_time, "process_time_ns", _process_time_ns, gate=True)
    replace(_time, "thread_time", _thread_time, gate=True)
    replace(_time, "thread_time_ns", _thread_time_ns, gate=True)
    replace(_time, "sleep", _sleep, gate=True)
    _RealBaseEventLoop.time = _loop_time  # type: ignore[method-assign]
