"""The layers in ``[tool.importlinter]`` (pyproject.toml) hold, and the contracts can fail.

``lint-imports`` runs as CI would run it; the other tests load the same contracts from
pyproject.toml and check them against the real import graph with one forbidden import added,
so a contract that had been mis-spelt into one that always passes would be caught.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from importlinter.api import read_configuration
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract
from importlinter.contracts.forbidden import ForbiddenContract
from importlinter.contracts.layers import LayersContract

import crafter_tui

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = Path(crafter_tui.__file__).resolve().parent
#: Root modules outside the layers, each for a reason: the shared kernel every layer may import,
#: and ``python -m crafter_tui`` (the CLI's second door).
OUTSIDE_LAYERS = {"config", "errors", "version", "__main__"}
CONTRACT_TYPES = {"layers": LayersContract, "forbidden": ForbiddenContract,
                  "acyclic_siblings": AcyclicSiblingsContract}


def lint_imports_command() -> list[str]:
    beside = Path(sys.executable).with_name("lint-imports")
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found, "lint-imports is not installed (it is in the dev extra)"
    return [found, "--no-cache", "--config", str(PYPROJECT)]


def test_lint_imports_passes():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(lint_imports_command(), cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    assert not (ROOT / ".import_linter_cache").exists()


@pytest.fixture(scope="module")
def config() -> dict:
    return read_configuration(str(PYPROJECT))


@pytest.fixture(scope="module")
def built_graph() -> grimp.ImportGraph:
    return grimp.build_graph("crafter_tui", include_external_packages=True, cache_dir=None)


@pytest.fixture
def graph(built_graph: grimp.ImportGraph) -> grimp.ImportGraph:
    """A copy per test: a contract's check removes the imports it ignores from the graph it is given."""
    return copy.deepcopy(built_graph)


def contract(config: dict, kind: str, name_starts: str = ""):
    for options in config["contracts_options"]:
        if options["type"] == kind and options["name"].startswith(name_starts):
            opts = {k: v for k, v in options.items() if k not in ("type", "name", "id")}
            return CONTRACT_TYPES[kind](name=options["name"], session_options=config["session_options"],
                                        contract_options=opts)
    raise AssertionError(f"no {kind} contract named {name_starts!r}... in pyproject.toml")


def with_import(graph: grimp.ImportGraph, importer: str, imported: str) -> grimp.ImportGraph:
    """A copy of ``graph`` with one more import (take it before a check mutates ``graph``)."""
    probe = copy.deepcopy(graph)
    probe.add_import(importer=importer, imported=imported, line_number=1, line_contents=f"import {imported}")
    return probe


def test_every_package_is_placed_in_a_layer(config: dict):
    layers = next(o for o in config["contracts_options"] if o["type"] == "layers")["layers"]
    named = {part.strip().removeprefix("crafter_tui.") for layer in layers for part in layer.replace("|", ":").split(":")}
    children = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    children |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert children - named - OUTSIDE_LAYERS == set(), "a package or module the layers do not place"


@pytest.mark.parametrize(("importer", "imported"), [
    ("crafter_tui.world.rules", "crafter_tui.traces.schema"),  # the bottom reaching up one
    ("crafter_tui.rollout.runner", "crafter_tui.servers.env_server"),
    ("crafter_tui.finetune.local_service", "crafter_tui.servers.ft_server"),
    ("crafter_tui.agents.transport.lean", "crafter_tui"),  # the package root leads to the notebook API
    ("crafter_tui.services.runs", "crafter_tui.tui.app"),
])
def test_the_layers_contract_catches_an_upward_import(config: dict, graph: grimp.ImportGraph,
                                                      importer: str, imported: str):
    layers, probe = contract(config, "layers"), with_import(graph, importer, imported)
    assert layers.check(graph, verbose=False).kept
    assert not layers.check(probe, verbose=False).kept


def test_the_textual_contract_catches_an_indirect_import(config: dict, graph: grimp.ImportGraph):
    textual = contract(config, "forbidden", "Textual only in the console: nothing below")
    # a domain module -> a module no contract lists -> Textual: indirect, still refused
    probe = with_import(with_import(graph, "crafter_tui.evaluation.charts", "crafter_tui.version"),
                        "crafter_tui.version", "textual")
    assert textual.check(graph, verbose=False).kept
    assert not textual.check(probe, verbose=False).kept


def test_the_acyclic_contract_catches_a_cycle_between_siblings(config: dict, graph: grimp.ImportGraph):
    acyclic = contract(config, "acyclic_siblings")
    # rollout.episode imports rollout.envs; the way back closes a cycle inside rollout/
    probe = with_import(graph, "crafter_tui.rollout.envs", "crafter_tui.rollout.episode")
    assert acyclic.check(graph, verbose=False).kept
    assert not acyclic.check(probe, verbose=False).kept
