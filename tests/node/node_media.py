"""Small generated media for the node tests: random frames and an mp4v video of known grey levels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def make_frames(count: int, width: int = 16, height: int = 12) -> list[np.ndarray]:
    """``count`` random ``(height, width, 3)`` uint8 RGB frames (seeded by ``count``)."""
    rng = np.random.default_rng(count)
    return [rng.integers(0, 256, (height, width, 3), dtype=np.uint8) for _ in range(count)]


def make_video(path: Path, count: int, fps: float = 20.0, size: tuple[int, int] = (32, 24)) -> Path:
    """A small mp4v video of ``size`` ``(width, height)`` whose frame i is the flat grey level 20 * i."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    for index in range(count):
        writer.write(np.full((size[1], size[0], 3), 20 * index, np.uint8))
    writer.release()
    return path
