"""Frame sampling and decoding shared by training, annotation, evaluation and the node.

Uniform sampling puts frame i of N at the centre of the i-th of N equal slices of the
clip window, so the same clip gives the same times whichever component samples it.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class VideoReadError(RuntimeError):
    """A video could not be opened or a requested frame could not be decoded."""


def uniform_frame_times(start: float, end: float, count: int) -> np.ndarray:
    """Times (seconds) of ``count`` frames at the centres of equal slices of ``[start, end]``."""
    if count <= 0:
        raise ValueError(f"frame count must be positive, got {count}")
    if not end > start:
        raise ValueError(f"clip window must have end > start, got [{start}, {end}]")
    step = (end - start) / count
    return start + step * (np.arange(count) + 0.5)


def video_info(path: str | Path) -> tuple[float, int, int, int]:
    """``(fps, frame_count, width, height)`` of a video file, or ``VideoReadError``."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise VideoReadError(f"{path}: cannot open video")
        fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        capture.release()
    if fps <= 0 or count <= 0:
        raise VideoReadError(f"{path}: no frame rate or frame count (fps={fps}, frames={count})")
    return fps, count, width, height


def nearest_frame_indices(times: np.ndarray, fps: float, count: int) -> np.ndarray:
    """Indices of the frames ``read_frames`` decodes for ``times`` (seconds): ``(N,)`` int.

    Frame ``i`` covers ``[i / fps, (i + 1) / fps)`` and shows the clip at its centre
    ``(i + 0.5) / fps``; a time maps to the frame whose centre is nearest (NumPy rounds
    halves to even), clamped to ``[0, count - 1]``. Writers of ground truth (the synthetic
    world) use this to label exactly the frames a reader decodes.
    """
    wanted = np.clip(np.round(np.asarray(times, dtype=np.float64) * fps - 0.5), 0, count - 1)
    return wanted.astype(int)


def read_frames(
    path: str | Path, times: np.ndarray, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Decode the frames nearest to ``times`` (seconds) as ``(N, H, W, 3)`` uint8 RGB.

    Frames are read sequentially (seeking is unreliable across codecs). ``size`` is
    ``(width, height)`` to resize to, or None to keep the source size.
    """
    fps, count, _, _ = video_info(path)
    wanted = nearest_frame_indices(times, fps, count)
    capture = cv2.VideoCapture(str(path))
    frames: dict[int, np.ndarray] = {}
    try:
        index = 0
        last = int(wanted.max())
        targets = set(wanted.tolist())
        while index <= last:
            ok, frame = capture.read()
            if not ok:
                break
            if index in targets:
                rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                if size is not None:
                    rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
                frames[index] = rgb
            index += 1
    finally:
        capture.release()
    missing = sorted(targets - frames.keys())
    if missing:
        raise VideoReadError(f"{path}: could not decode frames {missing[:5]} (of {count})")
    return np.stack([frames[i] for i in wanted.tolist()])
