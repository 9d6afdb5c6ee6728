"""The trainer's frame cache: the same frames as decoding, shared by readers, bounded by bytes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.datasets import ConversationDataset, GroundingDataset
from training.datasets.frame_cache import FrameCache
from training.synth import generate


def block(value: int):
    """A decoder of 100 bytes of ``value``."""
    return lambda: np.full(100, value, np.uint8)


def test_least_recently_used_entries_go_first_and_the_bound_holds() -> None:
    cache = FrameCache(max_bytes=3 * 100)
    for key in "abc":
        cache.get(key, block(ord(key)))
    assert cache.get("a", block(0))[0] == ord("a")  # a hit, and now the most recent
    cache.get("d", block(ord("d")))  # evicts b, the least recently used
    assert (len(cache), cache.bytes, cache.hits, cache.misses) == (3, 300, 1, 4)
    assert cache.get("b", block(7))[0] == 7  # decoded again
    assert cache.get("c", block(0))[0] == 0 and cache.misses == 6  # b's return evicted c
    big = cache.get("huge", lambda: np.zeros(1000, np.uint8))
    assert big.flags.writeable and "huge" not in cache._entries  # larger than the cache: passed through
    cached = cache.get("d", block(0))
    assert not cached.flags.writeable  # callers cannot corrupt a shared entry
    with pytest.raises(ValueError, match="max_bytes"):
        FrameCache(-1)


def test_readers_share_one_cache_and_return_what_decoding_returns(tmp_path: Path) -> None:
    generate(tmp_path, videos=2, images=0, split="eval", seed=5)
    plain = ConversationDataset(tmp_path / "stage3_conversations.jsonl", image_size=32, num_frames=4)
    cache = FrameCache(max_bytes=2**20)
    readers = [ConversationDataset(tmp_path / "stage3_conversations.jsonl", image_size=32, num_frames=4),
               GroundingDataset(tmp_path / "stage3_grounding.jsonl", image_size=32, num_frames=4)]
    for reader in readers:
        reader.frame_cache = cache
    for index in range(len(plain)):
        np.testing.assert_array_equal(readers[0][index].frames, plain[index].frames)
    misses = cache.misses
    assert misses == len({item.media for _, item in plain.items})  # one decode per video
    for index in range(len(readers[1])):
        readers[1][index]
    assert cache.misses == misses  # grounding records of the same videos and window: all hits
    assert cache.hits >= len(readers[1])
