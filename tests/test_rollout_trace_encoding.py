"""Trace lines are byte-identical to ``json.dumps(record, separators=(",", ":"), default=str)``.

The trace writer encodes with orjson where that provably gives the same bytes and with
``json`` otherwise; these tests pin the equality on real records, on random nested plain
values (hypothesis) and on each value where the two libraries differ (non-ASCII text, NaN,
tiny and huge floats, enums, numpy scalars, dates, non-string keys, big ints, subclasses).

Step records of the embedded world skip the walk over their values (``PlainRecord``): the
world's exact value types are pinned here, and records whose floats orjson would write
differently must not be vouched for (a shortcut that vouched for them fails these tests).
"""

from __future__ import annotations

import datetime as dt
import enum
import json
import random
import struct
import math
from pathlib import Path

import asyncio
import dataclasses
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from crafter_tui.config import AppConfig
from crafter_tui.agents.base import AgentDecision
from crafter_tui.agents.prompting import interact_message
from crafter_tui.rollout.episode import EpisodeJob, _turn_record, step_record
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.rollouts import run_rollout
from crafter_tui.traces.jsonl import AsciiPlainRecord, JsonlAppender, PlainRecord, encode_json_line, iter_jsonl
from crafter_tui.world.env import CrafterWorld, StepOutcome
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS, ITEMS


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


#: Floats orjson writes differently from ``json`` (NaN/Infinity, exponents) and their neighbours.
AWKWARD_FLOATS = [float("nan"), float("inf"), -float("inf"), 1e-5, -1e-7, 5e-324, 1e16, 1e300, 9.99e-5]


def test_plain_records_encode_exactly_as_json() -> None:
    records = [
        PlainRecord(a=1, b="x", c=[1, 2, (3, 4)], d={"k": [0.5, None, True]}, e=0.0, f=-0.0, g=1e-4),
        PlainRecord(text="caf\u00e9 \x7f tab\t", n=2**64, nested={"deep": [{"x": "\u2603"}]}),  # json's path
        PlainRecord(),
    ]
    for record in records:
        assert encode_json_line(record) == reference(record)
        copy = pickle.loads(pickle.dumps(record))  # worker processes ship records pickled
        assert type(copy) is PlainRecord and copy == record


def _played_outcomes() -> list[tuple[StepOutcome, int]]:
    """(outcome, action) of every step of episodes that sleep, fight, craft, die and run out of steps."""
    rng = random.Random(3)
    played = []
    for seed, difficulty, steps in ((0, "normal", 400), (1, "hard", 400), (2, "peaceful", 150), (4, "easy", 300)):
        world = CrafterWorld(difficulty, max_steps=steps)
        world.reset(seed)
        world.player.inventory.update(wood=9, stone=9, coal=9, iron=9, sapling=9)
        while not world.done:
            action = rng.randrange(len(ACTIONS))
            played.append((world.step(action), action))
    return played


PLAYED = _played_outcomes()


def test_the_embedded_world_hands_step_records_exactly_the_types_they_are_vouched_for_by() -> None:
    """``step_record(typed=True)`` skips the value walk on the strength of these exact types."""
    assert any(o.done for o, _ in PLAYED) and any(o.new_achievements for o, _ in PLAYED)
    assert any(o.state.sleeping for o, _ in PLAYED) and any(o.reward for o, _ in PLAYED)
    for outcome, _ in PLAYED:
        state = outcome.state
        assert type(outcome.reward) is float and type(outcome.done) is bool
        assert type(outcome.new_achievements) is list and all(type(n) is str for n in outcome.new_achievements)
        assert type(state.step) is int and type(state.sleeping) is bool and type(state.daylight) is float
        for pair in (state.position, state.facing):
            assert type(pair) is tuple and [type(v) for v in pair] == [int, int]
        assert all(type(state.inventory[name]) is int for name in ITEMS)


def test_vouched_step_records_encode_exactly_as_json() -> None:
    job = EpisodeJob(3, 17, 1)
    for outcome, action in PLAYED:
        record = step_record(job, 5, action, outcome, typed=True)
        assert type(record) is AsciiPlainRecord
        assert record == step_record(job, 5, action, outcome)  # the same content as the unvouched record
        assert encode_json_line(record) == reference(record)


def test_step_records_whose_floats_orjson_writes_differently_are_not_vouched_for() -> None:
    outcome, action = PLAYED[10]
    job = EpisodeJob(0, 0, 0)
    for value in AWKWARD_FLOATS:
        record = step_record(job, 0, action, dataclasses.replace(outcome, reward=value), typed=True)
        assert type(record) is dict, value  # the reward is written as it is
        assert encode_json_line(record) == reference(record), value
        state = dataclasses.replace(outcome.state, daylight=value)
        record = step_record(job, 0, action, dataclasses.replace(outcome, state=state), typed=True)
        rounded = record["daylight"]  # tiny values round to 0.0, which both write alike
        assert (type(record) is AsciiPlainRecord) == (rounded == 0.0 or 1e-4 <= abs(rounded) < 1e16), value
        assert encode_json_line(record) == reference(record), value
    numpy_reward = dataclasses.replace(outcome, reward=np.float64(0.5))  # a float subclass: json's path
    assert type(step_record(job, 0, action, numpy_reward, typed=True)) is dict


def _strings(value) -> list[str]:
    if type(value) is str:
        return [value]
    if type(value) is dict:
        return [*value] + [s for v in value.values() for s in _strings(v)]
    if type(value) in (list, tuple):
        return [s for v in value for s in _strings(v)]
    return []


def test_the_strings_of_vouched_step_records_are_printable_ascii() -> None:
    """``AsciiPlainRecord`` skips the output check on the strength of this: names and map symbols only."""
    job = EpisodeJob(0, 0, 0)
    assert all(set(o.new_achievements) <= set(ACHIEVEMENTS) for o, _ in PLAYED)
    names = [*ACTIONS, *ACHIEVEMENTS]
    assert all(name.isascii() and name.isprintable() for name in names)
    for outcome, action in PLAYED:
        record = step_record(job, 0, action, outcome, typed=True)
        strings = _strings(dict(record))
        assert strings and all(s.isascii() and s.isprintable() for s in strings), record


def test_an_ascii_vouched_record_with_other_text_would_be_written_differently() -> None:
    """Why the vouching matters: an ``AsciiPlainRecord``'s orjson line is written unchecked."""
    for text in ("caf\u00e9", "del \x7f", "\u2603"):
        assert encode_json_line(AsciiPlainRecord(x=text)) != reference({"x": text})
        assert encode_json_line(PlainRecord(x=text)) == reference({"x": text})
    refused = AsciiPlainRecord(k={1: 2}, n=2**64)  # what orjson refuses still goes through json
    assert encode_json_line(refused) == reference(refused)


def _decision(**changes) -> AgentDecision:
    base = AgentDecision(actions=["do", "noop"], reasoning="I face the tree.",
                         assistant_message=interact_message(["do", "noop"], "I face the tree.", "call_1_2"),
                         latency_ms=12.5, prompt_tokens=3, completion_tokens=4, extra={"goal": "wood"})
    return dataclasses.replace(base, **changes)


def test_vouched_turn_records_walk_the_agent_parts() -> None:
    """The loop's own fields are vouched for; whatever the agent hands over is still checked."""
    job, text = EpisodeJob(2, 9, 0), "Step 5/300, turn 5, day.\nMap:\n. . @"
    plain = _turn_record(job, 5, 7, text, _decision(), "ok", 1.0, ["collect_wood"], True)
    assert type(plain) is PlainRecord
    assert plain == _turn_record(job, 5, 7, text, _decision(), "ok", 1.0, ["collect_wood"])
    assert encode_json_line(plain) == reference(plain)
    awkward = [
        _decision(extra={"goal": Colour.RED}), _decision(extra={"score": 1e-5}), _decision(raw=Name("raw")),
        _decision(reasoning="caf\u00e9"), _decision(latency_ms=float("nan")), _decision(latency_ms=np.float64(2.0)),
        _decision(prompt_tokens=np.int64(3)), _decision(actions=["do", Name("noop")]), _decision(error=Colour.RED),
        _decision(assistant_message={"role": "assistant", "content": float("inf")}),
    ]
    for decision in awkward:
        record = _turn_record(job, 5, 7, text, decision, "ok", 1.0, [], True)
        if decision.reasoning == "I face the tree.":
            assert type(record) is dict, decision  # not vouched for: the agent's part is not plain
        assert encode_json_line(record) == reference(record), decision
    for reward in AWKWARD_FLOATS:
        record = _turn_record(job, 5, 7, text, _decision(), "ok", reward, [], True)
        assert encode_json_line(record) == reference(record), reward
    assert type(_turn_record(job, 5, 7, Name(text), _decision(), "ok", 1.0, [], True)) is dict


def test_a_vouched_record_with_such_a_float_would_be_written_differently() -> None:
    """Why the float checks matter: the vouched path writes orjson's bytes as they are."""
    assert any(encode_json_line(PlainRecord(x=v)) != reference({"x": v}) for v in AWKWARD_FLOATS)


def test_every_line_of_a_real_run_is_what_json_writes(tmp_path: Path) -> None:
    """Each line equals ``json``'s encoding of what it holds (json's output round-trips exactly)."""
    for agent, observation in (("scripted", "full"), ("random", "compact")):
        spec = RolloutSpec(agent=agent, model=agent, episodes=2, max_steps=60, concurrency=2,
                           observation=observation, out_dir=tmp_path, run_id=f"{agent}-run")
        asyncio.run(run_rollout(spec, AppConfig()))
        for name in ("steps.jsonl", "turns.jsonl", "episodes.jsonl"):
            lines = (tmp_path / f"{agent}-run" / name).read_bytes().splitlines(keepends=True)
            assert lines
            for line in lines:
                assert line == reference(json.loads(line))
