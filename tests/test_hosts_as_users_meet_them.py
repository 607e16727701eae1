"""Every fine-tuning host as a new user meets it, against OpenAI- and Synth-shaped TEST DOUBLES over loopback:
no key fails before any upload, only the hyperparameters the user set are sent, the guide's model aliases are
priced, the guide's ``MODAL_BASE_URL`` (no ``/v1``) works, and QLoRA is refused where it cannot be trained."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from crafter_tui.cli import main
from crafter_tui.config import AppConfig
from crafter_tui.dataset.tokens import resolve_model, token_limit, training_cost
from crafter_tui.errors import UserError
from crafter_tui.finetune.hosts import host_from_config, normalise_base_url
from crafter_tui.services.finetune import FinetuneService, LaunchRequest
from tests.doubles.ft_host_double import FineTuneHostDouble
from tests.ft_support import ServerThread, free_port, tiny_dataset

KEY = "sk-test-HOSTS-0123456789"


@pytest.fixture()
def host_double():
    double = FineTuneHostDouble()
    server = ServerThread(double.app).start()
    double.base_url = server.base_url
    double.root_url = server.base_url.removesuffix("/v1")
    yield double
    server.stop()


def _write_config(tmp_path, double, finetune: str = "") -> str:
    """The user's config: OpenAI at the double; our service's URL where nothing answers (none is asked)."""
    path = tmp_path / "crafter_config.toml"
    path.write_text(f'[openai]\nbase_url = "{double.base_url}"\napi_key = "{KEY}"\n'
                    f'[storage]\ndata_dir = "{tmp_path / "state"}"\n'
                    f'[finetune]\nlocal_url = "http://127.0.0.1:{free_port()}/v1"\n{finetune}')
    return str(path)


def _created(double) -> dict:
    return [r for r in double.requests if r["path"] == "/v1/fine_tuning/jobs" and r["method"] == "POST"][-1]["json"]


def test_openai_without_a_key_fails_before_any_upload_naming_the_variable(host_double, tmp_path, monkeypatch,
                                                                          capsys):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    config = tmp_path / "crafter_config.toml"
    config.write_text(f'[openai]\nbase_url = "{host_double.base_url}"\n[storage]\ndata_dir = "{tmp_path / "s"}"\n')
    data = tiny_dataset(tmp_path / "d.jsonl")
    code = main(["--config", str(config), "finetune", str(data), "--backend", "openai", "--model", "gpt-4o-mini",
                 "--yes"])
    assert code != 0
    err = capsys.readouterr().err
    assert "OPENAI_API_KEY" in err and "Traceback" not in err
    assert host_double.requests == []  # nothing uploaded, no job created


def test_openai_gets_only_the_hyperparameters_the_user_set(host_double, tmp_path, capsys):
    data = tiny_dataset(tmp_path / "d.jsonl")
    config = _write_config(tmp_path, host_double)
    assert main(["--config", config, "finetune", str(data), "--backend", "openai", "--model", "gpt-4o-mini",
                 "--yes"]) == 0
    body = _created(host_double)
    # neither [finetune] batch_size (4) nor epochs (3), the config's defaults, overrides OpenAI's own choice
    assert body["method"] == {"type": "supervised", "supervised": {"hyperparameters": {}}}
    assert body["model"] == "gpt-4o-mini" and body["seed"] == 0
    assert set(body) == {"model", "training_file", "seed", "method"}

    assert main(["--config", config, "finetune", str(data), "--backend", "openai", "--model", "gpt-4o-mini",
                 "--batch-size", "8", "--yes"]) == 0
    assert _created(host_double)["method"]["supervised"]["hyperparameters"] == {"batch_size": 8}

    # a key the config file sets is the user's choice too
    config = _write_config(tmp_path, host_double, "batch_size = 2\nepochs = 5\n")
    assert main(["--config", config, "finetune", str(data), "--backend", "openai", "--model", "gpt-4o-mini",
                 "--yes"]) == 0
    assert _created(host_double)["method"]["supervised"]["hyperparameters"] == {"n_epochs": 5, "batch_size": 2}
    out = capsys.readouterr().out
    assert "cost:       $" in out and "unknown" not in out.split("cost:")[1].splitlines()[0]


def test_aliases_resolve_to_their_snapshot_for_prices_limits_and_counting():
    assert resolve_model("gpt-4o-mini") == "gpt-4o-mini-2024-07-18"
    assert resolve_model("openai/gpt-4.1-mini") == "gpt-4.1-mini-2025-04-14"
    assert resolve_model("Qwen/Qwen2.5-7B-Instruct") == "Qwen/Qwen2.5-7B-Instruct"
    assert token_limit("gpt-4o-mini") == 65_536 == token_limit("gpt-4o-mini-2024-07-18")
    assert training_cost("gpt-4o-mini", 1_000_000, 2) == training_cost("gpt-4o-mini-2024-07-18", 1_000_000, 2) == 6.0


@pytest.mark.parametrize("form", ["root", "root/", "v1", "v1/"])
def test_synth_base_url_with_or_without_v1(host_double, tmp_path, form):
    url = {"root": host_double.root_url, "root/": host_double.root_url + "/",
           "v1": host_double.base_url, "v1/": host_double.base_url + "/"}[form]
    config = AppConfig()
    config.finetune.synth_base_url = url
    config.finetune.synth_api_key = SecretStr(KEY)
    config.storage.data_dir = tmp_path / "state"
    service = FinetuneService(config)
    request = LaunchRequest(data=tiny_dataset(tmp_path / "d.jsonl"), backend="synth",
                            model="Qwen/Qwen2.5-7B-Instruct", epochs=2)
    entry = asyncio.run(service.launch(request, asyncio.run(service.prepare(request))))
    assert [r["path"] for r in host_double.requests] == ["/v1/files", "/v1/fine_tuning/jobs"]
    assert entry.base_url == host_double.base_url
    assert _created(host_double)["hyperparameters"] == {"n_epochs": 2}


def test_every_host_url_is_normalised_once():
    assert normalise_base_url("https://x.modal.run") == "https://x.modal.run/v1"
    assert normalise_base_url("https://x.modal.run/v1/") == "https://x.modal.run/v1"
    assert normalise_base_url("http://127.0.0.1:8000/api/") == "http://127.0.0.1:8000/api/v1"
    config = AppConfig()
    config.openai.base_url = "https://api.openai.com/"
    config.finetune.local_url = "http://127.0.0.1:8000"
    assert host_from_config("openai", config).base_url == "https://api.openai.com/v1"
    assert host_from_config("local", config).base_url == "http://127.0.0.1:8000/v1"


class _NoModal:
    def launch(self, *args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("QLoRA must be refused before Modal is touched")


@pytest.mark.parametrize("backend", ["local", "modal"])
def test_qlora_is_refused_where_it_cannot_be_trained(tmp_path, backend):
    config = AppConfig()
    config.storage.data_dir = tmp_path / "state"
    config.finetune.local_url = "http://127.0.0.1:9/v1"  # nothing may be started or reached
    service = FinetuneService(config, modal_host=_NoModal(), autostart_local=False)
    model = "crafter-tiny" if backend == "local" else "Qwen/Qwen2.5-0.5B-Instruct"
    request = LaunchRequest(data=tiny_dataset(tmp_path / "d.jsonl"), backend=backend, model=model, use_qlora=True)
    prepared = asyncio.run(service.prepare(request))
    with pytest.raises(UserError, match="QLoRA") as caught:
        asyncio.run(service.launch(request, prepared))
    assert caught.value.where == "--qlora" and "bitsandbytes" in str(caught.value)
    assert service.registry.all() == []


def test_jobs_on_every_host_are_listed_shown_and_analysed(host_double, tmp_path, capsys):
    """A job made with the openai client directly on the host (not by crafter-tui) is on ``jobs list``
    (unmarked), and ``jobs show/events/watch`` and ``analyze training`` take its id."""
    import openai

    config = _write_config(tmp_path, host_double)
    data = tiny_dataset(tmp_path / "d.jsonl")
    assert main(["--config", config, "finetune", str(data), "--backend", "openai", "--model", "gpt-4o-mini",
                 "--yes"]) == 0
    ours = next(iter(host_double.jobs))
    sdk = openai.OpenAI(base_url=host_double.base_url, api_key=KEY, max_retries=0)
    theirs = sdk.fine_tuning.jobs.create(model="gpt-4.1-mini", training_file="file-x").id
    capsys.readouterr()

    assert main(["--config", config, "jobs", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"* {ours}  openai") for line in lines)
    assert any(line.startswith(f"  {theirs}  openai") and "gpt-4.1-mini" in line for line in lines)
    assert main(["--config", config, "jobs", "list", "--ours", "--json"]) == 0
    import json
    assert [row["job_id"] for row in json.loads(capsys.readouterr().out)] == [ours]

    host_double.next_status = "succeeded"
    assert main(["--config", config, "jobs", "show", theirs]) == 0
    out = capsys.readouterr().out
    assert f"job:        {theirs} on openai" in out and "status:     succeeded" in out
    assert main(["--config", config, "jobs", "events", theirs]) == 0
    assert "message 6" in capsys.readouterr().out
    assert main(["--config", config, "jobs", "watch", theirs, "--interval", "0.01"]) == 0
    assert f"model: ft:Qwen/Qwen2.5-7B-Instruct:org-x:20250730:{theirs}" in capsys.readouterr().out
    report = tmp_path / "training.json"
    assert main(["--config", config, "analyze", "training", "--job-ids", theirs, "--output", str(report)]) == 0
    assert json.loads(report.read_text())["jobs"][0]["job_id"] == theirs
    # nothing about the job crafter-tui did not launch is written to its registry
    assert len(list((tmp_path / "state" / "jobs").glob("*.json"))) == 1

    assert main(["--config", config, "jobs", "show", "ftjob-nowhere"]) != 0
    err = capsys.readouterr().err
    assert "no job 'ftjob-nowhere'" in err and "not on openai either" in err


def test_a_job_made_on_our_service_with_the_openai_client_is_found(tmp_path, monkeypatch, capsys):
    import openai

    from crafter_tui.servers.ft_server import ServeSettings, create_app
    from tests.doubles.ft_trainer_double import INFERENCE, TRAINER
    from tests.ft_support import REPO_ROOT, wait_for

    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    monkeypatch.setenv("FT_DOUBLE_STEPS", "3")
    monkeypatch.setenv("FT_DOUBLE_STEP_SECONDS", "0.02")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    server = ServerThread(create_app(ServeSettings(data_dir=tmp_path / "svc", trainer=TRAINER, inference=INFERENCE,
                                                   poll_interval=0.05))).start()
    try:
        sdk = openai.OpenAI(base_url=server.base_url, api_key="unused", max_retries=0)
        uploaded = sdk.files.create(file=tiny_dataset(tmp_path / "d.jsonl").open("rb"), purpose="fine-tune")
        job = sdk.fine_tuning.jobs.create(model="crafter-tiny", training_file=uploaded.id)
        wait_for(lambda: sdk.fine_tuning.jobs.retrieve(job.id).status == "succeeded", timeout=30)
        config = tmp_path / "crafter_config.toml"
        config.write_text(f'[finetune]\nlocal_url = "{server.base_url}"\n[storage]\ndata_dir = "{tmp_path / "s"}"\n')
        assert main(["--config", str(config), "jobs", "list"]) == 0
        assert any(line.startswith(f"  {job.id}  local") for line in capsys.readouterr().out.splitlines())
        assert main(["--config", str(config), "jobs", "show", job.id]) == 0
        assert "status:     succeeded" in capsys.readouterr().out
    finally:
        server.stop()


def test_models_check_each_host(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty Hugging Face cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    data = tiny_dataset(tmp_path / "d.jsonl")
    assert main(["models", "check", "Qwen/Qwen2.5-7B-Instruct", "--backend", "local"]) == 1
    out = capsys.readouterr().out
    assert "local can fine-tune Qwen/Qwen2.5-7B-Instruct: NO" in out and "no weights on this disk" in out
    assert main(["models", "check", "gpt-4o-mini", "--backend", "openai", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "(= gpt-4o-mini-2024-07-18): yes" in out and "65,536 tokens" in out and "(fits, counted with" in out
    assert main(["models", "check", "gpt-4o-mini-tts", "--backend", "openai"]) == 1
    capsys.readouterr()
    assert main(["models", "check", "Qwen/Qwen2.5-7B-Instruct", "--backend", "synth", "--json"]) == 0
    import json
    synth = json.loads(capsys.readouterr().out)
    assert synth["ok"] and synth["context_limit"] == 32_768 and synth["too_long"] is False
    assert main(["models", "check", "Qwen/Qwen2.5-3B-Instruct", "--backend", "synth"]) == 1
    assert main(["models", "check", "Qwen/Qwen2.5-3B-Instruct", "--backend", "modal"]) == 0
    assert main(["models", "check", "crafter-tiny", "--backend", "local", "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert "crafter-tiny: yes - a built-in size" in out and "1,024 tokens per example" in out
    weights = tmp_path / "my-model"
    weights.mkdir()
    (weights / "config.json").write_text("{}")
    assert main(["models", "check", str(weights), "--backend", "local"]) == 0
    assert "weights on this disk" in capsys.readouterr().out


def test_local_backend_refuses_a_model_without_weights_before_launching(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    port = free_port()
    config = tmp_path / "crafter_config.toml"
    config.write_text(f'[finetune]\nlocal_url = "http://127.0.0.1:{port}/v1"\n'
                      f'[storage]\ndata_dir = "{tmp_path / "state"}"\n')
    data = tiny_dataset(tmp_path / "d.jsonl")
    assert main(["--config", str(config), "finetune", str(data), "--backend", "local",
                 "--model", "Qwen/Qwen2.5-7B-Instruct", "--yes"]) != 0
    err = capsys.readouterr().err
    assert "local cannot fine-tune Qwen/Qwen2.5-7B-Instruct: no weights on this disk" in err
    assert not (tmp_path / "state").exists()  # no service started, no job recorded, no subset written
    assert list(tmp_path.glob("d.*.jsonl")) == []


def test_models_says_it_starts_the_service_and_stops_it(tmp_path, capsys):
    from crafter_tui.finetune.local_service import is_up

    url = f"http://127.0.0.1:{free_port()}/v1"
    config = tmp_path / "crafter_config.toml"
    config.write_text(f'[finetune]\nlocal_url = "{url}"\n[storage]\ndata_dir = "{tmp_path / "state"}"\n')
    try:
        assert main(["--config", str(config), "models", "--backend", "local"]) == 0
        captured = capsys.readouterr()
        assert f"started the local fine-tune service at {url}" in captured.err and "stopped afterwards" in captured.err
        assert "local: " in captured.out and not is_up(url)

        assert main(["--config", str(config), "models", "--backend", "local", "--keep-service"]) == 0
        assert "crafter-tui serve --stop" in capsys.readouterr().err and is_up(url)
        assert main(["--config", str(config), "serve", "--stop"]) == 0
        assert "stopped the fine-tune service" in capsys.readouterr().out and not is_up(url)

        # a job on our service that is still running: 'jobs' starts the service to reach it, and says so
        from crafter_tui.finetune.registry import JobEntry, JobRegistry

        JobRegistry.from_data_dir(tmp_path / "state").save(JobEntry(job_id="ftjob-x", host="local", model="m",
                                                                    status="running", base_url=url))
        assert main(["--config", str(config), "jobs", "list", "--ours"]) == 0
        assert "it keeps running so its jobs go on: stop it with 'crafter-tui serve --stop'" in capsys.readouterr().err
    finally:
        from crafter_tui.finetune.local_service import stop_service

        stop_service(tmp_path / "state" / "service" / "serve.pid", url)


def test_llm_runs_show_their_cost_first_ask_above_the_limit_and_record_it(tmp_path, capsys, monkeypatch):
    import json

    from tests.doubles.openai_double import OpenAIDouble, WoodcutterResponder

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))  # nobody at a terminal to answer
    with OpenAIDouble(WoodcutterResponder()) as double:
        config = tmp_path / "crafter_config.toml"
        config.write_text(f'[openai]\nbase_url = "{double.base_url}"\napi_key = "k"\nconfirm_above_usd = 0.001\n')
        command = ["--config", str(config), "rollout", "--model", "gpt-4o-mini", "--episodes", "3", "--max-turns",
                   "4", "--quiet", "--out", "traces"]
        assert main(command) != 0
        err = capsys.readouterr().err
        assert "cost estimate: at most 3 episodes x 4 turns" in err and "pass --yes" in err
        assert double.chat_requests == [] and not (tmp_path / "traces").exists()

        config.write_text(f'[openai]\nbase_url = "{double.base_url}"\napi_key = "k"\n')  # default limit: $5
        assert main(command) == 0
        err = capsys.readouterr().err
        line = next(x for x in err.splitlines() if x.startswith("cost estimate"))
        assert "at gpt-4o-mini's list price" in line
        rollout_requests = len(double.chat_requests)
        assert main(["--config", str(config), "eval", "--experiment", "priced", "--model", "gpt-4o-mini",
                     "--episodes", "2", "--max-turns", "2", "--difficulty", "easy,normal", "--quiet",
                     "--out", "evals"]) == 0
        for difficulty in ("easy", "normal"):
            per_run = json.loads((tmp_path / "evals" / f"priced-v1.0-{difficulty}" / "cost.json").read_text())
            assert per_run["estimate"]["episodes"] == 2 and per_run["actual"]["prompt_tokens"] > 0
    recorded = json.loads(next((tmp_path / "traces").rglob("cost.json")).read_text())
    estimate, actual = recorded["estimate"], recorded["actual"]
    assert estimate["prompt_tokens"] == 3 * 4 * estimate["prompt_tokens_per_turn"] > 0
    assert estimate["usd"] == pytest.approx((estimate["prompt_tokens"] * 0.15
                                             + estimate["completion_tokens"] * 0.60) / 1e6, abs=1e-4)
    assert actual["prompt_tokens"] > 0 and actual["usd"] is not None and rollout_requests <= 12


def test_eval_and_pipeline_ask_before_a_priced_run(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", open("/dev/null"))
    config = tmp_path / "crafter_config.toml"
    config.write_text('[openai]\nbase_url = "http://127.0.0.1:9/v1"\napi_key = "k"\nconfirm_above_usd = 0\n'
                      f'[storage]\ndata_dir = "{tmp_path / "state"}"\n')
    assert main(["--config", str(config), "eval", "--experiment", "e1", "--model", "gpt-4o-mini", "--episodes", "2",
                 "--difficulty", "easy,normal"]) != 0
    err = capsys.readouterr().err
    assert "cost estimate: at most 4 episodes x 300 turns" in err and "pass --yes" in err
    assert main(["--config", str(config), "pipeline", "--workdir", "pipe", "--agent", "openai", "--data-model",
                 "gpt-4o-mini", "--backend", "openai", "--models", "gpt-4o-mini", "--episodes", "10"]) != 0
    err = capsys.readouterr().err
    lines = [x for x in err.splitlines() if x.startswith("cost estimate")]
    assert len(lines) == 2 and "at most 10 episodes" in lines[0] and "ft:gpt-4o-mini-2024-07-18" in lines[1]
    assert "pass --yes" in err and not (tmp_path / "pipe").exists() and not (tmp_path / "state").exists()


def test_analyze_hooks_compares_each_hook_before_and_after(tmp_path, capsys, monkeypatch):
    import json

    monkeypatch.chdir(tmp_path)
    for agent in ("random", "scripted"):
        assert main(["rollout", "--agent", agent, "--episodes", "8", "--max-steps", "60", "--out", "traces",
                     "--quiet", "--run-id", f"run-{agent}"]) == 0
    (tmp_path / "hooks.py").write_text("def wood(episodes):\n"
                                       "    return [1.0 if 'collect_wood' in (e.achievements or []) else 0.0"
                                       " for e in episodes]\n")
    (tmp_path / "enhanced_hooks.json").write_text(json.dumps({
        "before": {"model": "random"}, "after": {"runs": ["run-scripted"]},
        "hooks": {"achievements": "achievements", "wood": "hooks.py:wood",
                  "invalid": {"metric": "invalid_actions", "higher_is_better": False}}}))
    capsys.readouterr()
    assert main(["analyze", "hooks", "--traces", "traces", "--enhancements", "enhanced_hooks.json",
                 "--output", "hooks_report.json"]) == 0
    report = json.loads((tmp_path / "hooks_report.json").read_text())
    assert report["before_runs"] == ["run-random"] and report["after_runs"] == ["run-scripted"]
    effects = {e["hook"]: e for e in report["effects"]}
    assert set(effects) == {"achievements", "wood", "invalid"}
    achievements = effects["achievements"]["comparison"]
    assert achievements["n_baseline"] == achievements["n_candidate"] == 8 and achievements["difference"] > 0
    assert achievements["p_permutation_holm"] >= achievements["p_permutation"]
    assert effects["achievements"]["recommendation"].startswith("keep")
    assert 0 <= effects["wood"]["comparison"]["mean_candidate"] <= 1
    assert "achievements: +" in capsys.readouterr().err

    (tmp_path / "bad.json").write_text(json.dumps({"before": {}, "after": {"model": "x"}, "hooks": {"a": "reward"}}))
    assert main(["analyze", "hooks", "--traces", "traces", "--enhancements", "bad.json"]) != 0
    assert "'runs'" in capsys.readouterr().err


def test_eval_notes_are_a_changelog_per_version_in_list_and_compare(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for agent in ("random", "scripted"):
        assert main(["rollout", "--agent", agent, "--episodes", "4", "--max-steps", "40", "--out", "traces",
                     "--quiet", "--run-id", f"run-{agent}"]) == 0
    assert main(["eval", "--experiment", "agent", "--runs", "traces/run-random", "--notes", "first try: random"]) == 0
    assert main(["eval", "--experiment", "agent", "--runs", "traces/run-scripted",
                 "--notes", "v1.1: the scripted expert plays"]) == 0
    capsys.readouterr()
    assert main(["eval", "--list"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out[1:]] == ["v1.0", "v1.1"]
    assert out[1].endswith("first try: random") and out[2].endswith("v1.1: the scripted expert plays")
    # (two versions of one experiment cannot be compared with each other yet: names must be unique)
    assert main(["eval", "--experiment", "base", "--runs", "traces/run-random", "--notes", "the baseline"]) == 0
    assert main(["compare", "--experiments", "base,agent", "--format", "md", "--output", "c.md",
                 "--resamples", "99"]) == 0
    report = (tmp_path / "c.md").read_text()
    assert "## Changelog" in report and "- **agent v1.1**: v1.1: the scripted expert plays" in report
    assert "- **base v1.0**: the baseline" in report
    assert main(["compare", "--experiments", "base,agent", "--output", "c.html", "--resamples", "99"]) == 0
    assert "<h3>Changelog</h3>" in (tmp_path / "c.html").read_text()
