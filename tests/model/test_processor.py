"""The collate function: span targets land on the tokens that overlap the spans."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from pite_ros.model import PiteConfig, PiteProcessor
from pite_ros.model.config import ConfigError
from pite_ros.types import Example, SpanPoint, SpanTrajectory


def answer_tokens(batch, row, tokenizer):
    keep = batch["labels"][row] != -100
    return tokenizer.convert_ids_to_tokens(batch["input_ids"][row][keep].tolist()), keep


def test_stage1_points_on_overlapping_words(processor, tokenizer, image_example):
    batch = processor([image_example])
    tokens, keep = answer_tokens(batch, 0, tokenizer)
    assert tokens == ["there", "is", "a", "red", "circle", ".", "</s>"]
    located = batch["loc_mask"][0][keep].tolist()
    assert located == [False, False, False, True, True, False, False]
    targets = batch["loc_targets"][0][keep]
    assert targets[3].tolist() == pytest.approx([0.2, 0.3]) and targets[4].tolist() == pytest.approx([0.4, 0.5])
    assert (batch["input_ids"][0] == processor.config.video_token_id).sum() == 1  # one frame, one token
    assert "traj_targets" not in batch


def test_stage2_trajectories_on_phrase_tokens(processor, tokenizer, video_example, image_example):
    batch = processor([video_example, image_example])
    tokens, keep = answer_tokens(batch, 0, tokenizer)
    phrase = [i for i, t in enumerate(tokens) if t in ("a", "red", "circle")]
    assert phrase == [5, 6, 7]  # from <30> to <60> , a red circle
    visible = batch["traj_mask"][0][keep]
    assert [bool(v.any()) for v in visible] == [i in phrase for i in range(len(tokens))]
    assert visible[5].sum() == 15  # one of the 16 points is hidden
    assert np.allclose(batch["traj_targets"][0][keep][6].numpy(), video_example.trajectories[0].points)
    assert batch["frame_mask"].tolist() == [[True] * 4, [True, False, False, False]]
    assert batch["pixel_values"].shape == (2, 4, 3, 32, 32)
    assert (batch["input_ids"] == processor.config.video_token_id).sum(1).tolist() == [4, 1]


def test_all_points_scored_when_hidden_positions_are_known(model, tokenizer, video_example):
    """``trajectory_loss_points="all"``: the hidden point is scored too, on the phrase's tokens only."""
    config = copy.deepcopy(model.config)
    config.trajectory_loss_points = "all"
    batch = PiteProcessor(tokenizer, config)([video_example])
    tokens, keep = answer_tokens(batch, 0, tokenizer)
    scored = batch["traj_mask"][0][keep]
    assert [int(v.sum()) for v in scored] == [16 if t in ("a", "red", "circle") else 0 for t in tokens]
    with pytest.raises(ConfigError, match="trajectory_loss_points must be one of \\[.visible., .all.\\], got 'some'"):
        PiteConfig(trajectory_loss_points="some")


def test_first_span_wins_and_wrong_shapes_are_named(processor):
    frames = np.zeros((4, 8, 8, 3), np.uint8)
    both = Example("x", frames, "q", "a red circle.", 1.0,
                   points=[SpanPoint(0, 5, (0.1, 0.1)), SpanPoint(2, 12, (0.9, 0.9))])
    batch = processor([both])
    keep = batch["labels"][0] != -100
    assert batch["loc_targets"][0][keep][:3].tolist() == [pytest.approx([0.1, 0.1])] * 2 + [pytest.approx([0.9, 0.9])]
    wrong = Example("bad", frames, "q", "a red circle.", 1.0,
                    trajectories=[SpanTrajectory(0, 5, np.zeros((8, 4, 2), np.float32), np.ones((8, 4), bool))])
    with pytest.raises(ValueError, match="example bad: trajectory of span \\[0, 5\\)"):
        processor([wrong])
