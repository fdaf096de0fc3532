"""Recording: the tape recorder session and the snapshot it writes.

A :class:`Recorder` is the :class:`~replay.capture.boundary.BoundarySession` of a recorded
call: each interceptor asks it, it asks the real world and appends the answer to the tape.
:func:`write_snapshot` turns a finished recording into a ``.rsnap`` file.
"""

from __future__ import annotations

import linecache
import logging
import os
import threading
import time
import types
from collections.abc import Callable
from typing import Any, Final

from replay.capture import identity, redact_records
from replay.capture.boundary import ACTIVE, PACKAGE_DIR, STRAND
from replay.capture.interceptors import REAL
from replay.snapshot.codec import DISPLAY, Encoder, encode, type_path
from replay.snapshot.format import Section
from replay.snapshot.writer import SnapshotWriter

log = logging.getLogger("replay.capture")

MAX_INTERACTIONS: Final = 1_000_000
MAX_LOCALS_FRAMES: Final = 8  # innermost application frames whose locals are kept
_EMPTY_ARGS: Final = ("t",)
_PRIMITIVES: Final = frozenset({str, bool, float, type(None)})  # ints may need the big-int form

_stats_lock = threading.Lock()
_stats: dict[str, int] = {"snapshots_written": 0, "capture_errors": 0}


def count(name: str, n: int = 1) -> None:
    """Add to a capture counter (thread-safe)."""
    with _stats_lock:
        _stats[name] = _stats.get(name, 0) + n


def stats() -> dict[str, int]:
    """A copy of the capture counters: snapshots written, capture errors, drops by reason
    (``dropped_<reason>``; see docs/production.md). Counters are per process."""
    with _stats_lock:
        return dict(_stats)


def reset_after_fork() -> None:
    """In a forked child: a fresh counter lock (another thread may have held it at fork
    time) and zeroed counters (the child counts its own snapshots)."""
    global _stats_lock
    _stats_lock = threading.Lock()
    for name in _stats:
        _stats[name] = 0


class Recorder:
    """Records one entry point's boundary interactions (a record-mode boundary session).

    Real answers are returned to the application unchanged; recording problems (a value
    that cannot be encoded, the tape limit) make the snapshot not replayable with a reason
    but never raise into the application. Threads and tasks started inside the recorded
    call share the recorder; each interaction is attributed to its strand
    (:mod:`replay.capture.boundary`). Interactions made after :meth:`close` are dropped.
    """

    replaying = False
    # Defaults at class level: a recorder is made per recorded call (every web request with
    # on-error capture), so __init__ stores only what each one needs of its own.
    max_interactions = MAX_INTERACTIONS
    closed = False
    _last_strand = "0"  # the strand of the last record (see _append_locked)
    _children: dict[str, int] | None = None  # created when a second strand starts (rare: web requests have one)
    _lock: threading.Lock | None = None  # idem

    def __init__(self, max_interactions: int = MAX_INTERACTIONS, app_roots: list[str] | None = None):
        self.app_roots = [os.path.abspath(r) for r in app_roots] if app_roots else []
        # Records are tuples: tuples of atoms are untracked by the cyclic GC, so a long tape
        # does not make every later collection slower. msgpack writes them as arrays.
        self.tape: list[tuple[Any, ...]] = []
        self.reasons: list[str] = []
        if max_interactions != MAX_INTERACTIONS:
            self.max_interactions = max_interactions
        # strand runs: (first tape index, strand id) each time the strand changes
        self.runs: list[tuple[int, str]] = []
        self.strands: dict[str, dict[str, Any]] = {}

    def _append(self, record: tuple[Any, ...]) -> int:
        """Append a record; returns its tape index, or -1 when it was dropped."""
        if self.closed:
            return -1
        lock = self._lock
        if lock is None:
            return self._append_locked(record)
        with lock:
            return self._append_locked(record)

    def _append_locked(self, record: tuple[Any, ...]) -> int:
        n = len(self.tape)
        if n < self.max_interactions:
            strand = STRAND.get()
            if strand != self._last_strand:
                self.runs.append((n, strand))
                self._last_strand = strand
            self.tape.append(record)
            return n
        if n == self.max_interactions:
            self.reasons.append(f"tape limit of {self.max_interactions} interactions reached")
            self.tape.append(("meta", "truncated", _EMPTY_ARGS, None, None))
        return -1

    def close(self) -> None:
        """Stop recording: later interactions (of threads still running) are dropped."""
        self.closed = True

    def new_strand(self, kind: str, name: str) -> str:
        if self._lock is None:
            self._lock = threading.Lock()
        with self._lock:
            if self._children is None:
                self._children = {}
            parent = STRAND.get()
            n = self._children.get(parent, 0) + 1
            self._children[parent] = n
            strand = f"{parent}.{n}"
            self.strands[strand] = {"kind": kind, "name": name, "parent": parent}
        return strand

    def _encode(self, value: Any) -> Any:
        if type(value) is int and -(1 << 63) <= value < (1 << 64):
            return value  # msgpack-native: no encoder needed (pids, sizes, counts)
        if type(value) is tuple and all(type(v) in _PRIMITIVES for v in value):
            return ("t", *value)  # the common case (env keys, sizes): no encoder needed
        if type(value) in _PRIMITIVES:
            return value
        if type(value) is KeyError and len(value.args) == 1 and type(value.args[0]) is str and not value.__dict__:
            return ("exc", "builtins:KeyError", [value.args[0]], repr(value.args[0]), [])  # a missing env key
        enc = Encoder()
        try:
            node = enc.encode(value)
        except Exception as exc:  # noqa: BLE001 - fail open
            self.reasons.append(f"value could not be encoded: {type(exc).__name__}")
            return None
        self.reasons.extend(enc.lossy)
        return node

    def clock_ns(self, op: str, real: Callable[[], int]) -> int:
        value = real()
        self._append(("clock", op, _EMPTY_ARGS, value, None))
        return value

    def sleep(self, op: str, args: tuple[Any, ...], real: Callable[[], Any]) -> None:
        """A ``time.sleep``: slept for real and recorded (replay does not sleep)."""
        real()
        self._append(("clock", op, self._encode(args), None, None))

    def mt_words(self, op: str, args: tuple[Any, ...], count: int, real: Callable[[], int]) -> list[int]:
        words = [real() for _ in range(count)]
        self._append(("random", op, ("t", *args), tuple(words), None))
        return words

    def urandom(self, op: str, size: int, real: Callable[[int], bytes]) -> bytes:
        data = real(size)
        self._append(("random", op, ("t", size), data, None))
        return data

    def call(self, channel: str, op: str, args: tuple[Any, ...], real: Callable[[], Any]) -> Any:
        token = ACTIVE.set(None)  # what real() asks the outside world itself is not recorded twice
        try:
            result = real()
        except Exception as exc:
            ACTIVE.reset(token)
            self._append((channel, op, self._encode(args), None, self._encode(exc)))
            raise
        ACTIVE.reset(token)
        self._append((channel, op, self._encode(args), self._encode(result), None))
        return result

    def record(self, channel: str, op: str, args: Any, result: Any = None, error: BaseException | None = None) -> int:
        """Append an interaction whose answer the caller obtained itself; returns its index.

        For channels whose request and answer are not one function call (an HTTP exchange
        read as a stream, a subprocess that is waited on later). Returns -1 when the
        interaction was dropped (the recording is closed or over its tape limit).
        """
        return self._append((channel, op, self._encode(args), self._encode(result) if error is None else None,
                             None if error is None else self._encode(error)))

    def strand_records(self) -> list[list[Any]]:
        """The strands section: ``[first tape index, strand id]`` runs (empty: all in strand "0")."""
        return [[i, s] for i, s in self.runs]


# ------------------------------------------------------------------------------ outcome



def relative_to_roots(file: str, roots: list[str]) -> str | None:
    """``file`` relative to the first root that holds it ("/"-separated), else None."""
    for root in roots:
        rel = os.path.relpath(file, root)
        if not rel.startswith(".."):
            return rel.replace(os.sep, "/")
    return None


def describe_exception(
    exc: BaseException, roots: str | list[str] | None, app_modules: set[str] | None = None
) -> dict[str, Any]:
    """The outcome record of an exception: type, message, traceback, failing frames' locals.

    Args:
        exc: The exception, with its ``__traceback__``.
        roots: Project root(s); frames under one are the application's, with paths relative
            to it. Frames of this package (the capture wrapper, the replay child) are dropped.
        app_modules: When given, only files whose first path component (a top-level package
            or module) is in this set count as the application's. A replay passes the
            recorded application's top-level names, so a library installed in a candidate
            code root is not mistaken for application code.

    Returns:
        A map with ``type``, ``message``, ``value`` (exact node), ``traceback`` (list of
        frames: file, path relative to the root or None, line, function, code, locals as
        display nodes for the innermost application frames) and ``place`` (relative path and
        function of the innermost application frame: where a fix would have to act).
    """
    frames: list[tuple[types.FrameType, int]] = []
    tb = exc.__traceback__
    while tb is not None:
        frames.append((tb.tb_frame, tb.tb_lineno))
        tb = tb.tb_next
    frames = [(f, n) for f, n in frames if not os.path.abspath(f.f_code.co_filename).startswith(PACKAGE_DIR)]
    root_list = [roots] if isinstance(roots, str) else list(roots or [])
    out: list[dict[str, Any]] = []
    for frame, lineno in frames:
        code = frame.f_code
        file = os.path.abspath(code.co_filename)
        rel = relative_to_roots(file, root_list)
        if rel is not None and app_modules is not None and rel.split("/")[0].removesuffix(".py") not in app_modules:
            rel = None
        out.append({
            "file": file,
            "path": rel,
            "line": lineno,
            "function": getattr(code, "co_qualname", code.co_name),
            "code": linecache.getline(code.co_filename, lineno).strip(),
            "locals": None,
        })
    app = [i for i, f in enumerate(out) if f["path"] is not None]
    for i in app[-MAX_LOCALS_FRAMES:]:
        enc = Encoder(DISPLAY)
        frame = frames[i][0]
        try:
            out[i]["locals"] = ["d", *[x for k, v in frame.f_locals.items() for x in (k, enc.encode(v))]]
        except Exception:  # noqa: BLE001 - locals are best effort
            out[i]["locals"] = None
    place = [out[app[-1]]["path"], out[app[-1]]["function"]] if app else None
    try:
        message = str(exc)
    except Exception:  # noqa: BLE001
        message = f"<{type(exc).__name__} with a broken __str__>"
    enc = Encoder()
    return {
        "kind": "exception",
        "type": type_path(type(exc)),
        "message": message,
        "value": enc.encode(exc),
        "traceback": out,
        "place": place,
    }


# ------------------------------------------------------------------------------ writing


def snapshot_directory(directory: str | os.PathLike[str] | None) -> str:
    """Where snapshots go: the argument, else ``$REPLAY_DIR``, else ``./snapshots``."""
    if directory is not None:
        return os.fspath(directory)
    return os.environ.get("REPLAY_DIR") or "snapshots"


def _snapshot_id() -> str:
    return REAL["os.urandom"](6).hex()


def write_snapshot(
    *,
    directory: str,
    entry: dict[str, Any],
    recorder: Recorder,
    outcome: dict[str, Any],
    trace: str | None = None,
) -> str:
    """Write a finished recording into ``directory`` and return the file's path.

    Args:
        directory: Target directory (created if missing).
        entry: Entry record: module, qualname, file, kind, args, kwargs, project_root, reasons.
        recorder: The recorder that served the call.
        outcome: Outcome record (``kind`` "return" with ``value``, or "exception").
        trace: A finished trace file (flight recorder) whose sections are copied into the
            snapshot verbatim; its header goes under the snapshot header's ``trace`` key.

    Raises:
        OSError: the directory cannot be written; nothing is left under the final name.
    """
    root = entry.get("project_root")
    code: list[dict[str, Any]] = []
    notes: list[str] = []
    if root:
        code, notes = identity.collect_code(root, entry.get("main_file"))
    app_packages = sorted({r["module"].partition(".")[0] for r in code if r["module"] != "__main__"})
    entry["app_packages"] = app_packages
    env = identity.environment(root or os.getcwd(), set(app_packages))
    # Redaction, fail closed: if it raises, nothing is written (counted as redaction_errors).
    red = redact_records.redact_recording(entry, recorder.tape, outcome, env, code)
    entry, outcome, env, code = red.entry, red.outcome, red.environment, red.code
    reasons = list(dict.fromkeys(entry.get("reasons", []) + recorder.reasons))
    counts: dict[str, int] = {}
    for record in recorder.tape:
        counts[record[0]] = counts.get(record[0], 0) + 1
    created = REAL["time.time_ns"]()
    snap_id = _snapshot_id()
    header = {
        "snapshot_id": snap_id,
        "created_at_ns": created,
        "replay_version": _version(),
        "python": env["python"],
        "platform": env["platform"],
        "entry": f"{entry['module']}:{entry['qualname']}",
        "entry_kind": entry["kind"],
        "outcome": outcome["kind"],
        "exception_type": outcome.get("type"),
        "exception_message": (outcome.get("message") or "")[:500] if outcome["kind"] == "exception" else None,
        "duration_ns": outcome.get("duration_ns"),
        "interactions": len(recorder.tape),
        "channels": counts,
        "replayable": not reasons,
        "reasons": reasons,
        "code_notes": notes,
        "hash_seed": env["hash_seed"],
        "redaction": red.manifest,
    }
    if recorder.strands:
        header["strands"] = recorder.strands
    os.makedirs(directory, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(created // 1_000_000_000))
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in entry["qualname"])[:60]
    path = os.path.join(directory, f"{safe}-{stamp}-{snap_id}.rsnap")
    writer = SnapshotWriter(path, header)
    try:
        # What is known when a call starts first, then the tape, then the outcome: the order
        # of a streamed recording, so a cut file keeps the most useful prefix.
        writer.write_section(Section.ENTRY, [entry])
        writer.write_section(Section.ENVIRONMENT, [env])
        writer.write_section(Section.CODE, code)
        writer.write_section(Section.TAPE, red.tape)
        if recorder.runs:
            writer.write_section(Section.STRANDS, recorder.strand_records())
        writer.write_section(Section.OUTCOME, [outcome])
        trace_header = redact_records.embed_trace(writer, trace, red.walker) if trace else None
        final = writer.close({"trace": trace_header} if trace_header else None)
    except BaseException:
        writer.abort()
        raise
    count("snapshots_written")
    return final


def _version() -> str:
    from replay import __version__

    return __version__


def return_outcome(value: Any) -> dict[str, Any]:
    """The outcome record of a call that returned ``value``."""
    enc = Encoder()
    node = enc.encode(value)
    return {"kind": "return", "value": node, "lossy": enc.lossy, "display": encode(value, DISPLAY)}
