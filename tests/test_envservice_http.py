"""The env service over real loopback HTTP, spoken to with raw httpx in the synth request shapes."""

from __future__ import annotations

import base64
import json
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from crafter_tui.servers.env_server import BackgroundEnvService, EnvServiceSettings, bind_warning
from crafter_tui.world.env import CrafterWorld
from crafter_tui.world.rules import ACHIEVEMENTS, ACTIONS

INIT = "/env/CrafterClassic/initialize"
STEP = "/env/CrafterClassic/step"
TERMINATE = "/env/CrafterClassic/terminate"
METADATA = "/env/CrafterClassic/metadata"


@pytest.fixture(scope="module")
def service():
    with BackgroundEnvService(EnvServiceSettings(port=0, max_envs=50)) as svc:
        yield svc


@pytest.fixture
def http(service):
    with httpx.Client(base_url=service.base_url, timeout=10) as client:
        yield client


def interact(env_id: str, *actions, request_id: str | None = None) -> dict:
    body = {"env_id": env_id, "action": {"tool_calls": [{"tool": "interact", "args": {"action": a}} for a in actions]}}
    if request_id:
        body["request_id"] = request_id
    return body


def init(http, **config) -> dict:
    response = http.post(INIT, json={"config": config})
    assert response.status_code == 200, response.text
    return response.json()


def test_health_lists_crafter_classic(http):
    data = http.get("/health").json()
    assert data["status"] == "ok" and "CrafterClassic" in data["supported_environments"]


def test_same_seed_twice_gives_identical_observations(http):
    actions = [2, 2, 5, 3, 5, 1, 5, 4, 0, 5, 6, 5]
    runs = []
    for _ in range(2):
        env_id = init(http, seed=11)["env_id"]
        runs.append([http.post(STEP, json=interact(env_id, a)).json()["observation"] for a in actions])
        http.post(TERMINATE, json={"env_id": env_id})
    assert runs[0] == runs[1]


def test_observation_matches_in_process_world_with_per_step_rewards(http):
    world = CrafterWorld("normal", max_steps=10_000)
    state = world.reset(5)
    first = init(http, seed=5)
    obs = first["observation"]
    assert obs["local_view"] == state.local_view and obs["player_position"] == list(state.position)
    total = 0.0
    for action in [5, 5, 2, 5, 5, 5, 3, 5, 5, 5, 5, 1, 5, 5, 4, 5]:
        outcome = world.step(action)
        total += outcome.reward
        reply = http.post(STEP, json=interact(first["env_id"], action)).json()
        o = reply["observation"]
        assert reply["reward"] == outcome.reward == o["reward_last_step"]
        assert o["total_reward_episode"] == pytest.approx(total)
        assert o["inventory"] == outcome.state.inventory
        assert o["achievements_status"] == {n: outcome.state.achievements[n] > 0 for n in ACHIEVEMENTS}
        assert len(o["achievements_status"]) == 22
        assert o["num_steps_taken"] == outcome.state.step and o["daylight"] == outcome.state.daylight
        assert reply["info"]["new_achievements"] == outcome.new_achievements
        assert "Step " in o["text"]


@pytest.mark.parametrize("body", [
    {"initial_state": {"seed": 21}},
    {"task_instance": {"metadata": {"seed": 21}}},
    {"task_instance": {"seed": 21, "metadata": {"difficulty": "normal"}}},
])
def test_seed_is_honoured_wherever_given(http, body):
    reference = init(http, seed=21)["observation"]
    response = http.post(INIT, json=body)
    assert response.status_code == 200
    assert response.json()["info"]["seed"] == 21
    assert response.json()["observation"]["local_view"] == reference["local_view"]


def test_difficulty_and_max_steps_are_honoured(http):
    reply = init(http, seed=3, difficulty="peaceful", max_steps=3)
    env_id = reply["env_id"]
    assert reply["info"]["difficulty"] == "peaceful"
    assert http.get(METADATA, params={"env_id": env_id}).json()["difficulty"] == "peaceful"
    last = [http.post(STEP, json=interact(env_id, 0)).json() for _ in range(3)][-1]
    assert last["done"] and last["info"]["truncated"] and not last["info"]["terminated"]
    assert last["observation"]["truncated"] and last["observation"]["max_steps_episode"] == 3
    task = http.post(INIT, json={"task_instance": {"metadata": {"seed": 3, "difficulty": "hard"}}}).json()
    assert task["info"]["difficulty"] == "hard"


def test_several_tool_calls_and_action_names_play_in_order(http):
    a = init(http, seed=8)["env_id"]
    b = init(http, seed=8)["env_id"]
    body = {"env_id": a, "action": {"tool_calls": [
        {"tool": "interact", "args": {"action": "move_right"}},
        {"tool": "interact", "args": {"actions": ["do", 3]}}]}}
    several = http.post(STEP, json=body).json()
    singles = [http.post(STEP, json=interact(b, x)).json() for x in (2, 5, 3)]
    assert several["info"]["actions_executed"] == 3
    assert several["observation"]["local_view"] == singles[-1]["observation"]["local_view"]
    assert several["reward"] == pytest.approx(sum(s["reward"] for s in singles))


def test_semantic_map_and_image_only_when_asked(http):
    env_id = init(http, seed=4)["env_id"]
    plain = http.post(STEP, json=interact(env_id, 0)).json()["observation"]
    assert "semantic_map" not in plain and "image_png_base64" not in plain
    rich = http.post(STEP, json=interact(env_id, 0), params={"semantic_map": "true", "image": "1"}).json()
    grid = rich["observation"]["semantic_map"]
    assert len(grid) == 64 and len(grid[0]) == 64
    assert base64.b64decode(rich["observation"]["image_png_base64"]).startswith(b"\x89PNG")
    configured = init(http, seed=4, include_semantic_map=True, include_text=False)["observation"]
    assert "semantic_map" in configured and "text" not in configured


def test_repeated_request_id_is_not_played_twice(http):
    env_id = init(http, seed=2)["env_id"]
    one = http.post(STEP, json=interact(env_id, 2, request_id="r1")).json()
    again = http.post(STEP, json=interact(env_id, 2, request_id="r1")).json()
    assert one == again and again["observation"]["num_steps_taken"] == 1


def test_error_statuses(http):
    env_id = init(http, seed=1, max_steps=1)["env_id"]
    cases = [
        (http.post(STEP, json=interact("nope", 0)), 404),
        (http.get(METADATA, params={"env_id": "nope"}), 404),
        (http.post(TERMINATE, json={"env_id": "nope"}), 404),
        (http.post(STEP, content=b"{not json", headers={"content-type": "application/json"}), 400),
        (http.post(INIT, content=b"[1,", headers={"content-type": "application/json"}), 400),
        (http.post(INIT, json={"config": {"seed": -1}}), 422),
        (http.post(INIT, json={"config": {"difficulty": "impossible"}}), 422),
        (http.post(STEP, json={"env_id": env_id, "action": {"tool_calls": [{"tool": "dance", "args": {"action": 0}}]}}), 422),
        (http.post(STEP, json=interact(env_id, "fly")), 422),
        (http.post(STEP, json=interact(env_id, True)), 422),
        (http.post(STEP, json=interact(env_id, 0), params={"image": "maybe"}), 422),
    ]
    for response, status in cases:
        assert response.status_code == status, (response.request.url, response.text)
    bad = http.post(STEP, json=interact(env_id, 99))
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["body", "action", "tool_calls", 0, "args", "action"]
    assert http.post(STEP, json=interact(env_id, 0)).json()["done"]
    after = http.post(STEP, json=interact(env_id, 0))
    assert after.status_code == 409 and "over" in after.json()["detail"]


def test_max_envs_gives_429_until_one_is_terminated():
    with BackgroundEnvService(EnvServiceSettings(port=0, max_envs=2)) as svc, \
            httpx.Client(base_url=svc.base_url, timeout=10) as http:
        ids = [init(http, seed=i)["env_id"] for i in range(2)]
        assert http.post(INIT, json={"config": {"seed": 9}}).status_code == 429
        terminated = http.post(TERMINATE, json={"env_id": ids[0]})
        assert terminated.status_code == 200 and terminated.json()["private"]["seed"] == 0
        assert http.post(INIT, json={"config": {"seed": 9}}).status_code == 200


def test_token_is_required_except_for_health():
    settings_ = EnvServiceSettings(port=0, token=SecretStr("s3cret"))
    with BackgroundEnvService(settings_) as svc, httpx.Client(base_url=svc.base_url, timeout=10) as http:
        assert http.get("/health").status_code == 200
        assert http.post(INIT, json={}).status_code == 401
        assert http.post(INIT, json={}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get(METADATA).status_code == 401
        ok = http.post(INIT, json={"config": {"seed": 1}}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200


def test_idle_environments_are_reaped():
    settings_ = EnvServiceSettings(port=0, idle_timeout=0.8, reap_interval=0.05)  # a loaded CI machine stalls
    with BackgroundEnvService(settings_) as svc, httpx.Client(base_url=svc.base_url, timeout=10) as http:
        kept = init(http, seed=1)["env_id"]
        dropped = init(http, seed=2)["env_id"]
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            assert http.post(STEP, json=interact(kept, 0)).status_code == 200
            time.sleep(0.05)
        assert http.post(STEP, json=interact(dropped, 0)).status_code == 404
        assert http.get("/health").json()["live_envs"] == 1


def test_bind_warning_only_for_open_hosts_without_token():
    assert bind_warning(EnvServiceSettings(host="0.0.0.0")) is not None
    assert bind_warning(EnvServiceSettings(host="0.0.0.0", token=SecretStr("t"))) is None
    assert bind_warning(EnvServiceSettings(host="127.0.0.1")) is None
    assert bind_warning(EnvServiceSettings(host="localhost")) is None


def test_service_metadata_lists_the_vocabulary(http):
    data = http.get(METADATA).json()
    assert data["actions"] == list(ACTIONS) and len(data["achievements"]) == 22


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10)
step_bodies = st.fixed_dictionaries({
    "env_id": st.text(max_size=5) | st.integers(),
    "action": json_values | st.fixed_dictionaries({"tool_calls": st.lists(st.fixed_dictionaries({
        "tool": st.sampled_from(["interact", "x"]) | json_values,
        "args": st.fixed_dictionaries({"action": json_values | st.integers(-5, 30) | st.sampled_from(ACTIONS)})}),
        max_size=3)}),
})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(step_bodies, json_values), route=st.sampled_from([INIT, STEP, TERMINATE]))
def test_no_body_gives_a_server_error(http, body, route):
    response = http.post(route, content=json.dumps(body).encode(), headers={"content-type": "application/json"})
    assert response.status_code < 500, response.text
    if response.status_code == 200 and route == INIT:
        http.post(TERMINATE, json={"env_id": response.json()["env_id"]})


def test_a_bad_query_flag_on_initialize_creates_no_env():
    with BackgroundEnvService(EnvServiceSettings(port=0)) as svc, httpx.Client(base_url=svc.base_url) as http:
        assert http.post(INIT, json={}, params={"semantic_map": "sure"}).status_code == 422
        assert http.get("/health").json()["live_envs"] == 0
        reply = http.post(INIT, json={"config": {"seed": 2}}, params={"semantic_map": "true"}).json()
        assert len(reply["observation"]["semantic_map"]) == 64
