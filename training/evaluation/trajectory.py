"""Trajectory metrics in normalised image coordinates (x right, y down, both in [0, 1]).

- L1: the mean over points (frames × points per trajectory, pooled over every trajectory)
  of ``|Δx| + |Δy|``, the per-point L1 distance. This is the paper's ``|p̂ − p|`` of a 2-D
  point and the same quantity ``pite_ros.model.losses`` sums (PiTe's L2 term divided by
  P·N), so a training loss and this metric read on one scale. The per-coordinate mean some
  papers call "mean L1" is half of it.
- PCK@δ: the percentage of points whose Euclidean distance to the truth is <= δ
  (δ = 0.05 by default, i.e. 5 % of the image side).
- ``visible_only``: only points the ground truth marks visible count (an occluded or
  out-of-frame point has no reliable position: the annotator clips it to the border).
Points are pooled over trajectories (a micro average), so long trajectories weigh more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

DEFAULT_PCK_THRESHOLD = 0.05


@dataclass
class TrajectoryErrors:
    """Per-point errors pooled over trajectories: ``l1`` and ``distance`` are ``(points,)``."""

    l1: np.ndarray
    distance: np.ndarray

    @property
    def count(self) -> int:
        """Number of points."""
        return int(self.l1.size)


def point_errors(
    predicted: np.ndarray, truth: np.ndarray, visible: np.ndarray | None = None, *, visible_only: bool = False
) -> TrajectoryErrors:
    """Errors of every (frame, point) of one trajectory.

    ``predicted``/``truth``: ``(N, P, 2)``; ``visible``: ``(N, P)`` bool (needed for
    ``visible_only``). Shapes must match exactly.
    """
    predicted = np.asarray(predicted, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    if predicted.shape != truth.shape or truth.ndim != 3 or truth.shape[-1] != 2:
        raise ValueError(f"trajectories must both be (N, P, 2), got {predicted.shape} and {truth.shape}")
    delta = predicted - truth
    l1 = np.abs(delta).sum(-1)
    distance = np.sqrt((delta**2).sum(-1))
    if visible_only:
        if visible is None:
            raise ValueError("visible_only needs the visibility (N, P)")
        mask = np.asarray(visible, dtype=bool)
        if mask.shape != truth.shape[:2]:
            raise ValueError(f"visibility must be {truth.shape[:2]}, got {mask.shape}")
        return TrajectoryErrors(l1[mask], distance[mask])
    return TrajectoryErrors(l1.ravel(), distance.ravel())


def pooled(errors: Sequence[TrajectoryErrors]) -> TrajectoryErrors:
    """All points of several trajectories together."""
    if not errors:
        return TrajectoryErrors(np.zeros(0), np.zeros(0))
    return TrajectoryErrors(np.concatenate([e.l1 for e in errors]), np.concatenate([e.distance for e in errors]))


def mean_l1(errors: TrajectoryErrors) -> float:
    """Mean per-point ``|Δx| + |Δy|`` (NaN without points)."""
    return float(errors.l1.mean()) if errors.count else float("nan")


def pck(errors: TrajectoryErrors, threshold: float = DEFAULT_PCK_THRESHOLD) -> float:
    """Percentage of points within Euclidean distance ``threshold`` (NaN without points)."""
    return 100.0 * float((errors.distance <= threshold).mean()) if errors.count else float("nan")
