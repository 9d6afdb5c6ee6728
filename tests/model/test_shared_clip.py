"""Rows shared by a clip's examples (``splice_shared``, ``PiteProcessor.shared_clip_batch``)
score every example exactly as its own row does, with the clip encoded once."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pite_ros.model.splice import SpliceItem, splice_shared
from pite_ros.model.stages import stage_loss_terms
from pite_ros.types import Example

VIDEO, PAD = 7, 0


def test_a_shared_row_lays_out_the_prefix_once_and_each_example_after_it():
    first = SpliceItem([1, VIDEO, 20], 2, [30, 31])
    second = SpliceItem([1, VIDEO, 21, 22], 2, [32])
    batch = splice_shared([[first, second], [SpliceItem([1, VIDEO], 1, [33])]], video_token_id=VIDEO, pad_token_id=PAD)
    assert batch["input_ids"].tolist() == [[1, 7, 7, 20, 30, 31, 21, 22, 32], [1, 7, 33, 0, 0, 0, 0, 0, 0]]
    assert batch["labels"].tolist()[0] == [-100, -100, -100, -100, 30, 31, -100, -100, 32]
    assert batch["position_ids"].tolist()[0] == [0, 1, 2, 3, 4, 5, 3, 4, 5]
    mask = batch["attention_mask"][0, 0].int().tolist()
    assert mask[6] == [1, 1, 1, 0, 0, 0, 1, 0, 0]  # the second example's first token: the prefix and itself
    assert mask[5] == [1, 1, 1, 1, 1, 1, 0, 0, 0]  # the first example never sees the second
    assert batch["attention_mask"][1, 0, 3:].int().argmax(-1).tolist() == [3, 4, 5, 6, 7, 8]  # padding sees itself


def test_items_that_do_not_share_a_prefix_cannot_share_a_row():
    with pytest.raises(ValueError, match="same prompt up to <video>"):
        splice_shared([[SpliceItem([1, VIDEO], 2, [3]), SpliceItem([1, VIDEO], 3, [3])]], video_token_id=VIDEO, pad_token_id=PAD)
    with pytest.raises(ValueError, match="must not be empty"):
        splice_shared([[]], video_token_id=VIDEO, pad_token_id=PAD)


def test_shared_rows_give_the_loss_and_gradients_of_one_row_each(model, processor, video_example):
    clip = video_example.frames
    examples = [
        video_example,
        Example("colour", clip.copy(), "what colour is the circle?", "there is a red circle.", 6.0),
        Example("other", np.random.default_rng(3).integers(0, 256, clip.shape, dtype=np.uint8), "describe the video.", "a small blue square moves left.", 6.0),
        Example("again", clip.copy(), "describe the video.", "a red circle moves left.", 6.0),
    ]
    model.eval()

    def loss_and_grads(batch):
        model.zero_grad()
        loss = model(**batch, **stage_loss_terms(model.config, 2)).loss
        loss.backward()
        return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    shared = processor.shared_clip_batch(examples)
    assert shared["input_ids"].shape[0] == 2 and shared["pixel_values"].shape[0] == 2
    assert int((shared["labels"] != -100).sum()) == int((processor(examples)["labels"] != -100).sum())
    expected_loss, expected = loss_and_grads(processor(examples))
    loss, grads = loss_and_grads(shared)
    assert torch.isclose(loss, expected_loss, rtol=1e-5), (loss, expected_loss)
    assert expected.keys() == grads.keys() and len(grads) > 10
    for name, grad in grads.items():
        assert torch.allclose(grad, expected[name], rtol=1e-4, atol=1e-6), name
    assert np.array_equal(clip, video_example.frames)
