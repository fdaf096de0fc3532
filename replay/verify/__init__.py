"""Verdicts for candidates: baseline reproduction, then the candidate's verdict."""

from __future__ import annotations

from replay.verify.verdict import FAILING_VERDICTS, Verdict, VerifyResult, reproduce, verify

__all__ = ["FAILING_VERDICTS", "Verdict", "VerifyResult", "reproduce", "verify"]
