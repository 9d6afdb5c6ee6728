"""Metrics against hand-computed values (QA, temporal, CIDEr-D, SODA_c, densevid, trajectories)."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from training.evaluation.cider import cider_d, ngram_counts
from training.evaluation.dense import (
    NO_MATCH_REFERENCE,
    DenseSample,
    Event,
    best_matching_score,
    densevid_score,
    soda_c,
)
from training.evaluation.qa import exact_match, parse_choice
from training.evaluation.temporal import (GQAResult, best_iop, best_iou, frame_snapped, gqa_metrics,
                                          grounding_metrics, iop, iou)
from training.evaluation.text import caption_tokens, normalize_answer
from training.evaluation.trajectory import mean_l1, pck, point_errors, pooled


# --- text -------------------------------------------------------------------------------
def test_normalize_answer_drops_case_punctuation_articles_and_time_tokens() -> None:
    assert normalize_answer("The  Red circle. From <3> to <9>.") == "red circle from to"
    assert normalize_answer("An apple, a pear!") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words


def test_caption_tokens_split_clitics_and_drop_punctuation() -> None:
    assert caption_tokens("A man doesn't play the T-shirt game, 3.5 times!") == [
        "a", "man", "does", "n't", "play", "the", "t-shirt", "game", "3.5", "times",
    ]  # fmt: skip
    assert caption_tokens("The man's dog <12>.") == ["the", "man", "'s", "dog"]


# --- question answering -----------------------------------------------------------------
def test_exact_match_after_normalisation() -> None:
    assert exact_match("Red.", "red")
    assert exact_match("the red", ["blue", "red"])
    assert not exact_match("dark red", "red")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", 1),
        ("(b) down", 1),
        ("C.", 2),
        ("C) left", 2),
        ("Answer: D", 3),
        ("the answer is B", 1),
        ("(C) left. From <109> to <296>.", 2),
        ("it enters from the top left", 3),  # "top left" over the "left" it contains
        ("from the left", 2),
        ("down", 1),
        ("down (B). From <1> to <9>.", 1),  # the default model's form: the text, then its letter
        ("left (A).", 2),  # the text decides; the letter after it only when the text names none
        ("up or down (B)", 1),
        ("(E) nothing", None),
        ("A man walks", None),  # a bare letter followed by words is not a letter answer
        ("(E)", None),  # no fifth option
        ("up or down", None),  # two options named
        ("", None),
    ],
)
def test_parse_choice(text: str, expected: int | None) -> None:
    assert parse_choice(text, ["up", "down", "left", "top left"]) == expected


# --- temporal ---------------------------------------------------------------------------
def test_iou_and_iop_by_hand() -> None:
    assert iou((0, 5), (0, 10)) == 0.5
    assert iou((2, 6), (4, 10)) == 2 / 8
    assert iou((0, 2), (3, 4)) == 0.0
    assert iou((0, 2), (2, 4)) == 0.0
    assert iop((4, 6), (5, 10)) == 0.5  # half of the prediction is inside
    assert iop((0, 20), (5, 10)) == 0.25
    assert iop((7, 7), (5, 10)) == 1.0 and iop((11, 11), (5, 10)) == 0.0  # point predictions
    assert best_iou(None, [(0, 1)]) == 0.0 and best_iop(None, [(0, 1)]) == 0.0
    assert best_iou((0, 5), [(20, 30), (0, 10)]) == 0.5


def test_grounding_recall_uses_greater_or_equal_and_keeps_misses() -> None:
    metrics = grounding_metrics([1.0, 0.5, 0.3, 0.0])
    assert metrics == {"R@0.3": 75.0, "R@0.5": 50.0, "R@0.7": 25.0, "mIoU": 45.0}
    assert grounding_metrics([0.7 - 1e-12])["R@0.7"] == 100.0  # float rounding of decoded tokens
    assert grounding_metrics([0.69])["R@0.7"] == 0.0


def test_frame_snapped_moves_boundaries_to_the_slices_of_the_sampled_frames() -> None:
    # 8 frames of an 8 s clip: slices of 1 s, frames at their centres 0.5, 1.5, ...
    assert frame_snapped((2.4, 5.6), 8.0, 8) == (2.0, 6.0)
    assert frame_snapped((4.1, 4.3), 8.0, 8) == (4.0, 5.0)  # inside one slice: that slice
    assert frame_snapped((7.7, 8.0), 8.0, 8) == (7.0, 8.0)  # both ends round to the clip's end
    assert frame_snapped((0.0, 0.3), 8.0, 8) == (0.0, 1.0)
    assert frame_snapped((1.0, 2.2), 4.0, 16) == (1.0, 2.25)  # finer slices follow the truth closer


def test_gqa_metrics_by_hand() -> None:
    results = [
        GQAResult(correct=True, iop=0.6, iou=0.4),  # right and grounded
        GQAResult(correct=True, iop=0.4, iou=0.2),  # right, IoP too low for Acc@GQA
        GQAResult(correct=False, iop=1.0, iou=0.5),  # grounded but wrong
        GQAResult(correct=False, iop=0.0, iou=0.0),  # unparseable
    ]
    metrics = gqa_metrics(results)
    assert metrics["Acc@QA"] == 50.0
    assert metrics["Acc@GQA"] == 25.0
    assert metrics["mIoP"] == pytest.approx(50.0)
    assert metrics["IoP@0.3"] == 75.0 and metrics["IoP@0.5"] == 50.0
    assert metrics["mIoU"] == pytest.approx(27.5)
    assert metrics["IoU@0.3"] == 50.0 and metrics["IoU@0.5"] == 25.0


# --- CIDEr-D ----------------------------------------------------------------------------
def test_cider_d_two_item_corpus_by_hand() -> None:
    # df from the references: "a" and "a dog"... "a" is in both items -> idf 0; every other
    # n-gram is in one item -> idf log 2. Item 1 equals its reference: cosine 1 for n = 1..3,
    # no 4-grams -> 10 * 3/4. Item 2 shares "dog" of {dog, runs} and "a dog" of {a dog, dog
    # runs}: cosine 1/2 for n = 1, 2 and 0 for n = 3 -> 10 * 1/4.
    corpus, items = cider_d(["a man walks", "a dog runs"], [["a man walks"], ["a dog sits"]])
    assert items == pytest.approx([7.5, 2.5])
    assert corpus == pytest.approx(5.0)


def test_cider_d_length_penalty_and_single_item_corpus() -> None:
    # One item: idf = log(1) - log(1) = 0 for every n-gram, so the score is 0 (official quirk).
    assert cider_d(["a man walks"], [["a man walks"]]) == (0.0, [0.0])
    # Same n-grams, 4 words longer reference -> penalty exp(-16 / 72) on the n = 1 term.
    _, items = cider_d(["dog", "cat"], [["dog dog dog dog dog"], ["cat"]])
    tf_cosine = 1.0  # the candidate "dog" and reference "dog x5" are parallel vectors
    assert items[0] == pytest.approx(10 * tf_cosine * math.exp(-16 / 72) / 4)


def test_cider_d_matches_coco_caption() -> None:
    """Same numbers as coco-caption's scorer (pycocoevalcap, a requirement) on a random corpus."""
    from pycocoevalcap.cider.cider import Cider

    rng = random.Random(0)
    words = "a man woman dog plays runs the guitar ball in park red blue".split()
    candidates = [" ".join(rng.choices(words, k=rng.randint(0, 9))) for _ in range(25)]
    references = [[" ".join(rng.choices(words, k=rng.randint(1, 9))) for _ in range(rng.randint(1, 3))] for _ in range(25)]
    ours, per_item = cider_d(candidates, references)
    theirs, their_items = Cider().compute_score(
        {i: r for i, r in enumerate(references)}, {i: [c] for i, c in enumerate(candidates)}
    )
    assert ours == pytest.approx(float(theirs), abs=1e-12)
    assert per_item == pytest.approx(list(their_items), abs=1e-12)
    assert sum(ngram_counts("a b a b").values()) == 4 + 3 + 2 + 1


# --- SODA_c and densevid ----------------------------------------------------------------
def _exact_pairs(pairs):
    """A stand-in caption scorer: 1 when the hypothesis equals the reference, else 0."""
    return [1.0 if hyp == refs[0] else 0.0 for hyp, refs in pairs]


def test_best_matching_is_order_preserving() -> None:
    assert best_matching_score([[1, 0], [0, 1]]) == 2
    assert best_matching_score([[0, 1], [1, 0]]) == 1  # the two matches would cross
    assert best_matching_score([[0.5, 0.9], [0.8, 0.0]]) == 0.9
    assert best_matching_score([]) == 0.0


def test_soda_c_by_hand() -> None:
    refs = [Event(0, 10, "a man walks"), Event(10, 20, "a dog runs")]
    predicted = [
        Event(10, 20, "a dog runs"),  # out of order on purpose: SODA sorts by start
        Event(0, 5, "a man walks"),  # IoU 0.5 with the first reference, caption right
        Event(0, 20, "a man walks"),  # IoU 0.5 with the first reference too
    ]
    # Sorted predictions: [0,5] man, [0,20] man, [10,20] dog. S (refs x preds):
    #   ref man: 0.5, 0.5, 0      ref dog: 0, 0, 1  ->  best order-preserving total 1.5.
    # P = 1.5 / 3, R = 1.5 / 2, F = 2PR / (P + R) = 0.6.
    result = soda_c([DenseSample(predicted, [refs])], _exact_pairs)
    assert result["precision"] == pytest.approx(50.0)
    assert result["recall"] == pytest.approx(75.0)
    assert result["f1"] == pytest.approx(60.0)


def test_soda_c_picks_the_best_reference_set_and_averages_videos() -> None:
    good = [Event(0, 10, "a man walks")]
    bad = [Event(0, 10, "a cat sleeps")]
    video = DenseSample([Event(0, 10, "a man walks")], [bad, good])  # second set matches: F = 1
    empty = DenseSample([], [good])  # no prediction: 0
    result = soda_c([video, empty], _exact_pairs)
    assert result == {"precision": 50.0, "recall": 50.0, "f1": 50.0}
    # An IoU threshold above the overlap removes the match.
    shifted = DenseSample([Event(0, 4, "a man walks")], [good])  # IoU 0.4
    assert soda_c([shifted], _exact_pairs, thresholds=(0.5,))["f1"] == 0.0
    assert soda_c([shifted], _exact_pairs, thresholds=(0.0,))["f1"] == pytest.approx(40.0)


def test_densevid_pairs_by_threshold_and_scores_unmatched_against_nothing() -> None:
    seen: list[list[tuple[str, str]]] = []

    def mean_exact(hypotheses, references):
        seen.append([(h, r[0]) for h, r in zip(hypotheses, references)])
        return sum(h == r[0] for h, r in zip(hypotheses, references)) / len(hypotheses)

    refs = [Event(0, 10, "A man walks."), Event(10, 20, "a dog runs")]
    predicted = [Event(0, 6, "a man walks"), Event(12, 20, "a dog runs")]  # IoU 0.6 and 0.8
    score = densevid_score([DenseSample(predicted, [refs]), DenseSample([], [refs])], mean_exact)
    # Video 1: thresholds 0.3 and 0.5 match both (1.0), 0.7 only the second (0.5: the first is
    # scored against the no-match reference), 0.9 none (0.0). Video 2 has no prediction: 0.
    # Mean over videos then thresholds: (0.5 + 0.5 + 0.25 + 0) / 4 = 0.3125 -> 31.25.
    assert score == pytest.approx(31.25)
    assert seen[2] == [("a man walks", NO_MATCH_REFERENCE), ("a dog runs", "a dog runs")]
    assert len(seen) == 4  # the video without predictions is never scored


# --- trajectories -----------------------------------------------------------------------
def test_trajectory_l1_and_pck_by_hand() -> None:
    truth = np.array([[[0.5, 0.5], [0.0, 0.0]], [[1.0, 1.0], [0.25, 0.75]]])  # (N=2, P=2, 2)
    predicted = truth.copy()
    predicted[0, 0] = [0.75, 0.5]  # |dx| + |dy| = 0.25, distance 0.25
    predicted[1, 1] = [0.5, 0.5]  # 0.25 + 0.25 = 0.5, distance sqrt(0.125) ~ 0.354
    visible = np.array([[True, True], [True, False]])
    errors = point_errors(predicted, truth)
    assert errors.l1.tolist() == [0.25, 0.0, 0.0, 0.5]
    assert mean_l1(errors) == pytest.approx(0.1875)  # (0.25 + 0.5) / 4
    assert pck(errors, 0.25) == 75.0  # distance 0.25 <= 0.25 counts
    assert pck(errors, 0.05) == 50.0
    seen = point_errors(predicted, truth, visible, visible_only=True)
    assert mean_l1(seen) == pytest.approx(0.25 / 3)
    assert pck(seen, 0.05) == pytest.approx(200 / 3)
    both = pooled([errors, seen])
    assert both.count == 7 and mean_l1(both) == pytest.approx(1.0 / 7)
    assert math.isnan(mean_l1(pooled([])))
    with pytest.raises(ValueError, match="visibility"):
        point_errors(predicted, truth, visible_only=True)
    with pytest.raises(ValueError, match=r"\(N, P, 2\)"):
        point_errors(predicted[:1], truth)


def test_visibility_calls_are_scored_per_point_by_hand() -> None:
    from training.evaluation.evaluate import evaluate_predictions

    truth = np.zeros((2, 2, 2))
    visible = np.array([[True, False], [True, False]])  # two hidden points of four
    called = np.array([[0.9, 0.2], [0.4, 0.7]])  # right, right, wrong (hidden), wrong (visible)
    reference = {"trajectory": truth, "visibility": visible}
    report = evaluate_predictions([("trajectory", (truth, called), reference), ("trajectory", truth, reference)],
                                  meteor=False)
    metrics = report.sections["trajectory"].metrics
    assert metrics["visibility_accuracy"] == 50.0 and metrics["hidden_share"] == 50.0
    assert metrics["hidden_recall"] == 50.0  # of the two hidden points, (0, 1) is called hidden, (1, 1) not
    assert metrics["L1"] == 0.0  # the pair's trajectory is scored like a bare one
    plain = evaluate_predictions([("trajectory", truth, reference)], meteor=False).sections["trajectory"].metrics
    assert "visibility_accuracy" not in plain
