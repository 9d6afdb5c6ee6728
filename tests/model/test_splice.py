"""splice_batch against hand-written layouts, right and left padding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pite_ros.model.splice import SpliceItem, splice_batch

VIDEO, PAD, X = 4, 1, -100


def items() -> list[SpliceItem]:
    # A: prompt <s> w7 <video> w8, 2 visual tokens, answer w10 w11 </s>; "w10" carries a point.
    a = SpliceItem([2, 7, VIDEO, 8], 2, [10, 11, 3],
                   loc=np.array([[0.1, 0.2], [0.3, 0.4], [0.0, 0.0]]), loc_mask=np.array([True, False, False]))
    # B: prompt <s> <video> w9, 1 visual token, answer w12 </s>; "w12" has a 1-frame, 2-point trajectory.
    traj = np.array([[[[0.5, 0.6], [0.7, 0.8]]], [[[0.0, 0.0], [0.0, 0.0]]]])
    b = SpliceItem([2, VIDEO, 9], 1, [12, 3], traj=traj, traj_mask=np.array([[[True, False]], [[False, False]]]))
    return [a, b]


def test_right_padding():
    batch = splice_batch(items(), video_token_id=VIDEO, pad_token_id=PAD, padding_side="right")
    assert batch["input_ids"].tolist() == [[2, 7, 4, 4, 8, 10, 11, 3], [2, 4, 9, 12, 3, 1, 1, 1]]
    assert batch["attention_mask"].tolist() == [[1] * 8, [1, 1, 1, 1, 1, 0, 0, 0]]
    assert batch["position_ids"].tolist() == [list(range(8)), [0, 1, 2, 3, 4, 0, 0, 0]]
    assert batch["labels"].tolist() == [[X, X, X, X, X, 10, 11, 3], [X, X, X, 12, 3, X, X, X]]
    assert batch["loc_mask"].tolist() == [[False] * 5 + [True, False, False], [False] * 8]
    assert batch["loc_targets"][0, 5].tolist() == pytest.approx([0.1, 0.2])
    assert batch["loc_targets"][0, 6].tolist() == pytest.approx([0.3, 0.4])
    assert batch["loc_targets"][1].abs().sum() == 0
    assert batch["traj_targets"].shape == (2, 8, 1, 2, 2)
    assert batch["traj_targets"][1, 3].flatten().tolist() == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert batch["traj_mask"][1].nonzero().tolist() == [[3, 0, 0]]
    assert batch["traj_mask"][0].sum() == 0


def test_left_padding():
    batch = splice_batch(items(), video_token_id=VIDEO, pad_token_id=PAD, padding_side="left")
    assert batch["input_ids"].tolist() == [[2, 7, 4, 4, 8, 10, 11, 3], [1, 1, 1, 2, 4, 9, 12, 3]]
    assert batch["attention_mask"].tolist() == [[1] * 8, [0, 0, 0, 1, 1, 1, 1, 1]]
    assert batch["position_ids"].tolist() == [list(range(8)), [0, 0, 0, 0, 1, 2, 3, 4]]
    assert batch["labels"].tolist() == [[X, X, X, X, X, 10, 11, 3], [X, X, X, X, X, X, 12, 3]]
    assert batch["traj_mask"][1].nonzero().tolist() == [[6, 0, 0]]
    assert (batch["input_ids"] == VIDEO).nonzero().tolist() == [[0, 2], [0, 3], [1, 4]]


def test_generation_prompts_without_answers_and_truncation():
    batch = splice_batch([SpliceItem([2, VIDEO, 9], 3, [])], video_token_id=VIDEO, pad_token_id=PAD, max_length=4)
    assert batch["input_ids"].tolist() == [[2, 4, 4, 4]]
    assert set(batch) == {"input_ids", "attention_mask", "position_ids", "labels"}


def test_bad_items_are_named():
    with pytest.raises(ValueError, match="exactly one video token"):
        splice_batch([SpliceItem([2, 9], 1, [3])], video_token_id=VIDEO, pad_token_id=PAD)
    with pytest.raises(ValueError, match="loc targets"):
        splice_batch([SpliceItem([2, VIDEO], 1, [3, 3], loc=np.zeros((1, 2)), loc_mask=np.zeros(1, bool))],
                     video_token_id=VIDEO, pad_token_id=PAD)
    with pytest.raises(ValueError, match="padding_side"):
        splice_batch(items(), video_token_id=VIDEO, pad_token_id=PAD, padding_side="middle")
    assert isinstance(splice_batch(items(), video_token_id=VIDEO, pad_token_id=PAD)["input_ids"], torch.Tensor)
