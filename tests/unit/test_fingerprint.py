"""The display fingerprint (``_fastline.display_fingerprint``, through ``tracer.fingerprint``)
and the recorder's use of it.

The contract: when two calls on a value give equal fingerprints (not None), ``display`` gives
equal nodes at those two moments ("equal" as stored: the same msgpack bytes); a fingerprint may
change while the node does not (that only costs a re-encode). The recorder skips re-encoding a
local whose fingerprint is the one kept with its node, and reuses a node made lately for the
same fingerprint; traces must be byte-identical with and without all that.

Skipped when the extension is not built.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import datetime
import decimal
import enum
import gc
import os
import pathlib
import runpy
import subprocess
import sys
import textwrap
import types
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from replay.replayer import tracer
from replay.snapshot.encoding import DISPLAY

fastline = pytest.importorskip("replay.replayer._fastline", reason="the C extension is not built")
if os.environ.get("REPLAY_PURE_TRACER") == "1":  # tracer.fingerprint is None by design then
    pytest.skip("REPLAY_PURE_TRACER=1 switches the fingerprint off", allow_module_level=True)

BACKENDS = ["settrace"] + (["monitoring"] if sys.version_info >= (3, 12) else [])


def packed(node: Any) -> bytes:
    return bytes(msgpack.packb(node, use_bin_type=True))


def fp(value: Any) -> bytes | None:
    return tracer.fingerprint(value)


# ----------------------------------------------------------------- classes the values use


class Plain:
    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


class Plain2:
    def __init__(self, **fields: Any):
        self.__dict__.update(fields)


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self, a: Any = None):
        self.a = a


class SlottedWithDict(Slotted):
    def __init__(self, a: Any = None):
        super().__init__(a)
        self.c = 0


@dataclasses.dataclass
class DC:
    x: Any
    y: Any = None


@dataclasses.dataclass(slots=True)
class SDC:
    x: Any
    y: Any = None


Pair = collections.namedtuple("Pair", "a b")


class Items(list):  # a subclass of a built-in: an opaque placeholder
    pass


class Color(enum.Enum):
    RED = 1


def function() -> None:
    pass


# ----------------------------------------------------------------- values and mutations

_long_text = st.text(min_size=195, max_size=230)
_texts = st.one_of(st.text(max_size=6), _long_text, st.sampled_from(["\ud800", "a\udcff", "é" * 201, "x" * 201]))
_hashable = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), _texts,
                      st.binary(max_size=70))
_leaves = st.one_of(_hashable, st.floats(), st.builds(bytearray, st.binary(max_size=70)),
                    st.sampled_from([function, len, Color.RED, datetime.date(2020, 1, 1), int, Plain]))


def _containers(kids: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(kids, max_size=24),
        st.lists(kids, max_size=4).map(tuple),
        st.dictionaries(_hashable, kids, max_size=23),
        st.sets(_hashable, max_size=5),
        st.sets(st.integers(), max_size=5).map(frozenset),
        st.dictionaries(st.sampled_from("abcdefghijklmnopqrstuvwxyz"), kids, max_size=22).map(lambda d: Plain(**d)),
        st.builds(DC, kids, kids),
        st.builds(SDC, kids),
        st.builds(Slotted, kids),
        st.builds(Pair, kids, kids),
        st.lists(kids, max_size=3).map(Items),
    )


_values = st.recursive(_leaves, _containers, max_leaves=40)


def _reachable(value: Any) -> list[Any]:
    """Every mutable object reachable from ``value`` (whatever the depth and position)."""
    seen: dict[int, Any] = {}
    stack = [value]
    while stack:
        v = stack.pop()
        if id(v) in seen or isinstance(v, type | types.FunctionType | types.BuiltinFunctionType | enum.Enum):
            continue
        if isinstance(v, list | dict | set | bytearray | Plain | Plain2 | DC | SDC | Slotted):
            seen[id(v)] = v
        if isinstance(v, list | tuple | set | frozenset):
            stack.extend(v)
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, Plain | Plain2 | DC):
            stack.extend(vars(v).values())
        elif isinstance(v, SDC | Slotted):
            stack.extend(getattr(v, name, None) for name in ("x", "y", "a", "b"))
    return list(seen.values())


def _mutate(data: st.DataObject, root: Any) -> None:
    """One random in-place change somewhere in ``root`` (it may change nothing shown)."""
    target = data.draw(st.sampled_from(_reachable(root)))
    others = _reachable(root)
    new = data.draw(st.one_of(_hashable, st.sampled_from(others)))  # a leaf, or a shared reference
    if isinstance(target, list):
        op = data.draw(st.sampled_from(["append", "pop", "set", "insert", "reverse", "same", "copy-str"]))
        if op == "append":
            target.append(new)
        elif op == "pop" and target:
            target.pop(data.draw(st.integers(0, len(target) - 1)))
        elif op == "set" and target:
            target[data.draw(st.integers(0, len(target) - 1))] = new
        elif op == "insert":
            target.insert(0, new)
        elif op == "reverse":
            target.reverse()
        elif op == "same" and target:
            target[-1] = target[-1]
        elif op == "copy-str":  # an equal string, another object
            target[:] = ["".join(list(x)) if type(x) is str else x for x in target]
    elif isinstance(target, dict):
        op = data.draw(st.sampled_from(["set", "del", "reorder"]))
        key = data.draw(_hashable)
        if op == "set":
            target[key] = new
        elif op == "del" and target:
            del target[next(iter(target))]
        elif op == "reorder" and target:
            first = next(iter(target))
            target[first] = target.pop(first)
    elif isinstance(target, set):
        if data.draw(st.booleans()) or not target:
            target.add(data.draw(_hashable))
        else:
            target.discard(next(iter(target)))
    elif isinstance(target, bytearray):
        target.extend(data.draw(st.binary(min_size=1, max_size=3)))
    elif isinstance(target, Plain | Plain2):
        op = data.draw(st.sampled_from(["set", "del", "class"]))
        if op == "set":
            setattr(target, data.draw(st.sampled_from("abcz")), new)
        elif op == "del" and vars(target):
            delattr(target, next(iter(vars(target))))
        elif op == "class":
            target.__class__ = Plain2 if type(target) is Plain else Plain
    elif isinstance(target, DC | SDC):
        target.y = new
    elif isinstance(target, Slotted):
        if data.draw(st.booleans()):
            target.b = new
        elif hasattr(target, "a"):
            del target.a


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(_values, st.data())
def test_equal_fingerprints_mean_equal_nodes(value: Any, data: st.DataObject) -> None:
    before, node = fp(value), packed(tracer.display(value))
    assert fp(value) == before  # the same value, the same fingerprint
    if before is not None:
        assert len(before) == 16
        assert fp(copy.deepcopy(value)) == before  # by value, never by address
    for _ in range(data.draw(st.integers(1, 4))):
        if not _reachable(value):
            break
        _mutate(data, value)
        after, now = fp(value), packed(tracer.display(value))
        if before is not None and after == before:
            assert now == node
        if now != node:
            assert after is None or after != before
        before, node = after, now


_plain_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5)),
    lambda kids: st.one_of(st.lists(kids, max_size=5), st.dictionaries(st.text(max_size=3), kids, max_size=5),
                           st.builds(Plain, a=kids), st.builds(SDC, kids)),
    max_leaves=20)


@settings(max_examples=100, deadline=None)
@given(_plain_values)
def test_supported_values_have_a_fingerprint(value: Any) -> None:
    assert fp(value) is not None


# ----------------------------------------------------------------- the encoder's rules, one by one


def test_bounds_are_the_display_profile() -> None:
    assert (DISPLAY.max_depth, DISPLAY.max_bytes, DISPLAY.max_items) == fastline.DISPLAY_BOUNDS


def _changes(value: Any, change: Callable[[Any], None]) -> tuple[bool, bool]:
    """(node changed, fingerprint changed) by ``change(value)``."""
    node, before = packed(tracer.display(value)), fp(value)
    change(value)
    return packed(tracer.display(value)) != node, fp(value) != before


def test_items_past_the_cut_and_the_true_size() -> None:
    assert _changes(list(range(25)), lambda v: v.__setitem__(3, -1)) == (True, True)
    assert _changes(list(range(25)), lambda v: v.__setitem__(22, -1))[0] is False  # not shown
    assert _changes(list(range(25)), lambda v: v.append(0)) == (True, True)  # ["+", n] counts them
    assert _changes({i: i for i in range(25)}, lambda v: v.__setitem__(24, -1))[0] is False
    assert _changes({i: i for i in range(25)}, lambda v: v.__setitem__(99, -1)) == (True, True)
    assert _changes(tuple(range(21)), lambda v: None) == (False, False)
    assert fp(tuple(range(21))) != fp(tuple(range(22)))
    slotted = Plain(**{f"f{i}": i for i in range(20)})
    assert _changes(slotted, lambda v: setattr(v, "g", 0)) == (True, True)  # 21 fields: ["+", 1]
    assert _changes(Plain(**{f"f{i}": i for i in range(21)}), lambda v: setattr(v, "f20", -1))[0] is False
    assert _changes(Plain(**{f"f{i}": i for i in range(21)}), lambda v: setattr(v, "f2", -1)) == (True, True)


def test_depth_cut() -> None:
    def nest(inner: Any, depth: int) -> Any:
        for _ in range(depth):
            inner = [inner]
        return inner

    def innermost(v: Any) -> list[Any]:
        while isinstance(v[0], list):
            v = v[0]
        return v

    def at_depth_5(v: Any) -> list[Any]:
        for _ in range(5):
            v = v[0]
        return v  # type: ignore[no-any-return]

    assert _changes(nest([1], 7), lambda v: innermost(v).append(2))[0] is False  # below the cut
    assert _changes(nest([1], 4), lambda v: innermost(v).append(2)) == (True, True)
    deep = nest([1], 6)  # the innermost list is at depth 6: ["...", "builtins:list"]
    cut = tracer.display(deep)
    for _ in range(5):
        cut = cut[1]
    assert cut == ["l", ["...", "builtins:list"]]
    assert _changes(deep, lambda v: innermost(v).append(2))[0] is False
    assert _changes(deep, lambda v: at_depth_5(v).__setitem__(0, {"k": 1})) == (True, True)  # another type
    leaf_at_cut = nest("x" * 300, 6)  # leaves are shown whatever their depth
    assert _changes(leaf_at_cut, lambda v: at_depth_5(v).__setitem__(0, "y" * 300)) == (True, True)


def test_shared_references_and_cycles() -> None:
    shared = [1]
    assert fp([shared, shared]) != fp([shared, [1]])  # ["@", 1] against a copy
    assert packed(tracer.display([shared, shared])) != packed(tracer.display([shared, [1]]))
    a: list[Any] = [1]
    a.append(a)
    b: list[Any] = [1]
    b.append(b)
    assert fp(a) == fp(b) is not None
    obj = Plain(x=1)
    obj.me = obj
    assert fp(obj) is not None and fp(obj) == fp(copy.deepcopy(obj))
    assert _changes(a, lambda v: v.insert(0, v)) == (True, True)
    for count in (5, 10, 40):  # a few objects registered, more than the short array, a grown table
        many = [[[i], [i + 1]] for i in range(count)][:20]
        first, second = [many, shared, shared], [copy.deepcopy(many), shared, shared]
        assert fp(first) == fp(second) is not None
        assert fp(first) != fp([many, shared, [1]])
        assert fp([many, many[3]]) != fp([many, [[3], [4]]])


def test_leaves_by_value() -> None:
    assert len({fp([1]), fp([True]), fp([1.0]), fp([-0.0]), fp([0.0]), fp(["1"]), fp([b"1"])}) == 7
    assert fp([2**64]) != fp([2**64 + 2**61 - 1])  # the same int hash, other residues
    assert fp([-(2**63) - 1]) != fp([2**64 - 1])
    assert fp(["x" * 300]) == fp(["".join(["x"] * 300)])
    head = "y" * 200
    assert fp([head + "a"]) != fp([head + "b"])  # equal nodes (both cut), the fingerprint may differ
    assert fp([bytearray(b"a" * 70)]) != fp([bytearray(b"a" * 71)])
    assert fp([float("nan")]) is None  # equal NaN nodes compare unequal: always re-encode


def _pairs() -> tuple[list[tuple[Any, Any]], list[tuple[Any, Any]]]:
    """(values encoding alike, values encoding apart), pairwise."""
    blob, text = bytearray(b"z" * 70), "t" * 300
    many = {f"f{i}": i for i in range(24)}
    alike = [
        ([blob, blob], [blob, bytearray(blob)]),  # a long bytearray is a leaf: never a back reference
        ([text, text], [text, "".join(text)]),
        ([[[[[[[1]]]]]]], [[[[[[[2]]]]]]]),  # below the cut
        (list(range(21)) + [0], list(range(21)) + [1]),  # past the cut
        (Plain(**many), Plain(**{**many, "f23": -1})),
        ([function, function], [function, function]),  # opaque: not registered
        ({2, 1}, {1, 2}),
        (["a" * 201 + "b"], ["a" * 201 + "b"]),
    ]
    apart = [
        (["abc"], ["axc"]),  # same length, first and last character
        ([b"abc"], [b"axc"]),
        ([function], [len]),
        ([Items()], [types.SimpleNamespace()]),
        ([int], [str]),
        (Plain(**many), Plain(**{**many, "f15": -1})),
        (SDC(1, [1]), SDC(1, [2])),
        (Pair(1, 2), Pair(1, 3)),
        (Slotted(1), Slotted(2)),
        ([bytearray(b"ab")], [bytearray(b"ac")]),
        ([2**80], [2**80 + 1]),
        ([1.5], [2.5]),
    ]
    return alike, apart


def test_the_walk_mirrors_the_encoder() -> None:
    alike, apart = _pairs()
    for a, b in alike:
        assert packed(tracer.display(a)) == packed(tracer.display(b))
        assert fp(a) == fp(b) is not None, a
    for a, b in apart:
        assert packed(tracer.display(a)) != packed(tracer.display(b))
        assert None is not fp(a) != fp(b), a


def test_sets_hash_in_any_order_when_the_encoder_sorts_them() -> None:
    one, other = set(), set()
    for k in range(50):
        one.add(str(k))
    for k in reversed(range(50)):
        other.add(str(k))
    assert fp([one]) == fp([other]) is not None
    assert fp([{0, 2.5, True}]) is not None  # numbers sort together
    assert fp([{1, "a"}]) is None  # sorted() fails: the node keeps the iteration order
    assert fp([{(1, 2)}]) is None  # not leaves
    assert fp([frozenset({1})]) != fp([{1}])


def test_kinds_of_objects() -> None:
    kinds = tracer._TYPE_KINDS
    values = [Plain(a=1), Slotted(1), SlottedWithDict(1), DC(1), SDC(1), Pair(1, 2), Items([1]), function, len, int,
              Plain, types.SimpleNamespace(a=1), sys, Color.RED]
    assert all(fp([v]) is not None for v in values[:-1])
    assert fp([Color.RED]) is None
    assert kinds[Plain] == tracer._KIND_PLAIN
    assert kinds[Slotted][0] == kinds[SlottedWithDict][0] == tracer._KIND_SLOTTED
    assert kinds[DC][0] == kinds[SDC][0] == tracer._KIND_DATACLASS
    assert kinds[Pair] == tracer._KIND_NAMEDTUPLE
    assert kinds[Items] == kinds[types.FunctionType] == kinds[types.ModuleType] == tracer._KIND_OPAQUE
    assert kinds[type] == tracer._KIND_CLASS
    assert kinds[Color] == tracer._KIND_OTHER
    slotted = Slotted(1)
    assert _changes(slotted, lambda v: setattr(v, "b", 2)) == (True, True)
    assert _changes(slotted, lambda v: delattr(v, "a")) == (True, True)
    assert _changes(Items([1]), lambda v: v.append(2))[0] is False  # a placeholder: the type only
    assert _changes(SDC(1), lambda v: setattr(v, "y", [1])) == (True, True)


def test_objects_encoded_by_content_have_none() -> None:
    for value in (datetime.date(2020, 1, 1), decimal.Decimal("1.5"), ValueError("x"), 1j, range(3),
                  pathlib.PurePosixPath("/a"), Color.RED, weakref.proxy(Plain)):
        assert fp(value) is None, value
        assert fp([value]) is None, value


# ----------------------------------------------------------------- hostile values


class Loud:
    """Every hook it has records that it ran (and raises)."""

    calls: list[str] = []

    def __eq__(self, other: object) -> bool:
        Loud.calls.append("eq")
        raise RuntimeError("eq")

    def __hash__(self) -> int:
        Loud.calls.append("hash")
        return 1


class Getattr(Plain):
    def __getattr__(self, name: str) -> Any:
        Loud.calls.append("getattr")
        raise RuntimeError(name)


class Getattribute:
    def __getattribute__(self, name: str) -> Any:
        Loud.calls.append("getattribute")
        raise RuntimeError(name)


class DictProperty:
    @property
    def __dict__(self) -> Any:  # type: ignore[override]
        Loud.calls.append("__dict__")
        raise RuntimeError("__dict__")


class ClassProperty(Plain):
    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        Loud.calls.append("__class__")
        return Color


class LoudMeta(type):
    def __eq__(cls, other: object) -> bool:
        Loud.calls.append("meta eq")
        raise RuntimeError("eq")

    def __hash__(cls) -> int:
        Loud.calls.append("meta hash")
        raise RuntimeError("hash")


class Strange(metaclass=LoudMeta):
    pass


class LoudStr(str):
    def __hash__(self) -> int:
        Loud.calls.append("str hash")
        return 7

    def __eq__(self, other: object) -> bool:
        Loud.calls.append("str eq")
        raise RuntimeError("eq")


@dataclasses.dataclass
class PropertyField:
    x: int = 0


PropertyField.x = property(lambda self: Loud.calls.append("property") or 1)  # type: ignore[assignment]


def _hostile() -> list[Any]:
    loud = Loud()
    odd_keys = Plain()
    odd_keys.__dict__[1] = 2
    dict_subclass = Plain()
    dict_subclass.__dict__ = type("D", (dict,), {})(a=1)
    return [
        [Plain(a=loud)], {loud: 1}, {1: [loud]}, [Getattr(a=1)], [Getattribute()], [DictProperty()],
        [ClassProperty(a=1)], [Strange()], [Strange], [LoudStr("x")], {LoudStr("k"): 1}, [odd_keys],
        [dict_subclass], [PropertyField.__new__(PropertyField)], [{loud}],
    ]


@pytest.mark.parametrize("index", range(len(_hostile())))
def test_hostile_values_never_raise_nor_run_code(index: int) -> None:
    value = _hostile()[index]
    first = fp(value)  # may classify a new type (Python reads the class, never the instance)
    Loud.calls.clear()
    calls: list[str] = []

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            calls.append(frame.f_code.co_name)

    sys.setprofile(profile)
    try:
        again = fastline.display_fingerprint(value, tracer._TYPE_KINDS)
    finally:
        sys.setprofile(None)
    assert calls == [] and Loud.calls == []  # no Python code ran during the walk
    assert again == first and (first is None or len(first) == 16)
    tracer.display(value)  # display itself may run their hooks; it never raises either


def test_unclassified_types_are_reported_then_classified() -> None:
    class Fresh:
        def __init__(self) -> None:
            self.a = 1

    kinds: dict[type, Any] = {}
    assert fastline.display_fingerprint([Fresh()], kinds) is None
    assert fastline.display_fingerprint([Fresh()], kinds, True) is Fresh
    kinds[Fresh] = fastline.KIND_PLAIN
    assert isinstance(fastline.display_fingerprint([Fresh()], kinds, True), bytes)
    with pytest.raises(TypeError):
        fastline.display_fingerprint([], set())


def test_the_walk_checks_what_a_kind_claims() -> None:
    """A kind the walk cannot honour without running code gives None (the table is the
    caller's: a wrong entry must not make the walk read what it should not)."""
    walk = fastline.display_fingerprint
    module = types.ModuleType("m")
    module.x = 1
    assert walk([module], {types.ModuleType: fastline.KIND_OPAQUE}) is not None
    assert walk([module], {types.ModuleType: fastline.KIND_PLAIN}) is None  # a module's own lookup
    assert walk([DC(1)], {DC: (fastline.KIND_DATACLASS, (("x", "not a slot"),))}) is None
    assert walk([DC(1)], {DC: (fastline.KIND_DATACLASS, (("x", vars(Slotted)["a"]),))}) is None  # another class's
    assert walk([DC(1)], {DC: (fastline.KIND_DATACLASS, (("x", None),))}) is not None
    assert walk([DC(1)], {DC: (fastline.KIND_DATACLASS, (("nope", None),))}) is None  # not in the instance dict
    assert walk([DC(1)], {DC: 2**100}) is None
    assert walk([Plain()], {Plain: fastline.KIND_CLASS}) is None
    assert walk([Plain()], {Plain: fastline.KIND_OTHER}) is None


def test_the_type_table_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracer, "_MAX_TYPES", 8)
    made = [type(f"C{i}", (), {}) for i in range(20)]
    for cls in made:
        assert fp([cls()]) is not None
    assert len(tracer._TYPE_KINDS) <= 8
    crowd = [type(f"D{i}", (), {})() for i in range(12)]  # more types than the table holds
    assert fp(crowd) is None  # ends (each call classifies at most _MAX_CLASSIFY types)
    del made, crowd
    gc.collect()


def test_without_the_extension_there_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracer, "_display_fingerprint", None)
    assert tracer.fingerprint([1]) is None
    code = "from replay.replayer import tracer; print(tracer.fingerprint([1]))"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "REPLAY_PURE_TRACER": "1"},
                         capture_output=True, text=True, check=True, cwd=str(Path(tracer.__file__).parents[2]))
    assert out.stdout.strip() == "None"


# ----------------------------------------------------------------- fingerprints kept with nodes


def test_a_stale_pair_is_never_trusted() -> None:
    """A writer of ``nodes`` that keeps no fingerprints (the Python closure) leaves the pair
    naming another node: it is ignored."""
    fps: dict[str, Any] = {}
    value = [1]
    node = tracer._node_of(value, fp(value))
    tracer._keep_fingerprint(fps, "a", fp(value), node)
    assert fps["a"] == (fp(value), node)
    tracer._keep_fingerprint(fps, "a", None, node)
    assert "a" not in fps
    tracer._keep_fingerprint(fps, "a", fp(value), ["?", "m:C", "<unreadable>", "RuntimeError"])
    assert "a" not in fps  # display's fallback: a later try may read the value


def count_display(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Patch ``tracer.display`` to list the values it is asked to encode."""
    made: list[Any] = []
    real = tracer.display

    def counting(value: Any) -> Any:
        made.append(value)
        return real(value)

    monkeypatch.setattr(tracer, "display", counting)
    return made


def test_nodes_are_reused_by_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    made = count_display(monkeypatch)
    first = tracer._node_of([1, 2], fp([1, 2]))
    again = tracer._node_of([1, 2], fp([1, 2]))  # another list, equal: the same node
    assert again is first and len(made) == 1
    for k in range(tracer._MAX_NODES + 5):
        tracer._node_of([k], fp([k]))
    assert len(tracer._NODES) <= tracer._MAX_NODES


# ----------------------------------------------------------------- the recorder keeps them

SOURCE = "import sys\ndef f():\n    a = ['x' * 300, *range(24)]\n    a.append(2)\n    return sys._getframe()\n"


@pytest.mark.parametrize("path", ["c", "diff"])
def test_a_local_is_re_encoded_only_when_its_fingerprint_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                path: str) -> None:
    made = count_display(monkeypatch)
    app = tmp_path / "app"
    app.mkdir()
    (app / "m.py").write_text(SOURCE)
    frame = runpy.run_path(str(app / "m.py"))["f"]()
    rec = tracer.TraceRecorder(str(tmp_path / "t.rtrace"), tracer.Scope([str(app)]))
    ts = rec.thread()
    act = rec.push(ts, rec.code(frame.f_code), frame)
    a = frame.f_locals["a"]
    assert act.fps["a"] == (fp(a), act.nodes["a"])
    local = fastline.LocalTracer(rec, ts, act, tracer.display, tracer._IMMUTABLE, tracer.CHUNK_STEPS,
                                 tracer.fingerprint, tracer._node_of)

    def line() -> None:
        act.line = 4  # a.append(2): a call, ``a`` is re-encoded
        if path == "c":
            local(frame, "line", None)
        else:
            rec.diff(act, frame, act.code.effects[4], rec.base + len(rec.steps))

    del made[:], rec.changes[:]
    line()
    assert made == [] and rec.changes == []  # unchanged since the call: not re-encoded
    a[22] = -1  # past the cut: neither changes
    line()
    assert made == [] and rec.changes == []
    a[0] = "x" * 299 + "y"  # the fingerprint changes, the node (the first 200 characters) does not
    line()
    assert made == [a] and rec.changes == []
    assert act.fps["a"] == (fp(a), act.nodes["a"]) and act.fps["a"][1] is act.nodes["a"]
    line()
    assert made == [a]
    a[0] = -1
    line()
    assert made == [a, a] and [c[2] for c in rec.changes] == ["a"]
    assert act.fps["a"][1] is act.nodes["a"] is rec.changes[-1][3]
    act.nodes["a"] = ["l", "another writer's node"]  # one that keeps no fingerprint: a stale pair
    line()  # re-encoded (the node made for this fingerprint a moment ago is reused)
    assert len(rec.changes) == 2 and act.fps["a"][1] is act.nodes["a"] is rec.changes[-1][3]
    assert packed(act.nodes["a"]) == packed(tracer.display(a))
    rec.abort()


# ----------------------------------------------------------------- traces with and without


PROGRAMS = {
    "objects": """
        import collections
        import dataclasses

        class Box:
            def __init__(self):
                self.items = []
                self.meta = {"name": "box", "tags": {"a", "b"}}

            def add(self, x):
                self.items.append(x)

            def peek(self):
                return self.items[-1] if self.items else None

        class Other(Box):
            pass

        @dataclasses.dataclass
        class Point:
            x: int
            y: list

        @dataclasses.dataclass(slots=True)
        class Token:
            kind: str
            children: list = None

        class Slots:
            __slots__ = ("a", "b")

        Pair = collections.namedtuple("Pair", "a b")

        def helper(box, depth):
            if depth:
                return helper(box, depth - 1)  # the same argument down a chain of calls
            return box.peek()

        def work(n):
            box = Box()
            shared = [0]
            big = list(range(30))
            table = {i: [i] for i in range(25)}
            deep = [[[[[[[[0]]]]]]]]
            p = Point(1, [])
            tok = Token("t", [])
            s = Slots()
            pair = Pair([1], {"k": 2})
            text = "x" * 250
            nan = [float("nan")]
            for i in range(n):
                box.add(i % 3)
                helper(box, 3)
                box.peek()
                shared.append(shared) if i == 1 else len(shared)
                big[25] = i  # past the cut: the node stays
                big[i % 20] = big[i % 20]
                table[24].append(i)
                table[1].append(i) if i % 4 == 0 else len(table)
                deep[0][0][0][0][0][0][0].append(i)
                deep[0][0][0][0][0][0] = [[i]] if i % 5 == 0 else deep[0][0][0][0][0][0]
                p.y.append(i) if i % 2 else len(p.y)
                tok.children.append(Token("c")) if i % 3 == 0 else len(tok.children)
                s.a = i // 2
                pair.a.append(i) if i % 4 == 0 else len(pair.a)
                text = text[:-1] + str(i % 10)
                text.upper()
                nan.append(1) if i == 2 else len(nan)
                if i == 5:
                    box.__class__ = Other
                if i == 6:
                    del s.a
                again = box
                again.peek()
                row = []
                row.append(i)
                gone = [i]
                del gone
            return len(box.items)

        def gen(n):
            state = {"k": []}
            for i in range(n):
                state["k"].append(i)
                yield state["k"].pop() if i % 2 else len(state["k"])

        def restore(x):
            x.append(2)  # the Python closure shows [1, 2]
            return x.pop()  # the return event's diff meets [1]: the fingerprint taken at the call

        def main():
            work(12)
            list(gen(5))
            keep = [1]
            for _ in range(3):
                restore(keep)

        if __name__ == "__main__":
            main()
    """,
    "module_level": """
        data = {"rows": []}
        for i in range(10):
            data["rows"].append([i])
            len(data)
        view = data
        view["rows"].pop()
    """,
}


def _write(tmp_path: Path, name: str) -> Path:
    app = tmp_path / "app"
    app.mkdir(exist_ok=True)
    (app / f"{name}.py").write_text(textwrap.dedent(PROGRAMS[name]))
    return app


def _without_fingerprints(rec: Any, ts: Any, act: Any, display: Any, immutable: Any, chunk_steps: int,
                          *rest: Any, returning: Any = None, **options: Any) -> Any:
    return fastline.LocalTracer(rec, ts, act, display, immutable, chunk_steps, returning=returning)


VARIANTS: dict[str, dict[str, Any]] = {
    "reference": {"_LocalTracer": None, "_display_fingerprint": None},  # the Python closure, no fingerprint
    "c": {},  # tracer.py as it is: the C tracer with fingerprints
    "python": {"_LocalTracer": None},  # the Python closure; diff and calls use fingerprints
    "c-without": {"_LocalTracer": _without_fingerprints},  # a C tracer that keeps none
}


def _trace(app: Path, name: str, out: Path, variant: str, monkeypatch: pytest.MonkeyPatch,
           backend: str) -> tuple[Path, int]:
    made = [0]
    real = tracer.display

    def counting(value: Any) -> Any:
        made[0] += 1
        return real(value)

    with monkeypatch.context() as m:
        for attr, value in VARIANTS[variant].items():
            m.setattr(tracer, attr, value)
        m.setattr(tracer, "display", counting)
        rec = tracer.TraceRecorder(str(out), tracer.Scope([str(app)]))
        tr = tracer.make_tracer(rec, backend)
        gc.collect()
        gc.disable()  # a collection's callbacks (Hypothesis installs one) would be steps, here or there
        tr.start()
        try:
            runpy.run_path(str(app / f"{name}.py"), run_name="__main__")
        finally:
            tr.stop()
            gc.enable()
        rec.close()
        assert rec.error is None
    return out, made[0]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_traces_are_identical_with_and_without(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str,
                                               backend: str) -> None:
    app = _write(tmp_path, name)
    runpy.run_path(str(app / f"{name}.py"), run_name="__main__")
    _trace(app, name, tmp_path / "warm.rtrace", "reference", monkeypatch, backend)
    reference, encoded = _trace(app, name, tmp_path / "reference.rtrace", "reference", monkeypatch, backend)
    for variant in ("c", "python", "c-without", "c"):  # "c" twice: with the node table filled
        path, made = _trace(app, name, tmp_path / f"{variant}.rtrace", variant, monkeypatch, backend)
        assert path.read_bytes() == reference.read_bytes(), variant
        if variant == "c":
            assert made < encoded  # skipped re-encodes, reused nodes
