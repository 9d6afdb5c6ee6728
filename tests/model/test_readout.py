"""The soft-argmax read-out: patch geometry, frame rows, that it learns where an object is,
and the model wired with it (losses, generation, checkpoints, stage-2 tiling)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pite_ros.model import PiteForConditionalGeneration, PiteProcessor, build_model, load_config, setup_stage
from pite_ros.model.config import ConfigError, PiteConfig
from pite_ros.model.losses import pite_loss
from pite_ros.model.readout import SoftArgmaxReadout, patch_centres, trajectory_rows
from pite_ros.model.stages import init_trajectory_from_localization, stage_loss_terms
from pite_ros.model.torch_generation import answer_with_model


def test_patch_centres_are_row_major_in_unit_coordinates():
    assert patch_centres(2).tolist() == [[0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]]
    assert patch_centres(4)[5].tolist() == [0.375, 0.375]


def test_trajectory_rows_pick_the_nearest_frame():
    assert trajectory_rows(8, 8).tolist() == list(range(8))
    assert trajectory_rows(1, 4).tolist() == [0, 0, 0, 0]  # a still image serves every row
    assert trajectory_rows(4, 8).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert trajectory_rows(16, 4).tolist() == [2, 6, 10, 14]  # bin centres 0.125, 0.375, ... of both


def test_readout_learns_where_the_named_object_is():
    """Two kinds of object on a 4x4 patch grid, at random patches per frame; the hidden state
    says which kind. The read-out must point at that object's patch (what a regression from a
    CLS token could not learn for the default model)."""
    torch.manual_seed(0)
    grid, width, hidden_size = 4, 8, 16
    readout = SoftArgmaxReadout(hidden_size, width, grid, num_points=1, key_dim=16, max_offset=0.1)
    kinds = torch.randn(2, width)
    names = torch.randn(2, hidden_size)
    centres = patch_centres(grid)
    optimizer = torch.optim.Adam(readout.parameters(), lr=1e-2)

    def batch(size: int):
        patches = 0.3 * torch.randn(size, 3, grid * grid, width)
        where = torch.stack([torch.randperm(grid * grid)[:2] for _ in range(size * 3)]).view(size, 3, 2)
        for kind in range(2):
            patches.scatter_(2, where[..., kind, None, None].expand(-1, -1, 1, width),
                             kinds[kind].expand(size, 3, 1, width))
        asked = torch.randint(0, 2, (size,))
        target = centres[where.gather(2, asked[:, None, None].expand(-1, 3, 1))[..., 0]]  # (B, 3, 2)
        return names[asked][:, None], patches, target

    for _ in range(300):
        hidden, patches, target = batch(32)
        loss = (readout(hidden, patches)[:, 0, :, 0] - target).abs().sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    hidden, patches, target = batch(200)
    with torch.no_grad():
        points = readout(hidden, patches)
    assert points.shape == (200, 1, 3, 1, 2)
    assert ((points >= 0) & (points <= 1)).all()
    assert (points[:, 0, :, 0] - target).abs().sum(-1).mean() < 0.05  # a patch is 0.25 wide


@pytest.fixture
def soft_model(tokenizer):
    config = load_config("tiny")
    config.trajectory_readout = "soft_argmax"
    torch.manual_seed(0)
    return build_model(config, tokenizer)


def test_config_checks_the_readout():
    with pytest.raises(ConfigError, match="trajectory_readout"):
        PiteConfig(trajectory_readout="regression")
    with pytest.raises(ConfigError, match="visual_encoding='pite'"):
        PiteConfig(trajectory_readout="soft_argmax", visual_encoding="two_stream", two_stream={})
    assert load_config("default").trajectory_readout == "soft_argmax"


def test_model_reads_trajectories_from_the_clips_patches(soft_model, tokenizer, video_example, image_example):
    processor = PiteProcessor(tokenizer, soft_model.config)
    batch = processor([video_example])
    visual, patches = soft_model.encode_clip(batch["pixel_values"])
    assert visual.shape == (1, 4, 64) and patches.shape == (1, 4, 16, 32)  # 32 px / patch 8: 4x4 patches
    output = soft_model(**batch, **stage_loss_terms(soft_model.config, 2))
    assert float(output.coord_loss.detach()) > 0 and output.traj is None  # the loss projected its positions only
    assert torch.equal(output.patch_tokens, patches)
    with torch.no_grad():
        scored = soft_model(**{k: v for k, v in batch.items() if k != "labels"})
    assert scored.traj.shape == (1, batch["input_ids"].shape[1], 4, 4, 2)
    # Without patches: no per-position points, and coordinate targets are refused by name.
    step = soft_model.decoder_step(soft_model.embed_tokens(batch["input_ids"]), batch["attention_mask"])
    assert step.traj is None and step.loc is None and step.logits.shape[:2] == batch["input_ids"].shape
    with pytest.raises(ValueError, match="patch tokens"):
        soft_model.project(step.hidden)
    with pytest.raises(ValueError, match="pixel_values or patch_tokens"):
        soft_model(**{k: v for k, v in batch.items() if k != "pixel_values"}, **stage_loss_terms(soft_model.config, 2))
    # A still image (stage 1): φ reads its one frame, every trajectory row too.
    image = processor([image_example])
    assert float(soft_model(**image, **stage_loss_terms(soft_model.config, 1)).coord_loss.detach()) > 0
    with torch.no_grad():
        traj = soft_model(**{k: v for k, v in image.items() if k != "labels"}).traj
    assert torch.equal(traj, traj[..., :1, :, :].expand_as(traj))


@pytest.mark.parametrize("stage", [1, 2])
def test_loss_projects_only_the_positions_it_reads(soft_model, tokenizer, video_example, image_example, stage):
    """``forward`` with labels projects the target positions alone (``project_where``); its
    coordinate loss equals the one over every position's projection, and so do its gradients."""
    batch = PiteProcessor(tokenizer, soft_model.config)([image_example if stage == 1 else video_example])
    query = getattr(soft_model.coordinate_head, "loc_projector" if stage == 1 else "traj_projector").query.weight
    output = soft_model(**batch, **stage_loss_terms(soft_model.config, stage))
    sparse = torch.autograd.grad(output.coord_loss, query)[0]
    loc, traj = soft_model.project(output.hidden_states, output.patch_tokens)
    full = pite_loss(output.logits, batch["labels"], coord_weight=soft_model.config.coord_weight,
                     loc=loc if stage == 1 else None, loc_targets=batch.get("loc_targets") if stage == 1 else None,
                     loc_mask=batch.get("loc_mask"), traj=traj if stage == 2 else None,
                     traj_targets=batch.get("traj_targets") if stage == 2 else None, traj_mask=batch.get("traj_mask"))
    dense = torch.autograd.grad(full.coord_loss, query)[0]
    assert float(full.coord_loss.detach()) > 0
    assert torch.allclose(output.coord_loss, full.coord_loss, atol=1e-6)
    assert torch.allclose(sparse, dense, atol=1e-6)
    where = torch.zeros(batch["input_ids"].shape, dtype=torch.bool)
    where[0, 3] = True
    picked_loc, picked_traj, _ = soft_model.project_where(output.hidden_states, output.patch_tokens, where)
    assert torch.equal(picked_traj[~where], torch.zeros_like(picked_traj[~where]))
    assert torch.allclose(picked_traj[0, 3], traj[0, 3]) and torch.allclose(picked_loc[0, 3], loc[0, 3])


def test_stage_2_starts_every_point_at_phis_point(soft_model, tokenizer, video_example):
    batch = PiteProcessor(tokenizer, soft_model.config)([video_example])
    patches = soft_model.encode_clip(batch["pixel_values"])[1]
    hidden = torch.randn(1, 3, soft_model.config.hidden_size)
    init_trajectory_from_localization(soft_model)
    with torch.no_grad():
        loc, traj = soft_model.project(hidden, patches[:, :1])  # one frame: every row reads it
    assert torch.allclose(traj, loc[:, :, None, None, :].expand_as(traj), atol=1e-6)


def test_soft_argmax_model_answers_with_its_video_example_trajectory(soft_model, tokenizer, video_example, tmp_path):
    """60 steps on one clip, then a greedy answer: the phrase's track is the memorised one, and a
    saved and reloaded checkpoint answers the same."""
    setup_stage(soft_model, 3)
    soft_model.config.stage_trainable = {}
    for parameter in soft_model.parameters():
        parameter.requires_grad_(True)
    processor = PiteProcessor(tokenizer, soft_model.config)
    batch = processor([video_example])
    optimizer = torch.optim.AdamW(soft_model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(60):
        soft_model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    phrase = video_example.trajectories[0]
    result = answer_with_model(soft_model, processor, video_example.frames, video_example.prompt, video_example.duration,
                               phrase_fn=lambda text: [(phrase.start, phrase.end)] if text == video_example.response else [])
    assert result.text == video_example.response
    [track] = result.phrases
    assert track.trajectory.shape == (4, 4, 2)
    assert np.abs(track.trajectory - phrase.points).mean() < 0.05
    soft_model.save_pretrained(tmp_path / "soft")
    loaded = PiteForConditionalGeneration.from_pretrained(tmp_path / "soft")
    again = answer_with_model(loaded, processor, video_example.frames, video_example.prompt, video_example.duration,
                              phrase_fn=lambda text: [(phrase.start, phrase.end)])
    assert again.text == result.text
    assert np.allclose(again.phrases[0].trajectory, track.trajectory, atol=1e-5)


def test_frame_patch_pool_adds_pooled_patch_tokens_per_frame(tokenizer, video_example, image_example):
    """``frame_patch_pool: 2`` on the tiny 4x4 grid: CLS + 2x2 pooled patches = 5 tokens a frame,
    frame after frame, each real frame's tokens spliced in order."""
    config = load_config("tiny")
    config.frame_patch_pool = 2
    assert config.tokens_per_frame == 5
    torch.manual_seed(0)
    model = build_model(config, tokenizer)
    processor = PiteProcessor(tokenizer, config)
    assert processor.num_visual_tokens(4) == 20
    short = type(video_example)("short", video_example.frames[:2], video_example.prompt, "a red circle.", 3.0)
    batch = processor([video_example, short])
    assert (batch["input_ids"] == config.video_token_id).sum(1).tolist() == [20, 10]
    visual = model.encode_clip(batch["pixel_values"])[0]
    assert visual.shape == (2, 20, 64)
    # Token 0 of a frame is its CLS through μ; tokens 1-4 the pooled quarters of its patch grid.
    with torch.no_grad():
        output = model.visual_encoder.vision_tower(pixel_values=batch["pixel_values"][0, :1])
        cls = model.visual_encoder.adapter(output.pooler_output)
        quarter = output.last_hidden_state[0, 1:].view(4, 4, -1)[:2, 2:].mean((0, 1))
        top_right = model.visual_encoder.adapter(model.visual_encoder.vision_tower.post_layernorm(quarter))
    assert torch.allclose(visual[0, 0], cls[0], atol=1e-5) and torch.allclose(visual[0, 2], top_right, atol=1e-5)
    assert model.visual_mask(batch["frame_mask"]).sum(1).tolist() == [20, 10]
    assert model(**batch).logits.shape[:2] == batch["input_ids"].shape
    assert answer_with_model(model, processor, image_example.frames, "describe the image.", 0.0, max_new_tokens=2).token_ids
    for bad in (3, -2):
        with pytest.raises(ConfigError, match="frame_patch_pool"):
            PiteConfig(frame_patch_pool=bad, vision_config={"image_size": 32, "patch_size": 8})
