"""Channel interceptors beyond the clock/random/env core of :mod:`replay.capture.interceptors`.

Each module here instruments one channel and exposes ``install()``, called once per
process by :func:`install_all` (from :func:`replay.capture.interceptors.install`). A module
that fails to install is logged and skipped: the channels that did install still record.
"""

from __future__ import annotations

import importlib
import logging
from typing import Final

log = logging.getLogger("replay.capture")

# In order: strands first, so every later channel's interactions are attributed.
MODULES: Final = ("threads", "clock", "host", "files", "subprocess", "http", "db", "socket")


def install_all() -> list[str]:
    """Install every channel module present; returns the names that installed."""
    done = []
    for name in MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__name__}.{name}":
                continue  # not part of this build
            log.warning("replay: channel %s could not be imported", name, exc_info=True)
            continue
        try:
            module.install()
        except Exception:  # noqa: BLE001 - one channel failing must not stop the others
            log.warning("replay: channel %s could not be installed", name, exc_info=True)
            continue
        done.append(name)
    return done
