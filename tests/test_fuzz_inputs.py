"""Fuzzing the places untrusted input enters (issue 23), for the one rule: every bad input is a clear
one-line error (or a reported, skipped line), never an exception escaping as a traceback.

Covered: the trace reader (``iter_jsonl``, the Arrow loader, a whole ``TraceStore`` over fuzzed files),
the dataset validator, the config loader, and the env service's request parsing (both step paths).
Example counts are bounded so the module runs in seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crafter_tui.config import load_config, read_toml
from crafter_tui.dataset.validate import validate_file
from crafter_tui.errors import ConfigError, UserError
from crafter_tui.servers.env_fast import parse_fast_step
from crafter_tui.rollout.env_models import InitializeRequest, StepRequest, TerminateRequest
from crafter_tui.servers.env_server import ServiceError, parse_body
from crafter_tui.traces.jsonl import iter_jsonl
from crafter_tui.traces.loader import EPISODES, STEPS, TURNS, parse_block
from crafter_tui.traces.store import TraceStore
from tests.trace_builders import small_store

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)
#: deep nesting beyond every parser's comfort, as arrays, objects or a mix
deep = st.builds(lambda n, kind: (kind[0] * n + kind[1] * n).encode(), st.integers(50, 5000),
                 st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"a":', "}]")]))
#: a real record with one field replaced by something hostile
REAL = json.loads((small_store(Path(__import__("tempfile").mkdtemp())) / "run-a" / "turns.jsonl")
                  .read_text().splitlines()[0])
mutated = st.builds(lambda key, value: json.dumps({**REAL, key: value}).encode(),
                    st.sampled_from(sorted(REAL)), json_values)
lines = (st.binary(max_size=60).filter(lambda b: b"\n" not in b) | deep | mutated
         | json_values.map(lambda v: json.dumps(v).encode()))


def _one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message


@FUZZ
@given(block=st.lists(lines, min_size=1, max_size=5))
def test_trace_loader_keeps_or_reports_every_line(tmp_path: Path, block: list[bytes]) -> None:
    data = b"\n".join(block) + b"\n"
    for kind in (EPISODES, TURNS, STEPS):
        result = parse_block(tmp_path / "f.jsonl", data, 1, kind)
        kept = result.table.num_rows if result.table is not None else 0
        blank = sum(1 for line in block if not line.strip())
        assert kept + len(result.problems) + blank == len(block)
        for problem in result.problems:
            _one_line(str(problem))


@FUZZ
@given(block=st.lists(lines, min_size=1, max_size=5))
def test_iter_jsonl_never_raises(tmp_path: Path, block: list[bytes]) -> None:
    path = tmp_path / "f.jsonl"
    path.write_bytes(b"\n".join(block) + b"\n")
    problems: list = []
    values = list(iter_jsonl(path, problems=problems))
    assert all(isinstance(value, dict) for value in values)
    for problem in problems:
        _one_line(str(problem))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(st.sampled_from(["episodes.jsonl", "turns.jsonl", "steps.jsonl", "run.json"]),
                             st.lists(lines, min_size=1, max_size=3), min_size=1, max_size=3))
def test_a_store_over_fuzzed_files_opens_and_answers(tmp_path_factory: pytest.TempPathFactory,
                                                     extra: dict[str, list[bytes]]) -> None:
    root = small_store(tmp_path_factory.mktemp("fuzz"))
    for name, block in extra.items():
        path = root / "run-a" / name
        with path.open("ab" if name != "run.json" else "wb") as handle:
            handle.write(b"\n".join(block) + b"\n")
    store = TraceStore.open(root, turns=True)
    try:
        assert store.cursor().execute("SELECT count(*) FROM episodes").fetchone()[0] >= 3  # run-b is intact
        for problem in store.problems:
            _one_line(str(problem))
    finally:
        store.close()


@FUZZ
@given(block=st.lists(lines | st.builds(lambda m: json.dumps({"messages": m}).encode(),
                                        st.lists(json_values, max_size=3)), min_size=0, max_size=4))
def test_validator_reports_every_bad_line(tmp_path: Path, block: list[bytes]) -> None:
    path = tmp_path / "v.jsonl"
    path.write_bytes(b"\n".join(block) + b"\n" if block else b"")
    report = validate_file(path)
    if not block:
        assert not report.ok
    for issue in report.errors + report.warnings:
        _one_line(issue.message)


toml_text = st.text(max_size=80) | st.builds(
    lambda section, key, value: f"[{section}]\n{key} = {value}\n",
    st.sampled_from(["eval", "openai", "service", "filter", "finetune", "nope", "eval.x"]),
    st.sampled_from(["episodes", "base_url", "max_reply_bytes", "seed", "typo", "timeout"]),
    st.sampled_from(["1", "-1", "0", "1e999", "nan", '"notaurl"', '"http://x"', "[1,2]", "{a=1}", "true",
                     "[" * 300 + "]" * 300, '"' + "x" * 50 + '"']))


@FUZZ
@given(text=toml_text, raw=st.binary(max_size=40))
def test_config_loader_raises_only_one_line_config_errors(tmp_path: Path, text: str, raw: bytes) -> None:
    for data in (text.encode("utf-8", "surrogatepass"), raw):
        path = tmp_path / "c.toml"
        path.write_bytes(data)
        try:
            read_toml(path)
            load_config(path, environ={})
        except ConfigError as exc:
            _one_line(str(exc))


env_bodies = (st.binary(max_size=60) | deep | json_values.map(lambda v: json.dumps(v).encode())
              | st.builds(lambda env_id, action: json.dumps({"env_id": env_id, "action": action}).encode(),
                          st.text(max_size=5) | st.integers(), json_values))


@settings(max_examples=80, deadline=None)
@given(body=env_bodies)
def test_env_service_request_parsing_is_a_400_or_422(body: bytes) -> None:
    parse_fast_step(body)  # the lean path: a value or None, never an exception
    for model in (InitializeRequest, StepRequest, TerminateRequest):
        try:
            parse_body(model, body)
        except ServiceError as exc:
            assert exc.status in (400, 422)
            detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
            _one_line(detail)


def test_user_errors_are_one_line() -> None:
    _one_line(str(UserError("bad", where="--flag")))
