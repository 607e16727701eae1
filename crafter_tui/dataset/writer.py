"""Write example lines given as byte pieces, one ``writev`` per batch: no joins, no re-encoding.

A million examples are ~4 GB of JSONL made of a few shared pieces each (system message,
history segments, the turn, the tools): joining every line into one string, then encoding
it to UTF-8 for a text file copied each byte twice in Python. The kernel gathers the pieces
straight from the objects the fast path already holds.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

def _iov_max() -> int:
    try:
        return max(1, min(int(os.sysconf("SC_IOV_MAX")), 1024))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - no sysconf: one piece per write
        return 1


#: Pieces handed to one ``writev`` (Linux: 1024).
MAX_PIECES = _iov_max()
_FLUSH_AT = max(1, MAX_PIECES - 16)  # room for the next line's pieces: most batches are one call
_writev = getattr(os, "writev", None)
_pwritev = getattr(os, "pwritev", None)


class PieceWriter:
    """Appends lines (each a sequence of ``bytes`` pieces, the last ending with its newline) to a file descriptor."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pieces: list[bytes] = []

    def add(self, pieces: Iterable[bytes]) -> None:
        """One line: its pieces in order, newline included."""
        self.pieces.extend(pieces)
        if len(self.pieces) >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        pieces, self.pieces = self.pieces, []
        for start in range(0, len(pieces), MAX_PIECES):
            _write_all(self.fd, pieces[start:start + MAX_PIECES])


def _write_all(fd: int, pieces: list[bytes]) -> None:
    written = _writev(fd, pieces) if _writev is not None else os.write(fd, b"".join(pieces))
    total = sum(map(len, pieces))
    if written < total:  # a short write (rare on regular files): the rest in plain writes
        rest = memoryview(b"".join(pieces))[written:]
        while rest:
            rest = rest[os.write(fd, rest):]


def pwrite_pieces(fd: int, pieces: list[bytes], offset: int) -> int:
    """Write ``pieces`` in order at ``offset`` (``pwritev``: the file position is not used, so two
    processes can fill their own ranges of one file); returns the offset after them."""
    for start in range(0, len(pieces), MAX_PIECES):
        batch = pieces[start:start + MAX_PIECES]
        total = sum(map(len, batch))
        written = _pwritev(fd, batch, offset) if _pwritev is not None else 0
        if written < total:  # a short write (rare on regular files), or no pwritev: the rest in plain pwrites
            rest = memoryview(b"".join(batch))[written:]
            at = offset + written
            while rest:
                n = os.pwrite(fd, rest, at)
                rest, at = rest[n:], at + n
        offset += total
    return offset
