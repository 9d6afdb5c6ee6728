"""Dense video captioning: SODA_c and the densevid_eval protocol for CIDEr and METEOR.

Written from the papers and the official evaluators' behaviour (SODA: Fujita et al., ECCV
2020, github fujiso/SODA; densevid_eval: Krishna et al., ICCV 2017, the ActivityNet
Captions evaluator PiTe's and Grounded-VideoLLM's tables use). Captions are tokenised with
``caption_text`` before scoring; scores are reported × 100 as both evaluators print them.

SODA_c, per video and reference set (events of both sorted by start time, stably):
  - ``S[i, j] = IoU(ref_i, pred_j) * score(pred_j | ref_i)`` where IoUs below the threshold
    are set to 0 and ``score`` is METEOR of the one caption against the one reference;
  - the best order-preserving one-to-one matching by dynamic programming
    ``dp[i, j] = max(dp[i-1, j], dp[i, j-1], dp[i-1, j-1] + S[i, j])`` (0 outside the table);
  - precision = dp / #predicted, recall = dp / #reference, F = 2PR / (P + R) (0 when P + R = 0);
  - with several reference sets (ActivityNet's val_1/val_2) the set with the best F counts.
  Precision, recall and F are averaged over videos, then over the IoU thresholds; for SODA_c
  the official threshold list is ``[0.0]`` (the thresholds 0.3/0.5/0.7/0.9 belong to SODA_a).
  A video without predictions scores 0 (the official code fails on it).

densevid_eval (CIDEr, METEOR), per IoU threshold in {0.3, 0.5, 0.7, 0.9}:
  - every (prediction, reference) pair of a video with IoU >= threshold, over all reference
    sets, becomes one scored item (prediction caption vs that one reference); a prediction
    that overlaps no reference enough is scored against a reference that matches nothing
    (the official code draws a random string; a fixed nonsense word gives the same scores
    and keeps runs deterministic);
  - the video's score is the scorer's corpus score over its items (CIDEr's document
    frequencies therefore come from that video's references only, as in the official code);
    a video without predictions scores 0;
  - the metric is the mean over videos, then the mean over thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from training.evaluation.temporal import at_least, iou
from training.evaluation.text import caption_text

SODA_THRESHOLDS = (0.0,)
DENSEVID_THRESHOLDS = (0.3, 0.5, 0.7, 0.9)
NO_MATCH_REFERENCE = "qxzvjkwpyfgb"

# ``(hypothesis, references)`` pairs -> one score per pair (METEOR segment scores).
PairScorer = Callable[[Sequence[tuple[str, Sequence[str]]]], list[float]]
# ``(hypotheses, references per hypothesis)`` -> one corpus score (CIDEr-D, METEOR aggregate).
CorpusScorer = Callable[[list[str], list[list[str]]], float]


@dataclass(frozen=True)
class Event:
    """A captioned time segment, seconds."""

    start: float
    end: float
    caption: str


@dataclass
class DenseSample:
    """One video: the predicted events and one or more reference sets of events."""

    predicted: list[Event]
    reference_sets: list[list[Event]] = field(default_factory=list)


def _sorted(events: Sequence[Event]) -> list[Event]:
    return sorted(events, key=lambda e: e.start)


def _thresholded_iou(a: Event, b: Event, threshold: float) -> float:
    overlap = iou((a.start, a.end), (b.start, b.end))
    return overlap if at_least(overlap, threshold) else 0.0


def best_matching_score(scores: Sequence[Sequence[float]]) -> float:
    """Maximum total score of an order-preserving one-to-one matching of rows to columns."""
    if not scores or not scores[0]:
        return 0.0
    columns = len(scores[0])
    previous = [0.0] * (columns + 1)
    for row in scores:
        current = [0.0] * (columns + 1)
        for j in range(1, columns + 1):
            current[j] = max(previous[j], current[j - 1], previous[j - 1] + row[j - 1])
        previous = current
    return previous[columns]


def soda_c(
    samples: Sequence[DenseSample], pair_scores: PairScorer, thresholds: Sequence[float] = SODA_THRESHOLDS
) -> dict[str, float]:
    """SODA_c precision, recall and F-measure (× 100) over ``samples``.

    ``pair_scores`` scores every (predicted caption, [reference caption]) pair at once
    (METEOR in the official evaluator); captions are tokenised before it sees them.
    """
    prepared = [(_sorted(s.predicted), [_sorted(r) for r in s.reference_sets if r]) for s in samples]
    pairs = [
        (caption_text(p.caption), [caption_text(r.caption)])
        for predicted, sets in prepared
        for refs in sets
        for r in refs
        for p in predicted
    ]
    flat = iter(pair_scores(pairs) if pairs else [])
    per_video = []  # per video, per reference set: the caption-score matrix (refs x preds)
    for predicted, sets in prepared:
        per_video.append([[[next(flat) for _ in predicted] for _ in refs] for refs in sets])
    totals = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
    for threshold in thresholds:
        sums = {"precision": 0.0, "recall": 0.0, "f1": 0.0}
        for (predicted, sets), matrices in zip(prepared, per_video):
            best = (0.0, 0.0, 0.0)
            for refs, captions in zip(sets, matrices):
                if not predicted:
                    continue
                weighted = [
                    [_thresholded_iou(r, p, threshold) * captions[i][j] for j, p in enumerate(predicted)]
                    for i, r in enumerate(refs)
                ]
                total = best_matching_score(weighted)
                precision, recall = total / len(predicted), total / len(refs)
                f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
                if f1 > best[2]:  # ties keep the first set, as the official argmax
                    best = (precision, recall, f1)
            for key, value in zip(sums, best):
                sums[key] += value
        for key in totals:
            totals[key] += sums[key] / len(samples) if samples else 0.0
    return {key: 100.0 * value / len(thresholds) for key, value in totals.items()}


def densevid_score(
    samples: Sequence[DenseSample], corpus_score: CorpusScorer, thresholds: Sequence[float] = DENSEVID_THRESHOLDS
) -> float:
    """The densevid_eval score (× 100) of one captioning metric over ``samples``."""
    if not samples:
        return 0.0
    total = 0.0
    for threshold in thresholds:
        video_sum = 0.0
        for sample in samples:
            hypotheses, references = [], []
            for p in sample.predicted:
                matched = [
                    r
                    for refs in sample.reference_sets
                    for r in refs
                    if at_least(iou((p.start, p.end), (r.start, r.end)), threshold)
                ]
                for r in matched or [None]:
                    hypotheses.append(caption_text(p.caption))
                    references.append([caption_text(r.caption) if r is not None else NO_MATCH_REFERENCE])
            if hypotheses:
                video_sum += corpus_score(hypotheses, references)
        total += video_sum / len(samples)
    return 100.0 * total / len(thresholds)
