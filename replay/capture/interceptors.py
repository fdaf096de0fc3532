"""Interceptors for the channels of issue 2: clock, random (at the source), env, uuid1.

:func:`install` is idempotent and process-wide. It replaces module attributes
(``time.time``, ``os.urandom``, ...), patches ``random.Random``'s generator methods
(``random``, ``getrandbits``, ``seed``, ``getstate``, ``setstate``) and rebinds the
``random`` module's functions (bound methods of its hidden generator), swaps
``os.environ``'s class for a recording subclass, and replaces ``datetime.datetime``/
``datetime.date`` (C types whose methods cannot be patched) by subclasses whose metaclass
keeps ``isinstance`` true for real instances, as freezegun does. Names that application
modules bound before installation (``from time import time``) are rebound by a scan of the
loaded non-standard-library modules.

Randomness is recorded at its source (DESIGN.md section 6): the Mersenne Twister words
behind ``random()``/``getrandbits()`` and the bytes of ``os.urandom``, so a candidate that
calls a different random function still draws the same numbers. The word arithmetic
mirrors CPython's ``Modules/_randommodule.c`` (``random_random`` and
``_random_Random_getrandbits_impl``), so recorded values equal unrecorded ones bit for bit.

Which generators are recorded: every ``random.Random`` instance (the hidden one behind
``random.random()``, module-level ones created at import, instances created during the
call) *except* one seeded with an explicit value or given a state (``Random(42)``,
``rng.seed(42)``, ``random.seed(42)``, ``setstate``) inside the current session: that one
is deterministic from within the recorded call, so its draws are the real generator's
and a candidate that seeds gets the seeded values. An instance seeded before the call
started is recorded, as its position in the stream depends on what production drew
before. ``SystemRandom``, ``secrets`` and ``uuid.uuid4`` draw from ``os.urandom``.
"""

from __future__ import annotations

import builtins
import contextlib
import datetime as _dt
import functools
import importlib
import os
import random as _random
import sys
import threading
import time as _time
import uuid as _uuid
import weakref
from typing import Any, Final

from replay.capture.boundary import ACTIVE, STRAND, ChannelSpec, register_channel

_lock = threading.Lock()
_installed = False

# The real functions, kept before anything is replaced.
REAL: Final[dict[str, Any]] = {
    "time.time": _time.time,
    "time.time_ns": _time.time_ns,
    "time.monotonic": _time.monotonic,
    "time.monotonic_ns": _time.monotonic_ns,
    "time.perf_counter": _time.perf_counter,
    "time.perf_counter_ns": _time.perf_counter_ns,
    "os.urandom": os.urandom,
    "uuid.uuid1": _uuid.uuid1,
    "datetime.datetime": _dt.datetime,
    "datetime.date": _dt.date,
}
_real_time_ns = _time.time_ns
_real_monotonic_ns = _time.monotonic_ns
_real_perf_counter_ns = _time.perf_counter_ns
_real_urandom = os.urandom
_real_uuid1 = _uuid.uuid1
_RealDatetime = _dt.datetime
_RealDate = _dt.date


# ------------------------------------------------------------------------------ clock


def _time_fn() -> float:
    s = ACTIVE.get()
    if s is None:
        return _real_time_ns() / 1e9  # what time.time() computes from the same clock
    return s.clock_ns("time.time", _real_time_ns) / 1e9


def _time_ns_fn() -> int:
    s = ACTIVE.get()
    return _real_time_ns() if s is None else s.clock_ns("time.time_ns", _real_time_ns)


def _monotonic_fn() -> float:
    s = ACTIVE.get()
    if s is None:
        return _real_monotonic_ns() / 1e9
    return s.clock_ns("time.monotonic", _real_monotonic_ns) / 1e9


def _monotonic_ns_fn() -> int:
    s = ACTIVE.get()
    return _real_monotonic_ns() if s is None else s.clock_ns("time.monotonic_ns", _real_monotonic_ns)


def _perf_counter_fn() -> float:
    s = ACTIVE.get()
    if s is None:
        return _real_perf_counter_ns() / 1e9
    return s.clock_ns("time.perf_counter", _real_perf_counter_ns) / 1e9


def _perf_counter_ns_fn() -> int:
    s = ACTIVE.get()
    return _real_perf_counter_ns() if s is None else s.clock_ns("time.perf_counter_ns", _real_perf_counter_ns)


_time_fn.__name__ = "time"
_time_ns_fn.__name__ = "time_ns"
_monotonic_fn.__name__ = "monotonic"
_monotonic_ns_fn.__name__ = "monotonic_ns"
_perf_counter_fn.__name__ = "perf_counter"
_perf_counter_ns_fn.__name__ = "perf_counter_ns"


class _RealDateMeta(type):
    """Metaclass that keeps ``isinstance(real_date, datetime.date)`` true after the swap."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _RealDate)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _RealDate)


class _RealDatetimeMeta(_RealDateMeta):
    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, _RealDatetime)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, _RealDatetime)


class RecordedDate(_RealDate, metaclass=_RealDateMeta):
    """``datetime.date`` whose ``today()`` reads the wall clock through the boundary."""

    @classmethod
    def today(cls) -> Any:
        s = ACTIVE.get()
        if s is None:
            return super().today()
        return cls.fromtimestamp(s.clock_ns("date.today", _real_time_ns) / 1e9)


class RecordedDatetime(_RealDatetime, metaclass=_RealDatetimeMeta):
    """``datetime.datetime`` whose clock methods read the wall clock through the boundary.

    ``now()`` floors nanoseconds to microseconds as CPython's ``datetime_best_possible``
    does (``_PyTime_ROUND_FLOOR``); ``today()`` goes through ``fromtimestamp(time.time())``
    as CPython's ``date_today`` does.
    """

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        # Values are plain datetime.datetime instances (C constructors: fast, and type(x) is
        # what production code sees without replay); only subclasses build their own type.
        base = _RealDatetime if cls is RecordedDatetime else cls
        s = ACTIVE.get()
        if s is None:
            return base.now(tz) if base is _RealDatetime else super().now(tz)
        secs, rest = divmod(s.clock_ns("datetime.now", _real_time_ns), 1_000_000_000)
        return base.fromtimestamp(secs, tz).replace(microsecond=rest // 1000)

    @classmethod
    def utcnow(cls) -> Any:
        s = ACTIVE.get()
        if s is None:
            return cls.fromtimestamp(_real_time_ns() // 1000 / 1e6, _dt.UTC).replace(tzinfo=None)
        secs, rest = divmod(s.clock_ns("datetime.utcnow", _real_time_ns), 1_000_000_000)
        return cls.fromtimestamp(secs, _dt.UTC).replace(tzinfo=None, microsecond=rest // 1000)

    @classmethod
    def today(cls) -> Any:
        s = ACTIVE.get()
        if s is None:
            return super().today()
        return cls.fromtimestamp(s.clock_ns("datetime.today", _real_time_ns) / 1e9)


for _cls, _name in ((RecordedDate, "date"), (RecordedDatetime, "datetime")):
    _cls.__module__ = "datetime"
    _cls.__name__ = _name
    _cls.__qualname__ = _name


# ----------------------------------------------------------------------------- random


def _words_to_double(w1: int, w2: int) -> float:
    # random_random(): a = genrand >> 5, b = genrand >> 6, (a * 2**26 + b) / 2**53
    return ((w1 >> 5) * 67108864.0 + (w2 >> 6)) * (1.0 / 9007199254740992.0)


def words_to_bits(words: list[int], k: int) -> int:
    """Combine 32-bit words into ``getrandbits(k)`` exactly as CPython does.

    Words fill the result from the least significant end; the last word is shifted right
    to drop its low bits (``Modules/_randommodule.c``).
    """
    if k <= 32:
        return words[0] >> (32 - k)
    result = 0
    left = k
    for i, word in enumerate(words):
        if left < 32:
            word >>= 32 - left
        result |= word << (32 * i)
        left -= 32
    return result


def words_needed(k: int) -> int:
    """Number of 32-bit words ``getrandbits(k)`` consumes."""
    return 0 if k == 0 else (k - 1) // 32 + 1


# Instance attribute of a ``random.Random`` made deterministic inside a session (seeded
# with a value, or given a state): a weak reference to that session. Its draws in that
# session are the real generator's; every other instance's draws in a session (seeded from
# the system, or seeded before the recorded call started, possibly with draws made since)
# are recorded at the source, because the recorded call cannot reproduce its state.
SEEDED_IN: Final = "_replay_seeded_in"
# getstate() of a recorded instance: not words, so not on the ``random`` channel's streams
STATE_CHANNEL: Final = "random.state"
register_channel(ChannelSpec(STATE_CHANNEL))

_RealRandom = _random.Random
_real_seed = _RealRandom.seed
_real_getstate = _RealRandom.getstate
_real_setstate = _RealRandom.setstate
_c_random = _random._random.Random.random  # type: ignore[attr-defined]
_c_getrandbits = _random._random.Random.getrandbits  # type: ignore[attr-defined]


def _session_ref(s: Any) -> Any:
    try:
        return weakref.ref(s)
    except TypeError:  # a session without weak references: compared by identity, kept alive
        return lambda: s


def _deterministic_in(rng: Any, s: Any) -> bool:
    """True when ``rng`` was seeded (or given a state) inside session ``s``."""
    try:
        ref = rng.__dict__.get(SEEDED_IN)
    except AttributeError:
        return False
    return ref is not None and ref() is s


def _mark(rng: Any, deterministic: bool) -> None:
    s = ACTIVE.get()
    with contextlib.suppress(AttributeError):  # every random.Random has a __dict__
        rng.__dict__[SEEDED_IN] = _session_ref(s) if deterministic and s is not None else None


def _words(s: Any, op: str, args: tuple[Any, ...], count: int, rng: Any) -> list[int]:
    # A generator the replay machinery uses itself (the tape player's, for synthesized
    # values) is marked with exempt() and never reaches this point.
    return s.mt_words(op, args, count, functools.partial(_c_getrandbits, rng, 32))  # type: ignore[no-any-return]


def exempt(rng: Any) -> Any:
    """Mark a ``random.Random`` of the replay machinery itself: its draws are never recorded."""
    rng.__dict__[SEEDED_IN] = ACTIVE.get  # "seeded in" whichever session asks
    return rng


def _random_method(self: Any) -> float:
    """``random.Random.random``: recorded at the source unless seeded in this session."""
    s = ACTIVE.get()
    if s is None or _deterministic_in(self, s):
        return _c_random(self)  # type: ignore[no-any-return]
    w = _words(s, "random.random", (), 2, self)
    return _words_to_double(w[0], w[1])


def _getrandbits_method(self: Any, k: int) -> int:
    """``random.Random.getrandbits``: recorded at the source unless seeded in this session."""
    s = ACTIVE.get()
    if s is None or k < 0 or _deterministic_in(self, s):
        return _c_getrandbits(self, k)  # type: ignore[no-any-return]
    if k == 0:
        return 0
    return words_to_bits(_words(s, "random.getrandbits", (k,), words_needed(k), self), k)


def _randbytes_method(self: Any, n: int) -> bytes:
    """``random.Random.randbytes`` as CPython defines it, through ``getrandbits``."""
    return self.getrandbits(n * 8).to_bytes(n, "little")  # type: ignore[no-any-return]


def _seed_method(self: Any, a: Any = None, version: int = 2) -> None:
    """``random.Random.seed``: an explicit seed inside a session makes the instance deterministic."""
    _real_seed(self, a, version)
    _mark(self, a is not None)


def _setstate_method(self: Any, state: Any) -> None:
    """``random.Random.setstate``: a state given inside a session makes the instance deterministic."""
    _real_setstate(self, state)
    _mark(self, True)


def _getstate_method(self: Any) -> Any:
    """``random.Random.getstate``: the state of a recorded instance is recorded too.

    On replay such an instance's real state is not production's (its draws come from the
    tape), so a copy made from it (``copy.deepcopy``, pickling, ``setstate(getstate())``)
    must get the recorded state to draw what production drew.
    """
    s = ACTIVE.get()
    if s is None or _deterministic_in(self, s):
        return _real_getstate(self)
    return s.call(STATE_CHANNEL, "random.getstate", (), functools.partial(_real_getstate, self))


_RANDOM_METHODS: Final = {
    "random": _random_method,
    "getrandbits": _getrandbits_method,
    "randbytes": _randbytes_method,
    "seed": _seed_method,
    "getstate": _getstate_method,
    "setstate": _setstate_method,
}
# the methods whose path outside a session is the C method itself (see intercept())
_GATED_RANDOM: Final = {"random": _c_random, "getrandbits": _c_getrandbits}
for _name, _fn in _RANDOM_METHODS.items():
    _fn.__name__ = _name
    _fn.__qualname__ = f"Random.{_name}"
    _fn.__module__ = "random"
    _fn.__doc__ = getattr(_RealRandom, _name).__doc__


def _urandom_fn(size: int) -> bytes:
    s = ACTIVE.get()
    if s is None:
        return _real_urandom(size)
    return s.urandom("os.urandom", size, _real_urandom)  # type: ignore[no-any-return]


_urandom_fn.__name__ = "urandom"


def _uuid1_fn(node: Any = None, clock_seq: Any = None) -> _uuid.UUID:
    s = ACTIVE.get()
    if s is None:
        return _real_uuid1(node, clock_seq)
    return s.call("uuid", "uuid.uuid1", (node, clock_seq), lambda: _real_uuid1(node, clock_seq))  # type: ignore[no-any-return]


_uuid1_fn.__name__ = "uuid1"


# -------------------------------------------------------------------------------- env


_MISSING: Final = object()


def _env_memo(s: Any) -> dict[tuple[str, str, str], Any]:
    """The session's memo of environment answers (per strand: strands race)."""
    memo = s.__dict__.get("env_memo")
    if memo is None:
        memo = s.__dict__["env_memo"] = {}
    return memo  # type: ignore[no-any-return]


class RecordedEnviron(os._Environ):  # type: ignore[type-arg,misc]
    """``os.environ``'s class once installed: reads by key and listings are interactions.

    ``os.getenv``, ``get`` and ``in`` all go through ``__getitem__``. The environment only
    changes from inside the process, so each strand's first read of a key (and first
    listing) is an interaction and later ones are answered from a per-session memo until
    the program changes ``os.environ`` (requests reads every proxy variable on every call:
    one interaction per variable, not one per read). Recording and replay memoise alike.
    """

    def __getitem__(self, key: str) -> str:
        s = ACTIVE.get()
        if s is None:
            return super().__getitem__(key)  # type: ignore[no-any-return]
        memo = _env_memo(s)
        slot = (STRAND.get(), "get", key)
        value = memo.get(slot, _MISSING) if isinstance(key, str) else _MISSING
        if value is _MISSING:
            try:
                value = s.call("env", "environ.get", (key,), lambda: os._Environ.__getitem__(self, key))
            except KeyError:
                if isinstance(key, str):
                    memo[slot] = None
                raise
            if isinstance(key, str):
                memo[slot] = value
        elif value is None:
            raise KeyError(key)
        return value  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        s = ACTIVE.get()
        if s is None:
            return super().__iter__()
        memo = _env_memo(s)
        slot = (STRAND.get(), "keys", "")
        keys = memo.get(slot, _MISSING)
        if keys is _MISSING:
            keys = memo[slot] = s.call("env", "environ.keys", (), lambda: list(os._Environ.__iter__(self)))
        return iter(list(keys))

    def __len__(self) -> int:
        s = ACTIVE.get()
        if s is None:
            return super().__len__()  # type: ignore[no-any-return]
        memo = _env_memo(s)
        slot = (STRAND.get(), "len", "")
        n = memo.get(slot, _MISSING)
        if n is _MISSING:
            n = memo[slot] = s.call("env", "environ.len", (), lambda: os._Environ.__len__(self))
        return n  # type: ignore[no-any-return]

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        s = ACTIVE.get()
        if s is not None:
            _env_memo(s).clear()

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        s = ACTIVE.get()
        if s is not None:
            _env_memo(s).clear()


# ---------------------------------------------------------------------------- imports

_real_import = builtins.__import__
_real_import_module = importlib.import_module


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    """``__import__`` that runs module-level code outside the session.

    Which modules are already imported when a call starts differs between the recorded
    process and the replay process, so what module bodies ask the boundary while they are
    imported (a clock read, an env lookup) cannot be matched: import-time work runs live
    and unrecorded, in recording and replay alike.
    """
    if ACTIVE.get() is None:
        return _real_import(name, globals, locals, fromlist, level)
    token = ACTIVE.set(None)
    try:
        return _real_import(name, globals, locals, fromlist, level)
    finally:
        ACTIVE.reset(token)


def _import_module(name: str, package: str | None = None) -> Any:
    if ACTIVE.get() is None:
        return _real_import_module(name, package)
    token = ACTIVE.set(None)
    try:
        return _real_import_module(name, package)
    finally:
        ACTIVE.reset(token)


_import_module.__doc__ = _real_import_module.__doc__


# ---------------------------------------------------------------------------- install

# id(original) -> (original, replacement); originals are kept alive so ids stay unique
_REPLACEMENTS: dict[int, tuple[Any, Any]] = {}


try:  # the optional C extension (setup.py); without it the Python interceptors run alone
    from replay.capture._fastcapture import Interceptor as _Interceptor
    from replay.capture._fastcapture import MethodInterceptor as _MethodInterceptor
except ImportError:  # pragma: no cover - exercised by the tests that hide the extension
    _Interceptor = _MethodInterceptor = None


def intercept(real: Any, recording: Any, *, method: bool = False) -> Any:
    """What replaces ``real``: ``recording`` behind a C front when the extension is built.

    ``recording`` must be a complete interceptor whose path outside a session (``ACTIVE`` is
    None) is exactly ``real(*args, **kwargs)``: the front (``_fastcapture.Interceptor``) then
    makes that call itself, without a Python frame, and calls ``recording`` inside a session.
    The process's own calls outside any recording (a web server reading the clock and using
    its sockets on every request) then cost about as much as uninstalled ones (a wrapped
    ``time.time()``: ~55 ns against ~47 ns, ~230 ns through the Python function alone).

    Args:
        real: The original callable.
        recording: The Python interceptor (its name, qualname, doc and module are copied to
            the front, and it is the front's ``__wrapped__``).
        method: Set on a class (``socket.socket.send``): the front binds to instances.

    Returns:
        The front, or ``recording`` itself without the extension or with
        ``$REPLAY_NO_C_CAPTURE`` set (to compare, and for the tests of the Python path).
    """
    cls = _MethodInterceptor if method else _Interceptor
    if cls is None or os.environ.get("REPLAY_NO_C_CAPTURE"):
        return recording
    front = cls(real, recording, ACTIVE)
    functools.update_wrapper(front, recording)
    return front


def replace(module: Any, name: str, new: Any, *, gate: bool = False) -> Any:
    """Set ``module.name`` to ``new``, remember the pair for rebinding; returns the original.

    With ``gate``, ``new`` goes behind :func:`intercept`'s C front (``new`` must meet its
    condition: outside a session it calls the original with the same arguments).
    Names application modules bound before installation (``from os import getpid``) are
    rebound to what was set by the scan at the end of :func:`install`. Call only from a
    channel's ``install()`` (which :func:`install` runs under its lock).
    """
    old = getattr(module, name)
    if gate:
        new = intercept(old, new)
    _REPLACEMENTS[id(old)] = (old, new)
    setattr(module, name, new)
    return old


def install() -> None:
    """Install every interceptor once for this process (thread-safe, idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        pairs = {
            (_time, "time"): _time_fn,
            (_time, "time_ns"): _time_ns_fn,
            (_time, "monotonic"): _monotonic_fn,
            (_time, "monotonic_ns"): _monotonic_ns_fn,
            (_time, "perf_counter"): _perf_counter_fn,
            (_time, "perf_counter_ns"): _perf_counter_ns_fn,
            (os, "urandom"): _urandom_fn,
            (_random, "_urandom"): _urandom_fn,
            (_uuid, "uuid1"): _uuid1_fn,
            (_dt, "datetime"): RecordedDatetime,
            (_dt, "date"): RecordedDate,
        }
        for (module, name), new in pairs.items():
            # every function here calls the original with the same arguments outside a session
            replace(module, name, new, gate=not isinstance(new, type))
        inst = _random._inst  # type: ignore[attr-defined]
        bound = {n: v for n, v in vars(_random).items() if getattr(v, "__self__", None) is inst}
        for name, method in _RANDOM_METHODS.items():
            if name in _GATED_RANDOM:
                method = intercept(_GATED_RANDOM[name], method, method=True)
            setattr(_RealRandom, name, method)
        for name, old in bound.items():
            new = getattr(inst, name)
            _REPLACEMENTS[id(old)] = (old, new)
            setattr(_random, name, new)
        os.environ.__class__ = RecordedEnviron
        builtins.__import__ = _import
        importlib.import_module = _import_module  # type: ignore[assignment]
        from replay.capture import logged
        from replay.capture.channels import install_all

        logged.install()
        install_all()
        _rebind_loaded_modules()
        _installed = True


def _rebind_loaded_modules() -> None:
    """Rebind names that loaded application modules took before installation."""
    stdlib = sys.stdlib_module_names
    for name, module in list(sys.modules.items()):
        top = name.partition(".")[0]
        if module is None or top in stdlib or top == "replay":
            continue
        try:
            namespace = vars(module)
        except TypeError:
            continue
        for attr, value in list(namespace.items()):
            pair = _REPLACEMENTS.get(id(value))
            if pair is not None and pair[0] is value:
                try:
                    namespace[attr] = pair[1]
                except Exception:  # noqa: BLE001, S112 - a read-only namespace is left alone
                    continue


def is_installed() -> bool:
    """True once :func:`install` has run in this process."""
    return _installed
