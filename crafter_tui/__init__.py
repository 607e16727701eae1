"""crafter-tui: a terminal workbench for making LLM agents better at Crafter."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("crafter-tui")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"
