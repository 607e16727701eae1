"""Imported by the worker forkserver only (``executors.WORKER_PRELOAD``): importing it warms the game.

The first world reset in a process loads numba-compiled noise code (~0.7 s); doing it once in the
forkserver means every forked worker starts warm. Numba's default OpenMP threading layer aborts a
process that forks after using it, so the forkserver switches to the fork-safe ``workqueue``
layer before that first reset. Nothing else imports this module.
"""

from __future__ import annotations

import numba

numba.config.THREADING_LAYER = "workqueue"

from crafter_tui.world.env import CrafterWorld  # noqa: E402 - after choosing the threading layer

CrafterWorld("normal", max_steps=1).reset(0)
