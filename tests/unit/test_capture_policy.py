"""Capture policies: rate parsing, token buckets on an injected clock, sampling, fingerprints,
configuration precedence and environment variables (errors at configuration time)."""

from __future__ import annotations

import random

import pytest

import replay
from replay.capture import api, policy
from replay.capture.policy import (
    FingerprintLimiter,
    Policy,
    RateLimit,
    TokenBucket,
    parse_rate,
    resolve,
)
from replay.errors import UsageError

ENV_VARS = ("REPLAY_CAPTURE", "REPLAY_SAMPLE_RATE", "REPLAY_RATE_LIMIT", "REPLAY_RATE_LIMIT_PER_FAILURE",
            "REPLAY_STORE", "REPLAY_SPOOL", "REPLAY_WRITE")


@pytest.fixture(autouse=True)
def _clean(monkeypatch):
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    policy.configure(reset=True)
    yield
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    policy.configure(reset=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("text", "expected"), [
    ("10/60s", RateLimit(10, 60.0)), ("5/s", RateLimit(5, 1.0)), ("1/1h", RateLimit(1, 3600.0)),
    (" 3 / 2m ", RateLimit(3, 120.0)), ("100/500ms", RateLimit(100, 0.5)), ("7/1.5s", RateLimit(7, 1.5)),
    ("off", None), ("None", None), (None, None),
])
def test_rate_limits_parse(text, expected):
    assert parse_rate(text, "rate_limit") == expected


@pytest.mark.parametrize("text", ["10", "0/1s", "10/0s", "ten/s", "5/1y", "-1/s", "5/s/s", ""])
def test_bad_rate_limits_are_usage_errors_naming_the_option(text):
    with pytest.raises(UsageError, match="REPLAY_RATE_LIMIT=.*'10/60s'"):
        parse_rate(text, "REPLAY_RATE_LIMIT")


def test_token_bucket_allows_a_burst_then_refills_at_its_rate():
    clock = Clock()
    bucket = TokenBucket(RateLimit(5, 5.0), clock)  # 1 per second, burst 5
    assert [bucket.take() for _ in range(7)] == [True] * 5 + [False] * 2
    clock.now += 0.5
    assert not bucket.take()
    clock.now += 0.5
    assert bucket.take() and not bucket.take()
    clock.now += 3600  # never more than the burst
    assert sum(bucket.take() for _ in range(10)) == 5


def test_fingerprint_limiter_keeps_one_bucket_per_failure_and_forgets_the_oldest():
    clock = Clock()
    limiter = FingerprintLimiter(RateLimit(1, 3600.0), size=3, clock=clock)
    assert limiter.take("a") and limiter.take("b") and limiter.take("c")
    assert not limiter.take("a") and not limiter.take("b")
    limiter.take("d")  # table full: "c", the least recently used, is forgotten
    assert not limiter.take("a")
    assert limiter.take("c")  # a fresh bucket
    clock.now += 3600
    assert limiter.take("a")


def test_a_failure_storm_does_not_drain_the_global_bucket_and_refunds_its_token():
    clock = Clock()
    pol = resolve(rate_limit="2/1h", rate_limit_per_failure="1/1h")
    pol._bucket = TokenBucket(RateLimit(2, 3600.0), clock)
    pol._failures = FingerprintLimiter(RateLimit(1, 3600.0), clock=clock)
    assert pol.allow(True, "storm") is None
    assert [pol.allow(True, "storm") for _ in range(50)] == ["fingerprint_limited"] * 50
    assert pol.allow(True, "other") is None  # the global bucket still had a token
    assert pol.allow(True, "third") == "rate_limited"
    clock.now += 1800  # one global token back; "third" was refunded, so it is written now
    assert pol.allow(True, "third") is None


def test_successes_are_written_only_in_always_mode_and_not_counted_as_drops():
    assert resolve().allow(False) == "not_failed"
    assert resolve(on="always", rate_limit=None).allow(False) is None


def test_sampling_at_a_seeded_rate():
    pol = Policy(policy._check({"sample_rate": 0.25}, str), rng=random.Random(7))
    admitted = sum(pol.admit() for _ in range(20_000))
    # binomial(20000, 0.25): sd 61; 5 sd either side
    assert abs(admitted - 5000) < 310
    assert not any(Policy(policy._check({"sample_rate": 0.0}, str)).admit() for _ in range(100))
    assert all(Policy({}).admit() for _ in range(100))


def test_an_unsampled_call_records_nothing(monkeypatch, tmp_path):
    starts = []
    real_start = api._start
    monkeypatch.setattr(api, "_start", lambda *a: starts.append(a) or real_start(*a))

    @replay.capture(directory=tmp_path, sample_rate=0.0)
    def fails():
        raise ValueError("never recorded")

    before = replay.stats().get("dropped_sampled_out", 0)
    for _ in range(10):
        with pytest.raises(ValueError):
            fails()
    assert starts == []  # no entry encoding, no recorder
    assert replay.stats()["dropped_sampled_out"] == before + 10


def test_mode_off_records_nothing(monkeypatch):
    monkeypatch.setattr(api, "_start", lambda *a: pytest.fail("recorded"))

    @replay.capture(on="off")
    def fine():
        return 1

    assert fine() == 1


def test_environment_variables_configure_the_defaults(monkeypatch):
    monkeypatch.setenv("REPLAY_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("REPLAY_RATE_LIMIT", "10/60s")
    monkeypatch.setenv("REPLAY_RATE_LIMIT_PER_FAILURE", "off")
    monkeypatch.setenv("REPLAY_WRITE", "sync")
    s = resolve().current()
    assert (s.on, s.sample_rate, s.rate_limit, s.rate_limit_per_failure, s.background) == (
        "error", 0.5, RateLimit(10, 60.0), None, False)
    defaults = policy.Settings()
    assert defaults.rate_limit == RateLimit(5, 5.0) and defaults.rate_limit_per_failure == RateLimit(1, 3600.0)


@pytest.mark.parametrize(("var", "value", "message"), [
    ("REPLAY_CAPTURE", "sometimes", "REPLAY_CAPTURE='sometimes': expected one of error, always, off"),
    ("REPLAY_SAMPLE_RATE", "1.5", "REPLAY_SAMPLE_RATE=1.5: expected a fraction"),
    ("REPLAY_SAMPLE_RATE", "half", "REPLAY_SAMPLE_RATE='half': expected a number"),
    ("REPLAY_RATE_LIMIT", "fast", "REPLAY_RATE_LIMIT='fast'"),
    ("REPLAY_RATE_LIMIT_PER_FAILURE", "1/0s", "REPLAY_RATE_LIMIT_PER_FAILURE='1/0s'"),
    ("REPLAY_WRITE", "later", "REPLAY_WRITE='later'"),
    ("REPLAY_STORE", "nosuchproto://x", "REPLAY_STORE='nosuchproto://x': no fsspec filesystem"),
])
def test_bad_environment_values_fail_when_a_capture_is_configured(monkeypatch, var, value, message):
    monkeypatch.setenv(var, value)
    with pytest.raises(UsageError) as info:
        replay.capture(lambda: None)
    assert message in str(info.value)
    with pytest.raises(UsageError):
        replay.recording()


def test_bad_options_in_code_are_usage_errors():
    with pytest.raises(UsageError, match="unknown capture option 'sample'"):
        replay.capture(sample=0.5)
    with pytest.raises(UsageError, match="on='never'"):
        replay.capture(on="never")
    with pytest.raises(UsageError, match="queue_size=0: expected a positive number"):
        replay.capture.configure(queue_size=0)
    with pytest.raises(UsageError, match="sample_rate=True"):
        replay.capture.configure(sample_rate=True)


def test_precedence_site_then_configure_then_environment(monkeypatch):
    monkeypatch.setenv("REPLAY_SAMPLE_RATE", "0.5")
    monkeypatch.setenv("REPLAY_RATE_LIMIT", "10/60s")
    site = resolve(rate_limit="1/s")
    process = resolve()
    replay.capture.configure(sample_rate=0.25, rate_limit="2/s")
    # configure() reaches policies resolved before it (decorators run at import time)
    assert process.current().sample_rate == 0.25 and process.current().rate_limit == RateLimit(2, 1.0)
    assert site.current().rate_limit == RateLimit(1, 1.0) and site.current().sample_rate == 0.25
    # same limit, same (process-wide) bucket; a different limit, another bucket
    assert resolve()._bucket is process._bucket and site._bucket is not process._bucket


def test_replay_capture_off_is_a_kill_switch_over_code(monkeypatch):
    replay.capture.configure(on="always")
    monkeypatch.setenv("REPLAY_CAPTURE", "off")
    assert resolve(on="always").current().on == "off"
    assert not resolve(on="always").admit()


def _raise_here(kind):
    raise kind("x")


def test_fingerprint_is_the_exception_type_and_the_innermost_application_frame():
    def failure(kind, line_shift=False):
        try:
            if line_shift:
                raise kind("other line")
            _raise_here(kind)
        except Exception as exc:  # noqa: BLE001
            return policy.fingerprint(exc, [__file__.rsplit("/", 1)[0]])

    a, b = failure(ValueError), failure(ValueError)
    assert a == b and a[0] == "builtins:ValueError" and a[1] == __file__
    assert failure(KeyError) != a
    assert failure(ValueError, line_shift=True) != a
