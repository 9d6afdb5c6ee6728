"""``pite-mcq`` at scale: the sentence embeddings (nearly all of its time) computed in shards, in
worker processes or on Ray (``training.workpool``), kept for a rerun.

``ShardedEmbedder.embed(texts)`` orders the texts by length, as ``MiniLMEmbedder`` does, and cuts
that order into shards of whole batches: every batch is the one a single ``MiniLMEmbedder.embed``
call forms, so the vectors (with the same threads per process) and hence the questions written
are those of one process, however many workers there are. With a ``work_dir`` each finished
shard's vectors are kept under ``<work_dir>/<digest of the texts>/`` (``.npy``, no pickle) and a
rerun embeds only the shards it had not finished (or whose kept file does not read). The
neighbour search and the draws stay in one process: they are a matrix product and a loop,
seconds for 10^5 questions.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from training.mcq.embedder import MiniLMEmbedder
from training.workpool import NPY, Scale, ShardStore, run_tasks

SHARD_SIZE = 1024  # texts per unit of work (rounded up to whole batches)


class EmbeddingWorkerDied(RuntimeError):
    """A shard's worker process died every time it was tried."""


def _load(model_path: str | None, batch_size: int, device: str, threads: int) -> MiniLMEmbedder:
    """A worker's embedder, with ``threads`` torch threads (0: torch's default)."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return MiniLMEmbedder(model_path, batch_size=batch_size, device=device)


def _embed_shard(embedder: MiniLMEmbedder, shard: tuple[int, list[str]]) -> np.ndarray:
    return embedder.embed(shard[1])


def _check_vectors(rows: list[int], index: int, vectors: np.ndarray) -> None:
    """Refuse kept vectors that are not float32 rows, one per text of shard ``index``."""
    if vectors.dtype != np.float32 or vectors.ndim != 2 or len(vectors) != rows[index]:
        raise ValueError(f"{vectors.dtype} array of shape {vectors.shape}, not float32 vectors of {rows[index]} texts")


def _crashed(shard: tuple[int, list[str]]) -> np.ndarray:
    raise EmbeddingWorkerDied(f"the worker process died every time it embedded shard {shard[0]} "
                              f"({len(shard[1])} texts); a rerun resumes from the finished shards")


class ShardedEmbedder:
    """``MiniLMEmbedder``'s vectors, computed in shards over ``scale`` (module docstring)."""

    def __init__(self, *, model_path: str | None = None, batch_size: int = 64, device: str = "cpu",
                 threads: int = 0, scale: Scale = Scale(), shard_size: int = SHARD_SIZE,
                 work_dir: str | Path | None = None, progress: bool = True) -> None:
        self.setup_args = (model_path, batch_size, device, threads)
        self.scale = scale
        self.texts_per_shard = -(-shard_size // batch_size) * batch_size
        self.work_dir = Path(work_dir) if work_dir is not None else None
        self.progress = progress
        self.embedded = 0  # texts embedded by this run
        self.reused = 0  # texts whose vectors an earlier, unfinished run had kept
        self.unreadable = 0  # kept shard files that did not read (embedded again)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        size = self.texts_per_shard
        shards = [(index, [texts[i] for i in order[start : start + size]])
                  for index, start in enumerate(range(0, len(order), size))]
        store = None
        if self.work_dir is not None:
            digest = hashlib.sha256("\0".join(texts).encode("utf-8")).hexdigest()[:16]
            model_path, batch_size, device, _ = self.setup_args
            store = ShardStore(self.work_dir / digest, {"model": model_path, "batch_size": batch_size,
                                                        "device": device, "shard_size": size, "texts": len(texts)}, NPY)
        vectors = {}
        if store is not None:
            vectors = store.kept(range(len(shards)), functools.partial(_check_vectors, [len(b) for _, b in shards]))
            self.unreadable += store.unreadable
        pending = [shard for shard in shards if shard[0] not in vectors]
        done_texts = sum(len(batch) for index, batch in shards if index in vectors)
        self.reused += done_texts
        self.embedded += len(texts) - done_texts
        with tqdm(total=len(texts), initial=done_texts, desc="pite-mcq embed", unit="text",
                  disable=not self.progress) as bar:
            for (index, batch), result in run_tasks(_embed_shard, pending, _load, self.setup_args, self.scale,
                                                    _crashed):
                vectors[index] = result
                if store is not None:
                    store.save(index, result)
                bar.update(len(batch))
        out = np.zeros((len(texts), vectors[0].shape[1] if vectors else 0), dtype=np.float32)
        if vectors:
            out[order] = np.concatenate([vectors[index] for index, _ in shards])
        return out
