"""The model with Grounded-VideoLLM's two-stream encoding (``visual_encoding="two_stream"``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pite_ros.model import (
    PiteProcessor,
    build_model,
    load_config,
    load_model_and_processor,
    save_model_and_processor,
    setup_stage,
)
from pite_ros.model.config import ConfigError
from pite_ros.model.stages import parameter_groups, stage_loss_terms
from pite_ros.model.two_stream_config import TwoStreamConfig
from pite_ros.model.torch_generation import answer_with_model

FRAMES = 12  # TwoStreamConfig.tiny(): K = 3 segments of 4 frames; 4 spatial + 2 temporal + 1 separator tokens


@pytest.fixture
def two_stream_model(tokenizer):
    config = load_config("tiny")
    config.visual_encoding, config.two_stream = "two_stream", TwoStreamConfig.tiny().to_dict()
    torch.manual_seed(0)
    return build_model(config, tokenizer)


def test_splice_forward_and_stage_groups(two_stream_model, tokenizer, video_example, image_example):
    model = two_stream_model
    video_example.frames = np.random.default_rng(3).integers(0, 256, (FRAMES, 40, 48, 3), dtype=np.uint8)
    processor = PiteProcessor(tokenizer, model.config)
    batch = processor([video_example, image_example])
    assert (batch["input_ids"] == model.config.video_token_id).sum(1).tolist() == [21, 21]
    assert batch["pixel_values"].shape == (2, FRAMES, 3, 32, 32)  # the image is repeated as a still clip
    names = setup_stage(model, 1)
    groups = parameter_groups(model)
    assert {n.split(".")[1] for n in groups["adapter"]} == {"spatial_projector", "temporal_projector", "separator"}
    assert {n.split(".")[1] for n in groups["vision_tower"]} == {"image_tower", "video_tower"}
    output = model(**batch, **stage_loss_terms(model.config, 1))
    output.loss.backward()
    assert {n for n, p in model.named_parameters() if p.grad is not None} == set(names)
    assert output.coord_loss > 0
    with torch.no_grad():
        assert model(**{k: v for k, v in batch.items() if k != "labels"}).traj.shape[-3:] == (4, 4, 2)


def test_checkpoint_and_answer(two_stream_model, tokenizer, tmp_path):
    save_model_and_processor(tmp_path / "ckpt", two_stream_model, PiteProcessor(tokenizer, two_stream_model.config))
    loaded, processor = load_model_and_processor(tmp_path / "ckpt")
    assert loaded.config.two_stream == two_stream_model.config.two_stream
    clip = np.random.default_rng(4).integers(0, 256, (FRAMES, 20, 20, 3), dtype=np.uint8)
    first = answer_with_model(loaded, processor, clip, "describe the video.", 6.0, max_new_tokens=4,
                              phrase_fn=lambda text: [])
    second = answer_with_model(two_stream_model, processor, clip, "describe the video.", 6.0, max_new_tokens=4,
                               phrase_fn=lambda text: [])
    assert first.token_ids == second.token_ids and len(first.token_ids) <= 4
    with pytest.raises(ValueError, match="12 frames"):
        answer_with_model(loaded, processor, clip[:5], "q", 1.0)


def test_bad_two_stream_options_are_named():
    config = load_config("tiny")
    with pytest.raises(ConfigError, match="two_stream"):
        type(config)(**{**config.to_dict(), "visual_encoding": "two_stream", "two_stream": {"num_segments": 0}})
