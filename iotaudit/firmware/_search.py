"""One pass over a window for every needle the readers look for.

Each reader needs a few literal needles (``-----BEGIN ``, the DER v3 mark,
the Name OID prefix, library names ...).  One ``bytes.find`` pass per needle
costs a full read of the window each; nine of them made the scan
CPU-bound at about a ninth of the speed of one.  Here a window is read
twice by ``bytes.translate`` (C speed): once marking bytes that can start a
needle, once bytes that can be a needle's second byte; numpy ANDs the two,
shifted by one, and keeps the candidates whose two-byte pair starts some
needle (a 65536-entry table); a ``startswith`` check per survivor ends it.
In random data about 1 position in 8,000 survives the pair table, so the
Python work per window is small.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


class NeedleSearch:
    """Finds every occurrence of a fixed set of needles (each at least two bytes) in one numpy pass.

    Args:
        needles: The byte strings to find.
    """

    __slots__ = ("_by_pair", "_first", "_pairs", "_second", "needles")

    def __init__(self, needles: Sequence[bytes]) -> None:
        if any(len(n) < 2 for n in needles):
            raise ValueError("every needle needs at least two bytes")
        self.needles = tuple(dict.fromkeys(needles))
        # bytes.translate tables: 1 where a byte can be a needle's first (second) byte, else 0.
        self._first = bytes(int(any(n[0] == i for n in self.needles)) for i in range(256))
        self._second = bytes(int(any(n[1] == i for n in self.needles)) for i in range(256))
        self._pairs = np.zeros(65536, dtype=bool)
        self._by_pair: dict[int, tuple[bytes, ...]] = {}
        for needle in self.needles:
            pair = needle[0] << 8 | needle[1]
            self._pairs[pair] = True
            self._by_pair[pair] = (*self._by_pair.get(pair, ()), needle)

    def find_all(self, window: bytes, start: int, end: int) -> dict[bytes, list[int]]:
        """Needle -> sorted positions ``p`` with ``start <= p < end`` where ``window`` has the needle at ``p``."""
        found: dict[bytes, list[int]] = {needle: [] for needle in self.needles}
        end = min(end, len(window) - 1)
        if end <= start:
            return found
        segment = window[start:end + 1]  # one byte more: the second byte of a pair starting at end - 1
        first = np.frombuffer(segment.translate(self._first), dtype=np.uint8)
        second = np.frombuffer(segment.translate(self._second), dtype=np.uint8)
        candidates = np.flatnonzero(first[:-1] & second[1:])
        if not len(candidates):
            return found
        view = np.frombuffer(segment, dtype=np.uint8)
        keys = (view[candidates].astype(np.uint16) << 8) | view[candidates + 1]
        keep = self._pairs[keys]
        for position, key in zip((candidates[keep] + start).tolist(), keys[keep].tolist(), strict=True):
            for needle in self._by_pair[key]:
                if window.startswith(needle, position):
                    found[needle].append(position)
        return found


def iter_hits(raw: bytes, needle: bytes, start: int, end: int, hits: Sequence[int] | None = None) -> Iterator[int]:
    """Positions of ``needle`` in ``raw[start:end]`` (the needle wholly inside): from ``hits`` when given, else ``find``."""
    if hits is None:
        pos = raw.find(needle, start, end)
        while pos != -1:
            yield pos
            pos = raw.find(needle, pos + 1, end)
        return
    for pos in hits:
        if start <= pos and pos + len(needle) <= end:
            yield pos
