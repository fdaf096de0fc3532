"""``_fastline.pack_nodes`` and ``_fastline.Changes``: the C flush path of the trace recorder.

pack_nodes must give msgpack's bytes exactly (trace files are byte-identical with and without
the extension), including for nodes shared by several changes (packed once, copied after),
and hand everything it does not pack to msgpack (which packs it or raises its own error).
Changes must behave as the list of change tuples it replaces, and change_columns must read
it as it reads that list.
"""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replay.replayer import tracer

fastline = pytest.importorskip("replay.replayer._fastline", reason="the C extension is not built")
pytestmark = pytest.mark.skipif(getattr(tracer, "_pack_nodes", None) is None,
                                reason="REPLAY_PURE_TRACER=1: the C flush path is off")

PACK = msgpack.Packer(use_bin_type=True).pack

# every boundary of msgpack's int, str, bin, array and map formats
INTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1,
        -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
LENGTHS = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]

leaves = st.one_of(
    st.none(), st.booleans(), st.sampled_from(INTS), st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40), st.binary(max_size=300),
    st.binary(max_size=20).map(bytearray),
)
nodes = st.recursive(
    leaves,
    lambda kids: st.one_of(st.lists(kids, max_size=20), st.lists(kids, max_size=5).map(tuple),
                           st.dictionaries(st.one_of(st.text(max_size=8), st.integers(-5, 5)), kids, max_size=6)),
    max_leaves=60,
)


def _packed(value: Any) -> bytes:
    return fastline.pack_nodes(value, PACK)  # type: ignore[no-any-return]


@settings(max_examples=200, deadline=None)
@given(nodes)
def test_pack_nodes_gives_msgpacks_bytes(value: Any) -> None:
    assert _packed(value) == PACK(value)


@settings(max_examples=100, deadline=None)
@given(st.lists(nodes, min_size=1, max_size=8), st.lists(st.integers(0, 7), max_size=30))
def test_shared_nodes_are_copied_byte_for_byte(pool: list[Any], picks: list[int]) -> None:
    """A chunk's nodes share objects (the same node for several changes, inside other nodes)."""
    shared = [pool[i % len(pool)] for i in picks]
    value = [shared, *shared, [shared, pool], {"k": shared}]
    assert _packed(value) == PACK(value)


def test_every_format_boundary() -> None:
    values: list[Any] = [*INTS, 0.0, -0.0, 1.5, float("inf"), float("nan"), True, False, None]
    for n in LENGTHS:
        values += ["a" * n, "\u00e9" * n, b"x" * n, bytearray(b"y" * n), list(range(n)), dict.fromkeys(range(n))]
    for value in values:
        assert _packed(value) == PACK(value), repr(value)[:80]
    assert _packed(values) == PACK(values)


def test_what_it_does_not_pack_goes_to_msgpack() -> None:
    calls: list[Any] = []

    def fallback(value: Any) -> bytes:
        calls.append(value)
        return PACK(value)

    class Sub(list):  # type: ignore[type-arg]
        pass

    for value in ([Sub([1])], [True, {1: Sub()}], [[[[]]]] * 2):
        assert fastline.pack_nodes(value, fallback) == PACK(value)
    assert len(calls) == 2  # all but the last, which it packs itself
    deep: Any = []
    for _ in range(600):  # deeper than pack_nodes goes: msgpack packs it
        deep = [deep]
    assert fastline.pack_nodes(deep, PACK) == PACK(deep)
    for _ in range(2000):  # deeper than msgpack goes: its own error
        deep = [deep]
    for bad, error in (([1j], TypeError), (["\udc80"], UnicodeEncodeError), ([2**64], OverflowError), ([-(2**63) - 1], OverflowError),
                       (deep, ValueError)):
        with pytest.raises(error):
            fastline.pack_nodes(bad, PACK)


CHANGES = [(10 + k // 3, k % 5, f"v{k % 7}", [k, "x" * (k % 3)]) if k % 11 else (10 + k // 3, k % 5, f"v{k % 7}")
           for k in range(2500)]  # past its first growth, with deletions


def test_changes_behave_as_the_list_of_tuples_they_replace() -> None:
    changes, reference = fastline.Changes(), []
    for change in CHANGES:
        changes.append(change)
        reference.append(change)
    assert len(changes) == len(reference) and changes == reference and list(changes) == reference
    assert changes[7] == reference[7] and changes[-1] == reference[-1] and changes[100:120] == reference[100:120]
    assert changes[-1][3] is reference[-1][3]  # nodes are held, not copied
    del changes[2000:]
    del reference[2000:]
    del changes[5:50]  # from the middle: the rest moves down
    del reference[5:50]
    del changes[0]
    del reference[0]
    assert changes == reference
    assert (changes != reference) is False and changes != reference[1:]
    changes.append((2**63 - 1, 2**32 - 1, "big", None))  # the widest step and serial
    assert changes[-1] == (2**63 - 1, 2**32 - 1, "big", None)
    changes.clear()
    assert len(changes) == 0 and not changes and changes == []
    for bad, error in (((0, 2**32, "a", 1), OverflowError), ((0, -1, "a"), OverflowError), ((2**63, 0, "a"), OverflowError),
                       ((None, 0, "a"), TypeError), ((0, 0), TypeError), ([0, 0, "a"], TypeError)):
        with pytest.raises(error):
            changes.append(bad)
    assert len(changes) == 0
    with pytest.raises(TypeError):
        changes[0:1] = []
    with pytest.raises(IndexError):
        changes[0]  # noqa: B018


def test_change_columns_read_changes_as_they_read_the_list() -> None:
    shuffled = CHANGES[:300] + CHANGES[250:260] + CHANGES[300:]  # out of step order: sorted, stably
    changes = fastline.Changes()
    for change in shuffled:
        changes.append(change)
    expected = tracer._change_columns_py(shuffled, 10)
    assert fastline.change_columns(changes, 10) == fastline.change_columns(shuffled, 10) == expected
    with pytest.raises(OverflowError):  # a step before the chunk
        fastline.change_columns(changes, 11)


def test_a_recorders_changes_are_a_changes_buffer(tmp_path: Any) -> None:
    rec = tracer.TraceRecorder(str(tmp_path / "t.rtrace"), tracer.Scope([str(tmp_path)]))
    try:
        assert type(rec.changes) is fastline.Changes
    finally:
        rec.abort()
