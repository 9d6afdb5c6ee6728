"""A deterministic, resumable batch order.

Batch ``k`` is a pure function of ``(seed, k)``: epoch ``e`` is a fresh permutation drawn
from ``seed + e``, so a resumed run needs only the step count to continue with exactly the
batches an uninterrupted run would have seen (no sampler state in the checkpoint).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices for batches ``start_batch, start_batch + 1, ...`` forever."""

    def __init__(self, dataset_size: int, batch_size: int, seed: int, start_batch: int = 0) -> None:
        if dataset_size <= 0:
            raise ValueError("the training set is empty: nothing to sample")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng(self.seed + epoch).permutation(self.dataset_size)

    def batch(self, index: int) -> list[int]:
        """Indices of batch ``index`` (batches may span an epoch boundary)."""
        first = index * self.batch_size
        out = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.dataset_size)
            out.append(int(self._permutation(epoch)[offset]))
        return out

    def __iter__(self) -> Iterator[list[int]]:
        index = self.start_batch
        while True:
            yield self.batch(index)
            index += 1
