"""crafter-tui: a terminal workbench for making LLM agents better at Crafter."""

#: The one place the version is written (pyproject.toml reads it from here). A literal, not
#: importlib.metadata: that import alone costs ~50 ms of every start-up, console included.
__version__ = "0.1.0"
