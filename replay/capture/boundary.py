"""The boundary: which calls meet the outside world, and who answers them.

Interceptors (``replay.capture.interceptors`` and the channel modules in
``replay.capture.channels``) are installed once per process and stay installed; each asks
:data:`ACTIVE` for the current :class:`BoundarySession`. Outside a recording or a replay
that is None and the real function runs directly, so the cost for unrecorded code is one
context-variable read. The session is a recorder in production and a tape player during
replay; both implement the same questions.

Channels register a :class:`ChannelSpec` here: how a request is normalised into the key a
candidate replay matches on, whether it is an effect (a write to the outside world), and
which part of an effect names its destination (so "now POSTs amount=100 where it posted
10000" is reported as a changed effect, not a divergence).

Strands: every interaction belongs to a strand, the thread or asyncio task that made it.
The entry point runs in strand ``"0"``; a thread or task started inside a recorded call
gets ``"<parent>.<n>"`` (its parent's n-th child, from 1), which is deterministic as long
as each strand starts its children in a deterministic order. Baseline replay matches each
strand's interactions in order, whatever the interleaving of the strands.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import re
import weakref
from collections.abc import Callable, Iterator
from typing import Any, Final, Protocol

# clock stream of each clock operation: readings are served in order per stream on replay,
# whatever function asks, because all functions of a stream read the same clock.
CLOCK_STREAMS: Final = {
    "time.time": "wall",
    "time.time_ns": "wall",
    "datetime.now": "wall",
    "datetime.utcnow": "wall",
    "datetime.today": "wall",
    "date.today": "wall",
    "time.localtime": "wall",
    "time.gmtime": "wall",
    "time.ctime": "wall",
    "time.asctime": "wall",
    "time.strftime": "wall",
    "time.monotonic": "monotonic",
    "time.monotonic_ns": "monotonic",
    "loop.time": "monotonic",
    "time.perf_counter": "perf",
    "time.perf_counter_ns": "perf",
    "time.process_time": "process",
    "time.process_time_ns": "process",
    "time.thread_time": "thread",
    "time.thread_time_ns": "thread",
}


class BoundarySession(Protocol):
    """What an interceptor asks; implemented by the recorder and by the tape player.

    Attributes:
        replaying: False while recording (answers come from the real world), True during
            replay (answers come from the tape and ``real`` is never called).
        app_roots: Absolute directories holding the application's code: the recorded project
            root while recording; the candidate code roots and the extracted recorded
            sources during replay. Channels express paths under them relative to the root
            (``<app>/data/prices.json``) so requests match whichever copy of the code runs.
    """

    replaying: bool
    app_roots: list[str]

    def clock_ns(self, op: str, real: Callable[[], int]) -> int:
        """Return a clock reading in nanoseconds for clock operation ``op``."""

    def sleep(self, op: str, args: tuple[Any, ...], real: Callable[[], Any]) -> None:
        """Sleep (recording: for real; replay: not at all, the sleep is only matched)."""

    def mt_words(self, op: str, args: tuple[Any, ...], count: int, real: Callable[[], int]) -> list[int]:
        """Return ``count`` raw 32-bit Mersenne Twister words for a ``random`` call."""

    def urandom(self, op: str, size: int, real: Callable[[int], bytes]) -> bytes:
        """Return ``size`` bytes of operating-system randomness."""

    def call(self, channel: str, op: str, args: tuple[Any, ...], real: Callable[[], Any]) -> Any:
        """Answer any other boundary call: a value, or the recorded exception raised.

        ``args`` must be plain data (what the codec encodes exactly): it is the request as
        recorded and as matched on replay. While recording, ``real`` runs with the session
        suspended, so boundary calls it makes itself are not recorded twice.
        """

    def new_strand(self, kind: str, name: str) -> str:
        """Allocate the strand id of a thread or task started by the current strand."""

    def record(self, channel: str, op: str, args: Any, result: Any = None, error: BaseException | None = None) -> int:
        """Recording only: append an interaction whose answer the caller obtained itself."""

    def find(self, channel: str, op: str, args: Any) -> Any:
        """Replay only: consume the interaction that answers a request (see TapePlayer.find)."""

    def answer(self, channel: str, op: str, inter: Any) -> Any:
        """Replay only: the recorded answer of an interaction, or its exception raised."""

    def peek(self, channel: str, op: str, args: Any) -> Any:
        """Replay only: the interaction that would answer a request, not consumed."""


ACTIVE: Final[contextvars.ContextVar[BoundarySession | None]] = contextvars.ContextVar(
    "replay_active_session", default=None
)
STRAND: Final[contextvars.ContextVar[str]] = contextvars.ContextVar("replay_strand", default="0")


@contextlib.contextmanager
def suspended() -> Iterator[None]:
    """Run a block with no active session (the real world answers, nothing is recorded)."""
    token = ACTIVE.set(None)
    try:
        yield
    finally:
        ACTIVE.reset(token)


def _identity(op: str, args: Any) -> Any:
    return args


def _never(op: str, args: Any) -> bool:
    return False


@dataclasses.dataclass(frozen=True)
class ChannelSpec:
    """How replay matches and compares the interactions of one channel.

    Attributes:
        name: Channel name on the tape (``http``, ``db``, ...).
        key: ``key(op, args) -> plain data``: the normalised request a candidate replay
            matches on (first-in first-out per channel + op + key). ``args`` is the decoded
            request. Default: the whole request.
        effect: ``effect(op, args) -> bool``: True when the interaction changes the outside
            world (an HTTP POST, an SQL INSERT, a file write).
        target: ``target(op, args) -> plain data``: for effects, the destination (method and
            URL, table and statement, path). A candidate effect with no exact match but a
            recorded effect to the same target is served that effect's answer and reported
            as a changed effect. Default: no target (an unmatched effect diverges).
        constant: Answers to the same request are stable (host name, pid, a file's content
            or status): a candidate that asks more often than recorded is answered with the
            last recorded answer for that key (never for effects), counted as reused.
    """

    name: str
    key: Callable[[str, Any], Any] = _identity
    effect: Callable[[str, Any], bool] = _never
    target: Callable[[str, Any], Any] | None = None
    constant: bool = False


CHANNELS: Final[dict[str, ChannelSpec]] = {}


def register_channel(spec: ChannelSpec) -> ChannelSpec:
    """Register (or replace) the matching rules of a channel; returns ``spec``."""
    CHANNELS[spec.name] = spec
    return spec


def channel_spec(name: str) -> ChannelSpec:
    """The rules of channel ``name`` (defaults for a channel nobody registered)."""
    spec = CHANNELS.get(name)
    return spec if spec is not None else ChannelSpec(name)


def not_replayable(session: Any, reason: str) -> None:
    """Mark the current recording not replayable, with ``reason`` (once; never raises).

    Channels call this when they had to let a call through unrecorded or recorded it
    incompletely. A replay session has no reasons list and ignores it.
    """
    reasons = getattr(session, "reasons", None)
    if isinstance(reasons, list) and reason not in reasons:
        reasons.append(reason)


PACKAGE_DIR: Final = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
"""The ``replay`` package directory (with a trailing separator): its frames and files are
the machinery's, never the application's."""


def app_path(path: str, roots: Any) -> str | None:
    """``<app>/rel/path`` (``/``-separated) for an absolute path under one of ``roots``, ``<app>``
    for a root itself, else None.

    Channels record paths under the application's code roots in this form, so a request
    matches whichever copy of the code runs (the recorded project, a candidate directory,
    the sources extracted from a snapshot). Pure string work: never asks the boundary.
    """
    norm = os.path.normpath(path)
    for root in roots or ():
        root = os.path.normpath(root)
        if norm == root:
            return "<app>"
        if norm.startswith(root + os.sep):
            return "<app>/" + norm[len(root) + 1:].replace(os.sep, "/")
    return None


_SPACE = re.compile(r"\s+")


def normalise_space(text: str) -> str:
    """Collapse runs of white space to one space and strip the ends (SQL, shell lines)."""
    return _SPACE.sub(" ", text).strip()


register_channel(ChannelSpec("env"))
register_channel(ChannelSpec("uuid"))


_CLAIMED: Final[weakref.WeakSet[Any]] = weakref.WeakSet()


def claim_socket(sock: Any) -> None:
    """Mark a socket as recorded by a higher-level channel (HTTP): the socket channel skips it."""
    with contextlib.suppress(TypeError):
        _CLAIMED.add(sock)


def is_claimed(sock: Any) -> bool:
    """True when a higher-level channel records this socket's traffic."""
    try:
        return sock in _CLAIMED
    except TypeError:
        return False
