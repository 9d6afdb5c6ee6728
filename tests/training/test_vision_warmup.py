"""Stage 0 (vision warm-up): slot targets from stage-2 records, and the tower learns positions."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from pite_ros.model import PiteForConditionalGeneration
from pite_ros.types import Example, SpanTrajectory
from training.recipes.vision_warmup import slot_name, slot_targets, warm_up, warmup_loss
from training.synth import generate


def test_slot_names_drop_the_article_only() -> None:
    assert slot_name("a large orange triangle") == "large orange triangle"
    assert slot_name("The red circle ") == "red circle"
    assert slot_name("an orange star") == "orange star"
    assert slot_name("another star") == "another star"


def test_slot_targets_take_named_objects_centres_and_visibility() -> None:
    points = np.array([[[0.2, 0.4], [0.4, 0.6]], [[0.6, 0.2], [0.8, 0.4]], [[1.0, 0.5], [1.0, 0.7]]])
    visible = np.array([[1, 1], [1, 0], [0, 0]], bool)
    response = "a red circle moves right. a blue star."
    example = Example(id="x", frames=np.zeros((3, 8, 8, 3), np.uint8), prompt="", response=response, duration=3.0,
                      trajectories=[SpanTrajectory(0, 12, points, visible)])
    slots = {"blue star": 0, "red circle": 1}
    seen, centre, known = slot_targets(example, slots)
    np.testing.assert_array_equal(known, [[0, 1]] * 3)  # the star is named but has no trajectory
    np.testing.assert_array_equal(seen[:, 1], [1, 1, 0])
    np.testing.assert_allclose(centre[:, 1], [[0.3, 0.5], [0.7, 0.3], [1.0, 0.6]])


def test_loss_counts_only_known_slots_and_positions_of_visible_ones() -> None:
    batch = {"known": torch.tensor([[1.0, 0.0]]), "visible": torch.tensor([[1.0, 0.0]]),
             "centre": torch.tensor([[[0.5, 0.5], [0.0, 0.0]]])}
    logits = torch.tensor([[0.0, 100.0]])  # the unknown slot's wrong confidence costs nothing
    centre = torch.tensor([[[0.7, 0.5], [0.9, 0.9]]])
    loss, parts = warmup_loss(logits, centre, batch)
    assert abs(parts["L1"] - 0.1) < 1e-6
    assert abs(parts["bce"] - float(np.log(2))) < 1e-6
    assert abs(float(loss) - (np.log(2) + 1.0)) < 1e-5


def test_warm_up_lowers_the_position_error_and_saves_a_loadable_model(tmp_path: Path) -> None:
    generate(tmp_path / "data", videos=24, images=0, split="train", seed=3, workers=1)
    args = argparse.Namespace(data=tmp_path / "data" / "stage2.jsonl", out=tmp_path / "stage0", model="tiny",
                              steps=40, batch_size=8, learning_rate=3e-3, frame_cache_mb=64, threads=2, seed=0)
    final = warm_up(args)
    rows = [__import__("json").loads(line) for line in (args.out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 40
    first, last = np.mean([r["L1"] for r in rows[:5]]), np.mean([r["L1"] for r in rows[-5:]])
    assert last < 0.8 * first, (first, last)
    model = PiteForConditionalGeneration.from_pretrained(final)
    assert model.config.num_frames == 4 and (args.out / "slots.json").is_file()
