"""Temporal metrics: grounding (IoU, R@m, mIoU) and NExT-GQA (IoP, Acc@GQA).

Definitions (docs/papers.md, "Metrics"):

- IoU of segments ``a`` and ``b``: ``|a ∩ b| / |a ∪ b|`` (0 when disjoint or the union is empty).
- Temporal grounding (Charades-STA protocol): one predicted segment per query, the FIRST one
  ``parse_segments`` reads from the answer; ``R@m`` is the percentage of queries with
  ``IoU >= m`` for m in {0.3, 0.5, 0.7}; ``mIoU`` is the mean IoU × 100. A query whose answer
  names no segment has IoU 0 and stays in the denominator. Where a reference has several
  ground-truth segments the best IoU over them counts (Charades-STA has one).
- ``frame_snap_R@m`` / ``frame_snap_mIoU`` (ours, when the frame count is known): the same
  figures for ``frame_snapped`` segments, the best a model can do from its N frames alone.
- NExT-GQA (Xiao et al., CVPR 2024, their ``eval_ground.py``): IoP = ``|pred ∩ gt| / |pred|``
  (intersection over prediction); a zero-length prediction has IoP 1 when it lies inside the
  ground truth, else 0. Per question the maximum over its ground-truth segments counts.
  ``IoP@m`` (m in {0.3, 0.5}) and ``mIoP`` (× 100), also ``IoU@m`` and ``mIoU``; ``Acc@QA`` is
  plain multiple-choice accuracy and ``Acc@GQA`` the percentage of questions answered
  correctly AND with IoP >= 0.5.

Thresholds compare with ``>=`` and a 1e-9 tolerance, because segments decoded from temporal
tokens (``L * t / M``) carry float rounding (7.000000000000001 s or 6.999999999999999 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Segment = tuple[float, float]

GROUNDING_THRESHOLDS = (0.3, 0.5, 0.7)
GQA_THRESHOLDS = (0.3, 0.5)
GQA_IOP_THRESHOLD = 0.5
_TOLERANCE = 1e-9


def intersection(a: Segment, b: Segment) -> float:
    """Length of the overlap of two ``(start, end)`` segments (0 when disjoint)."""
    return max(0.0, min(a[1], b[1]) - max(a[0], b[0]))


def iou(a: Segment, b: Segment) -> float:
    """Intersection over union of two segments; 0 when the union has no length."""
    inter = intersection(a, b)
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def iop(prediction: Segment, truth: Segment) -> float:
    """Intersection over the predicted segment's length (NExT-GQA); a point prediction scores
    1 inside the ground truth and 0 outside."""
    length = prediction[1] - prediction[0]
    if length <= 0:
        return 1.0 if truth[0] <= prediction[0] <= truth[1] else 0.0
    return intersection(prediction, truth) / length


def at_least(value: float, threshold: float) -> bool:
    """``value >= threshold`` up to float rounding of decoded temporal tokens."""
    return value >= threshold - _TOLERANCE


def best_iou(prediction: Segment | None, truths: Sequence[Segment]) -> float:
    """Best IoU of ``prediction`` over the ground-truth segments; 0 without a prediction."""
    return max((iou(prediction, t) for t in truths), default=0.0) if prediction is not None else 0.0


def best_iop(prediction: Segment | None, truths: Sequence[Segment]) -> float:
    """Best IoP of ``prediction`` over the ground-truth segments; 0 without a prediction."""
    return max((iop(prediction, t) for t in truths), default=0.0) if prediction is not None else 0.0


def _percent(hits: int, total: int) -> float:
    return 100.0 * hits / total if total else 0.0


def frame_snapped(truth: Segment, duration: float, num_frames: int) -> Segment:
    """The segment a model that sees only ``num_frames`` frames, sampled at the centres of
    equal slices of the clip (``pite_ros.video.uniform_frame_times``), can draw for ``truth``
    from what those frames show: each boundary moved to the nearest slice boundary (a
    multiple of ``duration / num_frames``); an event inside one slice gets the slice that
    holds its centre. Scored like a prediction, it tells how much of a grounding loss is the
    frame count rather than the model (a model beats it only by reading motion between frames).
    """
    step = duration / num_frames
    start, end = round(truth[0] / step) * step, round(truth[1] / step) * step
    if end > start:
        return start, end
    slice_index = min(int((truth[0] + truth[1]) / 2 // step), num_frames - 1)
    return slice_index * step, (slice_index + 1) * step


def grounding_metrics(ious: Sequence[float], thresholds: Sequence[float] = GROUNDING_THRESHOLDS) -> dict[str, float]:
    """``R@m`` (percent of IoUs >= m) for each threshold and ``mIoU`` (mean × 100)."""
    metrics = {f"R@{m:g}": _percent(sum(at_least(v, m) for v in ious), len(ious)) for m in thresholds}
    metrics["mIoU"] = 100.0 * sum(ious) / len(ious) if ious else 0.0
    return metrics


@dataclass(frozen=True)
class GQAResult:
    """One NExT-GQA question: whether the chosen option is right, and the best IoP / IoU."""

    correct: bool
    iop: float
    iou: float


def gqa_metrics(results: Sequence[GQAResult], thresholds: Sequence[float] = GQA_THRESHOLDS) -> dict[str, float]:
    """NExT-GQA's table: Acc@QA, Acc@GQA, mIoP, IoP@m, mIoU, IoU@m (all percent)."""
    total = len(results)
    metrics = {
        "Acc@QA": _percent(sum(r.correct for r in results), total),
        "Acc@GQA": _percent(sum(r.correct and at_least(r.iop, GQA_IOP_THRESHOLD) for r in results), total),
        "mIoP": 100.0 * sum(r.iop for r in results) / total if total else 0.0,
    }
    metrics.update({f"IoP@{m:g}": _percent(sum(at_least(r.iop, m) for r in results), total) for m in thresholds})
    metrics["mIoU"] = 100.0 * sum(r.iou for r in results) / total if total else 0.0
    metrics.update({f"IoU@{m:g}": _percent(sum(at_least(r.iou, m) for r in results), total) for m in thresholds})
    return metrics
