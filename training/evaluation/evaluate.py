"""``evaluate_predictions``: score (task, prediction, reference) items into one ``EvalReport``.

What ``pite-eval`` (or anyone with model outputs) hands in, per task; the reference fields
are those of the stage-3 / stage-2 records (docs/data-formats.md), so a
record read from a JSONL can be passed as it is:

| task            | prediction                              | reference fields                         |
|-----------------|-----------------------------------------|------------------------------------------|
| ``open_qa``     | answer text                             | ``answer``: str or list of str           |
| ``mcq``         | answer text (``down (B).``)             | ``options``, ``answer`` (index)          |
| ``grounding``   | text with ``From <a> to <b>``           | ``timestamps`` ([s, e] or [[s, e], ...]), ``duration`` |
| ``dense_caption`` | ``From <a> to <b>, caption.`` ...     | ``events`` [{``timestamps``, ``caption``}], ``duration`` |
| ``gqa``         | ``down (B). From <a> to <b>.``          | ``options``, ``answer``, ``timestamps``, ``duration`` |
| ``trajectory``  | ``(N, P, 2)`` array, or None if missing | ``trajectory`` (N, P, 2), ``visibility`` (N, P) optional |

Text predictions are decoded with ``pite_ros.model.temporal.parse_segments(text, duration)``.
A prediction that cannot be read (no option, no segment, no trajectory) is wrong and stays
in the denominator; the report counts these as ``unparseable``. A reference that lacks a
field or has a wrong value is not the model's fault: that item is left out and counted as
``bad reference`` (first messages in the notes). A None prediction for a text task counts
as an empty answer. An ``open_qa`` or ``mcq`` reference may name its question ``kind`` (a
string, as pite-synth's records do); the section then also gives its accuracy per kind
(``TaskSection.by_kind``): where a model's answers go wrong. A ``grounding`` reference may
name one too (pite-synth: the event type); its section then gives R@m and mIoU per kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from pite_ros.model.temporal import parse_segments
from pite_ros.types import VISIBLE_THRESHOLD
from training.evaluation.cider import cider_d
from training.evaluation.dense import DenseSample, Event, densevid_score, soda_c
from training.evaluation.meteor import MeteorError, MeteorScorer, meteor_unavailable_reason
from training.evaluation.qa import exact_match, parse_choice
from training.evaluation.report import EvalReport, TaskSection
from training.evaluation.temporal import GQAResult, best_iop, best_iou, frame_snapped, gqa_metrics, grounding_metrics
from training.evaluation.trajectory import DEFAULT_PCK_THRESHOLD, mean_l1, pck, point_errors, pooled

TASKS = ("open_qa", "mcq", "grounding", "dense_caption", "gqa", "trajectory")
UNPARSEABLE = "unparseable"
BAD_REFERENCE = "bad reference"
_KEEP_MESSAGES = 3
FRAME_SNAP_NOTE = (
    "frame_snap_: the same figures for the ground truth snapped to the slice boundaries of the {frames} "
    "frames the model sees, the best it can do from those frames alone"
)
LLM_JUDGE_NOTE = (
    "normalised exact match; the papers score open-ended VideoQA with a GPT judge "
    "(accuracy and a 0-5 score), which cannot run offline: not comparable with their figures"
)


@dataclass(frozen=True)
class EvalItem:
    """One model output and what it is scored against (see the module docstring)."""

    task: str
    prediction: Any
    reference: dict


class BadReference(ValueError):
    """A reference record lacks a field or holds a wrong value (names the field)."""


def _field(reference: dict, name: str) -> Any:
    if not isinstance(reference, dict) or reference.get(name) is None:
        raise BadReference(f"missing field '{name}'")
    return reference[name]


def _duration(reference: dict) -> float:
    value = _field(reference, "duration")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise BadReference(f"field 'duration' must be a positive number, got {value!r:.40}")
    return float(value)


def _segment(value: Any, name: str) -> tuple[float, float]:
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        or not value[0] < value[1]
    ):
        raise BadReference(f"field '{name}' must be [start, end] with start < end, got {value!r:.60}")
    return float(value[0]), float(value[1])


def _segments(reference: dict) -> list[tuple[float, float]]:
    value = _field(reference, "timestamps")
    if isinstance(value, (list, tuple)) and value and not isinstance(value[0], (list, tuple)):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise BadReference("field 'timestamps' must hold at least one [start, end]")
    return [_segment(v, f"timestamps[{i}]") for i, v in enumerate(value)]


def _options(reference: dict) -> tuple[list[str], int]:
    options = _field(reference, "options")
    if not isinstance(options, list) or len(options) < 2 or not all(isinstance(o, str) for o in options):
        raise BadReference("field 'options' must be a list of at least two strings")
    answer = _field(reference, "answer")
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(options):
        raise BadReference(f"field 'answer' must be an option index below {len(options)}, got {answer!r:.30}")
    return options, answer


def _text(prediction: Any) -> str:
    return prediction if isinstance(prediction, str) else ""


def _first_segment(text: str, duration: float) -> tuple[float, float] | None:
    segments = parse_segments(text, duration)
    return (segments[0].start, segments[0].end) if segments else None


class _Section:
    """A section under construction: counts, reasons, and the first messages of bad references."""

    def __init__(self, task: str, kind_metrics: Callable[[list[float]], dict[str, float]] | None = None) -> None:
        self.section = TaskSection(task)
        self.counts: Counter = Counter()
        self.kinds: dict[str, list[float]] = {}  # kind -> each scored item's score (hit: 1/0, or IoU)
        self.kind_metrics = kind_metrics or _accuracy

    def bad(self, error: BadReference, index: int) -> None:
        self.counts[BAD_REFERENCE] += 1
        if self.counts[BAD_REFERENCE] <= _KEEP_MESSAGES:
            self.section.notes.append(f"item {index}: bad reference: {error}")

    def scored(self, reference: dict, score: float) -> None:
        """Keep one scored item's score under its reference's ``kind`` (if it names one)."""
        kind = reference.get("kind")
        if isinstance(kind, str) and kind:
            self.kinds.setdefault(kind, []).append(float(score))

    def finish(self, count: int, metrics: dict[str, float]) -> TaskSection:
        self.section.by_kind = {kind: {"count": len(scores), **self.kind_metrics(scores)}
                                for kind, scores in sorted(self.kinds.items())}
        self.section.count = count
        self.section.metrics.update(metrics)
        self.section.counts.update({k: self.counts[k] for k in (UNPARSEABLE, BAD_REFERENCE) if k in self.counts})
        return self.section


def _accuracy(hits: list[float]) -> dict[str, float]:
    return {"accuracy": 100.0 * sum(hits) / len(hits)}


def _open_qa(items: list[tuple[int, EvalItem]]) -> TaskSection:
    build, hits, total = _Section("open_qa"), 0, 0
    for index, item in items:
        try:
            answers = _field(item.reference, "answer")
            if not isinstance(answers, (str, list)) or not answers:
                raise BadReference("field 'answer' must be a string or a list of strings")
        except BadReference as error:
            build.bad(error, index)
            continue
        total += 1
        hit = exact_match(_text(item.prediction), answers)
        hits += hit
        build.scored(item.reference, hit)
    build.section.notes.append(LLM_JUDGE_NOTE)
    return build.finish(total, {"accuracy": 100.0 * hits / total if total else float("nan")})


def _mcq(items: list[tuple[int, EvalItem]]) -> TaskSection:
    build, hits, total = _Section("mcq"), 0, 0
    for index, item in items:
        try:
            options, answer = _options(item.reference)
        except BadReference as error:
            build.bad(error, index)
            continue
        total += 1
        chosen = parse_choice(_text(item.prediction), options)
        build.counts[UNPARSEABLE] += chosen is None
        hits += chosen == answer
        build.scored(item.reference, chosen == answer)
    return build.finish(total, {"accuracy": 100.0 * hits / total if total else float("nan")})


def _grounding(items: list[tuple[int, EvalItem]], num_frames: int | None) -> TaskSection:
    build, ious, snapped = _Section("grounding", grounding_metrics), [], []
    for index, item in items:
        try:
            truths, duration = _segments(item.reference), _duration(item.reference)
        except BadReference as error:
            build.bad(error, index)
            continue
        predicted = _first_segment(_text(item.prediction), duration)
        build.counts[UNPARSEABLE] += predicted is None
        ious.append(best_iou(predicted, truths))
        build.scored(item.reference, ious[-1])
        if num_frames:
            snapped.append(max(best_iou(frame_snapped(t, duration, num_frames), truths) for t in truths))
    metrics = grounding_metrics(ious)
    if num_frames:
        metrics.update({f"frame_snap_{name}": value for name, value in grounding_metrics(snapped).items()})
        build.section.notes.append(FRAME_SNAP_NOTE.format(frames=num_frames))
    return build.finish(len(ious), metrics)


def _gqa(items: list[tuple[int, EvalItem]]) -> TaskSection:
    build, results = _Section("gqa"), []
    for index, item in items:
        try:
            options, answer = _options(item.reference)
            truths, duration = _segments(item.reference), _duration(item.reference)
        except BadReference as error:
            build.bad(error, index)
            continue
        text = _text(item.prediction)
        chosen, predicted = parse_choice(text, options), _first_segment(text, duration)
        build.counts[UNPARSEABLE] += chosen is None or predicted is None
        results.append(GQAResult(chosen == answer, best_iop(predicted, truths), best_iou(predicted, truths)))
    return build.finish(len(results), gqa_metrics(results))


def _events(reference: dict) -> list[Event]:
    events = _field(reference, "events")
    if not isinstance(events, list) or not events:
        raise BadReference("field 'events' must be a non-empty list")
    parsed = []
    for i, event in enumerate(events):
        caption = event.get("caption") if isinstance(event, dict) else None
        if not isinstance(caption, str):
            raise BadReference(f"field 'events[{i}].caption' must be a string")
        start, end = _segment(event.get("timestamps"), f"events[{i}].timestamps")
        parsed.append(Event(start, end, caption))
    return parsed


def _dense(items: list[tuple[int, EvalItem]], meteor: MeteorScorer | bool) -> TaskSection:
    build, samples = _Section("dense_caption"), []
    for index, item in items:
        try:
            references, duration = _events(item.reference), _duration(item.reference)
        except BadReference as error:
            build.bad(error, index)
            continue
        predicted = [Event(s.start, s.end, s.text) for s in parse_segments(_text(item.prediction), duration)]
        build.counts[UNPARSEABLE] += not predicted
        samples.append(DenseSample(predicted, [references]))
    metrics = {
        "CIDEr": densevid_score(samples, lambda hyps, refs: cider_d(hyps, refs)[0]),
        "events_per_video": sum(len(s.predicted) for s in samples) / len(samples) if samples else float("nan"),
    }
    java = meteor.java if isinstance(meteor, MeteorScorer) else "java"
    reason = meteor_unavailable_reason(java) if meteor is not False else "disabled by the caller"
    if reason is None and samples:
        scorer = meteor if isinstance(meteor, MeteorScorer) else MeteorScorer()
        try:
            metrics["METEOR"] = densevid_score(samples, lambda hyps, refs: scorer.score(list(zip(hyps, refs)))[0])
            metrics["SODA_c"] = soda_c(samples, lambda pairs: scorer.score(pairs)[1])["f1"]
        except MeteorError as error:
            reason = str(error)
        finally:
            if scorer is not meteor:
                scorer.close()
    if reason is not None:
        build.section.unavailable["METEOR"] = reason
        build.section.unavailable["SODA_c"] = f"SODA_c scores captions with METEOR: {reason}"
    build.section.notes.append("CIDEr and METEOR: densevid_eval protocol, mean over tIoU 0.3/0.5/0.7/0.9")
    return build.finish(len(samples), metrics)


def _trajectory(items: list[tuple[int, EvalItem]], pck_threshold: float) -> TaskSection:
    """L1 over trajectories with a prediction; PCK over all, a missing prediction missing every point."""
    build, total = _Section("trajectory"), 0
    measured: dict[bool, list] = {False: [], True: []}  # visible_only -> errors of predicted ones
    called_visible: list[np.ndarray] = []  # a visibility head's calls per point, and the truth
    truly_visible: list[np.ndarray] = []
    scored: dict[bool, list] = {False: [], True: []}  # the same, plus all-miss errors of missing ones
    for index, item in items:
        try:
            truth = np.asarray(_field(item.reference, "trajectory"), dtype=np.float64)
            if truth.ndim != 3 or truth.shape[-1] != 2:
                raise BadReference(f"field 'trajectory' must be (N, P, 2), got {truth.shape}")
            seen = item.reference.get("visibility")
            seen = np.ones(truth.shape[:2], bool) if seen is None else np.asarray(seen, dtype=bool)
            if seen.shape != truth.shape[:2]:
                raise BadReference(f"field 'visibility' must be {truth.shape[:2]}, got {seen.shape}")
        except (BadReference, ValueError, TypeError) as error:
            build.bad(BadReference(str(error)), index)
            continue
        total += 1
        prediction, visibility = item.prediction if isinstance(item.prediction, tuple) else (item.prediction, None)
        predicted = None if prediction is None else np.asarray(prediction, dtype=np.float64)
        usable = predicted is not None and predicted.shape == truth.shape
        if usable and visibility is not None and np.shape(visibility) == seen.shape:
            called_visible.append((np.asarray(visibility) >= VISIBLE_THRESHOLD).ravel())
            truly_visible.append(seen.ravel())
        build.counts[UNPARSEABLE] += not usable
        for visible_only in (False, True):
            if usable:
                errors = point_errors(predicted, truth, seen, visible_only=visible_only)
                measured[visible_only].append(errors)
            else:
                errors = point_errors(np.full_like(truth, np.inf), truth, seen, visible_only=visible_only)
            scored[visible_only].append(errors)
    name = f"PCK@{pck_threshold:g}"
    if build.counts[UNPARSEABLE]:
        build.section.notes.append("L1 over trajectories with a prediction; PCK counts a missing one as all misses")
    metrics = {
        "L1": mean_l1(pooled(measured[False])),
        "L1_visible": mean_l1(pooled(measured[True])),
        name: pck(pooled(scored[False]), pck_threshold),
        f"{name}_visible": pck(pooled(scored[True]), pck_threshold),
    }
    if called_visible:
        metrics.update(visibility_metrics(np.concatenate(called_visible), np.concatenate(truly_visible)))
        build.section.notes.append("visibility: the head's call (probability >= 0.5: visible) per point of the "
                                   "trajectories with a prediction; hidden_recall is the share of hidden points called hidden")
    return build.finish(total, metrics)


def visibility_metrics(called: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Accuracy (%) of a visibility head's per-point calls, its recall of hidden points (%),
    and the share of points that are hidden (%): the accuracy of always answering "visible"
    is 100 minus that."""
    hidden = ~truth
    return {
        "visibility_accuracy": 100.0 * float((called == truth).mean()),
        "hidden_recall": 100.0 * float((~called[hidden]).mean()) if hidden.any() else float("nan"),
        "hidden_share": 100.0 * float(hidden.mean()),
    }


def evaluate_predictions(
    items: Iterable[EvalItem | tuple[str, Any, dict]],
    *,
    meteor: MeteorScorer | bool = True,
    pck_threshold: float = DEFAULT_PCK_THRESHOLD,
    num_frames: int | None = None,
    meta: dict | None = None,
) -> EvalReport:
    """Score every item by its task and return one report with a section per task present.

    ``meteor``: True starts the official METEOR (for METEOR and SODA_c of dense captioning)
    when it can run here, False skips it, or pass a running ``MeteorScorer`` to reuse it.
    ``num_frames``: the frames the model saw per clip; grounding then also reports the
    ``frame_snap_`` figures (``training.evaluation.temporal.frame_snapped``).
    Items of an unknown task are counted in ``report.meta["unknown_tasks"]``.
    """
    by_task: dict[str, list[tuple[int, EvalItem]]] = {task: [] for task in TASKS}
    unknown: Counter = Counter()
    for index, raw in enumerate(items):
        item = raw if isinstance(raw, EvalItem) else EvalItem(*raw)
        if item.task in by_task:
            by_task[item.task].append((index, item))
        else:
            unknown[item.task] += 1
    report = EvalReport(meta=dict(meta or {}))
    if unknown:
        report.meta["unknown_tasks"] = dict(unknown)
    builders = {
        "open_qa": _open_qa,
        "mcq": _mcq,
        "grounding": lambda xs: _grounding(xs, num_frames),
        "dense_caption": lambda xs: _dense(xs, meteor),
        "gqa": _gqa,
        "trajectory": lambda xs: _trajectory(xs, pck_threshold),
    }
    for task in TASKS:
        if by_task[task]:
            report.add(builders[task](by_task[task]))
    return report
