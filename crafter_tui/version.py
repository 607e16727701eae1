"""The package's version, in a module of its own.

The one place the version is written (pyproject.toml reads it from here, and ``crafter_tui``
re-exports it). A module of its own so that the layers can name the version without importing the
package root, which is the notebook API's front door (see ``[tool.importlinter]`` in pyproject).
A literal, not importlib.metadata: that import alone costs ~50 ms of every start-up, console included.
"""

__version__ = "0.1.0"
