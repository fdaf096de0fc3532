"""Recording (production path): the capture API, boundary interceptors, code identity.

Imports only the standard library, msgpack and zstandard.
"""

from __future__ import annotations

from replay.capture.api import capture, recording
from replay.capture.recorder import stats

__all__ = ["capture", "recording", "stats"]
