"""Rasterising scenes: RGB frames, per-object visible masks, in-frame fractions, label maps.

Objects are filled polygons (a circle is a 48-gon) drawn far-to-near with OpenCV at 1/16
pixel precision, without anti-aliasing, so every pixel belongs to exactly one object or the
background and masks are exact. Each object is also drawn alone on a padded canvas to know
how much of its silhouette lies inside the frame (for enter/leave events).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from training.synth.world import BACKGROUND, COLOURS, ObjectSpec, Scene

_SHIFT = 4  # fixed-point bits of sub-pixel precision for cv2.fillPoly


@lru_cache(maxsize=None)
def unit_polygon(shape: str) -> np.ndarray:
    """Vertices ``(V, 2)`` of a shape of radius 1 centred at the origin (y down)."""
    if shape == "circle":
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "square":
        return np.array([[-0.8, -0.8], [0.8, -0.8], [0.8, 0.8], [-0.8, 0.8]])
    if shape == "triangle":
        angles = np.deg2rad([-90, 30, 150])
        return np.stack([np.cos(angles), np.sin(angles)], axis=1)
    if shape == "star":
        angles = np.deg2rad(-90 + 36 * np.arange(10))
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        return np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    raise ValueError(f"unknown shape {shape!r}")


def fill(canvas: np.ndarray, shape: str, centre: np.ndarray, radius: float, value: int | tuple) -> None:
    """Fill the shape of ``radius`` pixels at ``centre`` (x, y) into ``canvas`` in place."""
    vertices = np.round((unit_polygon(shape) * radius + centre) * (1 << _SHIFT)).astype(np.int32)
    cv2.fillPoly(canvas, [vertices], value, lineType=cv2.LINE_8, shift=_SHIFT)


@lru_cache(maxsize=None)
def point_offsets(shape: str, count: int) -> np.ndarray:
    """``(count, 2)`` fixed offsets (units of radius) spread over the inside of a shape.

    Farthest-point sampling, starting at the centre, over a fine grid of the shape eroded
    by 0.2 radius, so points stay inside the rasterised shape even at small sizes and move
    rigidly with it. Deterministic (no randomness).
    """
    scale = 100
    canvas = np.zeros((2 * scale + 3, 2 * scale + 3), np.uint8)
    fill(canvas, shape, np.array([scale + 1.0, scale + 1.0]), scale, 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (41, 41))
    inner = cv2.erode(canvas, kernel)
    ys, xs = np.nonzero(inner[::4, ::4])
    grid = (np.stack([xs, ys], axis=1) * 4 - (scale + 1.0)) / scale
    chosen = [int(np.argmin(np.hypot(grid[:, 0], grid[:, 1])))]
    distance = np.hypot(*(grid - grid[chosen[0]]).T)
    while len(chosen) < count:
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.hypot(*(grid - grid[chosen[-1]]).T))
    return grid[chosen]


@dataclass
class Rendering:
    """What a scene looks like at ``times``.

    ``frames``: ``(T, H, W, 3)`` uint8 RGB. ``labels``: ``(T, H, W)`` int8, index of the
    object owning each pixel (the nearest one) or -1. ``masks``: ``(O, T, H, W)`` bool, the
    object's visible pixels (occluded parts excluded). ``silhouettes``: ``(O, T, H, W)`` bool,
    the object's whole in-frame silhouette (occluded parts included). ``in_frame``: ``(O, T)``
    share of the silhouette inside the frame. ``centres``: ``(O, T, 2)`` pixels, also when
    hidden or outside.
    """

    times: np.ndarray
    frames: np.ndarray
    labels: np.ndarray
    masks: np.ndarray
    silhouettes: np.ndarray
    in_frame: np.ndarray
    centres: np.ndarray


def render(scene: Scene, times: np.ndarray) -> Rendering:
    """Rasterise ``scene`` at ``times`` (seconds)."""
    width, height = scene.config.width, scene.config.height
    count, steps = len(scene.objects), len(times)
    pad = int(np.ceil(2 * max((o.radius for o in scene.objects), default=1.0))) + 2
    frames = np.empty((steps, height, width, 3), np.uint8)
    frames[:] = BACKGROUND
    labels = np.full((steps, height, width), -1, np.int8)
    silhouettes = np.zeros((count, steps, height, width), bool)
    in_frame = np.zeros((count, steps), np.float64)
    centres = np.stack([o.position(times) for o in scene.objects]) if count else np.zeros((0, steps, 2))
    order: list[ObjectSpec] = sorted(scene.objects, key=lambda o: o.depth)
    padded = np.zeros((height + 2 * pad, width + 2 * pad), np.uint8)
    for step in range(steps):
        for spec in order:
            centre = centres[spec.index, step]
            padded[:] = 0
            fill(padded, spec.shape, centre + pad, spec.radius, 1)
            inside = padded[pad : pad + height, pad : pad + width].astype(bool)
            total = int(padded.sum())
            in_frame[spec.index, step] = inside.sum() / total if total else 0.0
            silhouettes[spec.index, step] = inside
            labels[step][inside] = spec.index
            frames[step][inside] = COLOURS[spec.colour]
    masks = labels[None] == np.arange(count, dtype=np.int8)[:, None, None, None]
    return Rendering(times, frames, labels, masks, silhouettes, in_frame, centres)
