"""Only ``crafter_tui/tui/`` may import Textual: the domain and services stay front-end free."""

from __future__ import annotations

import ast
from pathlib import Path

import crafter_tui

PACKAGE = Path(crafter_tui.__file__).resolve().parent
FRONT_END_ONLY = ("textual", "textual_plotext")


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import statement in ``path``, including those inside functions."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def textual_imports_outside_tui() -> list[str]:
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "tui":
            continue
        for line, module in imported_modules(path):
            if module.split(".")[0] in FRONT_END_ONLY:
                offenders.append(f"crafter_tui/{relative}:{line}: imports {module}")
    return offenders


def test_no_module_outside_tui_imports_textual():
    assert textual_imports_outside_tui() == []


def test_the_check_sees_textual_imports(tmp_path):
    """The parser must catch plain, from- and function-local imports (a check that cannot fail is no check)."""
    sample = tmp_path / "sample.py"
    sample.write_text("import os\nfrom textual.app import App\n\ndef f():\n    import textual_plotext\n")
    modules = [module for _, module in imported_modules(sample)]
    assert "textual.app" in modules and "textual_plotext" in modules


def test_tui_package_exists_and_uses_textual():
    tui_imports = [module for path in (PACKAGE / "tui").rglob("*.py") for _, module in imported_modules(path)]
    assert any(module.startswith("textual") for module in tui_imports)

