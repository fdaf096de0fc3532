"""Where finished snapshots go: a crash-safe, size-capped spool, then the store.

A *job* is everything the application thread prepared for one snapshot (the encoded entry,
outcome and packed tape). :func:`write_job` turns it into a file; it runs on the background
writer thread (:mod:`replay.capture.writer`), or on the calling thread in ``sync`` mode.

* Local store (a directory, the default): the snapshot is written straight into it, crash
  safe (temporary name in the same directory, fsync, atomic rename, fsync of the directory:
  :class:`replay.snapshot.writer.SnapshotWriter`). That directory is also the spool.
* URL store (any fsspec URL: ``s3://``, ``gs://``, ``memory://``): the snapshot is written into
  the local spool directory first (the same crash-safe way), then uploaded under the same
  name and removed from the spool. A failed upload leaves the file in the spool; it is
  retried after the next snapshot. fsspec is imported only here, only for URLs.

The spool is capped (``spool_max_files``, ``spool_max_bytes``): a new snapshot that would
exceed the cap is dropped (``dropped_spool_full``), files already there are never deleted:
the first failures are usually the informative ones, and a directory the user reads from is
not pruned behind their back. Temporary files older than an hour (left by a killed writer)
are removed the first time a process writes into a directory.

An ``OSError`` while writing (full disk, read-only or forbidden directory) drops the snapshot
(``dropped_write_error``), is logged once and pauses writing for :data:`IO_BACKOFF_S`
seconds (later snapshots: ``dropped_io_backoff``); nothing is retried after a failed fsync.
"""

from __future__ import annotations

import dataclasses
import glob
import os
import tempfile
import threading
from typing import Any, Final

import msgpack

from replay.capture.policy import Settings
from replay.capture.recorder import Recorder, count, log, write_snapshot

IO_BACKOFF_S: Final = 60.0
STALE_TEMP_S: Final = 3600.0


@dataclasses.dataclass
class Job:
    """One snapshot prepared on the application's thread.

    Attributes:
        payload: ``[entry record, outcome record, tape]`` packed as one msgpack array: its
            length is the memory the job holds, and nothing in it refers to the
            application's objects any more.
        reasons, runs, strands: The recorder's reasons, strand runs and strand table.
        trace: A finished flight-recorder trace file to embed, or None.
        store: Absolute local directory or fsspec URL.
        settings: The capture settings in effect when the call ended.
        failed: The call failed (for the log level).
    """

    payload: bytes
    reasons: list[str]
    runs: list[tuple[int, str]]
    strands: dict[str, dict[str, Any]]
    trace: str | None
    store: str
    settings: Settings
    failed: bool = True

    @property
    def nbytes(self) -> int:
        return len(self.payload)

    @staticmethod
    def pack(entry: dict[str, Any], outcome: dict[str, Any], tape: list[Any]) -> bytes:
        return msgpack.packb([entry, outcome, tape], use_bin_type=True)  # type: ignore[no-any-return]


def is_url(store: str) -> bool:
    return "://" in store


def default_spool() -> str:
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"replay-spool-{uid}")


class _State:
    """Per-process store state (replaced in a forked child)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.paused_until = 0.0
        self.swept: set[str] = set()
        self.pending_uploads: list[tuple[str, str]] = []  # (spooled file, store URL)


_state = _State()


def reset() -> None:
    """Forget the pause after a write error, swept directories and pending uploads (a
    forked child's fresh state; tests)."""
    global _state
    _state = _State()


def write_job(job: Job, clock: Any = None) -> str | None:
    """Write one job to its store; returns the final path or URL, None when dropped.

    Never raises: every failure is counted (see the module docstring) and logged.
    """
    from replay.capture.interceptors import REAL

    now = (clock or REAL["time.monotonic"])()
    if now < _state.paused_until:
        count("dropped_io_backoff")
        _discard_trace(job)
        return None
    s = job.settings
    spool = os.path.abspath(s.spool or default_spool()) if is_url(job.store) else job.store
    try:
        if is_url(job.store):
            os.makedirs(spool, mode=0o700, exist_ok=True)
        _sweep(spool)
        if _over_cap(spool, job.nbytes, s):
            count("dropped_spool_full")
            _discard_trace(job)
            return None
        entry, outcome, tape = msgpack.unpackb(job.payload, raw=False, strict_map_key=False)
        path = write_snapshot(directory=spool, entry=entry, recorder=_recorder(job, tape), outcome=outcome,
                              trace=job.trace)
    except OSError as exc:
        _state.paused_until = now + IO_BACKOFF_S
        count("dropped_write_error")
        log.warning("replay: cannot write snapshots to %s (%s); pausing snapshot writes for %d s",
                    spool, exc, IO_BACKOFF_S)
        return None
    except Exception:  # noqa: BLE001 - fail open (a value the format cannot hold, a bug)
        count("capture_errors")
        log.warning("replay: could not write a snapshot", exc_info=True)
        return None
    finally:
        _discard_trace(job)
    (log.info if job.failed else log.debug)("replay: snapshot written to %s", path)
    if not is_url(job.store):
        return path
    _state.pending_uploads.append((path, job.store))
    return upload_pending()


def _recorder(job: Job, tape: list[Any]) -> Recorder:
    """A closed recorder holding the job's tape, as :func:`write_snapshot` reads it."""
    rec = Recorder()
    rec.tape = tape
    rec.reasons = job.reasons
    rec.runs = job.runs
    rec.strands = job.strands
    rec.close()
    return rec


def _discard_trace(job: Job) -> None:
    from replay.capture.flight import remove

    remove(job.trace)
    job.trace = None


def _sweep(directory: str) -> None:
    """Remove stale temporary files a killed writer left (once per directory and process)."""
    if directory in _state.swept:
        return
    _state.swept.add(directory)
    from replay.capture.interceptors import REAL

    cutoff = REAL["time.time"]() - STALE_TEMP_S
    for tmp in glob.glob(os.path.join(glob.escape(directory), ".*.rsnap.*.tmp")):
        try:
            if os.stat(tmp).st_mtime < cutoff:
                os.remove(tmp)
                count("stale_temp_removed")
        except OSError:
            pass


def _over_cap(directory: str, nbytes: int, s: Settings) -> bool:
    """Would one more snapshot of about ``nbytes`` exceed the directory's cap?"""
    files = 0
    total = nbytes
    try:
        with os.scandir(directory) as it:
            for e in it:
                if e.name.endswith(".rsnap"):
                    files += 1
                    total += e.stat().st_size
    except FileNotFoundError:
        return False
    return files >= s.spool_max_files or total > s.spool_max_bytes


def upload_pending() -> str | None:
    """Upload spooled files to their URL stores, oldest first; the URL of the last uploaded.

    Stops at the first failure (counted ``upload_errors``; the file stays in the spool and
    is retried after the next snapshot).
    """
    last = None
    with _state.lock:
        while _state.pending_uploads:
            path, store = _state.pending_uploads[0]
            try:
                last = _upload(path, store)
            except Exception as exc:  # noqa: BLE001 - fsspec backends raise anything
                count("upload_errors")
                log.warning("replay: could not upload %s to %s (%s); kept in the spool", path, store, exc)
                return None
            _state.pending_uploads.pop(0)
            count("snapshots_uploaded")
    return last


def _upload(path: str, store: str) -> str:
    import fsspec

    fs, root = fsspec.core.url_to_fs(store)
    root = root.rstrip("/")
    name = os.path.basename(path)
    fs.makedirs(root, exist_ok=True)
    # One PUT per object: object stores make it visible whole or not at all.
    fs.put_file(path, f"{root}/{name}")
    os.remove(path)
    return f"{store.rstrip('/')}/{name}"
