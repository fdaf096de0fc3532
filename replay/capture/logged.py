"""The exception an application logged while a call was recorded or replayed.

Web frameworks turn an exception in a view into a 500 response and log it (Flask's
``app.logger.error(..., exc_info=...)``, Django's ``django.request`` logger): the exception
never escapes the app, so the outcome of the request is only "HTTP 500". While a boundary
session is active, the latest exception attached to a log record (``exc_info``) is kept on
the session; the web outcome of a failing response carries it
(:func:`replay.capture.webdata.response_outcome`), which names the bug in ``replay show``,
the export and the verdicts, and gives the per-failure rate limit a fingerprint per bug
rather than per URL.

Installed by :func:`replay.capture.interceptors.install` as ``logging.Logger.handle``: a log
record without ``exc_info`` costs one attribute check; nothing is recorded on the tape
(logging is output, not input) and the record is handled unchanged.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Final

from replay.capture.boundary import ACTIVE

ATTRIBUTE: Final = "logged_exception"
_real_handle = logging.Logger.handle


def _handle(self: logging.Logger, record: logging.LogRecord) -> Any:
    info = record.exc_info
    if info and type(info) is tuple and info[1] is not None:
        session = ACTIVE.get()
        if session is not None:
            # the latest: the one logged closest to the response it explains; never break
            # the application's logging
            with contextlib.suppress(Exception):
                setattr(session, ATTRIBUTE, info[1])
    return _real_handle(self, record)


def install() -> None:
    """Watch log records for exceptions (idempotent; called under the interceptors' lock)."""
    logging.Logger.handle = _handle  # type: ignore[method-assign]


def logged_exception(session: Any) -> BaseException | None:
    """The latest exception logged while ``session`` was active, or None."""
    exc = getattr(session, ATTRIBUTE, None)
    return exc if isinstance(exc, BaseException) else None
