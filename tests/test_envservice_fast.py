"""The lean step path (``servers/env_fast.py``) answers exactly as the validated route did."""

from __future__ import annotations

import json
import random

import httpx
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr, ValidationError

from crafter_tui.servers.env_fast import FastStep, parse_fast_step
from crafter_tui.rollout.env_models import ObservationOptions, StepRequest
from crafter_tui.servers.env_server import BackgroundEnvService, EnvServiceSettings, EnvSlot, dump_json, run_actions
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACTIONS

INIT = "/env/CrafterClassic/initialize"
STEP = "/env/CrafterClassic/step"


def body(env_id: object, *actions: object, request_id: object = None, **extra: object) -> dict:
    data = {"env_id": env_id, "action": {"tool_calls": [{"tool": "interact", "args": {"action": a}} for a in actions]},
            **extra}
    if request_id is not None:
        data["request_id"] = request_id
    return data


def validated(raw: bytes) -> FastStep | None:
    """What the validated route would read from ``raw`` (None where it answers 400/422)."""
    try:
        req = StepRequest.model_validate_json(raw)
    except ValidationError:
        return None
    return FastStep(req.env_id, req.request_id, [a for call in req.action.tool_calls for a in call.args.action_ids()])


@pytest.mark.parametrize("data", [
    body("e1", 0), body("e1", 16, 3, request_id="r-1"), body("x" * 200, 5, extra_key=[1, 2]),
    {"env_id": "e", "request_id": None, "action": {"tool_calls": [{"args": {"action": 4, "note": "hi"}}]}},
])
def test_common_shapes_take_the_lean_path_with_the_same_reading(data):
    raw = json.dumps(data).encode()
    fast = parse_fast_step(raw)
    assert fast is not None and fast == validated(raw)


@pytest.mark.parametrize("raw", [
    b"", b"{not json", b"[1]", b"null",
    json.dumps(body("e", "noop")).encode(),  # names go to the validated route (it maps them)
    json.dumps(body("e", True)).encode(), json.dumps(body("e", 17)).encode(), json.dumps(body("e", -1)).encode(),
    json.dumps(body("e", 1.0)).encode(), json.dumps(body("", 1)).encode(), json.dumps(body("x" * 201, 1)).encode(),
    json.dumps(body("e", 1, request_id="r" * 201)).encode(), json.dumps(body(7, 1)).encode(),
    json.dumps(body("e")).encode(), json.dumps(body("e", *[1] * 65)).encode(),
    json.dumps({"env_id": "e", "action": {"tool_calls": [{"tool": "dance", "args": {"action": 1}}]}}).encode(),
    json.dumps({"env_id": "e", "action": {"tool_calls": [{"args": {"action": 1, "actions": [2]}}]}}).encode(),
    json.dumps({"env_id": "e", "action": {"tool_calls": [{"args": {}}]}}).encode(),
])
def test_anything_else_is_left_to_the_validated_route(raw):
    assert parse_fast_step(raw) is None


scalars = st.none() | st.booleans() | st.integers(-3, 20) | st.floats(-2, 20) | st.sampled_from(["", "e", "noop", "3"])


def mostly(valid: st.SearchStrategy, odd: st.SearchStrategy) -> st.SearchStrategy:
    """Valid parts most of the time, so both readings get compared on accepted bodies too."""
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: valid if ok else odd)


args_like = mostly(st.fixed_dictionaries({"action": st.integers(-1, 17)}, optional={"note": scalars}),
                   scalars | st.dictionaries(st.sampled_from(["action", "actions", "x"]),
                                             scalars | st.lists(scalars, max_size=2), max_size=2))
call_like = mostly(st.fixed_dictionaries({"args": args_like}, optional={"tool": mostly(st.just("interact"), scalars)}),
                   scalars)
step_like = st.fixed_dictionaries(
    {"env_id": mostly(st.text(min_size=1, max_size=4), scalars | st.just("x" * 201)),
     "action": mostly(st.fixed_dictionaries({"tool_calls": st.lists(call_like, max_size=3)}), scalars)},
    optional={"request_id": mostly(st.text(max_size=3), scalars)})


@settings(max_examples=300, deadline=None)
@given(data=step_like)
def test_the_lean_reading_never_differs_from_the_validated_one(data):
    raw = json.dumps(data).encode()
    fast = parse_fast_step(raw)
    if fast is not None:
        assert fast == validated(raw)


def test_orjson_step_bodies_parse_to_what_json_dumps_gave():
    world = CrafterWorld("normal", max_steps=120)
    world.reset(3)
    options = ObservationOptions(include_text=True, include_semantic_map=True, include_image=False)
    slot = EnvSlot(env_id="e", world=world, seed=3, options=options)
    rng = random.Random(0)
    while not world.done:
        result = run_actions(slot, [rng.randrange(len(ACTIONS))], options)
        old = json.dumps(result, separators=(",", ":")).encode()
        assert orjson.loads(dump_json(result)) == json.loads(old)


def exchange(http: httpx.Client, env_ids: dict[str, str]) -> list[tuple[int, object]]:
    """A scripted session (every step shape and error) with env ids made comparable across services."""
    first = http.post(INIT, json={"config": {"seed": 21, "max_steps": 40}}).json()["env_id"]
    env_ids[first] = "<env>"
    rng = random.Random(5)
    calls: list[tuple[dict | bytes, dict | None]] = [
        (body(first, 1), None), (body(first, 2, request_id="same"), None), (body(first, 3, request_id="same"), None),
        (body(first, 4, 5, 6), {"text": "false"}), (body(first, 1), {"semantic_map": "true", "text": "no"}),
        (body(first, 1), {"image": "maybe"}), (body("nope", 1), None), (body(first, 99), None),
        (body(first, "move_left"), None), (b"{broken", None), (body(first, True), None),
    ] + [(body(first, rng.randrange(17), request_id=f"r{i}"), None) for i in range(40)]  # runs past the end: 409s
    replies = []
    for payload, params in calls:
        if isinstance(payload, bytes):
            response = http.post(STEP, content=payload, headers={"content-type": "application/json"}, params=params)
        else:
            response = http.post(STEP, json=payload, params=params)
        text = response.text
        for real, alias in env_ids.items():
            text = text.replace(real, alias)
        replies.append((response.status_code, response.headers["content-type"], json.loads(text)))
    return replies


def test_lean_and_validated_routes_answer_alike():
    answers = []
    for fast in (True, False):
        with BackgroundEnvService(EnvServiceSettings(port=0, fast_step=fast)) as svc, \
                httpx.Client(base_url=svc.base_url, timeout=10) as http:
            answers.append(exchange(http, {}))
    lean, validated_route = answers
    assert [status for status, *_ in lean].count(409) > 0
    assert lean == validated_route


def test_the_lean_path_is_behind_the_token():
    settings_ = EnvServiceSettings(port=0, token=SecretStr("s3cret"))
    with BackgroundEnvService(settings_) as svc, httpx.Client(base_url=svc.base_url, timeout=10) as http:
        auth = {"Authorization": "Bearer s3cret"}
        env_id = http.post(INIT, json={"config": {"seed": 1}}, headers=auth).json()["env_id"]
        assert http.post(STEP, json=body(env_id, 1)).status_code == 401
        assert http.post(STEP, json=body(env_id, 1), headers=auth).status_code == 200
