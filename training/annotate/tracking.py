"""Stage 3: track P points of an object through every decoded frame of a clip.

PiTe tracks points inside each mask with DOT, a dense tracker (docs/papers.md, PiTe-143k
step 2). DOT needs weights; we use OpenCV instead: pyramidal Lucas-Kanade on the points
(``method="lk"``, default) or dense optical flow sampled at the points (``"farneback"``,
``"dis"``). Every step is checked forward-backward: the point is tracked from frame t to
t+1 and back, and it stays visible only if it comes back within ``fb_threshold`` pixels
(default 1.0 px, about the noise of LK on compressed video; an occluded or drifting point
comes back far away or not at all).

Rules (our choices, the paper is silent on them):

- Seed: points are sampled (farthest-point, ``sampling.sample_points``) in the mask with
  the largest area, the frame where the object is best seen, half an LK window inside its
  edge when the mask is big enough (a window half on the background follows the
  background); tracking runs forward from there to the last frame and backward to the first.
- Aperture problem: a point whose neighbourhood has no 2-D texture (a flat interior, a
  straight edge: LK's minimum eigenvalue of the structure tensor below ``min_eigen``) cannot
  be tracked on its own; it moves with the others (below) and keeps its visibility, which
  only the masks can then change. Flat synthetic shapes are mostly made of such points.
- Appearance check: the forward-backward check misses a point that slides slowly onto an
  occluder (each small step is consistent), so a point is also lost when its patch (one LK
  window) correlates with the patch where it was seeded or last re-seeded by less than
  ``min_ncc`` (normalised cross-correlation, default 0.5).
- A trackable point that fails either check is lost (invisible). A lost or untrackable point is
  carried by the median displacement of the visible trackable points of the same object (rigid motion), so its position
  stays plausible while occluded; with no visible point, by the displacement of the mask
  centroid (when both frames have a mask), else it stays where it is.
- At every frame that has a mask: a visible point outside the mask (dilated by
  ``mask_margin`` px) is lost, having drifted off the object; an empty mask makes every
  point invisible (the object is not in view). Revival: a lost point whose carried position
  lies inside the mask becomes visible again there (same identity: an occluded point that
  reappears). Re-seeding: when fewer than ``reseed_below`` of the P points are then visible,
  the tracker has lost the object rather than a few points to occlusion, and the lost
  points still inside the image (not those that left the view with the object) are
  re-sampled at the mask pixels farthest from the visible points (a new
  identity: the track jumps there; its visibility was 0 just before).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from training.annotate.sampling import farthest_points, mask_pixels, sample_points

Method = Literal["lk", "farneback", "dis"]


@dataclass(frozen=True)
class TrackerConfig:
    """How points are tracked (see the module docstring)."""

    method: Method = "lk"
    fb_threshold: float = 1.0  # pixels: forward-backward error above which a point is lost
    min_eigen: float = 0.02  # LK structure-tensor minimum eigenvalue below which a point is untrackable
    min_ncc: float = 0.5  # appearance check: correlation with the point's seed patch below which it is lost (0: off)
    window: int = 0  # LK window side in pixels; 0: min(H, W) / 12 kept odd within [7, 21] (see auto_window)
    levels: int = 3  # LK pyramid levels above the base
    mask_margin: int = 3  # pixels: tolerance when checking visible points against a mask
    sample_margin: int = 2  # pixels: sampled points keep this far inside the mask (and half an LK window) if possible
    reseed_below: float = 0.5  # re-sample lost points when fewer than this share of P is visible (0: never)


@dataclass
class Tracks:
    """``points`` ``(T, P, 2)`` float32 pixel ``(x, y)``; ``visible`` ``(T, P)`` bool; ``seed_frame`` index;
    ``identity`` ``(T, P)`` int: which physical point a slot holds (changes when the slot is re-seeded)."""

    points: np.ndarray
    visible: np.ndarray
    seed_frame: int
    identity: np.ndarray

    def sampled(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(points (N, P, 2), visible (N, P))`` at ``frames``, one identity per slot.

        A slot re-seeded between two sampled frames would show a jump between two visible
        positions of different points; the slot keeps the identity seen at the most sampled
        frames (the earliest on a tie) and is marked invisible at the others.
        """
        points, visible, identity = self.points[frames], self.visible[frames].copy(), self.identity[frames]
        for slot in range(points.shape[1]):
            seen = identity[visible[:, slot], slot]
            if len(np.unique(seen)) > 1:
                values, counts = np.unique(seen, return_counts=True)
                keep = values[counts == counts.max()]
                first = next(i for i in seen if i in keep)
                visible[:, slot] &= identity[:, slot] == first
        return points, visible


class FlowStep:
    """Moves points from one grey frame to the next and checks them forward-backward."""

    def __init__(self, config: TrackerConfig) -> None:
        self.config = config
        self._dis = (
            cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if config.method == "dis" else None
        )
        if config.method not in ("lk", "farneback", "dis"):
            raise ValueError(f"unknown tracking method {config.method!r}; expected lk, farneback or dis")

    def __call__(
        self, source: np.ndarray, target: np.ndarray, points: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(moved (P, 2), ok (P,), trackable (P,))`` bool arrays.

        ok: tracked, inside the image and back within ``fb_threshold``. trackable: the point's
        neighbourhood has 2-D texture (LK's minimum eigenvalue >= ``min_eigen``; dense
        methods: always), so its own motion estimate means something.
        """
        if self.config.method == "lk":
            moved, forward_ok, eigen = self._lk(source, target, points)
            back, backward_ok, _ = self._lk(target, source, moved)
            trackable = eigen >= self.config.min_eigen
        else:
            moved = points + _sample(self._flow(source, target), points)
            back = moved + _sample(self._flow(target, source), moved)
            forward_ok = backward_ok = trackable = np.ones(len(points), dtype=bool)
        height, width = source.shape[:2]
        inside = (moved[:, 0] >= 0) & (moved[:, 0] <= width - 1) & (moved[:, 1] >= 0) & (moved[:, 1] <= height - 1)
        error = np.linalg.norm(back - points, axis=1)
        return moved, forward_ok & backward_ok & inside & (error < self.config.fb_threshold), trackable

    def _lk(
        self, source: np.ndarray, target: np.ndarray, points: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """LK from ``source`` to ``target``: ``(moved (P, 2), status ok (P,), minimum eigenvalue (P,))``."""
        side = self.config.window or auto_window(source.shape[:2])
        window = (side, side)
        criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01)
        moved, status, eigen = cv2.calcOpticalFlowPyrLK(
            source, target, points.reshape(-1, 1, 2).astype(np.float32), None,
            winSize=window, maxLevel=self.config.levels, criteria=criteria,
            flags=cv2.OPTFLOW_LK_GET_MIN_EIGENVALS, minEigThreshold=0.0,
        )
        moved = moved.reshape(-1, 2)
        return moved, (status.reshape(-1) == 1) & np.isfinite(moved).all(axis=1), eigen.reshape(-1)

    def _flow(self, source: np.ndarray, target: np.ndarray) -> np.ndarray:
        if self._dis is not None:
            return self._dis.calc(source, target, None)
        return cv2.calcOpticalFlowFarneback(source, target, None, 0.5, self.config.levels, 15, 3, 5, 1.2, 0)


def auto_window(shape: tuple[int, int]) -> int:
    """LK window side for a frame ``(H, W)``: a window much larger than the objects mixes in
    the motion of their surroundings (measured on 128 px synthetic clips: 11 px gave half
    the error of 21 px), a small one on large frames loses texture; min(H, W) / 12, odd, in [7, 21]."""
    return int(np.clip(int(min(shape) / 12) | 1, 7, 21))


def _sample(flow: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Bilinear sample of a dense flow ``(H, W, 2)`` at ``points`` ``(P, 2)``."""
    map_x = points[:, 0].reshape(-1, 1).astype(np.float32)
    map_y = points[:, 1].reshape(-1, 1).astype(np.float32)
    return cv2.remap(flow, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 2)


def track_points(
    grey: np.ndarray, masks: dict[int, np.ndarray], count: int, config: TrackerConfig = TrackerConfig()
) -> Tracks | None:
    """Track ``count`` points of the object whose masks are given through ``grey`` ``(T, H, W)`` uint8.

    ``masks`` maps frame index to ``(H, W)`` bool; None if every mask is empty.
    """
    areas = {index: int(mask.sum()) for index, mask in masks.items()}
    if not areas or max(areas.values()) == 0:
        return None
    seed = min(index for index, area in areas.items() if area == max(areas.values()))
    frames = grey.shape[0]
    points = np.zeros((frames, count, 2), dtype=np.float32)
    visible = np.zeros((frames, count), dtype=bool)
    margin = max(config.sample_margin, (config.window or auto_window(grey.shape[1:])) // 2)
    points[seed] = sample_points(masks[seed], count, margin)
    visible[seed] = True
    identity = np.zeros((frames, count), dtype=np.int64)
    identity[seed] = np.arange(count)
    next_identity = count
    step = FlowStep(config)
    dilated = {index: _dilate(mask, config.mask_margin) for index, mask in masks.items()}
    templates = Templates(config.window or auto_window(grey.shape[1:]))
    for order in (range(seed + 1, frames), range(seed - 1, -1, -1)):
        templates.take(grey[seed], points[seed], np.ones(count, dtype=bool))
        for index in order:
            previous = index - 1 if order.step == 1 else index + 1
            moved, ok, trackable = step(grey[previous], grey[index], points[previous])
            if config.min_ncc > 0:
                ok &= templates.similarity(grey[index], moved) >= config.min_ncc
            was_visible = visible[previous]
            kept = ok & trackable & was_visible
            if kept.any():
                shift = np.median(moved[kept] - points[previous][kept], axis=0)
            else:
                shift = _centroid_shift(masks.get(previous), masks.get(index))
            points[index] = np.where(kept[:, None], moved, points[previous] + shift)
            identity[index] = identity[previous]
            visible[index] = was_visible & (ok | ~trackable)
            if index in masks:
                before_points, before_visible = points[index].copy(), visible[index].copy()
                points[index], visible[index] = _apply_mask(
                    points[index], visible[index], masks[index], dilated[index], config
                )
                moved_by_mask = (points[index] != before_points).any(axis=1)
                templates.take(grey[index], points[index], visible[index] & (~before_visible | moved_by_mask))
                identity[index, moved_by_mask] = next_identity + np.arange(int(moved_by_mask.sum()))
                next_identity += int(moved_by_mask.sum())
    return Tracks(points, visible, seed, identity)


class Templates:
    """Each point's appearance (a ``side`` x ``side`` patch) where it was seeded, for the occlusion check."""

    def __init__(self, side: int) -> None:
        self.side = side
        self.patches: np.ndarray | None = None  # (P, side * side) zero-mean, unit-norm; zero if flat

    def _patches(self, grey: np.ndarray, points: np.ndarray) -> np.ndarray:
        patches = np.stack([
            cv2.getRectSubPix(grey, (self.side, self.side), (float(x), float(y))).astype(np.float32).ravel()
            for x, y in points
        ])
        patches -= patches.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(patches, axis=1, keepdims=True)
        return np.where(norms > 1e-3 * self.side, patches / np.maximum(norms, 1e-12), 0.0)

    def take(self, grey: np.ndarray, points: np.ndarray, which: np.ndarray) -> None:
        """(Re)take the templates of the points ``which`` ``(P,)`` bool at ``points`` in ``grey``."""
        if not which.any():
            return
        fresh = self._patches(grey, points[which])
        if self.patches is None:
            self.patches = np.zeros((len(points), fresh.shape[1]), np.float32)
        self.patches[which] = fresh

    def similarity(self, grey: np.ndarray, points: np.ndarray) -> np.ndarray:
        """``(P,)`` normalised cross-correlation of each point's patch with its template (1 where either is flat)."""
        current = self._patches(grey, points)
        ncc = (current * self.patches).sum(axis=1)
        flat = ~current.any(axis=1) | ~self.patches.any(axis=1)
        return np.where(flat, 1.0, ncc)


def _centroid_shift(source: np.ndarray | None, target: np.ndarray | None) -> np.ndarray:
    """Displacement of the mask centroid between two frames; zero unless both masks are non-empty."""
    if source is None or target is None or not source.any() or not target.any():
        return np.zeros(2, dtype=np.float32)
    (ys0, xs0), (ys1, xs1) = np.nonzero(source), np.nonzero(target)
    return np.array([xs1.mean() - xs0.mean(), ys1.mean() - ys0.mean()], dtype=np.float32)


def _dilate(mask: np.ndarray, margin: int) -> np.ndarray:
    if margin <= 0:
        return mask.astype(bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    return cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)


def _lookup(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Whether each point ``(P, 2)`` falls on a true pixel of ``mask`` (outside the image: False)."""
    height, width = mask.shape
    x = np.round(points[:, 0]).astype(int)
    y = np.round(points[:, 1]).astype(int)
    inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
    result = np.zeros(len(points), dtype=bool)
    result[inside] = mask[y[inside], x[inside]]
    return result


def _apply_mask(
    points: np.ndarray, visible: np.ndarray, mask: np.ndarray, dilated: np.ndarray, config: TrackerConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Visibility checked against a frame's mask, then lost points re-seeded (module docstring)."""
    if not mask.any():
        return points, np.zeros_like(visible)
    visible = (visible & _lookup(dilated, points)) | _lookup(mask, points)
    if visible.all() or visible.mean() >= config.reseed_below:
        return points, visible
    points, visible = points.copy(), visible.copy()
    height, width = mask.shape
    in_view = (points[:, 0] >= 0) & (points[:, 0] <= width - 1) & (points[:, 1] >= 0) & (points[:, 1] <= height - 1)
    lost = np.flatnonzero(~visible & in_view)
    if len(lost):
        candidates = mask_pixels(mask, config.sample_margin, minimum=len(lost))
        points[lost] = farthest_points(candidates, len(lost), points[visible] if visible.any() else None)
        visible[lost] = True
    return points, visible
