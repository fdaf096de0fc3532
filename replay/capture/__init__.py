"""Recording (production path): the capture API, boundary interceptors, code identity.

``replay.capture`` is this package *and* the decorator: the module is callable, so
``@replay.capture``, ``@replay.capture(on="always")``, ``replay.capture.stats()``,
``replay.capture.configure(...)``, ``replay.capture.flush()`` and ``import replay.capture.api``
all work. Imports only the standard library, msgpack and
zstandard.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from replay._lazy import lazy_attributes
from replay.capture.api import capture, recording
from replay.capture.policy import configure
from replay.capture.recorder import stats
from replay.capture.writer import flush

__all__ = ["ReplayASGIMiddleware", "ReplayWSGIMiddleware", "capture", "configure", "flush", "recording", "stats"]


# the middleware is for web apps only: loaded on first use, not by every `import replay`
__getattr__ = lazy_attributes(__name__, {
    "ReplayASGIMiddleware": "replay.capture.middleware",
    "ReplayWSGIMiddleware": "replay.capture.middleware",
})


class _CallableModule(types.ModuleType):
    """Module type whose instances can be called like :func:`replay.capture.api.capture`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
