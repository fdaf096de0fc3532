"""Capture policies: which calls are recorded and which snapshots are written.

Decided before any expensive work, in this order (see docs/production.md):

1. At call start, :meth:`Policy.admit`: mode ``off`` or an unsampled call (``sample_rate``)
   is not recorded at all (no argument encoding, no tape).
2. When the call ends, :meth:`Policy.allow`: a successful call is written only in mode
   ``always``; then the global token bucket (``rate_limit``) and, for failures, the bucket of
   the failure's fingerprint (``rate_limit_per_failure``) must each give a token. Only then is
   the outcome encoded and the snapshot queued.

Settings come from, highest first: the options of one decorator or middleware, then
:func:`configure` (process-wide), then environment variables, then the defaults below.
``REPLAY_CAPTURE=off`` is a kill switch: it turns off every capture, even ``on="always"``.
Bad values raise :class:`~replay.errors.UsageError` when a capture is configured (decorated,
a middleware built, :func:`configure` called), never while a request runs.

Default limits follow ../shared/research/anchors-capture-security.md section 10.2: 1 snapshot
per second with a burst of 5, 1 per failure fingerprint per hour with a table of 1 024
fingerprints, a queue of 100 snapshots or 16 MiB.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import re
import threading
import types
import weakref
from collections.abc import Callable
from typing import Any, Final

from replay.capture.boundary import PACKAGE_DIR
from replay.capture.interceptors import REAL, exempt
from replay.capture.recorder import count
from replay.errors import UsageError

MODES: Final = ("error", "always", "off")
FINGERPRINT_TABLE_SIZE: Final = 1024
ENV: Final = {  # option -> environment variable
    "on": "REPLAY_CAPTURE",
    "sample_rate": "REPLAY_SAMPLE_RATE",
    "rate_limit": "REPLAY_RATE_LIMIT",
    "rate_limit_per_failure": "REPLAY_RATE_LIMIT_PER_FAILURE",
    "store": "REPLAY_STORE",
    "spool": "REPLAY_SPOOL",
    "background": "REPLAY_WRITE",
}
_UNITS: Final = {"ms": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0}
_RATE_RE: Final = re.compile(r"^\s*(\d+)\s*/\s*(\d*\.?\d*)\s*([a-z]*)\s*$")
_OFF: Final = ("off", "none", "unlimited")


@dataclasses.dataclass(frozen=True)
class RateLimit:
    """A token bucket's shape: at most ``count`` snapshots at once, refilled at ``count``
    per ``per_s`` seconds. ``"10/60s"`` is ``RateLimit(10, 60.0)``."""

    count: int
    per_s: float

    def __str__(self) -> str:
        return f"{self.count}/{self.per_s:g}s"


def parse_rate(value: Any, name: str) -> RateLimit | None:
    """A rate limit from ``"N/INTERVAL"`` (units ms, s, m, h; ``"5/s"`` = ``"5/1s"``), a
    :class:`RateLimit`, or ``None``/``"off"`` for no limit.

    Raises:
        UsageError: anything else; ``name`` says which option or variable was wrong.
    """
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _OFF:
            return None
        m = _RATE_RE.match(text)
        if m and (m.group(3) or "s") in _UNITS:
            count, number = int(m.group(1)), float(m.group(2) or "1")
            per_s = number * _UNITS[m.group(3) or "s"]
            if count > 0 and per_s > 0:
                return RateLimit(count, per_s)
    raise UsageError(f"{name}={value!r}: expected a rate like '10/60s' (N per interval; units ms, s, m, h) or 'off'")


class TokenBucket:
    """A thread-safe token bucket: :meth:`take` spends one token if there is one.

    Args:
        limit: Capacity ``limit.count``, refilled continuously at ``count / per_s`` per second.
        clock: Seconds, monotonic (injected by tests); default the real ``time.monotonic``.
    """

    def __init__(self, limit: RateLimit, clock: Callable[[], float] | None = None):
        self.limit = limit
        self._clock = clock or REAL["time.monotonic"]
        self._rate = limit.count / limit.per_s
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Full again (a forked child starts with a full bucket and a fresh lock)."""
        self._lock = threading.Lock()
        self._tokens = float(self.limit.count)
        self._last = self._clock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(float(self.limit.count), self._tokens + (now - self._last) * self._rate)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False

    def refund(self) -> None:
        with self._lock:
            self._tokens = min(float(self.limit.count), self._tokens + 1.0)


class FingerprintLimiter:
    """One :class:`TokenBucket` per failure fingerprint, the least recently used forgotten
    beyond ``size`` fingerprints (a forgotten fingerprint starts again with a full bucket)."""

    def __init__(self, limit: RateLimit, size: int = FINGERPRINT_TABLE_SIZE,
                 clock: Callable[[], float] | None = None):
        self.limit = limit
        self.size = size
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self._buckets: collections.OrderedDict[Any, TokenBucket] = collections.OrderedDict()

    def take(self, fingerprint: Any) -> bool:
        with self._lock:
            bucket = self._buckets.get(fingerprint)
            if bucket is None:
                bucket = self._buckets[fingerprint] = TokenBucket(self.limit, self._clock)
                if len(self._buckets) > self.size:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(fingerprint)
        return bucket.take()

    def refund(self, fingerprint: Any) -> None:
        """Give back the token just taken (the snapshot was dropped for another reason)."""
        with self._lock:
            bucket = self._buckets.get(fingerprint)
        if bucket is not None:
            bucket.refund()


@dataclasses.dataclass(frozen=True)
class Settings:
    """Effective capture settings (see docs/production.md for each).

    Attributes:
        on: "error" (write failures), "always" (every call) or "off".
        sample_rate: Fraction 0..1 of calls recorded at all, decided at call start.
        rate_limit: Global token bucket for written snapshots (None: unlimited).
        rate_limit_per_failure: Token bucket per failure fingerprint (None: unlimited).
        store: Local directory or fsspec URL; None: ``$REPLAY_STORE``/``$REPLAY_DIR`` at
            write time, else ``./snapshots``.
        spool: Local directory where snapshots for a URL store are written first; None:
            ``<tempdir>/replay-spool-<uid>``.
        background: Write on the background thread (True) or on the calling thread.
        queue_size, queue_bytes: Bounds of the background queue (snapshots, tape bytes).
        max_interactions: Tape length after which the recording is cut (not replayable).
        max_snapshot_bytes: Encoded bytes (arguments, outcome, tape) above which the snapshot
            is dropped.
        time_budget_ms: Capture work on the application's thread (entry, outcome and tape
            encoding) above which the snapshot is dropped.
        spool_max_files, spool_max_bytes: Cap of the spool (or local store) directory; a new
            snapshot that would exceed it is dropped, files already there are kept.
        exit_timeout_s: How long interpreter exit waits for queued snapshots.
    """

    on: str = "error"
    sample_rate: float = 1.0
    rate_limit: RateLimit | None = RateLimit(5, 5.0)
    rate_limit_per_failure: RateLimit | None = RateLimit(1, 3600.0)
    store: str | None = None
    spool: str | None = None
    background: bool = True
    queue_size: int = 100
    queue_bytes: int = 16 << 20
    max_interactions: int = 100_000
    max_snapshot_bytes: int = 8 << 20
    time_budget_ms: float = 250.0
    spool_max_files: int = 100
    spool_max_bytes: int = 256 << 20
    # Sentry waits 2 s; the first snapshot of a process also collects library versions
    # (~0.5-1 s on the writer thread), so a process failing just before it exits needs more.
    exit_timeout_s: float = 5.0


OPTIONS: Final = frozenset(f.name for f in dataclasses.fields(Settings))


def _check(options: dict[str, Any], source: Callable[[str], str]) -> dict[str, Any]:
    """Validated, normalised options; ``source(name)`` names an option in error messages."""
    out: dict[str, Any] = {}
    for name, value in options.items():
        if name not in OPTIONS:
            raise UsageError(f"unknown capture option {name!r}; expected one of {', '.join(sorted(OPTIONS))}")
        where = source(name)
        if name == "on":
            if value not in MODES:
                raise UsageError(f"capture {where}={value!r}: expected one of {', '.join(MODES)}")
        elif name in ("rate_limit", "rate_limit_per_failure"):
            value = parse_rate(value, where)
        elif name == "sample_rate":
            value = _number(value, where, float)
            if not 0.0 <= value <= 1.0:
                raise UsageError(f"{where}={value!r}: expected a fraction between 0 and 1")
        elif name == "background":
            if isinstance(value, str):
                if value not in ("background", "sync"):
                    raise UsageError(f"{where}={value!r}: expected 'background' or 'sync'")
                value = value == "background"
            value = bool(value)
        elif name in ("store", "spool"):
            value = os.fspath(value) if value is not None else None
            if name == "store" and value and "://" in value:
                _check_url(value, where)
        else:
            kind = float if name in ("time_budget_ms", "exit_timeout_s") else int
            value = _number(value, where, kind)
            if value <= 0:
                raise UsageError(f"{where}={value!r}: expected a positive number")
        out[name] = value
    return out


def _number(value: Any, where: str, kind: type) -> Any:
    try:
        if isinstance(value, bool):
            raise ValueError
        return kind(value)
    except (TypeError, ValueError):
        raise UsageError(f"{where}={value!r}: expected a number") from None


def _check_url(url: str, where: str) -> None:
    try:
        import fsspec  # only when a URL store is configured

        fsspec.get_filesystem_class(url.split("://", 1)[0])
    except (ImportError, ValueError) as exc:
        raise UsageError(f"{where}={url!r}: no fsspec filesystem for this URL ({exc})") from None


def _from_environment() -> dict[str, Any]:
    raw = {name: os.environ[var] for name, var in ENV.items() if os.environ.get(var)}
    raw.pop("store", None)  # read when a snapshot is written (may change after configuration)
    if os.environ.get("REPLAY_STORE"):
        _check({"store": os.environ["REPLAY_STORE"]}, lambda n: "REPLAY_STORE")
    return _check(raw, lambda name: ENV[name])


_configured: dict[str, Any] = {}
_generation = 0
_config_lock = threading.Lock()
_global_buckets: dict[RateLimit, TokenBucket] = {}
_failure_limiters: dict[RateLimit, FingerprintLimiter] = {}
_policies: weakref.WeakSet[Policy] = weakref.WeakSet()


def configure(*, reset: bool = False, **options: Any) -> Settings:
    """Set process-wide capture defaults (below a decorator's own options).

    Args:
        reset: Forget earlier :func:`configure` options first.
        **options: Any :class:`Settings` field, e.g. ``on="always"``, ``sample_rate=0.1``,
            ``rate_limit="10/60s"``, ``store="s3://bucket/snaps"``.

    Returns:
        The process default settings now in effect (environment included).

    Raises:
        UsageError: an unknown option or a bad value (nothing is changed then).
    """
    global _generation
    checked = _check(options, lambda name: name)
    with _config_lock:
        if reset:
            _configured.clear()
        _configured.update(checked)
        _generation += 1
        for pol in list(_policies):
            pol.admits_all = False  # until its next current() sees the new settings
    return _settings({})


def defaults() -> Settings:
    """The process default settings now in effect (:func:`configure`, environment, defaults).

    Raises:
        UsageError: a bad ``REPLAY_*`` environment variable.
    """
    return _settings({})


def _settings(overrides: dict[str, Any], env: dict[str, Any] | None = None) -> Settings:
    env = _from_environment() if env is None else env
    merged = {**env, **_configured, **overrides}
    if env.get("on") == "off":
        merged["on"] = "off"  # the kill switch wins over code
    return Settings(**merged)


def resolve(on: str | None = None, **options: Any) -> Policy:
    """The policy of one capture site (decorator, recording block, middleware).

    Args:
        on: The mode, or None for the process default.
        **options: Any :class:`Settings` field given for this site only.

    Raises:
        UsageError: bad option values, or bad ``REPLAY_*`` environment variables.
    """
    if on is not None:
        options["on"] = on
    return Policy(_check(options, lambda name: name))


class Policy:
    """A capture site's policy; follows later :func:`configure` calls. Thread-safe.

    Captures with the same ``rate_limit`` share one global bucket (the process's), and the
    same for ``rate_limit_per_failure``; :func:`resolve` creates instances.
    """

    def __init__(self, overrides: dict[str, Any], rng: random.Random | None = None):
        self._overrides = overrides
        self._env = _from_environment()
        self._rng = rng or exempt(random.Random())  # noqa: S311 - sampling, not security
        self._generation = -1
        self._refresh()
        _policies.add(self)

    def _refresh(self) -> None:
        self._generation = _generation
        s = self.settings = _settings(self._overrides, self._env)
        # every call admitted (no sampling): the per-request C path reads this flag alone;
        # configure() clears it on every policy, so it is never stale
        self.admits_all = s.on != "off" and s.sample_rate >= 1.0
        with _config_lock:
            self._bucket = None if s.rate_limit is None else _global_buckets.setdefault(
                s.rate_limit, TokenBucket(s.rate_limit))
            self._failures = None if s.rate_limit_per_failure is None else _failure_limiters.setdefault(
                s.rate_limit_per_failure, FingerprintLimiter(s.rate_limit_per_failure))

    def current(self) -> Settings:
        """The settings in effect now."""
        if self._generation != _generation:
            self._refresh()
        return self.settings

    def admit(self) -> bool:
        """At call start: record this call? False for mode "off" and unsampled calls."""
        if self.admits_all:
            return True
        s = self.current()
        if s.on == "off":
            return False
        if s.sample_rate < 1.0 and self._rng.random() >= s.sample_rate:
            count("dropped_sampled_out")
            return False
        return True

    def allow(self, failed: bool, fingerprint: Any = None) -> str | None:
        """When a recorded call ends: None to write its snapshot, else the reason not to.

        Reasons: "not_failed" (a success in mode "error"; not counted as a drop),
        "rate_limited" (global bucket empty), "fingerprint_limited" (the failure's bucket).
        """
        s = self.current()
        if not failed and s.on != "always":
            return "not_failed"
        # The failure's own bucket first: a storm of one failure must not drain the global
        # bucket; a token it gave back is refunded when the global bucket then says no.
        failures = self._failures if failed and fingerprint is not None else None
        if failures is not None and not failures.take(fingerprint):
            return "fingerprint_limited"
        if self._bucket is not None and not self._bucket.take():
            if failures is not None:
                failures.refund(fingerprint)
            return "rate_limited"
        return None


def fingerprint(exc: BaseException, roots: list[str]) -> tuple[str, str, int]:
    """A failure's identity: exception type and the innermost application frame's location.

    Application frames are those under one of ``roots`` (else any frame outside this
    package). Cheap: walks the traceback's frames without reading sources or locals.

    Returns:
        ``(module:qualname of the type, file, line)``.
    """
    cls = type(exc)
    where: tuple[str, int] = ("?", 0)
    tb: types.TracebackType | None = exc.__traceback__
    fallback = where
    while tb is not None:
        file = tb.tb_frame.f_code.co_filename
        if not file.startswith(PACKAGE_DIR):
            fallback = (file, tb.tb_lineno)
            if any(file.startswith(r) for r in roots):
                where = fallback
        tb = tb.tb_next
    if where[0] == "?":
        where = fallback
    return (f"{cls.__module__}:{cls.__qualname__}", *where)


def reset_after_fork() -> None:
    """In a forked child: full buckets, fresh locks (a lock held by another thread at fork
    time would otherwise stay locked forever in the child)."""
    global _config_lock
    _config_lock = threading.Lock()
    for bucket in list(_global_buckets.values()) + list(_failure_limiters.values()):
        bucket.reset()
    for pol in list(_policies):
        pol._rng.seed()  # parent and child must not draw the same sampling decisions
