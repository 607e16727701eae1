"""The built wheel is a working install: it ships every package and the console's stylesheets, and the
console starts from it in an empty folder, far from any checkout.

Builds offline (``pip wheel --no-build-isolation``, setuptools from the dev extra) from a copy of the
source, so the checkout gets no build/ or egg-info folders.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "crafter_tui", "styles")

#: Run inside the fresh install: the console, headless, with its stylesheets from the package.
CONSOLE = textwrap.dedent("""
    import asyncio
    import crafter_tui
    from crafter_tui.tui.app import CrafterApp

    async def main():
        app = CrafterApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.pause()
            print("package", crafter_tui.__file__)
            print("mode", app.current_mode, type(app.screen).__name__)
            for (path, _), _ in app.stylesheet.source.items():
                print("stylesheet", path)

    asyncio.run(main())
""")


def _pip(*args: str, cwd: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "pip", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"pip {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "src"
    source.mkdir()
    for name in SOURCES:
        origin = ROOT / name
        if origin.is_dir():
            shutil.copytree(origin, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(origin, source / name)
    _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(base / "dist"), str(source), cwd=base)
    (built,) = (base / "dist").glob("crafter_tui-*.whl")
    return built


def test_the_wheel_ships_every_package_and_the_stylesheets(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = {str(init.parent.relative_to(ROOT)) for init in (ROOT / "crafter_tui").rglob("__init__.py")}
    missing = sorted(package for package in packages if f"{package}/__init__.py" not in names)
    assert not missing, f"packages left out of the wheel (add them to [tool.setuptools].packages): {missing}"
    styles = sorted(path.name for path in (ROOT / "styles").glob("*.tcss"))
    assert styles and all(f"crafter_tui/styles/{name}" in names for name in styles)


def test_the_console_starts_from_the_installed_wheel_in_an_empty_folder(wheel, tmp_path):
    target, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    _pip("install", "--no-deps", "--no-compile", "-q", "--target", str(target), str(wheel), cwd=tmp_path)
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env.update(PYTHONPATH=str(target), HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = subprocess.run([sys.executable, "-c", CONSOLE], cwd=empty, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"the console did not start from the wheel:\n{done.stderr[-4000:]}"
    lines = done.stdout.splitlines()
    assert f"package {target / 'crafter_tui' / '__init__.py'}" in lines
    assert "mode runs RunsScreen" in lines
    sheets = {line.split(" ", 1)[1] for line in lines if line.startswith("stylesheet ")}
    assert {str(target / "crafter_tui" / "styles" / name) for name in ("app.tcss", "screens.tcss")} <= sheets
