"""Points spread over a mask: farthest-point sampling over the mask's pixels.

PiTe tracks P points inside each object's mask (docs/papers.md, PiTe-143k step 2; the paper
tracks densely with DOT). Points spread over the whole object carry more of its motion
(rotation, deformation) than a cluster, so each point is the mask pixel farthest from the
points already chosen; the first is the pixel nearest the mask's centroid (deterministic).
Pixels closer than ``margin`` to the mask's edge are avoided when enough remain, since a
point on the boundary mixes object and background motion.
"""

from __future__ import annotations

import cv2
import numpy as np

MAX_CANDIDATES = 20_000  # pixels kept (on a regular stride) before sampling, to bound the cost


def mask_pixels(mask: np.ndarray, margin: int = 2, minimum: int = 1) -> np.ndarray:
    """``(K, 2)`` float32 ``(x, y)`` of mask pixels at least ``margin`` px inside, or all if fewer than ``minimum``."""
    binary = mask.astype(np.uint8)
    if margin > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
        eroded = cv2.erode(binary, kernel)
        if int(eroded.sum()) >= minimum:
            binary = eroded
    ys, xs = np.nonzero(binary)
    pixels = np.stack([xs, ys], axis=1).astype(np.float32)
    if len(pixels) > MAX_CANDIDATES:
        pixels = pixels[:: int(np.ceil(len(pixels) / MAX_CANDIDATES))]
    return pixels


def farthest_points(candidates: np.ndarray, count: int, existing: np.ndarray | None = None) -> np.ndarray:
    """``count`` rows of ``candidates`` ``(K, 2)``, each the farthest from all chosen before (and ``existing``).

    With no ``existing`` points the first choice is the candidate nearest the centroid.
    Fewer than ``count`` candidates: they are repeated (a tiny mask still yields ``count`` points).
    """
    if len(candidates) == 0:
        raise ValueError("no candidate pixel to sample from")
    chosen: list[int] = []
    if existing is not None and len(existing):
        distance = np.min(np.linalg.norm(candidates[:, None, :] - existing[None, :, :], axis=2), axis=1)
    else:
        first = int(np.argmin(np.linalg.norm(candidates - candidates.mean(axis=0), axis=1)))
        chosen.append(first)
        distance = np.linalg.norm(candidates - candidates[first], axis=1)
    while len(chosen) < min(count, len(candidates)) and distance.max() > 0:
        index = int(np.argmax(distance))
        chosen.append(index)
        distance = np.minimum(distance, np.linalg.norm(candidates - candidates[index], axis=1))
    if len(chosen) < count:  # fewer distinct candidates than points: repeat them
        chosen = np.resize(np.asarray(chosen or [0]), count).tolist()
    return candidates[np.asarray(chosen[:count])]


def sample_points(mask: np.ndarray, count: int, margin: int = 2, existing: np.ndarray | None = None) -> np.ndarray:
    """``(count, 2)`` float32 ``(x, y)`` pixel positions spread inside ``mask`` ``(H, W)`` bool."""
    return farthest_points(mask_pixels(mask, margin, minimum=count), count, existing).astype(np.float32)
