"""The C display (``_fastline.Display``, ``tracer.display`` when the extension is built) against
the Python display codec (``tracer.display_py``: ``Encoder(DISPLAY)``).

The contract: for every value, the C display returns exactly the node the Python one returns
(same types, same values, as stored: the same msgpack bytes), building it in C for the values
it knows and handing every other value graph whole to the Python display. Subclasses of
built-in values and containers are never read as their base: they go to the fallback. Traces
must be byte-identical with the C pieces and with the pure Python tracer
(``REPLAY_PURE_TRACER=1``).

Skipped when the extension is not built.
"""

from __future__ import annotations

import collections
import datetime
import decimal
import enum
import math
import os
import runpy
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.replayer import tracer
from replay.snapshot.encoding import DISPLAY
from tests.unit import test_fastline, test_fingerprint

fastline = pytest.importorskip("replay.replayer._fastline", reason="the C extension is not built")

BACKENDS = ["settrace"] + (["monitoring"] if sys.version_info >= (3, 12) else [])


# ----------------------------------------------------------------- values


# the value classes the fingerprint tests use (only the shapes matter here)
Plain, Slotted, DC, SDC, Pair, Items = (test_fingerprint.Plain, test_fingerprint.Slotted, test_fingerprint.DC,
                                        test_fingerprint.SDC, test_fingerprint.Pair, test_fingerprint.Items)


class SlottedWithDict(Slotted):
    def __init__(self, a: Any = None):
        super().__init__(a)
        self.c = [a]


class Text(str):
    pass


class Table(dict):
    pass


class Number(int):
    pass


class Color(enum.Enum):
    RED = 1


class Empty:
    __slots__ = ()


class Meta(type):
    pass


class WithMeta(metaclass=Meta):
    pass


def function() -> None:
    pass


_bounds = [DISPLAY.max_str - 1, DISPLAY.max_str, DISPLAY.max_str + 1]
_edge_texts = st.one_of(
    st.sampled_from(_bounds).flatmap(lambda n: st.sampled_from(["x" * n, "é" * n, "\U0001f600" * n, "a" * (n - 1) + "\ud800",
                                                                 "\ud800" + "a" * n, "a" * (n - 2) + "\udcff\ud800"])),
    st.sampled_from(["", "\ud800", "a\udcff", "é", "\u20ac", "\U0001f600", "\x00", "\udc80" * 3]),
    st.text(max_size=8),
    st.text(min_size=195, max_size=230),
)
_edge_bytes = st.one_of(st.binary(max_size=8), st.sampled_from([DISPLAY.max_bytes - 1, DISPLAY.max_bytes, DISPLAY.max_bytes + 1])
                        .flatmap(lambda n: st.binary(min_size=n, max_size=n)))
_edge_ints = st.one_of(st.integers(-(2**70), 2**70),
                       st.sampled_from([-(2**63) - 1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**64), 10**30]))
_hashable = st.one_of(st.none(), st.booleans(), _edge_ints, st.floats(), _edge_texts, _edge_bytes)
_leaves = st.one_of(
    _hashable,
    st.builds(bytearray, _edge_bytes),
    st.sampled_from([function, len, print, Color.RED, datetime.date(2020, 1, 1), datetime.datetime(2020, 1, 1, 5),
                     decimal.Decimal("1.5"), int, Plain, WithMeta, Meta, math, 1 + 2j, range(3), Empty(),
                     ValueError("x"), Text("subclass"), Number(5)]),
)


def _containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(kids, max_size=24),
        st.lists(kids, max_size=4).map(tuple),
        st.dictionaries(_hashable, kids, max_size=23),
        st.sets(_hashable, max_size=5),
        st.sets(st.integers(), max_size=5).map(frozenset),
        st.sets(st.one_of(st.integers(), st.text(max_size=2)), max_size=5),  # unorderable: iteration order
        st.dictionaries(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), kids, max_size=22).map(lambda d: Plain(**d)),
        st.builds(DC, kids, kids),
        st.builds(SDC, kids),
        st.builds(Slotted, kids),
        st.builds(SlottedWithDict, kids),
        st.builds(Pair, kids, kids),
        st.lists(kids, max_size=3).map(Items),
        st.dictionaries(st.text(max_size=2), kids, max_size=3).map(Table),
    )


_values = st.recursive(_leaves, _containers, max_leaves=40)


# ----------------------------------------------------------------- comparing nodes


def strict(a: Any, b: Any) -> bool:
    """The same node: same types all the way down (a bool is not an int, a list not a tuple),
    equal values, floats by their bits (NaN equals NaN, -0.0 is not 0.0)."""
    if type(a) is not type(b):
        return False
    if type(a) is list:
        return len(a) == len(b) and all(strict(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is float:
        return math.copysign(1, a) == math.copysign(1, b) and (a == b or (math.isnan(a) and math.isnan(b)))
    return bool(a == b)


def packed(node: Any) -> bytes:
    return bytes(msgpack.packb(node, use_bin_type=True))


def c_display(kinds: dict[type, Any] | None = None) -> Any:
    return fastline.Display(tracer.display_py, tracer._TYPE_KINDS if kinds is None else kinds)


def assert_same(value: Any, display: Any | None = None) -> Any:
    display = display or c_display()
    tracer.fingerprint(value)  # classify its types, as the recorder does before encoding
    expected = tracer.display_py(value)
    got = display(value)
    assert strict(got, expected), (got, expected)
    assert packed(got) == packed(expected)
    return got


# ----------------------------------------------------------------- the encoder


def test_tracer_display_is_the_c_one_unless_pure() -> None:
    if os.environ.get("REPLAY_PURE_TRACER") == "1":
        assert tracer.display is tracer.display_py
    else:
        assert isinstance(tracer.display, fastline.Display)
        assert tracer.display.fallback is tracer.display_py
    assert DISPLAY.max_str == fastline.DISPLAY_MAX_STR
    assert (DISPLAY.max_depth, DISPLAY.max_bytes, DISPLAY.max_items) == fastline.DISPLAY_BOUNDS
    probe = ("from replay.replayer import tracer; "
             "print(tracer.display is tracer.display_py and tracer._snapshot_locals_c is None)")
    env = {k: v for k, v in os.environ.items() if k != "REPLAY_PURE_TRACER"}
    for extra, shown in (({}, "False"), ({"REPLAY_PURE_TRACER": "1"}, "True")):
        out = subprocess.run([sys.executable, "-c", probe], env={**env, **extra}, capture_output=True, text=True,
                             check=True).stdout
        assert out.strip() == shown


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_values)
def test_c_nodes_are_the_python_nodes(value: Any) -> None:
    assert_same(value)
    assert_same(value, c_display({}))  # no type known: objects fall back, built-ins still in C


@settings(max_examples=200, deadline=None)
@given(st.one_of(_hashable, st.lists(_hashable, max_size=25), st.dictionaries(_hashable, _hashable, max_size=25),
                 st.lists(st.lists(_hashable, max_size=3), max_size=4).map(tuple), st.sets(_hashable, max_size=6),
                 st.builds(bytearray, _edge_bytes)))
def test_built_in_values_never_fall_back(value: Any) -> None:
    display = c_display({})
    assert_same(value, display)
    assert (display.encoded, display.fallbacks) == (1, 0)


@pytest.mark.parametrize("value", [
    Text("x"), Items([1]), Table(a=1), Number(3), [1, Text("x")], {"k": Items()}, (Table(),), collections.OrderedDict(a=1),
    collections.defaultdict(list), collections.Counter("ab"), Color.RED, datetime.date(2020, 1, 2), ValueError("no"),
    [decimal.Decimal("2")], {1, (1, 2)}, {Pair(1, 2)},
])
def test_subclasses_and_other_types_fall_back(value: Any) -> None:
    display = c_display()
    assert_same(value, display)
    assert (display.encoded, display.fallbacks) == (0, 1)


@pytest.mark.parametrize("value", [
    Plain(a=1, b=[2]), Slotted(3), SlottedWithDict([4]), DC(1, {"k": [2]}), SDC(1), Pair(1, [2]), function, len, int, Plain,
    WithMeta, [Plain(x=Plain(y=1))], {"f": print},
])
def test_known_objects_are_encoded_in_c(value: Any) -> None:
    display = c_display()
    assert_same(value, display)
    assert (display.encoded, display.fallbacks) == (1, 0)


def test_shared_and_recursive_values() -> None:
    a: list[Any] = [1]
    a.append(a)
    d: dict[str, Any] = {}
    d["self"] = d
    shared = [0]
    p = Plain(me=None, items=[shared, shared])
    p.me = p
    for value in (a, d, [shared, shared, (shared,)], p, [p, p], {"a": a, "d": d}, Pair(a, a)):
        assert_same(value)


def test_depth_cut_and_item_cuts() -> None:
    deep: Any = 0
    for i in range(10):
        deep = [deep] if i % 3 else ({"k": deep} if i % 2 else (deep, Plain(v=deep)))
    assert_same(deep)
    assert_same(list(range(100)))
    assert_same({i: str(i) for i in range(40)})
    assert_same(Plain(**{f"f{i}": i for i in range(30)}))
    assert_same(set(range(50)))
    assert_same([bytearray(70), bytearray(3), b"x" * 65, "y" * 201, "é" * 300])
    assert_same([[[[[[[Plain(), datetime.date(2020, 1, 1), Text("t"), Items(), WithMeta()]]]]]]])


def test_strings_at_the_display_bounds() -> None:
    n = DISPLAY.max_str
    for text in ("a" * n, "a" * (n + 1), "é" * n, "é" * (n + 1), "a" * (n - 1) + "\ud800", "a" * n + "\ud800",
                 "\ud800" * (n + 5), "a" * (n - 1) + "\U0001f600\ud800", "\udcff"):
        assert_same(text)
        assert_same([text, (text,)])
    assert tracer.display("a" * (n - 1) + "\ud800" + "b") == ["S", "a" * (n - 1) + "\\ud800", n + 1]


def test_a_changed_class_name_is_seen() -> None:
    class Renamed:
        def __init__(self) -> None:
            self.v = 1

    value = Renamed()
    assert_same(value)
    Renamed.__qualname__ = "Other"
    assert_same(value)
    Renamed.__module__ = "elsewhere"
    assert_same(value)


def test_unreadable_values_and_errors_come_from_the_fallback() -> None:
    class Broken:
        @property
        def __dict__(self) -> Any:  # type: ignore[override]
            raise RuntimeError("no")

    huge = 10 ** 5000  # str() refuses it (int_max_str_digits): the fallback's placeholder
    for value in (Broken(), huge, [huge]):
        assert_same(value)


def test_node_of_reuses_nodes_by_fingerprint() -> None:
    display = c_display()
    value = [1, [2]]
    fp = tracer.fingerprint(value)
    first = display.node_of(value, fp)
    assert display.node_of(value, fp) is first
    assert strict(display.node_of(value, None), first)
    value.append(3)
    other = display.node_of(value, tracer.fingerprint(value))
    assert other is not first and strict(other, tracer.display_py(value))
    for i in range(100):  # the table stays bounded
        display.node_of([i], tracer.fingerprint([i]))
    assert display.node_of(value, fp) is not first  # the oldest went


def test_display_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError):
        fastline.Display(tracer.display_py, [])
    display = c_display()
    with pytest.raises(TypeError):
        display()
    with pytest.raises(TypeError):
        display(1, 2)


# ----------------------------------------------------------------- traces


def _pure(m: pytest.MonkeyPatch) -> None:
    """tracer.py as with REPLAY_PURE_TRACER=1."""
    m.setattr(tracer, "display", tracer.display_py)
    m.setattr(tracer, "_LocalTracer", None)
    m.setattr(tracer, "_display_fingerprint", None)
    m.setattr(tracer, "_chunk_columns", tracer._chunk_columns_py)
    m.setattr(tracer, "_change_columns", tracer._change_columns_py)
    m.setattr(tracer, "_snapshot_locals_c", None)
    m.setattr(tracer, "_add_hits", tracer._add_hits_py)


def _trace(app: Path, name: str, out: Path, pure: bool, monkeypatch: pytest.MonkeyPatch, backend: str) -> Path:
    import gc

    with monkeypatch.context() as m:
        if pure:
            _pure(m)
        rec = tracer.TraceRecorder(str(out), tracer.Scope([str(app)]))
        tr = tracer.make_tracer(rec, backend)
        gc.collect()
        gc.disable()  # a collection's callbacks (Hypothesis installs one) would be steps here or there
        tr.start()
        try:
            runpy.run_path(str(app / f"{name}.py"), run_name="__main__")
        finally:
            tr.stop()
            gc.enable()
        rec.close()
        assert rec.error is None
    return out


PROGRAMS = {**{f"fastline-{k}": v for k, v in test_fastline.PROGRAMS.items()},
            **{f"fingerprint-{k}": v for k, v in test_fingerprint.PROGRAMS.items()},
            "values": """
                import collections

                class Text(str):
                    pass

                class Node:
                    def __init__(self, name, kids=()):
                        self.name = name
                        self.kids = list(kids)

                def build(n):
                    tree = Node("root")
                    texts = []
                    counts = collections.Counter()
                    for i in range(n):
                        kid = Node(f"k{i}", [Node("leaf")])
                        tree.kids.append(kid)
                        texts.append("é" * (195 + i) + ("\\ud800" if i % 3 == 0 else ""))
                        raw = b"\\x00" * (60 + i)
                        counts[i % 3] += 1
                        sub = Text("s" * i)
                        mixed = {i, str(i)}
                        loop = [i]
                        loop.append(loop)
                    return tree, texts, counts, sub, mixed, raw

                def main():
                    build(12)

                if __name__ == "__main__":
                    main()
            """}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_traces_are_identical_to_the_pure_tracer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                                 backend: str) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / f"{name}.py").write_text(textwrap.dedent(PROGRAMS[name]))
    runpy.run_path(str(app / f"{name}.py"), run_name="__main__")  # warm: imports, caches
    _trace(app, name, tmp_path / "warm.rtrace", True, monkeypatch, backend)
    pure = _trace(app, name, tmp_path / "pure.rtrace", True, monkeypatch, backend)
    fast = _trace(app, name, tmp_path / "fast.rtrace", False, monkeypatch, backend)
    assert fast.read_bytes() == pure.read_bytes()
