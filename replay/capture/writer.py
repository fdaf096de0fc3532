"""The background snapshot writer: a bounded queue and one daemon thread.

The application's thread only prepares a :class:`~replay.capture.store.Job` (the cheap
part: the tape is already encoded) and hands it over with :func:`submit`; the writer thread
collects the code identity and environment, compresses, writes, fsyncs and uploads
(:func:`replay.capture.store.write_job`). The queue is bounded by snapshots and by tape
bytes: when full, the new snapshot is dropped (``dropped_queue_full``), never waited for.

Shutdown and fork: at interpreter exit, queued snapshots get ``exit_timeout_s`` (5 s by
default) to be written, then the process exits anyway (the thread is a daemon; what is left
counts as ``dropped_at_exit``); no thread is started once the interpreter is finalizing. A
forked child starts with an empty queue, no thread (one starts on its first snapshot),
fresh locks, full rate-limit buckets and zeroed counters. Counters are logged at INFO every
:data:`LOG_INTERVAL_S` seconds when they changed, and at exit.
"""

from __future__ import annotations

import atexit
import collections
import os
import sys
import threading
from typing import Final

from replay.capture import policy, recorder, store
from replay.capture.interceptors import REAL
from replay.capture.recorder import count, log, stats
from replay.capture.store import Job

LOG_INTERVAL_S: Final = 300.0


class BackgroundWriter:
    """A bounded queue of jobs and the daemon thread that writes them. Thread-safe."""

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[Job] = collections.deque()
        self._bytes = 0
        self._busy = False
        self._thread: threading.Thread | None = None
        self._last_log = REAL["time.monotonic"]()
        self._logged: dict[str, int] = {}

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (and counted) when the queue is full or the interpreter is exiting."""
        s = job.settings
        with self._cond:
            if len(self._queue) >= s.queue_size or self._bytes + job.nbytes > s.queue_bytes:
                count("dropped_queue_full")
                return False
            if self._thread is None or not self._thread.is_alive():
                if sys.is_finalizing():
                    count("dropped_at_exit")
                    return False
                self._thread = threading.Thread(target=self._run, name="replay-snapshot-writer", daemon=True)
                self._thread.start()
            self._queue.append(job)
            self._bytes += job.nbytes
            self._cond.notify_all()
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue:
                    self._cond.wait()
                job = self._queue.popleft()
                self._bytes -= job.nbytes
                self._busy = True
            try:
                store.write_job(job)
            except BaseException:  # noqa: BLE001 - the thread must survive anything
                count("capture_errors")
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
            self.log_stats(periodic=True)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued snapshot is written; False if ``timeout`` seconds ran out."""
        clock = REAL["time.monotonic"]
        deadline = clock() + timeout
        with self._cond:
            while self._queue or self._busy:
                left = deadline - clock()
                if left <= 0 or self._thread is None or not self._thread.is_alive():
                    return False
                self._cond.wait(left)
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._queue) + self._busy

    def log_stats(self, *, periodic: bool = False) -> None:
        """Log the counters at INFO if they changed (at most every LOG_INTERVAL_S when periodic)."""
        now = REAL["time.monotonic"]()
        if periodic and now - self._last_log < LOG_INTERVAL_S:
            return
        self._last_log = now
        current = stats()
        if current != self._logged:
            self._logged = current
            log.info("replay: capture counters %s", " ".join(f"{k}={v}" for k, v in sorted(current.items()) if v))


_writer = BackgroundWriter()


def submit(job: Job) -> None:
    """Write ``job`` on the background thread, or right here when its settings say ``sync``."""
    if job.settings.background:
        _writer.submit(job)
    else:
        store.write_job(job)


def flush(timeout: float = 10.0) -> bool:
    """Wait up to ``timeout`` seconds for queued snapshots (and pending uploads) to be written.

    For tests and graceful shutdown. Returns True when nothing is left to write.
    """
    done = _writer.flush(timeout)
    store.upload_pending()
    return done


def _at_exit() -> None:
    try:
        timeout = policy.defaults().exit_timeout_s
    except Exception:  # noqa: BLE001 - a bad REPLAY_* variable set late: use the default
        timeout = policy.Settings.exit_timeout_s
    if not _writer.flush(timeout):
        count("dropped_at_exit", _writer.pending())
    _writer.log_stats()


def _after_fork_in_child() -> None:
    global _writer
    _writer = BackgroundWriter()
    store.reset()
    policy.reset_after_fork()
    recorder.reset_after_fork()


atexit.register(_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
