"""The exception an app logs during a recorded call: kept on the session, nowhere else."""

from __future__ import annotations

import logging

from replay.capture.boundary import ACTIVE
from replay.capture.interceptors import install
from replay.capture.logged import _real_handle, logged_exception
from replay.capture.recorder import Recorder
from replay.capture.webdata import response_outcome

log = logging.getLogger("tests.logged")


def _log_failure(message: str) -> None:
    try:
        raise KeyError(message)
    except KeyError:
        log.exception("handled")


def test_the_latest_logged_exception_is_kept_on_the_active_session(caplog):
    install()
    rec = Recorder()
    _log_failure("before")  # no session: nothing is kept anywhere
    token = ACTIVE.set(rec)
    try:
        assert logged_exception(rec) is None
        log.warning("no exception attached")
        assert logged_exception(rec) is None
        _log_failure("first")
        _log_failure("second")
    finally:
        ACTIVE.reset(token)
    _log_failure("after")
    exc = logged_exception(rec)
    assert isinstance(exc, KeyError) and exc.args == ("second",)
    # the records themselves were handled as usual
    assert [r.message for r in caplog.records].count("handled") == 4
    # logging is output: the hook adds nothing to the tape (a record's own clock and pid reads
    # are there, as without the hook)
    control = Recorder()
    hook, logging.Logger.handle = logging.Logger.handle, _real_handle
    token = ACTIVE.set(control)
    try:
        log.warning("no exception attached")
        _log_failure("first")
        _log_failure("second")
    finally:
        ACTIVE.reset(token)
        logging.Logger.handle = hook
    assert [i[:2] for i in rec.tape] == [i[:2] for i in control.tape]


def test_a_failed_response_carries_the_logged_cause_and_a_success_does_not():
    try:
        {}["sku"]
    except KeyError as exc:
        error = exc
    failed = response_outcome({"status": "500 INTERNAL SERVER ERROR", "headers": [], "body": b""}, error, [])
    assert failed["failed"] and failed["logged_exception"]["type"] == "builtins:KeyError"
    assert failed["logged_exception"]["message"] == "'sku'"
    ok = response_outcome({"status": "200 OK", "headers": [], "body": b""}, error, [])
    assert "logged_exception" not in ok
