"""TapePlayer matching in isolation: strict per strand, keyed by the channel's normalised key,
effects (same / changed / missing), constant channels, and the divergence report."""

from __future__ import annotations

import pytest

from replay.capture.boundary import STRAND, ChannelSpec, register_channel
from replay.errors import ReplayDiverged
from replay.replayer.tape import TapePlayer
from replay.snapshot.codec import TypeResolver, encode
from replay.snapshot.model import Interaction

register_channel(ChannelSpec(
    "kv",
    key=lambda op, args: (args[0].strip().lower(), args[1]),
    effect=lambda op, args: op == "put",
    target=lambda op, args: args[0],
))
register_channel(ChannelSpec("facts", constant=True))


def tape(*items: tuple[str, str, tuple, object], strands: list[str] | None = None) -> list[Interaction]:
    return [Interaction(i, ch, op, encode(args), encode(result), None, (strands or [])[i] if strands else "0")
            for i, (ch, op, args, result) in enumerate(items)]


def player(t: list[Interaction], mode: str) -> TapePlayer:
    return TapePlayer(t, mode, seed=7, resolver=TypeResolver())


def test_strict_serves_in_order_and_diverges_on_other_arguments():
    p = player(tape(("kv", "get", ("a", 1), "A"), ("kv", "get", ("b", 2), "B")), "strict")
    assert p.call("kv", "get", ("a", 1), None) == "A"
    with pytest.raises(ReplayDiverged):
        p.call("kv", "get", ("b", 3), None)
    d = p.divergence
    assert d is not None and d.index == 1 and d.reason == "the same call with different arguments"
    assert ("[1]", "2", "3") in d.diff
    assert any("test_tape_player.py" in line for line in d.stack)


def test_strict_matches_each_strand_in_its_own_order():
    t = tape(("kv", "get", ("a", 1), "A"), ("kv", "get", ("t", 1), "T"), ("kv", "get", ("b", 1), "B"),
             strands=["0", "0.1", "0"])
    p = player(t, "strict")
    token = STRAND.set("0.1")  # the thread asks first this time
    try:
        assert p.call("kv", "get", ("t", 1), None) == "T"
    finally:
        STRAND.reset(token)
    assert p.call("kv", "get", ("a", 1), None) == "A"
    assert p.call("kv", "get", ("b", 1), None) == "B"
    p.finish_strict()
    assert p.divergence is None and p.unconsumed() == []


def test_strict_reports_interactions_never_asked_for():
    p = player(tape(("kv", "get", ("a", 1), "A"), ("kv", "get", ("b", 1), "B")), "strict")
    p.call("kv", "get", ("a", 1), None)
    p.finish_strict()
    assert p.divergence is not None and p.divergence.index == 1
    assert "without asking for 1 recorded" in p.divergence.reason


def test_keyed_matches_reordered_requests_through_the_normalised_key():
    p = player(tape(("kv", "get", ("a", 1), "A"), ("kv", "get", ("b", 2), "B")), "keyed")
    assert p.call("kv", "get", ("  B ", 2), None) == "B"  # key strips and lowercases
    assert p.call("kv", "get", ("a", 1), None) == "A"
    assert p.unconsumed() == []


def test_keyed_first_in_first_out_per_key():
    p = player(tape(("kv", "get", ("a", 1), "first"), ("kv", "get", ("a", 1), "second")), "keyed")
    assert [p.call("kv", "get", ("a", 1), None) for _ in range(2)] == ["first", "second"]
    with pytest.raises(ReplayDiverged):
        p.call("kv", "get", ("a", 1), None)


def test_keyed_divergence_names_the_nearest_recorded_requests():
    p = player(tape(("kv", "get", ("apple", 1), "A"), ("kv", "get", ("zebra", 9), "Z"),
                    ("kv", "get", ("apples", 1), "As")), "keyed")
    with pytest.raises(ReplayDiverged):
        p.call("kv", "get", ("appl", 1), None)
    d = p.divergence
    assert d is not None and d.recorded is None and d.reason == "no recorded answer for this request"
    assert "'apple'" in d.candidates[0] and "zebra" in d.candidates[-1]
    assert d.diff and d.diff[0][0] == "[0]"
    text = str(d)
    assert "nearest:" in text and "stack (innermost last)" in text


def test_effect_to_the_same_target_with_other_data_is_a_changed_effect():
    p = player(tape(("kv", "put", ("a", 10000), True), ("kv", "put", ("b", 1), True)), "keyed")
    assert p.call("kv", "put", ("a", 100), None) is True  # served the answer of the recorded put to "a"
    [effect] = p.effects
    assert effect["status"] == "changed" and effect["index"] == 0
    assert effect["diff"] == [["[1]", "10000", "100"]]
    missing = p.missing_effects()
    assert [m["index"] for m in missing] == [1] and missing[0]["status"] == "missing"


def test_an_effect_to_a_new_target_diverges():
    p = player(tape(("kv", "put", ("a", 1), True)), "keyed")
    with pytest.raises(ReplayDiverged):
        p.call("kv", "put", ("c", 1), None)


def test_strict_logs_effects_as_same():
    p = player(tape(("kv", "put", ("a", 1), True)), "strict")
    p.call("kv", "put", ("a", 1), None)
    assert [e["status"] for e in p.effects] == ["same"]


def test_constant_channel_reuses_the_last_answer():
    p = player(tape(("facts", "os.getpid", (), 4242)), "keyed")
    assert [p.call("facts", "os.getpid", (), None) for _ in range(3)] == [4242] * 3
    assert p.reused == {"facts": 2}


def test_keyed_clock_and_random_are_served_per_strand_then_synthesized():
    t = [Interaction(0, "clock", "time.time", ["t"], 1_000, None, "0"),
         Interaction(1, "clock", "time.time", ["t"], 5_000, None, "0.1"),
         Interaction(2, "clock", "time.time", ["t"], 2_000, None, "0")]
    p = player(t, "keyed")
    assert p.clock_ns("time.time", lambda: 0) == 1_000
    token = STRAND.set("0.1")
    try:
        assert p.clock_ns("time.time", lambda: 0) == 5_000
    finally:
        STRAND.reset(token)
    assert p.clock_ns("time.time", lambda: 0) == 2_000
    assert p.clock_ns("time.time", lambda: 0) == 3_000  # extrapolated from this strand's readings
    assert p.synthesized == {"clock.wall": 1}


def test_new_strand_ids_follow_the_parent():
    p = player([], "strict")
    assert [p.new_strand("thread", "t") for _ in range(2)] == ["0.1", "0.2"]
    token = STRAND.set("0.2")
    try:
        assert p.new_strand("task", "x") == "0.2.1"
    finally:
        STRAND.reset(token)
