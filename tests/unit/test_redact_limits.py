"""Redaction bounds: the per-value scan limit (fail closed past it) and the per-snapshot key."""

from __future__ import annotations

import dataclasses
import json
import logging
import re

import pytest

from replay.capture import redact
from replay.capture.redact import (
    SCAN_LIMIT,
    Redactor,
    configure,
    current_policy,
    policy_from_environment,
)
from replay.capture.redact_records import redact_snapshot
from replay.capture.redact_rules import TOKEN_RE, redacted_match
from replay.errors import UsageError
from replay.snapshot.codec import Encoder

UNSCANNED = re.compile(r"~redacted~unscanned_*~[0-9a-f]{8}~")
STRIPE = "sk_live_" + "Qm7Zr2Wx9Lp4Tn6Vb8Kc1Hd3"


@pytest.fixture(autouse=True)
def _default_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("REPLAY_REDACT", "REPLAY_REDACT_NAMES", "REPLAY_REDACT_PATTERNS", "REPLAY_REDACT_SCAN_LIMIT"):
        monkeypatch.delenv(var, raising=False)
    redact.reset()
    yield
    redact.reset()


def _limited(scan_limit: int) -> redact.Policy:
    """The default policy with another scan limit (handed to one Redactor)."""
    return dataclasses.replace(current_policy(), scan_limit=scan_limit)


def _body(size: int) -> str:
    """A JSON-ish text of ``size`` characters made of short harmless lines."""
    line = '{"id": 1234, "status": "shipped", "note": "leave at the door"},\n'
    return (line * (size // len(line) + 1))[:size]


# ------------------------------------------------------------------------------ scan limit


def test_default_limit_is_64_kib() -> None:
    assert SCAN_LIMIT == 65536 and current_policy().scan_limit == 65536


def test_tail_past_the_limit_is_one_token_of_the_same_length() -> None:
    value = _body(200_000)
    r = Redactor(_limited(10_000))
    out = r.text(value)
    assert len(out) == len(value)
    tail = UNSCANNED.search(out)
    assert tail is not None and tail.end() == len(out)
    assert 9_000 < tail.start() <= 10_000  # cut back to a separator, never past the limit
    assert out[: tail.start()] == value[: tail.start()]  # the head is kept as it was
    assert TOKEN_RE.fullmatch(tail.group())  # an ordinary token to every reader
    assert r.hits["unscanned"] == 1


def test_a_secret_in_the_tail_never_reaches_the_output() -> None:
    value = _body(50_000) + f"api_key={STRIPE}&x=1 " + _body(50_000)
    out = Redactor(_limited(8_192)).text(value)
    assert STRIPE not in out and "Qm7Zr2" not in out and "shipped" not in out[9_000:]


def test_a_secret_in_the_head_is_still_found_by_the_scanners() -> None:
    value = f"token {STRIPE} " + _body(100_000)
    r = Redactor(_limited(8_192))
    out = r.text(value)
    assert STRIPE not in out and r.hits["stripe_key"] == 1 and r.hits["unscanned"] == 1


def test_a_word_straddling_the_limit_goes_whole_into_the_tail() -> None:
    limit = 8_192
    head = _body(limit - 10)
    value = head + " " + STRIPE + " " + _body(50_000)  # the key spans the limit
    out = Redactor(_limited(limit)).text(value)
    assert len(out) == len(value)
    # no piece of the key, not even the part before the limit, is left in clear
    assert not any(STRIPE[i : i + 6] in out for i in range(len(STRIPE) - 5))


def test_a_long_remembered_secret_is_replaced_across_the_cut() -> None:
    pem = "".join(chr(65 + (i * 7) % 26) for i in range(3_000))  # no separator: one word
    r = Redactor(_limited(8_192))
    r.remember(pem, "private_key")
    value = _body(7_000) + pem + _body(50_000)
    out = r.text(value)
    assert pem[:6] not in out  # neither the head's part of it nor any other


def test_bytes_keep_their_length_and_type() -> None:
    value = _body(100_000).encode() + b"\xff\xfe" + _body(1000).encode()
    out = Redactor(_limited(4_096)).data(value)
    assert type(out) is bytes and len(out) == len(value)
    assert UNSCANNED.search(out.decode("latin-1"))


def test_value_just_over_the_limit_is_scanned_whole() -> None:
    value = _body(8_192 + 100)  # too short a tail to hold a token of its own length
    r = Redactor(_limited(8_192))
    assert r.text(value) == value and r.hits["unscanned"] == 0


def test_named_long_value_is_replaced_whole() -> None:
    out = Redactor(_limited(4_096)).text(_body(20_000), "password")
    assert TOKEN_RE.fullmatch(out) and "unscanned" not in out


def test_source_text_is_scanned_whole() -> None:
    source = "x = 1\n" * 20_000 + f"KEY = '{STRIPE}'\n"
    out = Redactor(_limited(4_096)).text(source, mode=redact.CODE)
    assert "unscanned" not in out and STRIPE not in out and out.startswith("x = 1\n")


def test_replay_matches_the_tail_token_against_any_text() -> None:
    value = _body(30_000)
    recorded = Redactor(_limited(4_096)).text(value)
    assert redacted_match(recorded, value)
    assert redacted_match(recorded, value[:5_000] + "anything else")
    assert not redacted_match(recorded, "a different head" + value[16:])


def test_manifest_counts_unscanned_values_and_states_the_limit() -> None:
    configure(scan_limit=4_096)
    enc = Encoder()
    body = _body(40_000).encode()
    red = redact_snapshot(entry={"module": "m", "qualname": "f", "args": enc.encode([{"body": body}])},
                          tape=[["http", "request", ["t", "POST", "http://x/", body, ["l"]], b"", None]],
                          outcome={"kind": "return", "value": enc.encode(None)}, environment={}, code=[])
    assert red.manifest["hits"]["unscanned"] == 2 and red.manifest["scan_limit"] == 4_096
    assert b"shipped" not in json.dumps(red.tape, default=lambda b: b.decode("latin-1")).encode()[40_000:]


def test_scan_limit_is_bounded_work() -> None:
    """What the scanners see is at most the limit: a pair reader spy counts the characters."""
    seen: list[int] = []
    r = Redactor(_limited(4_096))
    real = r._pairs
    r._pairs = lambda text: (seen.append(len(text)), real(text))[1]  # type: ignore[method-assign]
    r.text("password=" + _body(1_000_000))
    assert seen and max(seen) <= 4_096


# ------------------------------------------------------------------------------ configuration


def test_configure_and_environment_set_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    assert configure(scan_limit=1_000).scan_limit == 1_000
    assert current_policy().scan_limit == 1_000
    redact.reset()
    monkeypatch.setenv("REPLAY_REDACT_SCAN_LIMIT", "262144")
    redact.reset()
    assert current_policy().scan_limit == 262_144


@pytest.mark.parametrize("bad", [0, -1, 1.5, "64k", True])
def test_configure_rejects_a_bad_limit(bad: object) -> None:
    with pytest.raises(UsageError, match="scan_limit"):
        configure(scan_limit=bad)  # type: ignore[arg-type]


def test_bad_environment_limit_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="replay.capture"):
        policy = policy_from_environment(redact.Policy(), {"REPLAY_REDACT_SCAN_LIMIT": "lots"})
    assert policy.scan_limit == SCAN_LIMIT and "REPLAY_REDACT_SCAN_LIMIT" in caplog.text


def test_limit_changes_the_policy_digest() -> None:
    assert redact.Policy().digest() != redact.Policy(scan_limit=1_000).digest()


# ------------------------------------------------------------------------------ the key


def test_each_redactor_has_its_own_key() -> None:
    a, b = Redactor(), Redactor()
    assert a.text(STRIPE) == a.text(STRIPE)  # equal secrets, equal tokens within a snapshot
    assert a.text(STRIPE) != b.text(STRIPE)  # unlinkable across snapshots
    assert a.data(STRIPE.encode()) == a.text(STRIPE).encode()  # the same token in bytes


def test_each_snapshot_gets_its_own_key() -> None:
    enc = Encoder()

    def tokens() -> set[str]:
        red = redact_snapshot(entry={"module": "m", "qualname": "f", "args": enc.encode([STRIPE]),
                                     "arg_names": ["api_key"]},
                              tape=[["env", "environ.get", ["t", "STRIPE_KEY"], STRIPE, None]],
                              outcome={"kind": "exception", "type": "E", "message": f"bad key {STRIPE}",
                                       "value": enc.encode(None)}, environment={}, code=[])
        text = json.dumps([red.entry, red.tape, red.outcome], default=str)
        assert STRIPE not in text
        return set(TOKEN_RE.findall(text))

    first, second = tokens(), tokens()
    assert len(first) == 1 and len(second) == 1 and first != second


# ------------------------------------------------------------------------------ inputs cut


def _header_of(tmp_path, fn, *args):  # type: ignore[no-untyped-def]
    """Capture ``fn(*args)`` (on="always", written on this thread); the snapshot's header."""
    import glob

    import replay
    from replay.snapshot import open_snapshot

    captured = replay.capture(fn, on="always", directory=tmp_path, background=False, rate_limit="off",
                              rate_limit_per_failure="off")
    captured(*args)
    (path,) = glob.glob(str(tmp_path / "**" / "*.rsnap"), recursive=True)
    with open_snapshot(path) as s:
        return s.header


def count_orders(text: str) -> int:
    return text.count('"status"')


def read_orders(path: str) -> int:
    with open(path) as f:  # the answer of the files channel: cut past the limit
        return f.read().count('"status"')


def write_orders(path: str) -> int:
    with open(path, "w") as f:  # what the call sends is a request: a cut one still matches
        return f.write(_body(20_000))


def test_a_received_value_cut_at_the_limit_is_counted_in_the_manifest(tmp_path) -> None:
    configure(scan_limit=4_096)
    header = _header_of(tmp_path / "arg", count_orders, _body(20_000))
    assert header["redaction"]["cut_inputs"] == 1
    assert header["replayable"]  # code that reads only the value's length still reproduces
    orders = tmp_path / "orders.json"
    orders.write_text(_body(20_000))
    header = _header_of(tmp_path / "read", read_orders, str(orders))
    assert header["redaction"]["cut_inputs"] == 1  # the file's content: a tape answer


def test_a_long_value_only_sent_or_under_the_limit_is_no_cut_input(tmp_path) -> None:
    configure(scan_limit=4_096)
    header = _header_of(tmp_path / "write", write_orders, str(tmp_path / "out.json"))
    assert header["redaction"]["hits"].get("unscanned", 0) >= 1  # the written text was cut ...
    assert "cut_inputs" not in header["redaction"]  # ... but replay's matching takes the token
    configure(scan_limit=65_536)
    header = _header_of(tmp_path / "arg", count_orders, _body(20_000))
    assert "unscanned" not in header["redaction"]["hits"] and "cut_inputs" not in header["redaction"]
