"""The public capture API: ``@replay.capture`` and ``with replay.recording()``.

Fail open: anything that goes wrong inside capture is logged and counted
(:func:`replay.capture.stats`) and never reaches the application; the application's own
exception always propagates unchanged, with its original traceback.
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
import types
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar, overload

from replay.capture import writer
from replay.capture.boundary import ACTIVE
from replay.capture.flight import DEFAULT_STEP_BUDGET, FlightRecorder
from replay.capture.flight import remove as remove_trace
from replay.capture.identity import project_root_of
from replay.capture.interceptors import REAL, install
from replay.capture.policy import MODES, Policy, Settings, resolve
from replay.capture.policy import fingerprint as _fingerprint
from replay.capture.recorder import (
    Recorder,
    count,
    describe_exception,
    log,
    return_outcome,
    snapshot_directory,
)
from replay.capture.store import Job, is_url
from replay.errors import UsageError
from replay.snapshot.codec import Encoder

F = TypeVar("F", bound=Callable[..., Any])
__all__ = ["MODES", "capture", "recording"]
ENTRY_ATTRIBUTE: Final = "__replay_entry__"  # on wrappers: the undecorated entry function
_ENCODE_NS: Final = "_encode_ns"  # entry key (removed before writing): entry encoding time

# Set by the replay child while it drives a `recording()` block (see replay.replayer.child).
block_replay_hook: Callable[[str, Any], Any] | None = None


class BlockFinished(BaseException):  # noqa: N818 - control flow, not an error
    """Ends a replayed enclosing function once its recorded block has finished."""


@functools.lru_cache(maxsize=4096)
def _where(module: str, qualname: str, code: types.CodeType | None) -> tuple[str | None, str | None, tuple[str, ...]]:
    """File, project root and reasons of an entry point (cached: the same for every call).

    The file is made absolute against the working directory of the first call; a relative
    ``co_filename`` only occurs for ``python script.py`` run from the script's directory.
    """
    file = os.path.abspath(code.co_filename) if code is not None else None
    root = project_root_of(module, file)
    reasons: list[str] = []
    if "<locals>" in qualname:
        reasons.append(f"entry point {qualname} is a nested function: replay cannot import it")
    if root is None:
        reasons.append("entry point has no source file")
    return file, root, tuple(reasons)


def _entry_record(fn: Callable[..., Any], kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", "?"))
    file, root, known = _where(module, qualname, getattr(fn, "__code__", None))
    reasons = list(known)
    enc = Encoder()
    entry = {
        "module": module,
        "qualname": qualname,
        "file": file,
        "kind": kind,
        "project_root": root,
        "main_file": file if module == "__main__" else None,
        "args": enc.encode(list(args)),
        "kwargs": enc.encode(kwargs),
        "reasons": reasons,
    }
    reasons.extend(f"argument not exact: {r}" for r in enc.lossy)
    return entry


def _finish(
    entry: dict[str, Any] | None,
    rec: Recorder,
    directory: str | None,
    t0: int,
    *,
    exc: BaseException | None = None,
    result: Any = None,
    flight: FlightRecorder | None = None,
    outcome: dict[str, Any] | None = None,
    failed: bool | None = None,
    fingerprint: Any = None,
    policy: Policy | None = None,
    allowed: bool = False,
) -> None:
    """The one path of every captured call's end: decide, encode, queue the snapshot; never raises.

    Order (cheapest decision first): a success is dropped unless the mode is "always"; then
    the failure's fingerprint bucket and the global bucket must give a token; only then is
    the outcome encoded and the tape packed (on this thread: they refer to live objects),
    checked against the time and size budgets, and handed to the writer
    (:mod:`replay.capture.writer`), which writes it in the background.

    Args:
        entry: The entry record from :func:`_start` (None: the entry could not be recorded).
        rec: The call's recorder, already closed.
        directory: The site's store (directory or URL), else the policy's, else the
            environment's (``$REPLAY_STORE``, ``$REPLAY_DIR``), else ``./snapshots``.
        t0: ``perf_counter_ns`` at call start.
        exc, result: What the call raised or returned.
        flight: The call's flight recorder, if any (stopped and consumed here).
        outcome: A prebuilt outcome record (an entry kind's own, e.g. a web response);
            used instead of ``exc``/``result``.
        failed: Whether the call failed; default: ``exc`` is not None.
        fingerprint: The failure's identity for the per-failure limit; default
            :func:`replay.capture.policy.fingerprint` of ``exc``, else the entry point and
            the outcome's ``status``.
        policy: The site's policy; default the process's.
        allowed: The caller already asked the policy (:func:`decide`) and got a yes (the
            tokens are taken): the middleware decides before it encodes the request, so a
            rate-limited failure costs no encoding.
    """
    trace = None
    try:
        if flight is not None:
            flight.stop()
        if entry is None:
            return
        pol = policy or _default_policy()
        failed = exc is not None if failed is None else failed
        if failed and fingerprint is None:
            fingerprint = (_fingerprint(exc, _roots(entry)) if exc is not None
                           else (entry["module"], entry["qualname"], (outcome or {}).get("status")))
        if not allowed and not decide(pol, failed, fingerprint):
            return
        settings = pol.current()
        started = REAL["time.perf_counter_ns"]()
        if outcome is not None:
            record = outcome
        elif exc is not None:
            record = describe_exception(exc, entry["project_root"])
        else:
            record = return_outcome(result)
        record["duration_ns"] = started - t0
        if flight is not None:
            trace = flight.finish(record["kind"])
        encode_ns = entry.pop(_ENCODE_NS, 0)
        payload = Job.pack(entry, record, rec.tape)
        spent_ns = REAL["time.perf_counter_ns"]() - started + encode_ns
        if len(payload) > settings.max_snapshot_bytes or spent_ns > settings.time_budget_ms * 1e6:
            count("dropped_over_budget")
            return
        if len(rec.tape) > rec.max_interactions:
            count("tapes_cut")
        job = Job(payload=payload, reasons=list(rec.reasons), runs=list(rec.runs), strands=dict(rec.strands),
                  trace=trace, store=_store(directory, settings), settings=settings, failed=failed)
        trace = None  # the job owns it now
        writer.submit(job)
    except Exception:  # noqa: BLE001 - fail open: capture never breaks the application
        count("capture_errors")
        log.warning("replay: could not capture a snapshot", exc_info=True)
    finally:
        if flight is not None:
            flight.discard()
        remove_trace(trace)


def decide(policy: Policy, failed: bool, fingerprint: Any) -> bool:
    """Whether a finished call's snapshot may be written (:meth:`Policy.allow`); a refusal
    other than "a success in mode error" is counted as ``dropped_<reason>``."""
    reason = policy.allow(failed, fingerprint)
    if reason is None:
        return True
    if reason != "not_failed":
        count(f"dropped_{reason}")
    return False


def _store(directory: str | None, settings: Settings) -> str:
    """Where a snapshot goes, resolved now (relative paths against the current directory)."""
    where = directory or settings.store or os.environ.get("REPLAY_STORE") or snapshot_directory(None)
    return where if is_url(where) else os.path.abspath(where)


_default: Policy | None = None


def _default_policy() -> Policy:
    global _default
    if _default is None:
        _default = resolve()
    return _default


def _start(fn: Callable[..., Any], kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The entry record of a call starting now (None if it could not be made; counted)."""
    started = REAL["time.perf_counter_ns"]()
    try:
        entry = _entry_record(fn, kind, args, kwargs)
    except Exception:  # noqa: BLE001 - fail open
        count("capture_errors")
        log.warning("replay: could not record the entry point", exc_info=True)
        return None
    entry[_ENCODE_NS] = REAL["time.perf_counter_ns"]() - started  # counts against the time budget
    return entry


def _roots(entry: dict[str, Any] | None) -> list[str]:
    root = entry.get("project_root") if entry else None
    return [root] if root else []


def _recorder(policy: Policy, entry: dict[str, Any] | None) -> Recorder:
    """A recorder for one admitted call, bounded by the policy's ``max_interactions``."""
    rec = Recorder(policy.settings.max_interactions)
    rec.app_roots = _roots(entry)  # already absolute (identity.project_root_of): not normalised per call
    return rec


@overload
def capture(fn: F, /) -> F: ...
@overload
def capture(*, on: str | None = None, directory: str | os.PathLike[str] | None = None,
            trace: bool | int = False, **options: Any) -> Callable[[F], F]: ...


def capture(fn: Any = None, /, *, on: str | None = None, directory: Any = None, trace: bool | int = False,
            **options: Any) -> Any:
    """Record calls of a function; write a snapshot when the call raises (or always).

    Usable bare (``@replay.capture``) or with options (``@replay.capture(on="always")``).
    The call's arguments are encoded when it starts (so later mutation does not change
    them), its boundary interactions are recorded while it runs, and its outcome when it
    ends. A nested captured call inside a recorded one is part of the outer recording.
    Snapshots are written by a background thread (:func:`replay.capture.flush` waits for
    them); see docs/production.md for the policy options and their defaults.

    Args:
        fn: The entry point (a module-level function or method; sync or async).
        on: ``"error"``: write a snapshot only when the call raises an ``Exception``;
            ``"always"``: write one for every call; ``"off"``: record nothing. Default: the
            process default (:func:`replay.capture.configure`, else ``$REPLAY_CAPTURE``,
            else ``"error"``).
        directory: Where snapshots go: a directory or an fsspec URL; default the process
            default, else ``$REPLAY_STORE``, ``$REPLAY_DIR``, else ``./snapshots``.
        trace: Flight recorder (sync functions only): also record the trace of the
            application's own frames during the call and embed it in the snapshot, for when
            the code will not be available at replay time. ``True`` for the default step
            budget (:data:`replay.capture.flight.DEFAULT_STEP_BUDGET`), or a number of steps.
            Costs a tracer on every application line of the call: see docs/time-travel.md.
        **options: Policy options for this function only (any
            :class:`replay.capture.policy.Settings` field: ``sample_rate``, ``rate_limit``,
            ``rate_limit_per_failure``, ``background``, budgets ...).

    Returns:
        A wrapper with the same signature; the exception of a failing call propagates
        unchanged.

    Raises:
        UsageError: a bad option or ``REPLAY_*`` variable (at decoration time).
    """
    pol = resolve(on, **options)
    if fn is None:
        return lambda f: _wrap(f, pol, directory, trace)
    return _wrap(fn, pol, directory, trace)


class Active:
    """Make a recorder the active boundary session for a ``with`` block (sync or async code).

    When the block ends the session is reset and the recorder closed (not on a normal exit
    when ``close`` is false: a streamed web response goes on recording). An ``Exception``
    leaving the block is handed to ``failed`` (which must never raise) and then propagates
    unchanged, traceback included; any other ``BaseException`` calls ``interrupted``.
    """

    __slots__ = ("rec", "failed", "interrupted", "close", "_token")

    def __init__(self, rec: Recorder, failed: Callable[[Exception], None], *,
                 interrupted: Callable[[], None] | None = None, close: bool = True):
        self.rec, self.failed, self.interrupted, self.close = rec, failed, interrupted, close

    def __enter__(self) -> Recorder:
        self._token = ACTIVE.set(self.rec)  # type: ignore[arg-type]
        return self.rec

    def __exit__(self, typ: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        ACTIVE.reset(self._token)
        if exc is None:
            if self.close:
                self.rec.close()
            return False
        self.rec.close()
        if isinstance(exc, Exception):
            self.failed(exc)
        elif self.interrupted is not None:
            self.interrupted()
        return False


def _wrap(fn: Any, pol: Policy, directory: Any, trace: bool | int) -> Any:
    budget = 0 if trace is False else (DEFAULT_STEP_BUDGET if trace is True else int(trace))
    if budget < 0:
        raise UsageError(f"capture trace={trace!r}: expected True, False or a number of steps")
    install()
    dirname = os.fspath(directory) if directory is not None else None

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if ACTIVE.get() is not None or not pol.admit():
                return await fn(*args, **kwargs)
            entry = _start(fn, "async", args, kwargs)
            rec = _recorder(pol, entry)
            t0 = REAL["time.perf_counter_ns"]()
            with Active(rec, lambda exc: _finish(entry, rec, dirname, t0, exc=exc, policy=pol)):
                result = await fn(*args, **kwargs)
            if pol.settings.on == "always":
                _finish(entry, rec, dirname, t0, result=result, policy=pol)
            return result

        setattr(async_wrapper, ENTRY_ATTRIBUTE, fn)
        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if ACTIVE.get() is not None or not pol.admit():
            return fn(*args, **kwargs)
        entry = _start(fn, "function", args, kwargs)
        rec = _recorder(pol, entry)
        flight = FlightRecorder.start(_roots(entry), budget) if budget and entry else None
        t0 = REAL["time.perf_counter_ns"]()
        with Active(rec, lambda exc: _finish(entry, rec, dirname, t0, exc=exc, flight=flight, policy=pol),
                    interrupted=flight.discard if flight is not None else None):
            result = fn(*args, **kwargs)
        if pol.settings.on == "always":
            _finish(entry, rec, dirname, t0, result=result, flight=flight, policy=pol)
        elif flight is not None:
            flight.discard()
        return result

    setattr(wrapper, ENTRY_ATTRIBUTE, fn)
    return wrapper


class recording:  # noqa: N801 - used like a function: `with replay.recording():`
    """Record the boundary interactions of a block; write a snapshot if it raises.

    The entry point is the function that contains the ``with`` statement, called with the
    values its parameters have when the block starts. Replay calls that function again:
    code before the block runs live, the block is served from the tape, and the function
    stops when the block ends. A block at module level is recorded but marked not
    replayable (wrap the code in a function, or use ``@replay.capture``).

    Args:
        on: ``"error"``, ``"always"`` or ``"off"``; default as for :func:`capture`.
        directory: Where snapshots go: a directory or an fsspec URL; default as for
            :func:`capture`.
        **options: Policy options for this block (see :func:`capture`).

    Raises:
        UsageError: a bad option or ``REPLAY_*`` variable.
    """

    def __init__(self, *, on: str | None = None, directory: str | os.PathLike[str] | None = None, **options: Any):
        self.policy = resolve(on, **options)
        self.directory = os.fspath(directory) if directory is not None else None
        self._token: Any = None
        self._entry: dict[str, Any] | None = None
        self._rec: Recorder | None = None
        self._t0 = 0
        self._replaying = False

    def __enter__(self) -> recording:
        install()
        if block_replay_hook is not None:
            self._replaying = bool(block_replay_hook("enter", None))
            return self
        if ACTIVE.get() is not None or not self.policy.admit():
            return self
        frame = sys._getframe(1)
        self._entry = _start_block(frame)
        self._rec = _recorder(self.policy, self._entry)
        self._t0 = REAL["time.perf_counter_ns"]()
        self._token = ACTIVE.set(self._rec)
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: types.TracebackType | None) -> Literal[False]:
        if self._replaying and block_replay_hook is not None:
            block_replay_hook("exit", exc)
            raise BlockFinished()
        if self._token is None or self._rec is None:
            return False
        ACTIVE.reset(self._token)
        self._token = None
        if self._rec is not None:
            self._rec.close()
        entry, rec = self._entry, self._rec
        if exc is not None and isinstance(exc, Exception):
            _finish(entry, rec, self.directory, self._t0, exc=exc, policy=self.policy)
        elif exc is None and self.policy.settings.on == "always":
            _finish(entry, rec, self.directory, self._t0, result=None, policy=self.policy)
        return False


def _start_block(frame: types.FrameType) -> dict[str, Any] | None:
    """Entry record of the function that encloses a recording block."""
    try:
        code = frame.f_code
        module = frame.f_globals.get("__name__", "__main__")
        qualname = getattr(code, "co_qualname", code.co_name)
        names = code.co_varnames
        n_pos = code.co_argcount
        n_kw = code.co_kwonlyargcount
        values = frame.f_locals
        args = [values[n] for n in names[:n_pos] if n in values]
        kwargs = {n: values[n] for n in names[n_pos : n_pos + n_kw] if n in values}
        flags = code.co_flags
        i = n_pos + n_kw
        if flags & inspect.CO_VARARGS:
            args.extend(values.get(names[i], ()))
            i += 1
        if flags & inspect.CO_VARKEYWORDS:
            kwargs.update(values.get(names[i], {}))
        fake = types.SimpleNamespace(__module__=module, __qualname__=qualname, __code__=code)
        entry = _entry_record(fake, "block", tuple(args), kwargs)  # type: ignore[arg-type]
        if qualname == "<module>":
            entry["reasons"].append("recording() at module level: wrap the code in a function to replay it")
        return entry
    except Exception:  # noqa: BLE001 - fail open
        count("capture_errors")
        log.warning("replay: could not record the enclosing function", exc_info=True)
        return None
