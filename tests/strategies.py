"""Hypothesis strategies and helpers for Python values the codec stores (codec and format tests)."""

from __future__ import annotations

import datetime as dt
import pathlib
import zoneinfo
from typing import Any

from hypothesis import strategies as st

INT64_MIN, UINT64_MAX = -(2**63), 2**64 - 1
AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")

fixed_offsets = st.timedeltas(min_value=-dt.timedelta(hours=23, minutes=59, seconds=59),
                              max_value=dt.timedelta(hours=23, minutes=59, seconds=59))
tzinfos = st.one_of(
    st.none(), st.just(dt.UTC), st.just(AMSTERDAM), st.builds(dt.timezone, fixed_offsets),
    st.builds(dt.timezone, fixed_offsets, st.sampled_from(["CET", "X", "zone ✓"])),
)
# Ints inside and far outside msgpack's 64-bit range, with the edges.
big_ints = st.one_of(
    st.integers(), st.integers(min_value=UINT64_MAX - 3, max_value=2**200),
    st.integers(min_value=-(2**200), max_value=INT64_MIN + 3),
    st.sampled_from([2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 10**40, -(10**40)]),
)
path_text = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20)
paths = st.one_of(
    st.builds(pathlib.PurePosixPath, path_text),
    st.builds(pathlib.PureWindowsPath, path_text),
    st.builds(pathlib.Path, path_text),
)
ranges = st.builds(range, big_ints, big_ints, big_ints.filter(lambda x: x != 0))


def real_type(v: Any) -> type:
    """type(v), seen through replay's capture, which swaps datetime.datetime/date process-wide
    for subclasses once installed (another test may have installed it). Looked up at call time:
    the capture also rebinds module globals that hold the original classes."""
    real_datetime, real_date = type(dt.datetime.min), type(dt.date.min)
    if isinstance(v, real_datetime):
        return real_datetime
    if isinstance(v, real_date):
        return real_date
    return type(v)
