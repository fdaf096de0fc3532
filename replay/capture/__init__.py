"""Recording (production path): the capture API, boundary interceptors, code identity.

``replay.capture`` is this package *and* the decorator: the module is callable, so
``@replay.capture``, ``@replay.capture(on="always")``, ``replay.capture.stats()`` and
``import replay.capture.api`` all work. Imports only the standard library, msgpack and
zstandard.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from replay.capture.api import capture, recording
from replay.capture.recorder import stats

__all__ = ["capture", "recording", "stats"]


class _CallableModule(types.ModuleType):
    """Module type whose instances can be called like :func:`replay.capture.api.capture`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return capture(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
