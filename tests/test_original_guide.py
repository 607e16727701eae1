"""The original guide's quick start, typed as written with its crafter_config.toml (its ``[openai] base_url``
pointing at an OpenAI-shaped TEST DOUBLE, its Synth service at a Synth-shaped TEST DOUBLE): generate data,
filter it, fine-tune, evaluate the fine-tuned model. What is played is what is recorded."""

from __future__ import annotations

import json
import shlex

import pytest

from crafter_tui.cli import main
from crafter_tui.dataset.card import read_card
from crafter_tui.evaluation.episodes import find_run_dirs, read_run
from tests.doubles.ft_host_double import FineTuneHostDouble
from tests.doubles.openai_double import OpenAIDouble, WoodcutterResponder
from tests.ft_support import ServerThread

#: The guide's config, word for word, but for the endpoint: "against an OpenAI-compatible endpoint
#: given in [openai] base_url".
GUIDE_CONFIG = """[eval]
model_name = "gpt-4o-mini"
episodes = 100
max_steps = 30
difficulty = "easy"
seed = 42

[service]
base_url = "http://localhost:8901"
timeout = 30.0

[output]
save_traces = true
save_detailed_results = true

[openai]
base_url = "{base_url}"
api_key = "your-api-key"
"""


def run(command: str) -> int:
    """A guide command line with our spelling of the script's name."""
    return main(shlex.split(command))


class _Terminal:
    """stdin of a person at a terminal (who answers the launch question with y)."""

    @staticmethod
    def isatty() -> bool:
        return True


@pytest.fixture()
def synth(monkeypatch):
    host = FineTuneHostDouble()
    host.next_status = "succeeded"
    server = ServerThread(host.app).start()
    monkeypatch.setenv("SYNTH_API_KEY", "sk-test-11111111111111111111111111111111")
    monkeypatch.setenv("MODAL_BASE_URL", server.base_url)
    yield host
    server.stop()


def test_the_guides_quick_start_runs_as_written(tmp_path, capsys, monkeypatch, synth):
    with OpenAIDouble(WoodcutterResponder()) as openai:
        (tmp_path / "crafter_config.toml").write_text(GUIDE_CONFIG.format(base_url=openai.base_url))
        # 1. generate training data: test_crafter_react_agent_openai.py --model gpt-4o-mini --episodes 100 ...
        assert run("rollout --model gpt-4o-mini --episodes 100 --max-turns 30 --difficulty easy "
                   "--config crafter_config.toml --quiet") == 0
        # the config alone (its [eval] model_name) plays the model too, and records what played
        assert run("rollout --config crafter_config.toml --episodes 2 --quiet --json") == 0
        assert {r.json["model"] for r in openai.chat_requests} == {"gpt-4o-mini"}
    capsys.readouterr()
    runs = [read_run(path) for path in find_run_dirs(tmp_path / "traces_v2_synth")]
    assert len(runs) == 2 and {(r.record.agent, r.record.model) for r in runs} == {("openai", "gpt-4o-mini")}
    assert sum(len(r.summaries) for r in runs) == 102

    # filter_traces_sft_duckdb.py --input-dir traces_v2_synth --output crafter_quality_sft.jsonl --min-achievements 3
    assert run("filter --input-dir traces_v2_synth --output crafter_quality_sft.jsonl --min-achievements 3") == 0
    data = tmp_path / "crafter_quality_sft.jsonl"
    examples = data.read_text().splitlines()
    assert len(examples) > 100 and read_card(data).format.observation == "full"

    # 2. kick_off_ft_modal.py crafter_quality_sft.jsonl --model Qwen/Qwen2.5-7B-Instruct --epochs 3
    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt="": "y")
    assert run("finetune crafter_quality_sft.jsonl --backend synth --model Qwen/Qwen2.5-7B-Instruct --epochs 3") == 0
    out = capsys.readouterr().out
    job_id = next(line.split()[-1] for line in out.splitlines() if line.startswith("follow it:"))
    created = next(r for r in synth.requests if r["path"] == "/v1/fine_tuning/jobs")["json"]
    assert created["model"] == "Qwen/Qwen2.5-7B-Instruct" and created["hyperparameters"]["n_epochs"] == 3
    assert run(f"jobs watch {job_id} --interval 0.05") == 0
    model = synth.jobs[job_id]["fine_tuned_model"]
    capsys.readouterr()

    # 3. test_crafter_react_agent_openai.py --model ft:... --episodes 10: played where it was trained
    assert run(f"rollout --model {model} --episodes 10 --json --quiet") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["episodes"] == 10 and result["failed"] == 0 and result["model"] == model
    assert synth.chats and {body["model"] for body in synth.chats} == {model}
    assert len(synth.chats[0]["messages"]) == 2 and "Map (north is up" in synth.chats[0]["messages"][1]["content"]
