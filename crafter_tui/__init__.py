"""crafter-tui: a terminal workbench for making LLM agents better at Crafter."""

from crafter_tui.version import __version__

#: The package root is a front door, not a library: no module of the package imports it (they name
#: ``crafter_tui.version``), since it leads to the notebook API, which sits above every layer.
#: The notebook API (crafter_tui/notebook.py), loaded on first use: ``import crafter_tui`` stays
#: as cheap as it was (no DuckDB, pandas or pydantic until a notebook asks for a table).
_NOTEBOOK = frozenset({"open_store", "experiments", "experiment_episodes", "compare", "load_comparison"})
__all__ = ["__version__", *sorted(_NOTEBOOK)]


def __getattr__(name: str) -> object:
    if name in _NOTEBOOK:
        from crafter_tui import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'crafter_tui' has no attribute {name!r}")
