"""TwoStreamEncoder: token counts, pooling, segment independence, keyframe, layout, freezing, config."""

from __future__ import annotations

import json

import pytest
import torch

from pite_ros.model.two_stream import TwoStreamEncoder
from pite_ros.model.two_stream_config import TwoStreamConfig

LLM_WIDTH = 16
ENCODERS = ("videomae", "timesformer")


def make_encoder(video_encoder: str = "videomae", **overrides) -> TwoStreamEncoder:
    torch.manual_seed(0)
    return TwoStreamEncoder(TwoStreamConfig.tiny(video_encoder, **overrides), LLM_WIDTH)


def clip(batch: int = 1, frames: int = 12, size: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


def segment_slice(encoder: TwoStreamEncoder, k: int) -> slice:
    return slice(k * encoder.tokens_per_segment, (k + 1) * encoder.tokens_per_segment)


# tiny: 32 px, patch 8 -> 4x4 grids. Spatial 2x2 pool -> 4 tokens. Temporal 4x4 pool -> 1 token
# per step; VideoMAE tubelet 2 over 4 frames -> 2 steps, Timesformer -> 4 steps. +1 separator.
@pytest.mark.parametrize(("video_encoder", "temporal", "per_segment"), [("videomae", 2, 7), ("timesformer", 4, 9)])
def test_output_shape_and_token_counts(video_encoder, temporal, per_segment):
    encoder = make_encoder(video_encoder)
    assert (encoder.spatial_tokens, encoder.temporal_tokens, encoder.tokens_per_segment) == (4, temporal, per_segment)
    assert encoder.num_visual_tokens(12) == 3 * per_segment
    with torch.no_grad():
        out = encoder(clip(batch=2))
    assert out.shape == (2, 3 * per_segment, LLM_WIDTH)


@pytest.mark.parametrize(("video_encoder", "temporal"), [("videomae", 2 * 4), ("timesformer", 4 * 4)])
def test_temporal_pool_is_over_space_only(video_encoder, temporal):
    """A 2x2 pool on the 4x4 video grid keeps 4 tokens per time step and every time step."""
    encoder = make_encoder(video_encoder, temporal_spatial_pool=2, use_separator=False)
    assert encoder.temporal_tokens == temporal
    assert encoder.tokens_per_segment == 4 + temporal


def test_paper_configuration_counts():
    """K=12 x 8 frames; CLIP-L/14-336: 24x24 -> 12x12 = 144; video 224/14: 16x16 -> 4x4 x 8 frames = 128."""
    config = TwoStreamConfig()
    assert config.keyframe_index == 4
    assert (config.image_grid, config.video_grid) == ((24, 24), (16, 16))
    assert (config.spatial_tokens, config.temporal_tokens, config.tokens_per_segment) == (144, 128, 273)


def test_spatial_tokens_are_f_of_2x2_means_of_keyframe_patches():
    encoder = make_encoder().eval()
    pixels = clip()
    with torch.no_grad():
        out = encoder(pixels)
        keyframe = pixels[:, 1 * 4 + encoder.keyframe_index]  # segment 1
        hidden = encoder.image_tower(pixel_values=keyframe, output_hidden_states=True).hidden_states[-2]
        grid = hidden[0, 1:].reshape(4, 4, -1)
        top_right = grid[0:2, 2:4].mean(dim=(0, 1))  # pooled token 1 (row-major)
        bottom_left = grid[2:4, 0:2].mean(dim=(0, 1))  # pooled token 2
        expected = encoder.spatial_projector(torch.stack([top_right, bottom_left]))
    start = segment_slice(encoder, 1).start
    torch.testing.assert_close(out[0, start + 1 : start + 3], expected)


@pytest.mark.parametrize("video_encoder", ENCODERS)
def test_segment_tokens_depend_only_on_their_frames(video_encoder):
    encoder = make_encoder(video_encoder)
    pixels = clip()
    changed = pixels.clone()
    changed[:, 4:8] += 1.0  # segment 1 of 0..2
    with torch.no_grad():
        before, after = encoder(pixels), encoder(changed)
    for k in (0, 2):
        torch.testing.assert_close(after[:, segment_slice(encoder, k)], before[:, segment_slice(encoder, k)])
    middle = segment_slice(encoder, 1)
    real = slice(middle.start, middle.stop - 1)  # the separator stays the same
    assert (after[:, real] - before[:, real]).abs().amax(dim=-1).min() > 1e-4


@pytest.mark.parametrize("video_encoder", ENCODERS)
def test_keyframe_is_the_middle_frame(video_encoder):
    encoder = make_encoder(video_encoder)
    assert encoder.keyframe_index == 2  # 4 frames per segment
    pixels = clip()
    spatial = slice(0, encoder.spatial_tokens)
    temporal = slice(encoder.spatial_tokens, encoder.spatial_tokens + encoder.temporal_tokens)
    with torch.no_grad():
        base = encoder(pixels)
        for frame, spatial_changes in ((0, False), (1, False), (3, False), (2, True)):
            changed = pixels.clone()
            changed[:, frame] += 1.0  # frames of segment 0
            out = encoder(changed)
            assert torch.equal(out[:, spatial], base[:, spatial]) is not spatial_changes, frame
            assert not torch.allclose(out[:, temporal], base[:, temporal]), frame


@pytest.mark.parametrize(("video_encoder", "frame", "token"), [("videomae", 3, 1 * 4), ("timesformer", 3, 3 * 4)])
def test_temporal_tokens_are_time_major_pooled_patches(video_encoder, frame, token):
    """With attention-free towers each token sees only its own patch: the (t, region) layout shows.

    Perturb the top-left patch of one frame of segment 1: with a 2x2 pool over the 4x4 grid only
    region 0 of that frame's time step changes (VideoMAE: frame 3 is in tubelet step 1 of 2).
    """
    video = {**TwoStreamConfig.tiny(video_encoder).video_config, "num_hidden_layers": 0}
    config = TwoStreamConfig.tiny(video_encoder, temporal_spatial_pool=2, video_config=video)
    torch.manual_seed(0)
    encoder = TwoStreamEncoder(config, LLM_WIDTH)
    pixels = clip()
    changed = pixels.clone()
    changed[:, 4 + frame, :, 0:8, 0:8] += 1.0
    start = segment_slice(encoder, 1).start + encoder.spatial_tokens
    with torch.no_grad():
        delta = (encoder(changed) - encoder(pixels))[0, start : start + encoder.temporal_tokens].abs().amax(dim=-1)
    assert delta[token] > 1e-4
    assert torch.count_nonzero(delta > 1e-6) == 1


def test_separator_closes_every_segment():
    encoder = make_encoder()
    with torch.no_grad():
        out = encoder(clip(batch=2))
    for k in range(3):
        last = segment_slice(encoder, k).stop - 1
        torch.testing.assert_close(out[:, last], encoder.separator.expand(2, -1))


@pytest.mark.parametrize("video_encoder", ENCODERS)
def test_frozen_towers_get_no_gradient_and_run_without_autograd(video_encoder):
    encoder = make_encoder(video_encoder).train()
    assert not encoder.image_tower.training and not encoder.video_tower.training
    grad_modes = []
    for tower in (encoder.image_tower, encoder.video_tower):
        tower.register_forward_hook(lambda module, args, output: grad_modes.append(torch.is_grad_enabled()))
    encoder(clip()).square().sum().backward()
    assert grad_modes == [False, False]
    for tower in (encoder.image_tower, encoder.video_tower):
        assert all(parameter.grad is None for parameter in tower.parameters())
    for module in (encoder.spatial_projector, encoder.temporal_projector):
        assert all(parameter.grad is not None and parameter.grad.abs().sum() > 0 for parameter in module.parameters())
    assert encoder.separator.grad.abs().sum() > 0


def test_unfrozen_towers_train():
    encoder = make_encoder(freeze_image_tower=False, freeze_video_tower=False).train()
    assert encoder.image_tower.training and encoder.video_tower.training
    encoder(clip()).square().sum().backward()
    for tower in (encoder.image_tower, encoder.video_tower):
        patch_weights = [
            parameter for name, parameter in tower.named_parameters()
            if "patch_embedding" in name and name.endswith("weight")
        ]
        assert len(patch_weights) == 1 and patch_weights[0].grad.abs().sum() > 0


@pytest.mark.parametrize("video_encoder", ENCODERS)
def test_config_round_trip_through_json(video_encoder):
    config = TwoStreamConfig.tiny(video_encoder, projector_hidden_size=24, freeze_video_tower=False)
    again = TwoStreamConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert again.tokens_per_segment == config.tokens_per_segment
    encoder = TwoStreamEncoder(again, LLM_WIDTH)
    assert encoder.spatial_projector[0].out_features == 24
    assert any(parameter.requires_grad for parameter in encoder.video_tower.parameters())


def test_config_accepts_transformers_config_objects():
    tiny = TwoStreamConfig.tiny()
    config = TwoStreamConfig.tiny(image_config=tiny.image_tower_config(), video_config=tiny.video_tower_config())
    assert config.image_grid == (4, 4) and config.temporal_steps == 2
    json.dumps(config.to_dict())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"video_encoder": "internvideo2"}, "video_encoder must be one of"),
        ({"spatial_pool": 3}, "patch grid 4 does not divide by the 3x3 pool"),
        ({"frames_per_segment": 8}, r"num_frames \(4\) must equal frames_per_segment \(8\)"),
        ({"num_segments": 0}, "num_segments must be a positive int"),
        ({"image_feature_layer": 3}, "image_feature_layer"),
        ({"image_config": {"hidden_size": 30, "num_attention_heads": 4}}, "image_config: not a valid CLIPVisionConfig"),
        ({"image_config": {"model_type": "videomae"}}, "image_config: model_type 'videomae'"),
    ],
)
def test_config_errors_name_the_field(overrides, message):
    with pytest.raises(ValueError, match=message):
        TwoStreamConfig.tiny(**overrides)


def test_config_errors_on_tubelet_and_unknown_keys():
    tiny = TwoStreamConfig.tiny()
    video = {**tiny.video_config, "num_frames": 3}
    with pytest.raises(ValueError, match=r"multiple of video_config.tubelet_size \(2\)"):
        TwoStreamConfig.tiny(frames_per_segment=3, video_config=video)
    with pytest.raises(ValueError, match=r"unknown keys \['segments'\]"):
        TwoStreamConfig.from_dict({**tiny.to_dict(), "segments": 3})


def test_input_errors():
    encoder = make_encoder()
    with pytest.raises(ValueError, match=r"3 \* 4 = 12 frames, got 10"):
        encoder(clip(frames=10))
    with pytest.raises(ValueError, match=r"3 \* 4 = 12 frames, got 24"):
        encoder.num_visual_tokens(24)
    with pytest.raises(ValueError, match="48x48 px, the two-stream encoder expects 32x32"):
        encoder(clip(size=48))
    with pytest.raises(ValueError, match=r"\(batch, frames, channels, H, W\)"):
        encoder(torch.zeros(12, 3, 32, 32))


def test_video_tower_gets_its_own_size():
    """Image tower at 32 px, video tower at 16 px: frames are resized for the temporal stream."""
    tiny = TwoStreamConfig.tiny()
    encoder = make_encoder(video_config={**tiny.video_config, "image_size": 16}, temporal_spatial_pool=2)
    assert encoder.temporal_tokens == 2  # 2x2 grid pooled 2x2, 2 tubelet steps
    with torch.no_grad():
        assert encoder(clip()).shape == (1, 3 * (4 + 2 + 1), LLM_WIDTH)
