"""The console's stylesheets (``*.tcss``), shipped as the package ``crafter_tui.styles``.

pyproject.toml maps this folder to that package, so ``importlib.resources`` finds the files the
same way in a checkout, an editable install and an installed wheel.
"""
