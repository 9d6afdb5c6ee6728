"""``FrameCache``: decoded clips kept in memory, bounded by bytes, shared by a run's readers.

Training revisits each clip many times (several stage-3 records per video, several epochs);
decoding the same frames again costs about as much as a small model's step on a CPU. The
cache is keyed by (file, frame times, size), so readers of different files over the same
videos share entries. Entries are read-only arrays; the oldest are dropped past ``max_bytes``.
DataLoader worker processes each hold their own copy.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np


class FrameCache:
    """A least-recently-used map from a decode key to its frames, at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def get(self, key: Hashable, decode: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached frames of ``key``, or ``decode()``'s, kept when they fit."""
        frames = self._entries.get(key)
        if frames is not None:
            self._entries.move_to_end(key)
            self.hits += 1
            return frames
        self.misses += 1
        frames = decode()
        if frames.nbytes <= self.max_bytes:
            frames.setflags(write=False)
            self._entries[key] = frames
            self.bytes += frames.nbytes
            while self.bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self.bytes -= dropped.nbytes
        return frames

    def __len__(self) -> int:
        return len(self._entries)
