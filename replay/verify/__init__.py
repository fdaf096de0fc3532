"""Verdicts for candidates: baseline reproduction, then the candidate's verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING

from replay._lazy import lazy_attributes

if TYPE_CHECKING:
    from replay.verify.verdict import FAILING_VERDICTS, Verdict, VerifyResult, reproduce, verify

__all__ = ["FAILING_VERDICTS", "Verdict", "VerifyResult", "reproduce", "verify"]
# The replay child imports replay.verify.valuediff (through the tape player); the verdicts
# and the runner behind them are for the parent only.
__getattr__ = lazy_attributes(__name__, dict.fromkeys(__all__, "replay.verify.verdict"))
