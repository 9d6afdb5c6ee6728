"""Each loss against numbers worked out by hand (small tensors, comments show the arithmetic)."""

from __future__ import annotations

import math

import pytest
import torch

from pite_ros.model.losses import lm_loss_sum, location_l1_sum, pite_loss, trajectory_l1_sum

X = -100
# Vocabulary of 2; position 0 predicts labels[1] = 0 with logits [0, 0]  -> CE = ln 2;
# position 1 predicts labels[2] = 1 with logits [ln 3, 0] (p = 3/4, 1/4) -> CE = ln 4.
LOGITS = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])
LABELS = torch.tensor([[X, 0, 1]])


def test_cross_entropy_on_answer_tokens_only():
    total, count = lm_loss_sum(LOGITS, LABELS)
    assert count == 2
    assert total.item() == pytest.approx(math.log(2) + math.log(4))


def test_label_smoothing():
    # With ε = 0.1 over 2 classes: (1-ε)·(-log p_y) + ε·mean_c(-log p_c).
    # pos 0: 0.9 ln2 + 0.1 ln2 = ln 2;  pos 1: 0.9 ln4 + 0.1 (ln(4/3) + ln4) / 2.
    total, _ = lm_loss_sum(LOGITS, LABELS, label_smoothing=0.1)
    expected = math.log(2) + 0.9 * math.log(4) + 0.05 * (math.log(4 / 3) + math.log(4))
    assert total.item() == pytest.approx(expected)


def test_location_l1_is_shifted_and_masked():
    loc = torch.tensor([[[0.5, 0.5], [0.2, 0.9], [0.0, 0.0]]])
    targets = torch.tensor([[[9.0, 9.0], [0.25, 0.75], [0.0, 1.0]]])
    mask = torch.tensor([[True, True, False]])
    # position 0 vs token 1: |0.5-0.25| + |0.5-0.75| = 0.5; token 2 masked; token 0 is never a target.
    assert location_l1_sum(loc, targets, mask).item() == pytest.approx(0.5)


def test_trajectory_l1_over_points_and_frames():
    traj = torch.full((1, 2, 1, 2, 2), 0.5)  # N = 1 frame, P = 2 points
    targets = torch.zeros((1, 2, 1, 2, 2))
    targets[0, 1] = torch.tensor([[[0.5, 0.0], [1.0, 0.5]]])
    # point 0: |0| + |0.5| = 0.5; point 1: |0.5| + |0| = 0.5; divided by P·N = 2.
    visible = torch.tensor([[[[False, False]], [[True, True]]]])
    assert trajectory_l1_sum(traj, targets, visible).item() == pytest.approx(0.5)
    visible[0, 1, 0, 1] = False  # an occluded point adds nothing, the normaliser stays P·N
    assert trajectory_l1_sum(traj, targets, visible).item() == pytest.approx(0.25)


def test_stage_losses_add_up_over_answer_tokens():
    loc = torch.tensor([[[0.5, 0.5], [0.2, 0.9], [0.0, 0.0]]])
    targets = torch.tensor([[[0.0, 0.0], [0.25, 0.75], [0.0, 1.0]]])
    mask = torch.tensor([[False, True, False]])
    terms = pite_loss(LOGITS, LABELS, coord_weight=2.0, loc=loc, loc_targets=targets, loc_mask=mask)
    # ℓ = 2: lm = 3 ln2 / 2; coord = λ · 0.5 / ℓ = 2 · 0.5 / 2 = 0.5.
    assert terms.num_tokens == 2
    assert terms.lm_loss.item() == pytest.approx(1.5 * math.log(2))
    assert terms.coord_loss.item() == pytest.approx(0.5)
    assert terms.loss.item() == pytest.approx(1.5 * math.log(2) + 0.5)


def test_no_answer_tokens_gives_zero_not_nan():
    terms = pite_loss(LOGITS, torch.full((1, 3), X), coord_weight=1.0)
    assert terms.loss.item() == 0.0 and terms.num_tokens == 0
