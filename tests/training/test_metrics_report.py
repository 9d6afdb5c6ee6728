"""EvalReport files and evaluate_predictions over hand-made predictions of every task;
METEOR and SODA_c through the real METEOR 1.5 jar (one JVM for the module, ~10 s)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from training.evaluation import EvalItem, EvalReport, TaskSection, evaluate_predictions
from training.evaluation.meteor import MeteorError, MeteorScorer, meteor_unavailable_reason

# A 10 s clip: temporal token <t> is t / 30 seconds.
DURATION = 10.0


def _mixed_items() -> list:
    mcq = {"options": ["up", "down", "left"], "answer": 1}
    gqa = {**mcq, "timestamps": [[2.0, 6.0]], "duration": DURATION}
    return [
        ("open_qa", "Red.", {"answer": "red"}),
        ("open_qa", "dark red", {"answer": ["red", "crimson"]}),
        ("mcq", "(B) down.", mcq),
        ("mcq", "it goes left", mcq),
        ("mcq", "no idea", mcq),
        ("mcq", "(A)", {"options": ["up"], "answer": 0}),  # bad reference: one option
        ("grounding", "From <0> to <150>.", {"timestamps": [0.0, 10.0], "duration": DURATION}),  # IoU 0.5
        ("grounding", "From <60> to <180>.", {"timestamps": [[2.0, 6.0]], "duration": DURATION}),  # IoU 1
        ("grounding", "somewhere", {"timestamps": [[2.0, 6.0]], "duration": DURATION}),  # no segment
        ("grounding", "From <0> to <30>.", {"timestamps": [[2.0, 6.0]]}),  # bad reference: no duration
        ("gqa", "(B) down. From <90> to <150>.", gqa),  # right, [3, 5] inside: IoP 1, IoU 0.5
        ("gqa", "(B) down. From <150> to <210>.", gqa),  # right, [5, 7]: IoP 0.5, IoU 0.2
        ("gqa", "(A) up. From <60> to <180>.", gqa),  # wrong, IoP 1, IoU 1
        ("gqa", "(B) down.", gqa),  # right but no segment: IoP 0
        EvalItem("trajectory", np.full((2, 1, 2), 0.5), {"trajectory": np.full((2, 1, 2), 0.5)}),
        EvalItem("trajectory", None, {"trajectory": [[[0.1, 0.1]], [[0.2, 0.2]]], "visibility": [[1], [0]]}),
        ("captioning", "whatever", {}),  # unknown task
    ]


def test_evaluate_predictions_by_hand() -> None:
    report = evaluate_predictions(_mixed_items(), meteor=False, meta={"checkpoint": "x"})
    assert list(report.sections) == ["open_qa", "mcq", "grounding", "gqa", "trajectory"]
    assert report.meta == {"checkpoint": "x", "unknown_tasks": {"captioning": 1}}

    assert report.metric("open_qa", "accuracy") == 50.0
    assert "GPT judge" in report.sections["open_qa"].notes[0]

    mcq = report.sections["mcq"]
    assert (mcq.count, mcq.metrics["accuracy"]) == (3, pytest.approx(100 / 3))
    assert mcq.counts == {"unparseable": 1, "bad reference": 1}
    assert "options" in mcq.notes[0]

    grounding = report.sections["grounding"]
    assert grounding.count == 3 and grounding.counts == {"unparseable": 1, "bad reference": 1}
    assert grounding.metrics["R@0.3"] == pytest.approx(200 / 3)
    assert grounding.metrics["R@0.7"] == pytest.approx(100 / 3)
    assert grounding.metrics["mIoU"] == pytest.approx(50.0)

    gqa = report.sections["gqa"]
    assert gqa.metrics["Acc@QA"] == 75.0
    assert gqa.metrics["Acc@GQA"] == 50.0  # items 1 and 2 (IoP 1 and 0.5)
    assert gqa.metrics["mIoP"] == pytest.approx(62.5)
    assert gqa.metrics["IoP@0.5"] == 75.0
    assert gqa.metrics["mIoU"] == pytest.approx(42.5)
    assert gqa.counts == {"unparseable": 1}

    trajectory = report.sections["trajectory"]
    assert trajectory.count == 2 and trajectory.counts == {"unparseable": 1}
    assert trajectory.metrics["L1"] == 0.0  # only the predicted one
    assert trajectory.metrics["PCK@0.05"] == 50.0  # 2 of 4 points; the missing ones miss
    assert trajectory.metrics["PCK@0.05_visible"] == pytest.approx(200 / 3)  # 2 of 3 visible


def test_accuracy_per_question_kind_in_the_report_its_json_and_table() -> None:
    options = ["up", "down"]
    items = [
        ("open_qa", "Red.", {"answer": "red", "kind": "colour"}),
        ("open_qa", "blue", {"answer": "red", "kind": "colour"}),
        ("open_qa", "up", {"answer": "up", "kind": "direction"}),
        ("open_qa", "up", {"answer": "up"}),  # no kind: in the accuracy, not in the breakdown
        ("mcq", "down (B).", {"options": options, "answer": 1, "kind": "direction"}),
    ]
    report = evaluate_predictions(items, meteor=False)
    assert report.metric("open_qa", "accuracy") == 75.0
    assert report.sections["open_qa"].by_kind == {"colour": {"count": 2, "accuracy": 50.0},
                                                  "direction": {"count": 1, "accuracy": 100.0}}
    assert report.sections["mcq"].by_kind == {"direction": {"count": 1, "accuracy": 100.0}}
    assert EvalReport.from_dict(json.loads(report.to_json())).to_dict() == report.to_dict()
    rows = [line.split() for line in report.to_text().splitlines()]
    assert ["open_qa", "accuracy[colour]", "50.00", "2"] in rows
    assert ["mcq", "accuracy[direction]", "100.00", "1"] in rows
    assert "by_kind" not in evaluate_predictions(items[3:4], meteor=False).to_dict()["tasks"]["open_qa"]


def test_grounding_figures_per_event_type() -> None:
    items = [
        ("grounding", "From <0> to <150>.", {"timestamps": [0, 5], "duration": 10, "kind": "move"}),  # IoU 1
        ("grounding", "From <0> to <300>.", {"timestamps": [0, 5], "duration": 10, "kind": "move"}),  # IoU 0.5
        ("grounding", "From <270> to <300>.", {"timestamps": [1, 2], "duration": 10, "kind": "enter"}),  # IoU 0
        ("grounding", "From <0> to <300>.", {"timestamps": [1, 2], "duration": 10}),  # no kind: IoU 0.1
    ]
    report = evaluate_predictions(items, meteor=False)
    assert report.metric("grounding", "mIoU") == pytest.approx(40.0)
    by_kind = report.sections["grounding"].by_kind
    assert by_kind["move"] == pytest.approx({"count": 2, "R@0.3": 100.0, "R@0.5": 100.0, "R@0.7": 50.0, "mIoU": 75.0})
    assert by_kind["enter"] == {"count": 1, "R@0.3": 0.0, "R@0.5": 0.0, "R@0.7": 0.0, "mIoU": 0.0}
    rows = [line.split() for line in report.to_text().splitlines()]
    assert ["grounding", "R@0.7[move]", "50.00", "2"] in rows and ["grounding", "mIoU[enter]", "0.00", "1"] in rows
    assert "frame_snap_mIoU" not in report.sections["grounding"].metrics  # frame count unknown
    # With 5 frames of the 10 s clips (2 s slices): [0, 5] snaps to [0, 4] (5 s is a tie, rounded
    # half to even; IoU 0.8, twice); [1, 2] to [0, 2] (IoU 0.5, twice).
    snapped = evaluate_predictions(items, meteor=False, num_frames=5).sections["grounding"]
    assert snapped.metrics["frame_snap_mIoU"] == pytest.approx(65.0)
    assert snapped.metrics["frame_snap_R@0.7"] == pytest.approx(50.0)
    assert snapped.metrics["R@0.5"] == report.metric("grounding", "R@0.5")
    assert any("the 5 frames the model sees" in note for note in snapped.notes)


def test_dense_caption_without_meteor_reports_why() -> None:
    reference = {
        "events": [{"timestamps": [0, 5], "caption": "a man walks"}, {"timestamps": [5, 10], "caption": "a dog runs"}],
        "duration": DURATION,
    }
    report = evaluate_predictions(
        [
            ("dense_caption", "From <0> to <150>, a man walks. From <150> to <300>, a dog sits.", reference),
            ("dense_caption", "nothing here", reference),
        ],
        meteor=False,
    )
    dense = report.sections["dense_caption"]
    assert dense.count == 2 and dense.counts == {"unparseable": 1}
    assert dense.metrics["events_per_video"] == 1.0
    # Video 1 at every threshold: two items, CIDEr 7.5 and 2.5 (see test_metrics); video 2: 0.
    assert dense.metrics["CIDEr"] == pytest.approx(100 * (5.0 + 0.0) / 2)
    assert set(dense.unavailable) == {"METEOR", "SODA_c"}
    assert "METEOR" not in dense.metrics


def test_report_json_round_trip_text_table_and_atomic_write(tmp_path) -> None:
    report = EvalReport(meta={"data": "eval"})
    report.add(TaskSection("grounding", 3, {"R@0.3": 66.666, "mIoU": float("nan")}, {"unparseable": 1}))
    report.add(TaskSection("dense_caption", 12, {"CIDEr": 31.5}, unavailable={"METEOR": "no java"}))
    json_path, text_path = tmp_path / "out" / "report.json", tmp_path / "out" / "report.txt"
    report.write(json_path, text_path)
    assert sorted(p.name for p in json_path.parent.iterdir()) == ["report.json", "report.txt"]  # no temp left

    data = json.loads(json_path.read_text())
    assert data["tasks"]["grounding"]["metrics"] == {"R@0.3": 66.666, "mIoU": None}
    assert data["tasks"]["dense_caption"]["unavailable"] == {"METEOR": "no java"}
    again = EvalReport.read(json_path)
    assert again.to_dict() == report.to_dict()
    assert again.metric("grounding", "mIoU") is None and math.isclose(again.metric("grounding", "R@0.3"), 66.666)

    table = text_path.read_text().splitlines()
    assert table[0].split() == ["task", "metric", "value", "n"]
    rows = table[2:6]
    assert [r.split() for r in rows] == [
        ["grounding", "R@0.3", "66.67", "3"],
        ["grounding", "mIoU", "-", "3"],
        ["dense_caption", "CIDEr", "31.50", "12"],
        ["dense_caption", "METEOR", "n/a", "12"],
    ]
    assert len({len(r) for r in table[:6]}) == 1  # aligned columns, numbers right-aligned
    assert {r.index(r.split()[2]) + len(r.split()[2]) for r in rows} == {len(table[0]) - 4}
    assert "dense_caption: METEOR unavailable: no java" in table
    assert "grounding: unparseable = 1" in table


@pytest.fixture(scope="module")
def meteor():
    reason = meteor_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with MeteorScorer() as scorer:
        yield scorer


def test_meteor_jar_scores(meteor) -> None:
    aggregate, segments = meteor.score(
        [("a man plays the guitar", ["a man is playing a guitar"]), ("the dog runs", ["the dog runs"]), ("", ["a dog"])]
    )
    assert segments[1] == 1.0 and segments[2] == 0.0
    assert 0.2 < segments[0] < 0.9  # stem match of play/playing, article mismatch
    assert min(segments) <= aggregate <= max(segments)


def test_dense_caption_with_meteor_soda(meteor) -> None:
    reference = {
        "events": [{"timestamps": [0, 5], "caption": "a man walks"}, {"timestamps": [5, 10], "caption": "a dog runs"}],
        "duration": DURATION,
    }
    perfect = "From <0> to <150>, a man walks. From <150> to <300>, a dog runs."
    half = "From <0> to <150>, a man walks."
    report = evaluate_predictions([("dense_caption", perfect, reference), ("dense_caption", half, reference)], meteor=meteor)
    dense = report.sections["dense_caption"]
    assert not dense.unavailable
    # Video 1: P = R = 1. Video 2: one perfect event of two: P = 1, R = 1/2, F = 2/3.
    assert dense.metrics["SODA_c"] == pytest.approx(100 * (1 + 2 / 3) / 2)
    # Every matched item is an identical caption (METEOR 1); nothing unmatched at any threshold.
    assert dense.metrics["METEOR"] == pytest.approx(100.0)


def test_meteor_without_java_is_reported_unavailable_not_faked() -> None:
    missing = "no-such-java-binary"
    assert "not on PATH" in meteor_unavailable_reason(missing)
    with pytest.raises(MeteorError, match="not on PATH"):
        MeteorScorer(java=missing).score([("a dog", ["a dog"])])
    reference = {"events": [{"timestamps": [0, 5], "caption": "a dog"}], "duration": DURATION}
    report = evaluate_predictions([("dense_caption", "From <0> to <150>, a dog.", reference)], meteor=MeteorScorer(java=missing))
    dense = report.sections["dense_caption"]
    assert "not on PATH" in dense.unavailable["METEOR"] and "not on PATH" in dense.unavailable["SODA_c"]
    assert "METEOR" not in dense.metrics and "SODA_c" not in dense.metrics
