"""Frames to the vision tower's pixel values, with NumPy and OpenCV (no torchvision).

Each frame is resized to the tower's square ``image_size`` as a whole (no centre crop, unlike
CLIP's own processor): the model's coordinates are normalised to the full frame, and a crop
would cut off the edges where objects enter and leave. Area interpolation when shrinking,
bicubic when enlarging (CLIP's resampling). Then CLIP's per-channel normalisation
``(x / 255 - mean) / std``, channels first.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def preprocess_frames(
    frames: np.ndarray, image_size: int, mean: Sequence[float], std: Sequence[float]
) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(T, 3, image_size, image_size)`` float32."""
    if not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        described = f"{frames.dtype} {frames.shape}" if isinstance(frames, np.ndarray) else type(frames).__name__
        raise ValueError(f"frames must be (T, H, W, 3) uint8 RGB, got {described}")
    if frames.shape[0] == 0:
        raise ValueError("frames must hold at least one frame")
    size = (image_size, image_size)
    resized = [
        frame if frame.shape[:2] == size else cv2.resize(
            frame, size, interpolation=cv2.INTER_AREA if frame.shape[0] >= image_size else cv2.INTER_CUBIC
        )
        for frame in frames
    ]
    scaled = np.stack(resized).astype(np.float32) / 255.0
    normalised = (scaled - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(normalised.transpose(0, 3, 1, 2))
