"""A deterministic, resumable batch order.

Batch ``k`` is a pure function of ``(seed, k)``: epoch ``e`` is a fresh permutation drawn
from ``seed + e``, so a resumed run needs only the step count to continue with exactly the
batches an uninterrupted run would have seen (no sampler state in the checkpoint). With
``groups`` (a group id per index, e.g. the clip of each example) the permutation is of the
groups, each group's indices kept together in their order, so a batch holds whole groups
(and the ends of the groups at its edges).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler


class ResumableBatchSampler(Sampler[list[int]]):
    """Yields lists of dataset indices for batches ``start_batch, start_batch + 1, ...`` forever."""

    def __init__(
        self, dataset_size: int, batch_size: int, seed: int, start_batch: int = 0, groups: Sequence[int] | None = None
    ) -> None:
        if dataset_size <= 0:
            raise ValueError("the training set is empty: nothing to sample")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.start_batch = start_batch
        self._group_of: np.ndarray | None = None  # each index's group, numbered 0..G-1
        if groups is not None:
            ids = np.asarray(groups)
            if ids.shape != (dataset_size,):
                raise ValueError(f"groups must give one group id per index: {ids.shape} for {dataset_size} indices")
            self._group_of = np.unique(ids, return_inverse=True)[1].reshape(-1)
        self._epoch: tuple[int, np.ndarray] | None = None

    def _permutation(self, epoch: int) -> np.ndarray:
        if self._epoch is None or self._epoch[0] != epoch:
            rng = np.random.default_rng(self.seed + epoch)
            if self._group_of is None:
                order = rng.permutation(self.dataset_size)
            else:
                rank = rng.permutation(int(self._group_of.max()) + 1)
                order = np.argsort(rank[self._group_of], kind="stable")
            self._epoch = (epoch, order)
        return self._epoch[1]

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
