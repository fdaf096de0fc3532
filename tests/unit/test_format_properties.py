"""Properties of the .rsnap container and of values stored in it (Hypothesis).

* Any msgpack-native records, spread over sections in any interleaving of ``append``,
  ``write_section`` and ``flush``, read back equal under any frame size; frame boundaries
  follow ``frame_bytes`` / ``frame_records`` exactly.
* Random access (``record``), ``iter_records(section, start)`` and ``iter_positions`` agree
  with a sequential read, and each position points at the record's bytes in its frame.
* Python values encoded with the exact profile, stored as tape records and read back,
  decode to equal values (types, NaNs, shared references and cycles included); the display
  profile keeps values bounded while keeping the true sizes.
* ``close(header_update=...)`` merges its keys over the leading header.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import os
import pathlib
import struct
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import replay.snapshot.format as fmt
from replay.snapshot import (
    FORMAT_MAJOR,
    FORMAT_MINOR,
    Section,
    SnapshotFile,
    SnapshotWriter,
    open_snapshot,
    validate,
)
from replay.snapshot.codec import DISPLAY, EXACT, Decoder, Encoder, Opaque, decode, encode
from tests.strategies import INT64_MIN, UINT64_MAX, big_ints, paths, ranges, real_type, tzinfos

FRAME_HEAD = struct.Struct("<BII")
TRAILER = struct.Struct("<QII8s")

# (frame_bytes, frame_records); None is the writer's default.
FRAMINGS = [(None, None), (1, None), (None, 1), (None, 7), (None, 64), (64, None), (4096, None)]

ENTRY = {"module": "shop.checkout", "qualname": "charge", "args": ["l"], "kwargs": ["d"]}
OUTCOME = {"kind": "return", "value": None, "duration_ns": 1}
ENVIRONMENT = {"python": "3.11", "platform": "linux"}



def props(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# --------------------------------------------------------------------------- helpers



def _same_float(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def same(a: Any, b: Any) -> bool:  # noqa: C901 - one branch per type
    """Type-exact deep equality where NaN equals NaN and -0.0 differs from 0.0.

    Containers compare item by item (dicts in insertion order, sets as multisets under this
    equality), so NaN keys and items are handled too.
    """
    t = real_type(a)
    if t is not real_type(b):
        return False
    if t is float:
        return _same_float(a, b)
    if t is complex:
        return _same_float(a.real, b.real) and _same_float(a.imag, b.imag)
    if t is decimal.Decimal:
        return str(a) == str(b)  # keeps NaN, sNaN, signed zero and the exponent
    if t in (list, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if t is dict:
        return len(a) == len(b) and all(
            same(ka, kb) and same(va, vb) for (ka, va), (kb, vb) in zip(a.items(), b.items(), strict=True)
        )
    if t in (set, frozenset):
        rest = list(b)
        for x in a:
            for i, y in enumerate(rest):
                if same(x, y):
                    del rest[i]
                    break
            else:
                return False
        return not rest
    if t is bytearray:
        return bytes(a) == bytes(b)
    if t is range:
        return (a.start, a.stop, a.step) == (b.start, b.stop, b.step)
    if isinstance(a, pathlib.PurePath):
        return str(a) == str(b) and a == b
    if t in (type(dt.datetime.min), dt.time):
        ta, tb = a.tzinfo, b.tzinfo
        return (a == b and a.fold == b.fold and type(ta) is type(tb)
                and getattr(ta, "key", None) == getattr(tb, "key", None)
                and a.utcoffset() == b.utcoffset() and a.tzname() == b.tzname())
    return bool(a == b)


def pack(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


@contextmanager
def scratch() -> Iterator[Path]:
    """A fresh directory per Hypothesis example (function-scoped fixtures are not reset)."""
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


# --------------------------------------------------------------------------- strategies

msgpack_leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=INT64_MIN, max_value=UINT64_MAX),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0]),
    st.text(max_size=20), st.binary(max_size=40),
)
msgpack_values = st.recursive(
    msgpack_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=8,
)
headers = st.dictionaries(st.text(max_size=10), msgpack_values, max_size=5)
# Known sections and ids this reader does not know (allowed: readers skip them).
sections = st.sampled_from([Section.ENTRY, Section.TAPE, Section.OUTCOME, Section.CODE, Section.ENVIRONMENT, 9, 255])
write_ops = st.lists(
    st.one_of(
        st.tuples(st.just("append"), sections, msgpack_values),
        st.tuples(st.just("write_section"), sections, st.lists(msgpack_values, max_size=6)),
        st.tuples(st.just("flush"), st.just(None), st.just(None)),
    ),
    max_size=25,
)


# --------------------------------------------------------------------------- the writer model


def expected_records(ops: list[tuple[str, Any, Any]]) -> dict[int, list[Any]]:
    """Records per section in the order they were handed to the writer (empty ones dropped)."""
    out: dict[int, list[Any]] = {}
    for kind, section, payload in ops:
        if kind == "append":
            out.setdefault(section, []).append(payload)
        elif kind == "write_section":
            out.setdefault(section, []).extend(payload)
    return {s: r for s, r in out.items() if r}


def expected_frames(ops: list[tuple[str, Any, Any]], frame_bytes: int | None,
                    frame_records: int | None) -> dict[int, list[int]]:
    """Record counts of each section's frames, in order, as the framing rules give them:
    a frame closes as soon as its packed records reach ``frame_bytes`` bytes or
    ``frame_records`` records; ``flush()`` and ``close()`` close every non-empty frame."""
    limit_bytes = fmt.FRAME_TARGET_BYTES if frame_bytes is None else frame_bytes
    limit_records = fmt.FRAME_TARGET_RECORDS if frame_records is None else frame_records
    pending: dict[int, list[int]] = {}
    frames: dict[int, list[int]] = {}

    def add(section: int, record: Any) -> None:
        p = pending.setdefault(section, [0, 0])
        p[0] += 1
        p[1] += len(pack(record))
        if p[1] >= limit_bytes or p[0] >= limit_records:
            frames.setdefault(section, []).append(p[0])
            p[:] = [0, 0]

    def flush() -> None:
        for section, p in pending.items():
            if p[0]:
                frames.setdefault(section, []).append(p[0])
                p[:] = [0, 0]

    for kind, section, payload in ops:
        if kind == "append":
            add(section, payload)
        elif kind == "write_section":
            for record in payload:
                add(section, record)
        else:
            flush()
    flush()
    return frames


def write_ops_to(path: Path, header: dict[str, Any], ops: list[tuple[str, Any, Any]], *,
                 frame_bytes: int | None = None, frame_records: int | None = None,
                 header_update: dict[str, Any] | None = None) -> Path:
    w = SnapshotWriter(path, header, frame_bytes=frame_bytes, frame_records=frame_records)
    for kind, section, payload in ops:
        if kind == "append":
            w.append(section, payload)
        elif kind == "write_section":
            w.write_section(section, iter(payload))  # any iterable, not only lists
        else:
            w.flush()
    assert w.close(header_update=header_update) == os.fspath(path)
    return path


def frames_per_section(f: SnapshotFile) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for fr in f.frames:
        out.setdefault(fr.section, []).append(fr.records)
    return out


def assert_frames_are_laid_out_back_to_back(path: Path, f: SnapshotFile) -> None:
    data = path.read_bytes()
    pos = f.header_end
    for fr in f.frames:
        assert fr.offset == pos
        assert FRAME_HEAD.unpack_from(data, fr.offset) == (fr.section, fr.records, fr.size)
        pos = fr.offset + FRAME_HEAD.size + fr.size
    assert pos == TRAILER.unpack_from(data, len(data) - TRAILER.size)[0]  # the index follows


# --------------------------------------------------------------------------- container round trips


@props(30)
@given(header=headers, ops=write_ops)
def test_any_records_round_trip_under_any_framing(header, ops):
    want = expected_records(ops)
    with scratch() as d:
        for n, (frame_bytes, frame_records) in enumerate(FRAMINGS):
            path = write_ops_to(d / f"r{n}.rsnap", header, ops, frame_bytes=frame_bytes, frame_records=frame_records)
            with SnapshotFile(path) as f:
                assert f.version == (FORMAT_MAJOR, FORMAT_MINOR)
                assert same(f.header, header) and same(f.leading_header, header)
                assert f.sections == {s: len(r) for s, r in want.items()}
                for section in (*want, 99):
                    got = list(f.iter_records(section))
                    assert same(got, want.get(section, [])), (frame_bytes, frame_records, section)
                    assert f.count(section) == len(got)
                assert frames_per_section(f) == expected_frames(ops, frame_bytes, frame_records)
                assert all(fr.records > 0 for fr in f.frames)
                assert f.frame_count == len(f.frames)
                assert_frames_are_laid_out_back_to_back(path, f)


def test_frame_limits_give_the_expected_frame_counts(tmp_path):
    records = [["clock", "time.time", ["t", i], "x" * 90, None] for i in range(100)]
    size = len(pack(records[0]))
    assert all(len(pack(r)) == size for r in records)
    counts = {}
    for n, (frame_bytes, frame_records) in enumerate(FRAMINGS):
        path = tmp_path / f"f{n}.rsnap"
        w = SnapshotWriter(path, {}, frame_bytes=frame_bytes, frame_records=frame_records)
        w.write_section(Section.TAPE, records)
        w.close()
        with SnapshotFile(path) as f:
            assert list(f.iter_records(Section.TAPE)) == records
            counts[(frame_bytes, frame_records)] = f.frame_count
    per_4096 = -(-4096 // size)  # records that reach 4096 bytes
    assert counts == {
        (None, None): 1, (1, None): 100, (None, 1): 100, (None, 7): 15, (None, 64): 2, (64, None): 100,
        (4096, None): -(-100 // per_4096),
    }


def test_flush_closes_frames_of_every_section(tmp_path):
    path = tmp_path / "f.rsnap"
    w = SnapshotWriter(path, {})
    for i in range(3):
        w.append(Section.TAPE, i)
        w.append(Section.CODE, {"path": str(i)})
        w.flush()
    w.flush()  # nothing pending: no empty frame
    w.close()
    with SnapshotFile(path) as f:
        assert [(fr.section, fr.records) for fr in f.frames] == [(Section.TAPE, 1), (Section.CODE, 1)] * 3
        assert list(f.iter_records(Section.TAPE)) == [0, 1, 2]


@pytest.mark.parametrize("section", [0, 256, -1])
def test_writer_refuses_section_ids_outside_1_to_255(tmp_path, section):
    """The spec allows section ids 1..255 (a u8, 0 reserved). A writer handed another id must
    refuse it when it is handed over (append, write_section, write_frame), not write a file
    its own reader rejects (id 0: the index entry is refused, so the whole file is
    unreadable) or fail in close() (256, -1: struct.error, and every record is lost)."""
    path = tmp_path / "s.rsnap"
    w = SnapshotWriter(path, {})
    w.append(Section.ENTRY, ENTRY)
    with pytest.raises((ValueError, TypeError)):
        w.append(section, ["x"])
    with pytest.raises((ValueError, TypeError)):
        w.write_section(section, [["y"]])
    payload = zstandard.ZstdCompressor(write_checksum=True, write_content_size=True).compress(pack(["z"]))
    with pytest.raises((ValueError, TypeError)):
        w.write_frame(section, 1, payload)
    w.close()
    with SnapshotFile(path) as f:
        assert f.sections == {Section.ENTRY: 1}


# --------------------------------------------------------------------------- random access


@props(40)
@given(ops=write_ops, framing=st.sampled_from(FRAMINGS), rnd=st.randoms(use_true_random=False))
def test_random_access_equals_sequential_reading(ops, framing, rnd):
    want = expected_records(ops)
    with scratch() as d:
        path = write_ops_to(d / "r.rsnap", {}, ops, frame_bytes=framing[0], frame_records=framing[1])
        with SnapshotFile(path) as f:
            # Random order first, on a fresh reader (its frame cache starts empty).
            wanted = [(s, n) for s, recs in want.items() for n in range(len(recs))]
            rnd.shuffle(wanted)
            for s, n in wanted:
                assert same(f.record(s, n), want[s][n])
                assert same(f.record(s, n - len(want[s])), want[s][n])  # negative: from the end
            sequential = {s: list(f.iter_records(s)) for s in f.sections}
            assert sequential.keys() == want.keys()
            assert all(same(sequential[s], want[s]) for s in want)
            for s, recs in sequential.items():
                for n in range(len(recs)):
                    assert same(f.record(s, n), recs[n])
                for bad in (len(recs), len(recs) + 5, -len(recs) - 1):
                    with pytest.raises(IndexError):
                        f.record(s, bad)
                for start in range(len(recs) + 2):
                    assert same(list(f.iter_records(s, start)), recs[start:]), start
            for absent in (s for s in (1, 2, 3, 4, 5, 9, 77) if s not in sequential):
                assert f.count(absent) == 0 and list(f.iter_records(absent)) == []
                for bad in (0, -1):
                    with pytest.raises(IndexError):
                        f.record(absent, bad)


@props(40)
@given(ops=write_ops, framing=st.sampled_from(FRAMINGS))
def test_record_positions_point_at_the_records_in_their_frames(ops, framing):
    want = expected_records(ops)
    with scratch() as d:
        path = write_ops_to(d / "r.rsnap", {}, ops, frame_bytes=framing[0], frame_records=framing[1])
        data = path.read_bytes()
        with SnapshotFile(path) as f:
            frames = {fr.offset: fr for fr in f.frames}
            seen: dict[int, int] = {}
            contents: dict[int, bytes] = {}
            ends: dict[int, int] = {}
            previous_frame = -1
            for pos in f.iter_positions():
                assert pos.number == seen.get(pos.section, 0)
                seen[pos.section] = pos.number + 1
                fr = frames[pos.frame_offset]
                assert fr.section == pos.section
                assert pos.frame_offset >= previous_frame  # file order
                previous_frame = pos.frame_offset
                if fr.offset not in contents:
                    payload = data[fr.offset + FRAME_HEAD.size: fr.offset + FRAME_HEAD.size + fr.size]
                    contents[fr.offset] = zstandard.ZstdDecompressor().decompress(payload)
                    ends[fr.offset] = 0
                content = contents[fr.offset]
                assert pos.content_offset == ends[fr.offset]  # records are back to back
                ends[fr.offset] = pos.content_offset + pos.size
                raw = content[pos.content_offset: pos.content_offset + pos.size]
                assert same(msgpack.unpackb(raw, raw=False), pos.record)
                assert same(pos.record, want[pos.section][pos.number])
            assert seen == {s: len(r) for s, r in want.items()}
            assert set(contents) == set(frames)
            assert all(ends[off] == len(contents[off]) for off in contents)  # no bytes left over
            assert {off: frames[off].records for off in frames} == {
                off: sum(1 for p in f.iter_positions() if p.frame_offset == off) for off in frames
            }


# --------------------------------------------------------------------------- header_update


@props(40)
@given(header=headers, update=headers)
def test_header_update_is_merged_over_the_leading_header(header, update):
    with scratch() as d:
        path = write_ops_to(d / "h.rsnap", header, [("append", Section.TAPE, 1)], header_update=update)
        data = path.read_bytes()
        with SnapshotFile(path) as f:
            assert same(f.leading_header, header)
            assert same(f.header, {**header, **update})
        with open_snapshot(path) as s:
            assert same(s.header, {**header, **update})
        # The leading header at offset 24 is what the writer was given, checksummed.
        head_len, head_crc = struct.unpack_from("<II", data, 16)
        raw = data[24:24 + head_len]
        assert zlib.crc32(raw) == head_crc and same(msgpack.unpackb(raw, raw=False), header)
        index_offset, index_len, _, _ = TRAILER.unpack_from(data, len(data) - TRAILER.size)
        index = msgpack.unpackb(data[index_offset:index_offset + index_len], raw=False)
        if update:
            assert same(index["header"], update)
        else:
            assert "header" not in index


def test_header_update_overrides_and_extends_keys(tmp_path):
    header = {"entry": "shop:charge", "outcome": None, "interactions": 0, "channels": {"clock": 1}}
    update = {"outcome": "exception", "interactions": 7, "duration_ns": 99, "channels": {"env": 2}}
    path = tmp_path / "h.rsnap"
    w = SnapshotWriter(path, header)
    w.append(Section.ENTRY, ENTRY)
    w.append(Section.OUTCOME, OUTCOME)
    w.append(Section.ENVIRONMENT, ENVIRONMENT)
    w.close(header_update=update)
    with SnapshotFile(path) as f:
        assert f.leading_header == header
        # Top-level keys are replaced whole (a nested map is not merged key by key).
        assert f.header == {"entry": "shop:charge", "outcome": "exception", "interactions": 7,
                            "duration_ns": 99, "channels": {"env": 2}}
    assert validate(path).ok


# --------------------------------------------------------------------------- values through the codec

any_floats = st.one_of(st.floats(), st.sampled_from([math.nan, -math.nan, math.inf, -math.inf, -0.0, 5e-324]))
decimals = st.one_of(
    st.decimals(), st.decimals(places=3),
    st.sampled_from([decimal.Decimal(x) for x in ("NaN", "-NaN", "sNaN", "-0", "1.00", "1E+30", "-Infinity")]),
)
hashable_decimals = st.one_of(st.decimals(allow_nan=False), st.just(decimal.Decimal("NaN")))  # sNaN cannot be hashed
texts = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=20),
    st.lists(st.sampled_from(["a", "é", "\udce9", "\ud800", "✓"]), max_size=6).map("".join),  # lone surrogates
)
scalars = st.one_of(
    st.none(), st.booleans(), big_ints, any_floats, texts, st.binary(max_size=30),
    st.binary(max_size=30).map(bytearray), st.datetimes(timezones=tzinfos, allow_imaginary=True), st.dates(),
    st.times(timezones=tzinfos), st.timedeltas(), decimals, st.uuids(),
    st.complex_numbers(allow_nan=True, allow_infinity=True), paths, ranges,
)
hashable_leaves = st.one_of(
    st.none(), st.booleans(), big_ints, any_floats, texts, st.binary(max_size=8), st.uuids(), st.dates(),
    st.datetimes(timezones=tzinfos), st.timedeltas(), hashable_decimals, st.complex_numbers(), ranges, paths,
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.one_of(st.lists(inner, max_size=3).map(tuple), st.frozensets(inner, max_size=3)),
    max_leaves=6,
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=4).map(tuple),
        st.dictionaries(hashables, inner, max_size=4),  # keys of any hashable type
        st.dictionaries(texts, inner, max_size=4),
        st.sets(hashables, max_size=4),
        st.frozensets(hashables, max_size=4),
    ),
    max_leaves=12,
)


def write_tape(path: Path, results: list[Any]) -> Path:
    """A valid snapshot whose tape answers are ``results`` (codec nodes)."""
    w = SnapshotWriter(path, {"entry": "shop.checkout:charge"}, frame_records=3)
    w.append(Section.ENTRY, ENTRY)
    for i, node in enumerate(results):
        w.append(Section.TAPE, [f"ch{i % 2}", "op", ["t", i], node, None])
    w.append(Section.OUTCOME, OUTCOME)
    w.append(Section.ENVIRONMENT, ENVIRONMENT)
    w.close()
    return path


@props(60)
@given(st.lists(values, min_size=1, max_size=6))
def test_exact_values_survive_a_snapshot_file(vs):
    nodes = []
    for v in vs:
        enc = Encoder(EXACT)
        nodes.append(enc.encode(v))
        assert enc.lossy == [], enc.lossy
    with scratch() as d:
        path = write_tape(d / "v.rsnap", nodes)
        assert validate(path).ok
        with open_snapshot(path) as s:
            assert s.tape_length == len(vs)
            tape = s.tape
            for i, v in enumerate(vs):
                assert same(decode(tape[i].result), v), (v, tape[i].result)
                assert same(decode(s.interaction(i).result), v)
                assert same(decode(s.file.record(Section.TAPE, i)[3]), v)


@props(30)
@given(st.lists(values, min_size=1, max_size=5))
def test_one_encoder_across_tape_records_shares_references(vs):
    """A value set encoded by one encoder (shared ids across records) is decoded by one
    decoder reading the records in order."""
    shared: list[Any] = ["shared"]
    vs = [[v, shared] for v in vs]
    enc = Encoder(EXACT)
    nodes = [enc.encode(v) for v in vs]
    assert enc.lossy == []
    with scratch() as d, open_snapshot(write_tape(d / "v.rsnap", nodes)) as s:
        dec = Decoder()
        out = [dec.decode(i.result) for i in s.tape]
    assert all(same(o, v) for o, v in zip(out, vs, strict=True))
    assert all(o[1] is out[0][1] for o in out)


def test_self_referencing_list_and_shared_list_in_a_dict(tmp_path):
    me: list[Any] = [1, "two"]
    me.append(me)
    shared = [1, 2, 3]
    d = {"a": shared, "b": shared, ("k", 1): [shared]}
    both = [me, d, me]
    path = write_tape(tmp_path / "c.rsnap", [encode(me), encode(d), encode(both)])
    with open_snapshot(path) as s:
        tape = s.tape
    out_me = decode(tape[0].result)
    assert type(out_me) is list and out_me[:2] == [1, "two"] and out_me[2] is out_me
    out_d = decode(tape[1].result)
    assert out_d["a"] == [1, 2, 3]
    assert out_d["a"] is out_d["b"] is out_d[("k", 1)][0]
    out_both = decode(tape[2].result)
    assert out_both[0] is out_both[2] and out_both[0][2] is out_both[0]
    assert out_both[1]["a"] is out_both[1]["b"]


@props(60)
@given(
    kinds=st.lists(st.sampled_from(["list", "dict", "bytearray"]), min_size=1, max_size=6),
    edges=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5), scalars), max_size=14),
)
def test_shared_references_and_cycles_survive_a_snapshot_file(kinds, edges):
    objs: list[Any] = [[] if k == "list" else {} if k == "dict" else bytearray(b"ba") for k in kinds]
    containers = [o for o in objs if not isinstance(o, bytearray)]
    for n, (i, j, leaf) in enumerate(edges):
        if not containers:
            break
        parent, child = containers[i % len(containers)], objs[j % len(objs)]
        if isinstance(parent, list):
            parent.extend([child, leaf])
        else:
            parent[f"k{n}"] = child
            parent[n] = leaf
    root = [*objs, *objs]  # every object at least twice
    enc = Encoder(EXACT)
    node = enc.encode(root)
    assert enc.lossy == []
    with scratch() as d, open_snapshot(write_tape(d / "g.rsnap", [node])) as s:
        out = decode(s.tape[0].result)

    mapping: dict[int, Any] = {}

    def walk(a: Any, b: Any) -> None:
        if type(a) in (list, dict, bytearray):
            if id(a) in mapping:
                assert mapping[id(a)] is b
                return
            mapping[id(a)] = b
            assert type(b) is type(a)
            if type(a) is list:
                assert len(a) == len(b)
                for x, y in zip(a, b, strict=True):
                    walk(x, y)
            elif type(a) is dict:
                assert list(a) == list(b)
                for k in a:
                    walk(a[k], b[k])
            else:
                assert a == b
        else:
            assert same(a, b), (a, b)

    walk(root, out)
    assert len({id(v) for v in mapping.values()}) == len(mapping)  # distinct stay distinct


def test_cycle_through_a_tuple_is_an_opaque_stand_in_after_a_file(tmp_path):
    inner: list[Any] = []
    t = (inner,)
    inner.append(t)
    with open_snapshot(write_tape(tmp_path / "t.rsnap", [encode(t)])) as s:
        out = decode(s.tape[0].result)
    assert type(out) is tuple and type(out[0]) is list and isinstance(out[0][0], Opaque)


# --------------------------------------------------------------------------- display profile

plain_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=600)


@props(80)
@given(s=plain_text, b=st.binary(max_size=300))
def test_display_cuts_strings_and_bytes_keeping_the_true_length(s, b):
    node = encode(s, DISPLAY)
    if len(s) <= DISPLAY.max_str:
        assert node == s
    else:
        assert node == ["S", s[:DISPLAY.max_str], len(s)]
    assert decode(node) == s[:DISPLAY.max_str]
    node = encode(b, DISPLAY)
    if len(b) <= DISPLAY.max_bytes:
        assert node == b
    else:
        assert node == ["B", b[:DISPLAY.max_bytes], len(b)]
    assert encode(s, EXACT) == s and encode(b, EXACT) == b  # the exact profile never cuts


@props(60)
@given(n=st.integers(0, 120), kind=st.sampled_from(["list", "tuple", "set", "frozenset", "dict"]))
def test_display_cuts_containers_keeping_the_true_count(n, kind):
    items = list(range(n))
    v: Any = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}.get(kind, dict.fromkeys)(items)
    node = encode(v, DISPLAY)
    tag = {"list": "l", "tuple": "t", "set": "s", "frozenset": "f", "dict": "d"}[kind]
    assert node[0] == tag
    per_item = 2 if kind == "dict" else 1
    kept = min(n, DISPLAY.max_items)
    if n <= DISPLAY.max_items:
        assert len(node) == 1 + per_item * n
    else:
        assert len(node) == 1 + per_item * kept + 1
        assert node[-1] == ["+", n - kept]
        assert kept + node[-1][1] == n  # the true count
    body = node[1:1 + per_item * kept]
    expected = [x for i in items[:kept] for x in ((i, None) if kind == "dict" else (i,))]
    assert body == expected


@props(40)
@given(depth=st.integers(0, 15), kind=st.sampled_from(["list", "tuple", "dict", "frozenset"]))
def test_display_cuts_deep_nesting(depth, kind):
    v: Any = "bottom"
    wrap = {"list": lambda x: [x], "tuple": lambda x: (x,), "dict": lambda x: {"k": x},
            "frozenset": lambda x: frozenset([x])}[kind]
    for _ in range(depth):
        v = wrap(v)
    node = encode(v, DISPLAY)
    levels = 0
    while isinstance(node, list) and node[0] in ("l", "t", "d", "f"):
        levels += 1
        node = node[-1]
    assert levels == min(depth, DISPLAY.max_depth)
    if depth <= DISPLAY.max_depth:
        assert node == "bottom"
    else:
        assert node[0] == "..." and node[1].startswith("builtins:")


def _walk_nodes(node: Any, depth: int = 0) -> Iterator[tuple[Any, int]]:
    yield node, depth
    if isinstance(node, list) and node and node[0] not in ("S", "B", "+", "..."):
        for child in node[1:]:
            yield from _walk_nodes(child, depth + 1)


display_values = st.recursive(
    st.one_of(st.none(), st.integers(), st.floats(), plain_text, st.binary(max_size=200)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=30), st.lists(inner, max_size=30).map(tuple),
        st.dictionaries(st.one_of(st.integers(), plain_text), inner, max_size=30),
        st.frozensets(st.integers(), max_size=30),
    ),
    max_leaves=60,
)


@props(60)
@given(display_values)
def test_display_nodes_are_bounded(v):
    node = encode(v, DISPLAY)
    pack(node)
    for n, depth in _walk_nodes(node):
        if isinstance(n, str):
            assert len(n) <= DISPLAY.max_str
        elif isinstance(n, bytes):
            assert len(n) <= DISPLAY.max_bytes
        elif isinstance(n, list):
            assert depth <= DISPLAY.max_depth * 2 + 1
            if n[0] in ("l", "t", "s", "f"):
                assert len(n) <= 1 + DISPLAY.max_items + 1
            elif n[0] == "d":
                assert len(n) <= 1 + 2 * DISPLAY.max_items + 1
            elif n[0] in ("S", "B"):
                assert len(n[1]) == (DISPLAY.max_str if n[0] == "S" else DISPLAY.max_bytes) < n[2]


def test_display_cuts_a_long_bytearray():
    """bytearray is bytes for people reading locals: it must be bounded like bytes."""
    v = bytearray(range(256)) * 40
    node = encode(v, DISPLAY)
    assert len(pack(node)) < 4 * DISPLAY.max_bytes, f"{len(pack(node))} bytes kept: {node[:1]}"
    assert len(v) in node or len(v) in node[-1:], node[:1]  # the true length is kept


def test_display_cuts_a_long_string_with_lone_surrogates():
    """A str decoded with surrogateescape (os.fsdecode of a file name) is still a string."""
    v = b"\xe9".decode("utf-8", "surrogateescape") * 5000
    node = encode(v, DISPLAY)
    assert len(pack(node)) < 8 * DISPLAY.max_str, f"{len(pack(node))} bytes kept: {node[:1]}"
    assert len(v) in node, node[:1]  # the true length is kept
