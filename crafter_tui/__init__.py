"""crafter-tui: a terminal workbench for making LLM agents better at Crafter."""

#: The one place the version is written (pyproject.toml reads it from here). A literal, not
#: importlib.metadata: that import alone costs ~50 ms of every start-up, console included.
__version__ = "0.1.0"

#: The notebook API (crafter_tui/notebook.py), loaded on first use: ``import crafter_tui`` stays
#: as cheap as it was (no DuckDB, pandas or pydantic until a notebook asks for a table).
_NOTEBOOK = frozenset({"open_store", "experiments", "experiment_episodes", "compare", "load_comparison"})
__all__ = ["__version__", *sorted(_NOTEBOOK)]


def __getattr__(name: str) -> object:
    if name in _NOTEBOOK:
        from crafter_tui import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'crafter_tui' has no attribute {name!r}")
