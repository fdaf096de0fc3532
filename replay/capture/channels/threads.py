"""Strands: threads, thread-pool work items and asyncio tasks started inside a recorded call.

Each gets the recorded call's session and a strand id of its own
(:mod:`replay.capture.boundary`), so its interactions are recorded, attributed to it, and
on replay matched in order within it, whatever the interleaving with other strands.
Python 3.11 threads do not inherit context variables; this module makes the threads and
pool work items that a recorded call starts inherit them (asyncio tasks already do, and
only need their own strand id).

Installed: ``threading.Thread.start``, ``concurrent.futures.ThreadPoolExecutor.submit`` and
the task class ``asyncio`` creates tasks with (``asyncio.tasks.Task``).
"""

from __future__ import annotations

import asyncio.tasks
import concurrent.futures
import contextvars
import functools
import logging
import threading
from typing import Any

from replay.capture.boundary import ACTIVE, STRAND

log = logging.getLogger("replay.capture")

_real_thread_start = threading.Thread.start
_real_submit = concurrent.futures.ThreadPoolExecutor.submit
_RealTask = asyncio.tasks.Task


def _strand_context(session: Any, kind: str, name: str) -> contextvars.Context | None:
    try:
        strand = session.new_strand(kind, name)
        ctx = contextvars.copy_context()
        ctx.run(STRAND.set, strand)
        return ctx
    except Exception:  # noqa: BLE001 - fail open: the strand goes unrecorded, the program runs
        log.warning("replay: could not attribute a new %s", kind, exc_info=True)
        return None


def _thread_start(self: threading.Thread) -> None:
    session = ACTIVE.get()
    if session is not None:
        ctx = _strand_context(session, "thread", self.name)
        if ctx is not None:
            run = self.run
            self.run = lambda: ctx.run(run)  # type: ignore[method-assign]
    _real_thread_start(self)


def _submit(self: concurrent.futures.ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
    session = ACTIVE.get()
    if session is None:
        return _real_submit(self, fn, *args, **kwargs)
    inner = getattr(fn, "func", None)
    owner = getattr(inner, "__self__", None)
    if isinstance(fn, functools.partial) and isinstance(owner, contextvars.Context):
        # asyncio.to_thread: the work runs in a context copied before submit; give that
        # context the new strand (it is a private copy, nobody else runs in it)
        name = getattr(fn.args[0], "__qualname__", "to_thread") if fn.args else "to_thread"
        ctx = _strand_context(session, "pool", str(name))
        if ctx is not None:
            owner.run(STRAND.set, ctx.run(STRAND.get))
    else:
        ctx = _strand_context(session, "pool", getattr(fn, "__qualname__", type(fn).__name__))
        if ctx is not None:
            fn, args = ctx.run, (fn, *args)
    # Whether submit() starts a worker thread depends on timing (an idle worker takes the
    # item instead): the pool's own threads start outside the session and take no strand
    # number; the work item carries the session in its context.
    token = ACTIVE.set(None)
    try:
        return _real_submit(self, fn, *args, **kwargs)
    finally:
        ACTIVE.reset(token)


class StrandTask(_RealTask):  # type: ignore[misc,valid-type]
    """``asyncio.Task`` that gives a task created inside a recorded call its own strand."""

    def __init__(self, coro: Any, *, context: contextvars.Context | None = None, **kwargs: Any) -> None:
        if context is None:
            session = ACTIVE.get()
            if session is not None:
                name = kwargs.get("name") or getattr(coro, "__qualname__", "task")
                context = _strand_context(session, "task", str(name))
        super().__init__(coro, context=context, **kwargs)


StrandTask.__module__ = "asyncio.tasks"
StrandTask.__name__ = StrandTask.__qualname__ = "Task"


def install() -> None:
    """Install the strand propagation (idempotent through the caller's lock)."""
    threading.Thread.start = _thread_start  # type: ignore[method-assign]
    concurrent.futures.ThreadPoolExecutor.submit = _submit  # type: ignore[method-assign]
    asyncio.tasks.Task = StrandTask  # type: ignore[misc]
