"""A trained model carries how it must be played: export -> job -> service -> rollout, eval, model test.

The service runs on loopback with the TEST DOUBLE trainer (the card's plumbing does not depend on
what is learnt); its inference double answers every turn with an ``interact`` call.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from crafter_tui.agents.prompting import BRIEF_SYSTEM_PROMPT, SYSTEM_PROMPT, TOOLS, stable_hash
from crafter_tui.cli import main
from crafter_tui.config import AppConfig
from crafter_tui.dataset.card import ModelCard, PlayFormat, Sampling, card_path, read_card
from crafter_tui.errors import UserError
from crafter_tui.finetune.model_test import crafter_turns
from crafter_tui.finetune.registry import JobEntry, JobRegistry
from crafter_tui.rollout.spec import RolloutSpec
from crafter_tui.services.model_cards import bind_model
from crafter_tui.traces.schema import RunRecord
from crafter_tui.world.text_obs import OBSERVATION_REVISIONS
from tests.ft_support import double_service


def _brief_data(tmp_path: Path, out: str = "brief.jsonl", observation: str = "brief", extra: tuple = ()) -> Path:
    """Scripted-expert traces with the given observation and no history, exported without reasoning."""
    traces = tmp_path / "traces"
    assert main(["rollout", "--agent", "scripted", "--episodes", "2", "--max-steps", "12", "--observation",
                 observation, "--history-turns", "0", "--out", str(traces), "--quiet", "--json"]) == 0
    data = tmp_path / out
    assert main(["filter", "--input-dir", str(traces), "--output", str(data), "--drop-reasoning", *extra]) == 0
    return data


def test_an_export_writes_the_card_of_how_its_examples_were_made(tmp_path, capsys):
    data = _brief_data(tmp_path)
    out = capsys.readouterr().out
    card = read_card(data)
    assert card is not None and card_path(data) == tmp_path / "brief.card.json"
    assert f"model card -> {card_path(data)}" in out
    f = card.format
    assert f is not None and card.mixed == []
    assert (f.observation, f.observation_revision, f.history_turns) == ("brief", OBSERVATION_REVISIONS["brief"], 0)
    assert f.system_prompt == BRIEF_SYSTEM_PROMPT and f.prompt_hash == stable_hash(BRIEF_SYSTEM_PROMPT)
    assert (f.actions, f.reasoning, f.tools_hash) == ("tools", "dropped", stable_hash(TOOLS))
    assert card.examples == sum(1 for _ in data.open()) and len(card.runs) == 1
    # the examples really are what the card says: the brief prompt, no history
    first = json.loads(data.open().readline())
    assert first["messages"][0]["content"] == BRIEF_SYSTEM_PROMPT and len(first["messages"]) == 3


def test_an_export_of_runs_played_differently_names_what_differs(tmp_path, capsys):
    traces = tmp_path / "traces"
    for observation in ("brief", "full"):
        assert main(["rollout", "--agent", "scripted", "--episodes", "1", "--max-steps", "5", "--observation",
                     observation, "--out", str(traces), "--quiet", "--json"]) == 0
    data = tmp_path / "mixed.jsonl"
    assert main(["filter", "--input-dir", str(traces), "--output", str(data), "--text-actions"]) == 0
    card = read_card(data)
    assert card is not None and card.format is None
    assert {"observation", "system_prompt", "prompt_hash"} <= set(card.mixed)
    assert "played differently (" in capsys.readouterr().err


@pytest.fixture()
def service(tmp_path, monkeypatch):
    srv = double_service(tmp_path, monkeypatch, steps=2)
    yield srv
    srv.stop()


def _train(data: Path, capsys) -> str:
    assert main(["finetune", str(data), "--backend", "local", "--model", "crafter-tiny", "--epochs", "1",
                 "--yes", "--watch", "--interval", "0.1", "--test-observations", "2"]) == 0
    out = capsys.readouterr().out
    assert "model test: 2/2" in out  # asked on the turns it was trained on (brief, its prompt)
    return next(line.split()[-1] for line in out.splitlines() if line.startswith("model:"))


def test_the_trained_model_carries_its_card_and_plays_by_it_with_no_flags(service, tmp_path, capsys):
    model = _train(_brief_data(tmp_path), capsys)
    # the job registry and the service's /v1/models both carry the card
    entry = JobRegistry.from_data_dir(tmp_path / "state").find_model(model)
    assert entry is not None and entry.card is not None and entry.card.format.observation == "brief"
    assert entry.card.fine_tuned_model == model and entry.card.host == "local"
    served = httpx.get(f"{service.base_url}/models/{model}").json()
    assert served["card"]["format"]["observation"] == "brief" and served["card"]["job_id"] == entry.job_id
    listed = {m["id"]: m for m in httpx.get(f"{service.base_url}/models").json()["data"]}
    assert listed[model]["card"]["format"]["history_turns"] == 0
    assert main(["jobs", "show", entry.job_id]) == 0
    assert "played as:  brief observation (revision" in capsys.readouterr().out

    # the obvious next step: play it with --model alone (no --base-url, no --observation, no history flag)
    assert main(["rollout", "--model", model, "--episodes", "1", "--max-steps", "6", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    record = RunRecord.model_validate_json((Path(result["run_dir"]) / "run.json").read_text())
    assert record.agent == "openai" and record.endpoint == service.base_url  # routed to the service that trained it
    assert record.settings["observation"] == "brief" and record.history_turns == 0
    assert record.system_prompt == BRIEF_SYSTEM_PROMPT
    assert record.model_card["job_id"] == entry.job_id and record.mismatches == []
    assert result["failed"] == 0 and result["episodes"] == 1

    # a flag that contradicts the card is refused, naming the difference
    assert main(["rollout", "--model", model, "--episodes", "1", "--observation", "full", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--observation 'full' (trained with 'brief')" in err and "--allow-mismatch" in err
    # ... unless asked for explicitly, and then the run records it
    assert main(["rollout", "--model", model, "--episodes", "1", "--max-steps", "4", "--observation", "full",
                 "--allow-mismatch", "--json", "--quiet"]) == 0
    result = json.loads(capsys.readouterr().out)
    record = RunRecord.model_validate_json((Path(result["run_dir"]) / "run.json").read_text())
    assert record.settings["observation"] == "full" and record.system_prompt == SYSTEM_PROMPT
    assert record.mismatches == ["--observation 'full' (trained with 'brief')"]

    # a job launched elsewhere (not in our registry): the running service still says how to play its model
    import shutil

    from crafter_tui.services.model_cards import find_known_model

    shutil.rmtree(tmp_path / "state" / "jobs")
    config = AppConfig.model_validate({"finetune": {"local_url": service.base_url},
                                       "storage": {"data_dir": str(tmp_path / "state")}})
    known = find_known_model(config, model)
    assert known is not None and known.host == "local" and known.card.format.observation == "brief"


def _known(tmp_path: Path, card: ModelCard, host: str = "local", base_url: str = "http://127.0.0.1:9/v1") -> AppConfig:
    config = AppConfig.model_validate({"storage": {"data_dir": str(tmp_path / "state")}})
    JobRegistry.from_data_dir(config.storage.data_dir).save(JobEntry(
        job_id="ftjob-1", host=host, base_url=base_url, model="crafter-tiny", fine_tuned_model="ft:m",
        status="succeeded", card=card))
    return config


def _card(**format_changes) -> ModelCard:
    play = PlayFormat(observation="brief", observation_revision=OBSERVATION_REVISIONS["brief"], history_turns=0,
                      system_prompt=BRIEF_SYSTEM_PROMPT, prompt_hash=stable_hash(BRIEF_SYSTEM_PROMPT),
                      tools_hash=stable_hash(TOOLS))
    return ModelCard(format=play.model_copy(update=format_changes), sampling=Sampling(temperature=0.7, max_tokens=64))


def test_the_cards_sampling_is_the_default_and_a_contradicting_flag_is_refused(tmp_path):
    config = _known(tmp_path, _card())
    spec = RolloutSpec(agent="openai", model="ft:m")
    bound = bind_model(spec, config)
    assert (bound.config.eval.temperature, bound.config.eval.max_tokens) == (0.7, 64)
    assert bound.config.openai.base_url == "http://127.0.0.1:9/v1"
    assert (bound.spec.observation, bound.spec.history_turns, bound.spec.actions) == ("brief", 0, "tools")
    with pytest.raises(UserError, match=r"--temperature 0\.0 \(trained with 0\.7\)"):
        bind_model(spec, config, {"temperature": 0.0})
    assert bind_model(spec, config, {"base_url": "http://elsewhere/v1"}).config.openai.base_url != \
        "http://127.0.0.1:9/v1"  # a --base-url says where it is served: the flag's endpoint is kept
    # a model nobody here trained is played exactly as before
    other = bind_model(RolloutSpec(agent="openai", model="gpt-4o-mini"), config)
    assert other.known is None and other.spec.observation == "full" and other.config.eval.temperature == 0.0


def test_a_card_from_an_older_wording_or_other_tools_is_refused(tmp_path):
    spec = RolloutSpec(agent="openai", model="ft:m")
    old = _known(tmp_path / "a", _card(observation_revision=OBSERVATION_REVISIONS["brief"] - 1))
    with pytest.raises(UserError, match="worded as revision"):
        bind_model(spec, old)
    tools = _known(tmp_path / "b", _card(tools_hash="0" * 16))
    with pytest.raises(UserError, match="tools changed"):
        bind_model(spec, tools)
    assert bind_model(spec, tools, allow_mismatch=True).spec.mismatches


def test_a_modal_trained_model_is_refused_with_how_to_serve_it(tmp_path):
    config = _known(tmp_path, _card(), host="modal", base_url="")
    with pytest.raises(UserError, match="Modal-trained weights"):
        bind_model(RolloutSpec(agent="openai", model="ft:m"), config)


def test_the_model_test_asks_the_turns_the_model_was_trained_on():
    play = _card().format
    (_, _, messages), = crafter_turns(1, 0, play)
    assert messages[0]["content"] == BRIEF_SYSTEM_PROMPT and messages[1]["content"].startswith("he")
    (_, _, default), = crafter_turns(1, 0)
    assert default[0]["content"] == SYSTEM_PROMPT


def test_a_model_trained_on_text_actions_is_asked_without_tools_and_its_text_is_read(tmp_path):
    from crafter_tui.agents.base import TurnObservation
    from crafter_tui.agents.replies import decision_from_completion
    from crafter_tui.rollout.episode import build_agent

    config = _known(tmp_path, _card(actions="text", tools_hash=None))
    bound = bind_model(RolloutSpec(agent="openai", model="ft:m"), config)
    agent = build_agent(bound.spec, bound.config)
    observation = TurnObservation(state=None, text="he9 fo9", turn=0, max_steps=10)  # type: ignore[arg-type]
    body = agent.request_body(observation, [])
    assert "tools" not in body and "tool_choice" not in body
    assert body["messages"][0]["content"] == BRIEF_SYSTEM_PROMPT

    def reply(content):
        return {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}

    decision = decision_from_completion(reply('{"actions": ["move_left", "do"], "reasoning": ""}'), text_actions=True)
    assert decision.valid and decision.actions == ["move_left", "do"]
    assert decision.assistant_message == {"role": "assistant",
                                          "content": '{"actions": ["move_left", "do"], "reasoning": ""}'}
    assert decision_from_completion(reply('{"tool": "terminate", "reason": "done"}'), text_actions=True).terminate
    wrong = decision_from_completion(reply('{"actions": ["fly"], "reasoning": ""}'), text_actions=True)
    assert not wrong.valid and "unknown action name 'fly'" in wrong.error
    with pytest.raises(UserError, match="cannot play a model that writes its actions as text"):
        build_agent(bound.spec.model_copy(update={"agent": "dagger"}), bound.config)
