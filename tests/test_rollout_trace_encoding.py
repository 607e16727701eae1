"""Trace lines are byte-identical to ``json.dumps(record, separators=(",", ":"), default=str)``.

The trace writer encodes with orjson where that provably gives the same bytes and with
``json`` otherwise; these tests pin the equality on real records, on random nested plain
values (hypothesis) and on each value where the two libraries differ (non-ASCII text, NaN,
tiny and huge floats, enums, numpy scalars, dates, non-string keys, big ints, subclasses).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import random
import struct
import math
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from crafter_tui.traces.jsonl import JsonlAppender, encode_json_line, iter_jsonl


def reference(record: dict) -> bytes:
    return (json.dumps(record, separators=(",", ":"), default=str) + "\n").encode("utf-8")


class Colour(enum.Enum):
    RED = 1


class Size(enum.IntEnum):
    BIG = 3


class Name(str):
    pass


def test_values_where_orjson_and_json_differ_are_encoded_as_json_does() -> None:
    awkward = [
        "caf\u00e9", "\u2603 snow", "\ud83d\ude00", "tab\tnew\nline\r\x00\x1f\x7f quote\" back\\ slash/",
        float("nan"), float("inf"), -float("inf"), 1e-5, 1e-7, 1e16, 1e300, 5e-324, -0.0, 0.0, 1e-4, 9.99e15,
        Colour.RED, Size.BIG, Name("sub"), np.float64(0.25), np.int64(3), np.float32(1e-6),
        dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc), dt.date(2026, 1, 2), 2**64, -(2**63) - 1, 2**63 - 1,
        True, False, None, (1, 2), [], {}, Path("/tmp/x"),
    ]
    for value in awkward:
        for record in ({"v": value}, {"nested": {"list": [value, {"k": value}]}}, {"t": (value, 1)}):
            assert encode_json_line(record) == reference(record), repr(value)
    for keyed in ({1: "a"}, {"a": {2: 3}}, {None: 1}, {True: 0}, {1.5: 2}, {Name("k"): 1}):
        assert encode_json_line(keyed) == reference(keyed)


def test_floats_in_the_fast_range_are_written_as_repr() -> None:
    rng = random.Random(7)
    for _ in range(30_000):
        x = struct.unpack("d", rng.getrandbits(64).to_bytes(8, "little"))[0]
        if math.isfinite(x):
            assert encode_json_line({"x": x}) == reference({"x": x}), repr(x)
        y = round(rng.uniform(-50, 50), rng.randrange(0, 7))
        assert encode_json_line({"y": y}) == reference({"y": y}), repr(y)
    for k in range(-20_000, 20_000):
        assert encode_json_line({"r": k / 10_000}) == reference({"r": k / 10_000})


_plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _plain_values, max_size=6))
def test_random_records_encode_exactly_as_json(record: dict) -> None:
    assert encode_json_line(record) == reference(record)


def test_each_record_is_in_the_file_when_write_returns(tmp_path: Path) -> None:
    """Unbuffered: a process killed right after write() (no close, no flush) has lost nothing."""
    path = tmp_path / "steps.jsonl"
    appender = JsonlAppender(path)
    records = [{"step": i, "text": "\u00e9" * i, "reward": 0.1 * i} for i in range(5)]
    for number, record in enumerate(records, start=1):
        appender.write(record)
        assert path.read_bytes() == b"".join(reference(r) for r in records[:number])
    assert list(iter_jsonl(path)) == json.loads("[" + ",".join(json.dumps(r) for r in records) + "]")
    appender.close()


def test_an_appender_reopening_a_torn_file_starts_on_a_fresh_line(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":')
    appender = JsonlAppender(path)
    appender.write({"c": 2})
    appender.close()
    assert path.read_bytes() == b'{"a":1}\n{"b":\n{"c":2}\n'
    assert [r for r in iter_jsonl(path)] == [{"a": 1}, {"c": 2}]
