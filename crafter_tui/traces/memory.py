"""Give memory that loading freed back to the system.

Loading a big store parses gigabytes of JSON in blocks; the blocks are freed at once, but
glibc's malloc keeps freed pages mapped (per thread arena) and Arrow's mimalloc pool keeps
its own: measured on 100k episodes / 1M turns, ~130 MB stayed resident for nothing. A trim
after each load costs a few milliseconds and keeps the resident size close to the data.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import pyarrow as pa


@functools.cache
def _malloc_trim() -> object | None:
    name = ctypes.util.find_library("c")
    try:
        return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
    except OSError:  # pragma: no cover - no loadable C library
        return None


def release_freed_memory() -> None:
    """Return freed heap pages (glibc arenas, Arrow's pool) to the system; no-op where unsupported."""
    pa.default_memory_pool().release_unused()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)  # type: ignore[operator]
