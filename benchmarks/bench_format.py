"""Throughput, size and random access of the .rsnap file format, against bare msgpack + zstd.

The data are N small, realistic TAPE records, a seeded mix of three kinds::

    ["clock", "time.time", ["t"], 1700000000.25 + i, None]
    ["random", "random.random", ["t"], [i & 0xffffffff, 7], None]
    ["env", "environ.get", ["t", "HOME"], "/home/user", None]

For the format (``replay.snapshot``) this measures:

* write: records/s of ``SnapshotWriter.write_section`` and, separately, of one
  ``SnapshotWriter.append`` per record; both include the constructor and ``close()``
  (index, trailer, fsync, rename, directory fsync), whose share is printed too;
* read: records/s of ``SnapshotFile.iter_records`` over the whole section, a fresh
  ``SnapshotFile`` each repeat (records are consumed by ``deque(maxlen=0)``, for both);
  a diagnostic row repeats the read with the cyclic garbage collector disabled;
* size: bytes per record on disk and the compression ratio (packed msgpack bytes / file);
* random access on a large file: a fresh ``SnapshotFile`` + ``record(TAPE, n)`` for random
  n (median and p95), and the time to open only.

The baseline is what one would write with the two libraries alone: each record packed by
one ``msgpack.Packer``, the bytes joined into chunks cut by the same rule as the format's
frames (256 KiB or 65,536 records), each chunk compressed by
``zstandard.ZstdCompressor(level=3, write_checksum=True)`` and written after a 4-byte length
prefix, then flush + fsync (no header, index, trailer, rename or directory fsync). It is
read back chunk by chunk (decompress, then iterate a ``msgpack.Unpacker`` with default
options). For random access the baseline keeps the chunk offsets and first-record numbers
in memory, as its writer returned them; that is what a reader would need, and loading it is
not counted, so the baseline's open and access times are a lower bound.

Each repeat runs ours and the baseline back to back, in swapped order every other repeat,
so machine noise hits both; the tables print medians of the times, and the ours/baseline
column is the median of the per-repeat ratios (for random access: the ratio of the
medians). The records are built once and then ``gc.freeze()``-d, so the collector does not
walk them while the code under test runs (collection stays enabled).
Files live in a temporary directory (``--dir`` picks its parent) that is removed at the
end; reads hit the page cache, since every file has just been written.

Usage::

    python benchmarks/bench_format.py [--records N] [--repeats R] [--quick]
                                      [--large-records M] [--picks P] [--dir DIR]
                                      [--profile]

``--quick`` is 100,000 records and 2 repeats. ``--large-records`` writes a separate file
of M records for the random-access test (default: the N-record file of the write test).
``--profile`` also runs cProfile over one write_section, one full read and the random
picks, and prints the functions with the most own time. Wall-clock numbers move with the
machine's load: compare the ours/baseline ratios rather than absolute values.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import cProfile
import gc
import io
import os
import pstats
import random
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import msgpack
import zstandard

from replay.snapshot import Section, SnapshotFile, SnapshotWriter
from replay.snapshot import format as fmt

TAPE = Section.TAPE
HEADER = {"entry": "bench:main", "entry_kind": "function", "outcome": "return", "replayable": True}
LENGTH = struct.Struct("<I")  # baseline chunk prefix: compressed size

TARGET_WRITE = 1_000_000  # records/s
TARGET_READ = 2_000_000  # records/s
TARGET_ACCESS_MS = 10.0
TARGET_RATIO = 1.3  # ours / baseline, time


# ------------------------------------------------------------------------------ data

def make_record(i: int, kind: int) -> list[Any]:
    if kind == 0:
        return ["clock", "time.time", ["t"], 1700000000.25 + i, None]
    if kind == 1:
        return ["random", "random.random", ["t"], [i & 0xFFFFFFFF, 7], None]
    return ["env", "environ.get", ["t", "HOME"], "/home/user", None]


def gen_records(n: int, seed: int = 1234) -> Iterator[list[Any]]:
    rng = random.Random(seed)
    for i in range(n):
        yield make_record(i, rng.randrange(3))


# ------------------------------------------------------------------------------ ours

def ours_write_section(path: str, records: Iterable[Any]) -> float:
    """Write with write_section; returns the seconds spent in close()."""
    w = SnapshotWriter(path, HEADER)
    w.write_section(TAPE, records)
    t = time.perf_counter()
    w.close()
    return time.perf_counter() - t


def ours_append(path: str, records: Iterable[Any]) -> float:
    w = SnapshotWriter(path, HEADER)
    append = w.append
    for r in records:
        append(TAPE, r)
    t = time.perf_counter()
    w.close()
    return time.perf_counter() - t


def ours_read(path: str) -> None:
    with SnapshotFile(path) as f:
        collections.deque(f.iter_records(TAPE), maxlen=0)


def ours_open(path: str) -> None:
    SnapshotFile(path).close()


def ours_access(path: str, n: int) -> Any:
    with SnapshotFile(path) as f:
        return f.record(TAPE, n)


# ------------------------------------------------------------------------------ baseline

class BaseIndex:
    """What a baseline reader needs for random access (kept in memory, never read)."""

    def __init__(self) -> None:
        self.offsets: list[int] = []  # file offset of each chunk's length prefix
        self.starts: list[int] = []  # number of each chunk's first record
        self.raw_bytes = 0  # packed msgpack bytes, before compression
        self.records = 0


def base_write(path: str, records: Iterable[Any]) -> BaseIndex:
    idx = BaseIndex()
    pack = msgpack.Packer(use_bin_type=True).pack
    compress = zstandard.ZstdCompressor(level=3, write_checksum=True).compress
    limit_bytes, limit_records = fmt.FRAME_TARGET_BYTES, fmt.FRAME_TARGET_RECORDS
    offset = 0
    with open(path, "wb") as f:
        def flush(chunks: list[bytes]) -> None:
            nonlocal offset
            content = b"".join(chunks)
            payload = compress(content)
            idx.offsets.append(offset)
            idx.starts.append(idx.records)
            f.write(LENGTH.pack(len(payload)))
            f.write(payload)
            offset += LENGTH.size + len(payload)
            idx.raw_bytes += len(content)
            idx.records += len(chunks)

        chunks: list[bytes] = []
        size = 0
        for r in records:
            data = pack(r)
            chunks.append(data)
            size += len(data)
            if size >= limit_bytes or len(chunks) >= limit_records:
                flush(chunks)
                chunks = []
                size = 0
        if chunks:
            flush(chunks)
        f.flush()
        os.fsync(f.fileno())
    return idx


def base_iter(path: str) -> Iterator[Any]:
    dctx = zstandard.ZstdDecompressor()
    with open(path, "rb") as f:
        read = f.read
        while head := read(LENGTH.size):
            (size,) = LENGTH.unpack(head)
            u = msgpack.Unpacker()
            u.feed(dctx.decompress(read(size)))
            yield from u


def base_read(path: str) -> None:
    collections.deque(base_iter(path), maxlen=0)


def base_open(path: str) -> None:
    open(path, "rb").close()  # noqa: SIM115


def base_access(path: str, idx: BaseIndex, n: int) -> Any:
    k = bisect.bisect_right(idx.starts, n) - 1
    with open(path, "rb") as f:
        f.seek(idx.offsets[k])
        (size,) = LENGTH.unpack(f.read(LENGTH.size))
        data = zstandard.ZstdDecompressor().decompress(f.read(size))
    u = msgpack.Unpacker()
    u.feed(data)
    for _ in range(n - idx.starts[k]):
        u.skip()
    return u.unpack()


# ------------------------------------------------------------------------------ harness

def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    result = fn()
    return time.perf_counter() - t, result


def paired(ours: list[float], base: list[float]) -> float:
    """Median of the per-repeat ratios ours/baseline (each pair ran back to back)."""
    return statistics.median(o / b for o, b in zip(ours, base, strict=True))


def p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def remove(path: str) -> None:
    if os.path.exists(path):
        os.unlink(path)


def write_large(directory: str, n: int) -> tuple[str, str, BaseIndex]:
    ours = os.path.join(directory, f"large-{n}.rsnap")
    base = os.path.join(directory, f"large-{n}.base")
    ours_write_section(ours, gen_records(n))
    idx = base_write(base, gen_records(n))
    return ours, base, idx


def profile(label: str, fn: Callable[[], Any], top: int = 12) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    lines = [ln for ln in out.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    print(f"\n-- cProfile: {label} (top {top} by own time; cProfile inflates per-call costs)")
    print("\n".join([lines[1].strip()] + lines[start:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="TAPE records per file (default 1,000,000)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats per measurement; medians are printed (default 5)")
    parser.add_argument("--quick", action="store_true", help="100,000 records, 2 repeats")
    parser.add_argument("--large-records", type=int, default=None,
                        help="records in the random-access file (default: the --records file)")
    parser.add_argument("--picks", type=int, default=200, help="random records to open and read (default 200)")
    parser.add_argument("--dir", default=None, help="parent of the temporary directory (default: the system's)")
    parser.add_argument("--profile", action="store_true", help="also print cProfile tables of write, read and access")
    args = parser.parse_args()
    if args.quick:
        args.records, args.repeats = 100_000, 2
    n, repeats = args.records, args.repeats
    if n < 1 or repeats < 1 or args.picks < 2:
        parser.error("--records and --repeats must be positive, --picks at least 2")

    records = list(gen_records(n))
    gc.collect()
    gc.freeze()

    with tempfile.TemporaryDirectory(prefix="bench_format-", dir=args.dir) as tmp:
        ours_path = os.path.join(tmp, "ours.rsnap")
        base_path = os.path.join(tmp, "base.bin")
        append_path = os.path.join(tmp, "append.rsnap")
        t_ws: list[float] = []
        t_ws_close: list[float] = []
        t_ap: list[float] = []
        t_ap_close: list[float] = []
        t_bw: list[float] = []
        t_or: list[float] = []
        t_br: list[float] = []
        t_or_nogc: list[float] = []
        t_br_nogc: list[float] = []
        base_idx = BaseIndex()

        def write_ours() -> None:
            remove(ours_path)
            elapsed, close_s = timed(lambda: ours_write_section(ours_path, records))
            t_ws.append(elapsed)
            t_ws_close.append(close_s)

        def write_base() -> None:
            nonlocal base_idx
            remove(base_path)
            elapsed, base_idx = timed(lambda: base_write(base_path, records))
            t_bw.append(elapsed)

        def write_append() -> None:
            elapsed, close_s = timed(lambda: ours_append(append_path, records))
            t_ap.append(elapsed)
            t_ap_close.append(close_s)
            remove(append_path)

        def reads_nogc() -> None:
            gc.disable()  # diagnostic: how much of the read is the cyclic garbage collector
            try:
                t_or_nogc.append(timed(lambda: ours_read(ours_path))[0])
                t_br_nogc.append(timed(lambda: base_read(base_path))[0])
            finally:
                gc.enable()

        for i in range(repeats):
            # Writes first (the reads need the files); ours and the baseline swap places
            # every other repeat so a burst of machine noise does not always hit one side.
            steps: list[Callable[[], Any]] = [write_ours, write_append, write_base]
            for step in steps if i % 2 == 0 else steps[::-1]:
                step()
            steps = [lambda: t_or.append(timed(lambda: ours_read(ours_path))[0]),
                     lambda: t_br.append(timed(lambda: base_read(base_path))[0]),
                     reads_nogc]
            for step in steps if i % 2 == 0 else steps[::-1]:
                step()

        # Correctness, untimed: both files hold the records, in order.
        with SnapshotFile(ours_path) as f:
            assert f.count(TAPE) == n and f.record(TAPE, 0) == records[0] and f.record(TAPE, -1) == records[-1]
            frames = f.frame_count
        assert base_idx.records == n and sum(1 for _ in base_iter(base_path)) == n
        ours_size = os.path.getsize(ours_path)
        base_size = os.path.getsize(base_path)
        raw = base_idx.raw_bytes

        # Random access on the large file.
        if args.large_records in (None, n):
            large_n, large_ours, large_base, large_idx = n, ours_path, base_path, base_idx
            large_records: list[Any] | None = records
            large_write = None
        else:
            large_n = args.large_records
            large_write, (large_ours, large_base, large_idx) = timed(lambda: write_large(tmp, large_n))
            large_records = None
        rng = random.Random(42)
        picks = [rng.randrange(large_n) for _ in range(args.picks)]
        o_open: list[float] = []
        b_open: list[float] = []
        o_acc: list[float] = []
        b_acc: list[float] = []
        for k in picks:
            o_open.append(timed(lambda: ours_open(large_ours))[0])
            b_open.append(timed(lambda: base_open(large_base))[0])
            elapsed, got_o = timed(lambda: ours_access(large_ours, k))  # noqa: B023
            o_acc.append(elapsed)
            elapsed, got_b = timed(lambda: base_access(large_base, large_idx, k))  # noqa: B023
            b_acc.append(elapsed)
            assert got_o == got_b and (large_records is None or got_o == large_records[k])
        large_size = os.path.getsize(large_ours)
        with SnapshotFile(large_ours) as f:
            large_frames = f.frame_count

        # ------------------------------------------------------------------ report
        med = statistics.median
        ws, ap, bw, rd, br = med(t_ws), med(t_ap), med(t_bw), med(t_or), med(t_br)
        r_ws, r_ap, r_rd = paired(t_ws, t_bw), paired(t_ap, t_bw), paired(t_or, t_br)
        print(f".rsnap format vs bare msgpack + zstandard: {n:,} TAPE records, median of {repeats} repeats")
        print(f"Python {sys.version.split()[0]}, msgpack {'.'.join(map(str, msgpack.version))}, "
              f"zstandard {zstandard.__version__} ({zstandard.backend}), zstd level 3, "
              f"frames {fmt.FRAME_TARGET_BYTES >> 10} KiB / {fmt.FRAME_TARGET_RECORDS:,} records, {os.cpu_count()} CPUs")
        print()
        print(f"{'throughput':34} {'ours s':>8} {'ours rec/s':>12} {'base s':>8} {'base rec/s':>12} {'ours/base':>10}")
        print(f"{'write: write_section + close':34} {ws:8.3f} {rate(n, ws):>12} {bw:8.3f} {rate(n, bw):>12} {r_ws:9.2f}x")
        print(f"{'write: append per record + close':34} {ap:8.3f} {rate(n, ap):>12} {bw:8.3f} {rate(n, bw):>12} {r_ap:9.2f}x")
        print(f"{'read: iter_records, fresh open':34} {rd:8.3f} {rate(n, rd):>12} {br:8.3f} {rate(n, br):>12} {r_rd:9.2f}x")
        rg, bg = med(t_or_nogc), med(t_br_nogc)
        print(f"{'read, gc disabled (diagnostic)':34} {rg:8.3f} {rate(n, rg):>12} {bg:8.3f} {rate(n, bg):>12} {paired(t_or_nogc, t_br_nogc):9.2f}x")
        print(f"  close() (index, fsync, rename, dir fsync): {med(t_ws_close) * 1e3:.1f} ms after write_section, "
              f"{med(t_ap_close) * 1e3:.1f} ms after append; per record: write_section "
              f"{ws / n * 1e9:.0f} ns, append {ap / n * 1e9:.0f} ns, read {rd / n * 1e9:.0f} ns "
              f"(baseline {bw / n * 1e9:.0f} / {br / n * 1e9:.0f} ns)")
        print()
        print(f"{'size':34} {'ours':>12} {'baseline':>12}")
        print(f"{'file bytes':34} {ours_size:>12,} {base_size:>12,}")
        print(f"{'bytes per record':34} {ours_size / n:>12.2f} {base_size / n:>12.2f}")
        print(f"{'compression ratio (msgpack/file)':34} {raw / ours_size:>11.1f}x {raw / base_size:>11.1f}x")
        print(f"{'frames / chunks':34} {frames:>12,} {len(base_idx.offsets):>12,}")
        print(f"  packed msgpack: {raw:,} bytes ({raw / n:.1f} per record)")
        print()
        made = "" if large_write is None else f", written in {large_write:.1f} s (ours + baseline)"
        print(f"random access: {large_n:,}-record file ({large_size:,} bytes, {large_frames:,} frames{made}), "
              f"{len(picks)} random picks, each a fresh open")
        print(f"{'ms':34} {'ours med':>9} {'ours p95':>9} {'base med':>9} {'base p95':>9} {'ours/base':>10}")
        for label, o, b in (("open only", o_open, b_open), ("open + record(TAPE, n)", o_acc, b_acc)):
            print(f"{label:34} {med(o) * 1e3:9.3f} {p95(o) * 1e3:9.3f} {med(b) * 1e3:9.3f} {p95(b) * 1e3:9.3f} "
                  f"{med(o) / med(b):9.2f}x")
        print("  baseline open = open() + close() with its chunk index already in memory (a lower bound)")
        print()
        checks = [
            (f"write_section >= {TARGET_WRITE:,} rec/s", rate(n, ws) + " rec/s", n / ws >= TARGET_WRITE),
            (f"append >= {TARGET_WRITE:,} rec/s", rate(n, ap) + " rec/s", n / ap >= TARGET_WRITE),
            (f"read >= {TARGET_READ:,} rec/s", rate(n, rd) + " rec/s", n / rd >= TARGET_READ),
            (f"random access p95 < {TARGET_ACCESS_MS:g} ms", f"{p95(o_acc) * 1e3:.2f} ms", p95(o_acc) * 1e3 < TARGET_ACCESS_MS),
            (f"write_section time <= {TARGET_RATIO}x baseline", f"{r_ws:.2f}x", r_ws <= TARGET_RATIO),
            (f"append time <= {TARGET_RATIO}x baseline", f"{r_ap:.2f}x", r_ap <= TARGET_RATIO),
            (f"read time <= {TARGET_RATIO}x baseline", f"{r_rd:.2f}x", r_rd <= TARGET_RATIO),
        ]
        print(f"{'target':40} {'measured':>18}  verdict")
        for label, value, ok in checks:
            print(f"{label:40} {value:>18}  {verdict(ok)}")

        if args.profile:
            prof_path = os.path.join(tmp, "profile.rsnap")
            profile(f"write_section + close, {n:,} records", lambda: ours_write_section(prof_path, records))
            profile(f"iter_records, {n:,} records", lambda: ours_read(prof_path))
            profile(f"{len(picks)} x open + record(TAPE, n), {large_n:,}-record file",
                    lambda: [ours_access(large_ours, k) for k in picks])


if __name__ == "__main__":
    main()
