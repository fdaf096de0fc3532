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

from replay.capture.boundary import ACTIVE
from replay.capture.flight import DEFAULT_STEP_BUDGET, FlightRecorder
from replay.capture.flight import remove as remove_trace
from replay.capture.identity import project_root_of
from replay.capture.interceptors import REAL, install
from replay.capture.recorder import (
    Recorder,
    count,
    describe_exception,
    log,
    return_outcome,
    snapshot_directory,
    write_snapshot,
)
from replay.errors import UsageError
from replay.snapshot.codec import Encoder

F = TypeVar("F", bound=Callable[..., Any])
MODES: Final = ("error", "always")
ENTRY_ATTRIBUTE: Final = "__replay_entry__"  # on wrappers: the undecorated entry function

# Set by the replay child while it drives a `recording()` block (see replay.replayer.child).
block_replay_hook: Callable[[str, Any], Any] | None = None


class BlockFinished(BaseException):  # noqa: N818 - control flow, not an error
    """Ends a replayed enclosing function once its recorded block has finished."""


def _entry_record(fn: Callable[..., Any], kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    module = getattr(fn, "__module__", None) or "__main__"
    qualname = getattr(fn, "__qualname__", getattr(fn, "__name__", "?"))
    code = getattr(fn, "__code__", None)
    file = os.path.abspath(code.co_filename) if code is not None else None
    root = project_root_of(module, file)
    reasons: list[str] = []
    if "<locals>" in qualname:
        reasons.append(f"entry point {qualname} is a nested function: replay cannot import it")
    if root is None:
        reasons.append("entry point has no source file")
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
) -> None:
    """Write the snapshot of a finished call (``exc`` raised, or ``result`` returned); never raises."""
    trace = None
    try:
        if flight is not None:
            flight.stop()
        if entry is None:
            return
        record = describe_exception(exc, entry["project_root"]) if exc is not None else return_outcome(result)
        record["duration_ns"] = REAL["time.perf_counter_ns"]() - t0
        if flight is not None:
            trace = flight.finish(record["kind"])
        path = write_snapshot(directory=snapshot_directory(directory), entry=entry, recorder=rec, outcome=record,
                              trace=trace)
        log.info("replay: snapshot written to %s", path)
    except Exception:  # noqa: BLE001 - fail open: capture never breaks the application
        count("capture_errors")
        log.warning("replay: could not write a snapshot", exc_info=True)
    finally:
        if flight is not None:
            flight.discard()
        remove_trace(trace)


def _start(fn: Callable[..., Any], kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return _entry_record(fn, kind, args, kwargs)
    except Exception:  # noqa: BLE001 - fail open
        count("capture_errors")
        log.warning("replay: could not record the entry point", exc_info=True)
        return None


def _roots(entry: dict[str, Any] | None) -> list[str]:
    root = entry.get("project_root") if entry else None
    return [root] if root else []


def _mode(on: str | None) -> str:
    """The capture mode: the argument, else ``$REPLAY_CAPTURE``, else "error"."""
    mode = on if on is not None else (os.environ.get("REPLAY_CAPTURE") or "error")
    if mode not in MODES:
        source = f"on={mode!r}" if on is not None else f"REPLAY_CAPTURE={mode!r}"
        raise UsageError(f"capture {source}: expected one of {', '.join(MODES)}")
    return mode


@overload
def capture(fn: F, /) -> F: ...
@overload
def capture(*, on: str | None = None, directory: str | os.PathLike[str] | None = None,
            trace: bool | int = False) -> Callable[[F], F]: ...


def capture(fn: Any = None, /, *, on: str | None = None, directory: Any = None, trace: bool | int = False) -> Any:
    """Record calls of a function; write a snapshot when the call raises (or always).

    Usable bare (``@replay.capture``) or with options (``@replay.capture(on="always")``).
    The call's arguments are encoded when it starts (so later mutation does not change
    them), its boundary interactions are recorded while it runs, and its outcome when it
    ends. A nested captured call inside a recorded one is part of the outer recording.

    Args:
        fn: The entry point (a module-level function or method; sync or async).
        on: ``"error"``: write a snapshot only when the call raises an ``Exception``;
            ``"always"``: write one for every call. Default: ``$REPLAY_CAPTURE`` when set
            (read when the function is decorated), else ``"error"``.
        directory: Where snapshots go; default ``$REPLAY_DIR`` or ``./snapshots``.
        trace: Flight recorder (sync functions only): also record the trace of the
            application's own frames during the call and embed it in the snapshot, for when
            the code will not be available at replay time. ``True`` for the default step
            budget (:data:`replay.capture.flight.DEFAULT_STEP_BUDGET`), or a number of steps.
            Costs a tracer on every application line of the call: see docs/time-travel.md.

    Returns:
        A wrapper with the same signature; the exception of a failing call propagates
        unchanged.

    Raises:
        UsageError: ``on`` is not one of "error", "always" (at decoration time).
    """
    on = _mode(on)
    if fn is None:
        return functools.partial(capture, on=on, directory=directory, trace=trace)
    budget = 0 if trace is False else (DEFAULT_STEP_BUDGET if trace is True else int(trace))
    if budget < 0:
        raise UsageError(f"capture trace={trace!r}: expected True, False or a number of steps")
    install()
    dirname = os.fspath(directory) if directory is not None else None

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if ACTIVE.get() is not None:
                return await fn(*args, **kwargs)
            entry = _start(fn, "async", args, kwargs)
            rec = Recorder(app_roots=_roots(entry))
            t0 = REAL["time.perf_counter_ns"]()
            token = ACTIVE.set(rec)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                ACTIVE.reset(token)
                rec.close()
                _finish(entry, rec, dirname, t0, exc=exc)
                raise
            except BaseException:
                ACTIVE.reset(token)
                rec.close()
                raise
            ACTIVE.reset(token)
            rec.close()
            if on == "always":
                _finish(entry, rec, dirname, t0, result=result)
            return result

        setattr(async_wrapper, ENTRY_ATTRIBUTE, fn)
        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if ACTIVE.get() is not None:
            return fn(*args, **kwargs)
        entry = _start(fn, "function", args, kwargs)
        rec = Recorder(app_roots=_roots(entry))
        flight = FlightRecorder.start(_roots(entry), budget) if budget and entry else None
        t0 = REAL["time.perf_counter_ns"]()
        token = ACTIVE.set(rec)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            ACTIVE.reset(token)
            rec.close()
            _finish(entry, rec, dirname, t0, exc=exc, flight=flight)
            raise
        except BaseException:
            ACTIVE.reset(token)
            rec.close()
            if flight is not None:
                flight.discard()
            raise
        ACTIVE.reset(token)
        rec.close()
        if on == "always":
            _finish(entry, rec, dirname, t0, result=result, flight=flight)
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
        on: ``"error"`` or ``"always"``; default ``$REPLAY_CAPTURE``, else ``"error"``.
        directory: Where snapshots go; default ``$REPLAY_DIR`` or ``./snapshots``.

    Raises:
        UsageError: bad ``on`` value.
    """

    def __init__(self, *, on: str | None = None, directory: str | os.PathLike[str] | None = None):
        self.on = _mode(on)
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
        if ACTIVE.get() is not None:
            return self
        frame = sys._getframe(1)
        self._entry = _start_block(frame)
        self._rec = Recorder(app_roots=_roots(self._entry))
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
            _finish(entry, rec, self.directory, self._t0, exc=exc)
        elif exc is None and self.on == "always":
            _finish(entry, rec, self.directory, self._t0, result=None)
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
