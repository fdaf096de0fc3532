"""The boundary: which calls meet the outside world, and who answers them.

Interceptors (``replay.capture.interceptors``) are installed once per process and stay
installed; each asks :data:`ACTIVE` for the current :class:`BoundarySession`. Outside a
recording or a replay that is None and the real function runs directly, so the cost for
unrecorded code is one context-variable read. The session is a recorder in production and
a tape player during replay; both implement the same four questions.

The context variable is per thread and per asyncio task: a thread started inside a recorded
call is not recorded (issue "The whole boundary" attributes threads).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
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
    "time.monotonic": "monotonic",
    "time.monotonic_ns": "monotonic",
    "time.perf_counter": "perf",
    "time.perf_counter_ns": "perf",
}


class BoundarySession(Protocol):
    """What an interceptor asks; implemented by the recorder and by the tape player."""

    def clock_ns(self, op: str, real: Callable[[], int]) -> int:
        """Return a clock reading in nanoseconds for clock operation ``op``."""

    def mt_words(self, op: str, args: tuple[Any, ...], count: int, real: Callable[[], int]) -> list[int]:
        """Return ``count`` raw 32-bit Mersenne Twister words for a ``random`` call."""

    def urandom(self, op: str, size: int, real: Callable[[int], bytes]) -> bytes:
        """Return ``size`` bytes of operating-system randomness."""

    def call(self, channel: str, op: str, args: tuple[Any, ...], real: Callable[[], Any]) -> Any:
        """Answer any other boundary call (env, uuid1, ...): a value or a raised exception."""


ACTIVE: Final[contextvars.ContextVar[BoundarySession | None]] = contextvars.ContextVar(
    "replay_active_session", default=None
)
