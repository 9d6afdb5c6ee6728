"""Which parameters train in each stage: gradients reach exactly the declared groups."""

from __future__ import annotations

import pytest
import torch

from pite_ros.model.config import ConfigError
from pite_ros.model.stages import (
    GROUPS,
    STAGE_TRAINABLE,
    init_trajectory_from_localization,
    parameter_groups,
    setup_stage,
    stage_loss_terms,
    trainable_groups,
)


def grads_after_backward(model, batch, stage):
    model.zero_grad(set_to_none=True)
    model(**batch, **stage_loss_terms(model.config, stage)).loss.backward()
    return {name: p.grad for name, p in model.named_parameters() if p.grad is not None}


def test_groups_partition_every_parameter(model):
    model.add_visibility_head()
    setup_stage(model, 3)
    groups = parameter_groups(model)
    names = [name for members in groups.values() for name in members]
    assert sorted(names) == sorted(name for name, _ in model.named_parameters())
    assert len(names) == len(set(names))
    assert all(groups[group] for group in GROUPS), "every group has parameters after stage 3 set-up"
    assert all("trainable_tokens_delta" in name for name in groups["time_tokens"])


def test_each_stage_trains_exactly_its_declared_groups(model, processor, image_example, video_example):
    model.add_visibility_head()  # the processor reads the same config: the batch gets visibility targets
    batch = processor([image_example, video_example])  # points, trajectories, visibility and temporal tokens
    assert batch["vis_targets"].shape[-1] == 1 and batch["vis_mask"].any()
    for stage in (0, 1, 2, 3):
        names = setup_stage(model, stage)
        groups = parameter_groups(model)
        declared = {name for group in STAGE_TRAINABLE[stage] for name in groups[group]}
        assert set(names) == declared
        grads = grads_after_backward(model, batch, stage)
        assert set(grads) == declared, f"stage {stage}"
        for group in STAGE_TRAINABLE[stage]:
            assert any(grads[name].abs().sum() > 0 for name in groups[group]), f"stage {stage}: {group} gets no gradient"


def test_later_stage_merges_the_earlier_lora(model, processor, video_example):
    batch = processor([video_example])
    setup_stage(model, 1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    model.eval()
    before = model(**batch).logits
    setup_stage(model, 2)
    assert not any("stage1" in name for name, _ in model.named_parameters())
    assert torch.allclose(model(**batch).logits, before, atol=1e-5)


def test_trajectory_projector_starts_as_tiled_localization(model):
    hidden = torch.randn(3, model.config.hidden_size)
    init_trajectory_from_localization(model)
    loc, traj = model.project(hidden)
    assert traj.shape == (3, model.config.num_frames, model.config.num_points, 2)
    assert torch.allclose(traj, loc[:, None, None, :].expand_as(traj))
    assert ((traj >= 0) & (traj <= 1)).all()


def test_stage_2_tiles_once(model):
    setup_stage(model, 1)
    setup_stage(model, 2)
    hidden = torch.randn(2, model.config.hidden_size)
    loc, traj = model.project(hidden)
    assert torch.allclose(traj, loc[:, None, None, :].expand_as(traj))
    with torch.no_grad():
        model.coordinate_head.traj_projector.bias.add_(1.0)
    trained = model.project(hidden)[1]
    setup_stage(model, 2)  # continuing stage 2 keeps the trained projector
    assert torch.equal(model.project(hidden)[1], trained)


def test_extra_and_per_stage_groups(model, processor, video_example):
    model.config.extra_trainable = ["vision_tower"]
    model.config.stage_trainable = {"3": ["llm", "embeddings", "time_tokens", "lora"]}
    assert trainable_groups(model, 1) == ("adapter", "loc_projector", "lora", "vision_tower")
    assert trainable_groups(model, 3) == ("llm", "embeddings", "lora", "vision_tower")  # rows inside embeddings
    batch = processor([video_example])
    names = setup_stage(model, 3)
    groups = parameter_groups(model)
    assert not groups["time_tokens"]
    assert set(grads_after_backward(model, batch, 3)) == set(names)
    assert set(names) == {n for g in ("llm", "embeddings", "lora", "vision_tower") for n in groups[g]}
    model.config.extra_trainable = ["everything"]
    with pytest.raises(ConfigError, match="everything"):
        trainable_groups(model, 1)
    with pytest.raises(ConfigError, match="stage"):
        trainable_groups(model, 4)


def test_stage_3_rehearses_trajectories_only_when_the_batch_has_them(model, processor, video_example, image_example):
    """Stage 3 adds the trajectory L1 for mixed-in stage-2 examples, never the location L1."""
    setup_stage(model, 3)
    with_trajectories = model(**processor([video_example]), **stage_loss_terms(model.config, 3))
    assert float(with_trajectories.coord_loss) > 0
    assert float(with_trajectories.loss) == pytest.approx(
        float(with_trajectories.lm_loss) + model.config.coord_weight * float(with_trajectories.coord_loss), rel=1e-5)
    video_example.trajectories = []
    assert float(model(**processor([video_example]), **stage_loss_terms(model.config, 3)).coord_loss) == 0
    assert float(model(**processor([image_example]), **stage_loss_terms(model.config, 3)).coord_loss) == 0  # points: stage 1 only
