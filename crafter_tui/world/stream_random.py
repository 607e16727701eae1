"""numpy's legacy ``RandomState`` draws, served from a buffer of its raw MT19937 words.

Why: Crafter's creatures draw from the world RNG one value at a time (``uniform()``,
``randint(0, 4)``), and each scalar call into ``RandomState`` costs 1-4 us of argument
handling, a large part of a step. Both draws are simple functions of the generator's 32-bit
words, which numpy hands out in bulk cheaply:

- ``uniform()`` is ``next_double``: ``((w1 >> 5) * 2**26 + (w2 >> 6)) / 2**53``;
- ``randint(low, high)`` with ``high - 1 - low = r`` is ``low`` when ``r == 0``, else
  ``low + (w & mask)`` for the first word with ``w & mask <= r`` (``mask``: the smallest
  ``2**k - 1 >= r``), numpy's masked rejection for 32-bit ranges.

``StreamRandom`` answers those two calls from blocks of words drawn with
``randint(0, 2**32, size=n, dtype=uint32)`` (one word each) and hands everything else
(``get_state``, sized draws, other distributions) to the real ``RandomState`` after *syncing*
it: rewinding to where the buffered stream began and drawing exactly the words consumed
(syncs are rare: world generation and tests; a step never needs one). Every value, and
the generator state anyone can observe, is the same as with plain ``RandomState`` calls;
``tests/test_world_stream_random.py`` checks that against numpy draw for draw.
"""

from __future__ import annotations

from array import array
from typing import Any

import numpy as np

BLOCK = 1024  # words drawn per refill: ~70 steps of a busy world
_TWO_26 = 67108864.0
_TWO_53 = 9007199254740992.0
_WORD_RANGE = 2**32


class StreamRandom:
    """A drop-in for ``np.random.RandomState`` whose scalar ``uniform()``/``randint()`` are fast."""

    __slots__ = ("_state", "_saved", "_words", "_next", "_count", "_base")

    def __init__(self, state: np.random.RandomState) -> None:
        self._state = state
        self._saved: Any = None  # the generator's state where the buffered stream began
        self._words = array("I")
        self._next = 0  # index of the next unused word in _words
        self._count = 0
        self._base = 0  # words consumed from the stream before _words[0]

    # -- the fast paths ---------------------------------------------------------------------
    def uniform(self, low: float = 0.0, high: float = 1.0, size: Any = None) -> Any:
        if size is not None or low != 0.0 or high != 1.0:
            return self._synced().uniform(low, high, size)
        i = self._next
        if i + 2 > self._count:
            self._refill()
            i = 0
        words = self._words
        self._next = i + 2
        return ((words[i] >> 5) * _TWO_26 + (words[i + 1] >> 6)) / _TWO_53

    def randint(self, low: int, high: int | None = None, size: Any = None, dtype: Any = int) -> Any:
        if (size is not None or dtype is not int or high is None or type(low) is not int
                or type(high) is not int or not 0 < high - low <= _WORD_RANGE - 1):
            return self._synced().randint(low, high, size, dtype)
        span = high - 1 - low
        if span == 0:
            return low
        mask = (1 << span.bit_length()) - 1  # numpy's: span with every lower bit set
        while True:
            i = self._next
            if i >= self._count:
                self._refill()
                i = 0
            self._next = i + 1
            value = self._words[i] & mask
            if value <= span:
                return low + value

    # -- everything else goes to numpy, at the exact position --------------------------------
    def __getattr__(self, name: str) -> Any:
        return getattr(self._synced(), name)

    def _synced(self) -> np.random.RandomState:
        """The real generator, wound to just after the words consumed so far; the buffer is dropped."""
        if self._saved is not None:
            self._state.set_state(self._saved)
            consumed = self._base + self._next
            if consumed:
                self._state.randint(0, _WORD_RANGE, size=consumed, dtype=np.uint32)
            self._saved, self._words, self._next, self._count, self._base = None, array("I"), 0, 0, 0
        return self._state

    def _refill(self) -> None:
        """More words: the unused tail of the buffer, then the next block of the stream."""
        if self._saved is None:
            self._saved = self._state.get_state()
        words = array("I", self._words[self._next:])
        words.frombytes(self._state.randint(0, _WORD_RANGE, size=BLOCK, dtype=np.uint32).tobytes())
        self._base += self._next
        self._words, self._next, self._count = words, 0, len(words)
