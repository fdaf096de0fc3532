"""What `replay verify` prints for a divergence and for effects, including hostile values."""

from __future__ import annotations

from replay.cli.output import print_result
from replay.verify import Verdict
from replay.verify.verdict import VerifyResult


def _result() -> VerifyResult:
    return VerifyResult(
        snapshot="s.rsnap", verdict=Verdict.DIVERGED, reason="the candidate asked something new",
        divergence={
            "index": 4, "channel": "http", "op": "request", "asked": "('GET', 'http://x/v2')",
            "recorded": None, "reason": "no recorded answer for this request",
            "diff": [["[1]", "'http://x/v1'", "'http://x/v2\x1b[31m'"]],
            "candidates": ["#3 http request('GET', 'http://x/v1') -> b'...' (already answered)"],
            "stack": ["/app/shop/pricing.py:41 in fetch_price"], "strand": "0",
        },
        effects=[{"status": "changed", "channel": "db", "op": "execute", "index": 7,
                  "asked": "(...)", "recorded": "(...)", "diff": [["[2][0]", "10000", "100"]]},
                 {"status": "blocked", "channel": "socket", "op": "x", "index": None,
                  "asked": "socket.connect ('10.0.0.1', 443)", "recorded": None}],
    )


def test_divergence_and_effects_are_printed(capsys):
    print_result(_result())
    out = capsys.readouterr().out
    assert "first divergence at interaction #4: no recorded answer for this request" in out
    assert "differs:  [1]: recorded 'http://x/v1', asked 'http://x/v2\\x1b[31m'" in out
    assert "nearest:  #3 http request" in out and "(already answered)" in out
    assert "/app/shop/pricing.py:41 in fetch_price" in out
    assert "2 effect(s) differ from the recording" in out
    assert "db execute changed: [2][0]: 10000 -> 100" in out
    assert "blocked by the sandbox: socket.connect ('10.0.0.1', 443)" in out
    assert "\x1b" not in out  # escape sequences from the snapshot are shown, never sent


def test_quiet_prints_one_line_and_the_reason(capsys):
    print_result(_result(), verbose=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("DIVERGED") and len(lines) == 2
