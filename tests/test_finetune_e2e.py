"""End to end over loopback with the REAL trainer and inference engine (crafter-tiny), the real SDK client.

upload -> create -> events with falling loss -> succeeded -> the model answers a chat completion
(with the tools) with a valid ``interact`` call. The dataset is tiny and repetitive (20 identical
short turns, 5 epochs at batch 1 = 100 steps; few epochs = few checkpoint saves) so a from-scratch 1-2M parameter model memorises
the call in well under a minute on 2 cores.
"""

from __future__ import annotations

import time

import pytest

from crafter_tui.agents.prompting import TOOLS, interact_message
from crafter_tui.config import AppConfig
from crafter_tui.finetune.client import FineTuneClient, JobSpec, metrics_from_events
from crafter_tui.finetune.hosts import host_from_config
from crafter_tui.finetune.model_test import check_reply
from crafter_tui.servers.ft_server import ServeSettings, create_app
from tests.ft_support import ServerThread, write_dataset

PROMPT = [{"role": "system", "content": "Play Crafter."}, {"role": "user", "content": "A tree is north of you."}]


@pytest.mark.slow
def test_train_and_serve_crafter_tiny_end_to_end(tmp_path):
    data = write_dataset(tmp_path / "repetitive.jsonl", [
        {"messages": [*PROMPT, interact_message(["move_up", "do"], "wood", "call_1")], "tools": TOOLS}
        for _ in range(20)])
    server = ServerThread(create_app(ServeSettings(data_dir=tmp_path / "svc", threads=1, poll_interval=0.1))).start()
    try:
        config = AppConfig()
        config.finetune.local_url = server.base_url
        client = FineTuneClient(host_from_config("local", config), max_retries=2)
        file_id = client.upload(data)
        job = client.create(JobSpec(model="crafter-tiny", training_file=file_id, n_epochs=5, batch_size=1,
                                    learning_rate=5e-3, suffix="e2e", seed=0))
        seen: dict[str, object] = {}
        deadline = time.monotonic() + 150
        info = client.retrieve(job.id)
        while not info.done and time.monotonic() < deadline:
            for event in client.events(job.id, stop_at=set(seen)):
                seen[event.id] = event
            time.sleep(0.5)
            info = client.retrieve(job.id)
        assert info.status == "succeeded", info.error
        points = metrics_from_events(client.events(job.id))
        losses = [p.train_loss for p in points if p.train_loss is not None]
        assert len(losses) >= 5 and losses[-1] < losses[0] / 4, losses
        assert points[-1].step == 100
        assert seen, "no events were streamed while the job ran"
        assert info.fine_tuned_model == f"ft:crafter-tiny:e2e:{job.id}"
        assert info.fine_tuned_model in client.models()
        reply = client.chat(info.fine_tuned_model, PROMPT, TOOLS, max_tokens=64)
        passed, actions, detail = check_reply(reply.tool_calls, reply.content)
        assert passed, detail
        assert actions == ["move_up", "do"] and reply.finish_reason == "tool_calls"
        assert reply.prompt_tokens > 0 and reply.completion_tokens > 0
    finally:
        server.stop()
