"""Grounded-VideoLLM's two-stream visual encoder (docs/papers.md, Grounded-VideoLLM, "Two-stream encoding").

A clip of ``T = K * frames_per_segment`` frames is cut into K segments. Per segment:

- spatial stream: the keyframe (the segment's middle frame) through an image encoder (CLIP),
  its patch grid average-pooled ``spatial_pool x spatial_pool`` (paper: 2x2) -> ``F_S``;
- temporal stream: all the segment's frames through a video encoder, its patch tokens laid
  out as ``(time, h, w)`` and average-pooled ``temporal_spatial_pool x temporal_spatial_pool``
  over space only (paper: 4x4) -> ``F_T``;
- ``F_seg = Concat[Flatten(f(F_S)); Flatten(g(F_T))]`` with f, g two-layer MLPs
  (Linear-GELU-Linear) into the LLM width, then one learned separator embedding;
- ``F_vid`` = the K segment encodings concatenated in time order.

Choices where the paper is silent or cannot be followed here (said so, as docs/papers.md asks):

- Video encoder: the paper's InternVideo2-1B is not in transformers; ``VideoMAEModel`` or
  ``TimesformerModel`` stand in, built from config (random init; load weights by the usual
  checkpoint I/O). The default video config is VideoMAE at ViT-L size with InternVideo2's
  token layout (patch 14 at 224 px, tubelet 1, 8 frames): 16x16 patches pooled 4x4 give 4x4
  tokens per frame, 128 per segment.
- Image encoder: CLIP ViT-L/14-336 (Phi-3.5-Vision's); 24x24 patches pooled 2x2 give 144
  tokens. ``image_feature_layer`` (default -2, the penultimate layer) picks the CLIP hidden
  state used, as LLaVA and Phi-3.5-Vision do; -1 takes the last layer.
- "Pooled 2x2 / 4x4" is read as the kernel (= stride) of an average pool; for InternVideo2's
  16x16 grid a 4x4 kernel and a 4x4 output coincide. Grids must divide by the kernel.
- Keyframe of an even number of frames: index ``frames_per_segment // 2`` (8 frames -> the 5th).
- Time dimension: VideoMAE embeds tubelets of ``tubelet_size`` consecutive frames, so its
  temporal stream has ``frames_per_segment // tubelet_size`` time steps, each standing for
  one tubelet; they are kept, not pooled (the paper pools over space only). Timesformer has
  one time step per frame; its CLS token is dropped and its ``(h, w, t)`` token order
  (``divided_space_time`` / ``joint_space_time``; ``(t, h, w)`` for ``space_only``) is
  rearranged to ``(t, h, w)``. Temporal tokens are flattened time-major, so they read in
  time order.
- Separator: one learned vector appended after every segment (``use_separator``); the paper
  shows none, the product brief asks for segments "concatenated with a separator".
- One input size: ``pixel_values`` come at the image tower's size (normalised once, with the
  image tower's statistics); when the video tower's ``image_size`` differs (paper: 336 vs
  224) the frames are resized bilinearly (antialiased) for the temporal stream.
- Frozen towers (the default, pretrained encoders): a tower whose parameters all have
  ``requires_grad=False`` runs under ``torch.no_grad()`` and stays in eval mode (no dropout,
  no drop-path) even in ``train()``; the decision follows the parameters, so a training
  stage that unfreezes a tower gets its gradients. f, g and the separator always train.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import (
    CLIPVisionConfig,
    CLIPVisionModel,
    PreTrainedConfig,
    TimesformerConfig,
    TimesformerModel,
    VideoMAEConfig,
    VideoMAEModel,
)

VIDEO_ENCODERS: dict[str, tuple[type[PreTrainedConfig], type[nn.Module]]] = {
    "videomae": (VideoMAEConfig, VideoMAEModel),
    "timesformer": (TimesformerConfig, TimesformerModel),
}

# CLIP ViT-L/14-336 (the image encoder of Phi-3.5-Vision, Grounded-VideoLLM's LLM).
PAPER_IMAGE_CONFIG: dict[str, Any] = {
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
    "image_size": 336,
    "patch_size": 14,
    "projection_dim": 768,
}
# ViT-L-sized video encoders with InternVideo2's token layout (patch 14 at 224 px, 8 frames).
PAPER_VIDEO_CONFIGS: dict[str, dict[str, Any]] = {
    "videomae": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "num_frames": 8,
        "tubelet_size": 1,
    },
    "timesformer": {
        "hidden_size": 1024,
        "intermediate_size": 4096,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "image_size": 224,
        "patch_size": 14,
        "num_frames": 8,
    },
}


def _tower_config(config_class: type[PreTrainedConfig], values: dict[str, Any], field: str) -> PreTrainedConfig:
    """Build a transformers config from a dict; any rejection becomes a ValueError naming ``field``."""
    values = dict(values)
    model_type = values.pop("model_type", config_class.model_type)
    if model_type != config_class.model_type:
        raise ValueError(f"TwoStreamConfig.{field}: model_type {model_type!r}, expected {config_class.model_type!r}")
    try:
        return config_class(**values)
    except Exception as error:  # transformers' strict-dataclass validators raise their own types
        raise ValueError(f"TwoStreamConfig.{field}: not a valid {config_class.__name__}: {error}") from error


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An ``image_size`` / ``patch_size`` as ``(height, width)``."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _patch_grid(config: PreTrainedConfig, pool: int, field: str) -> tuple[int, int]:
    """``(rows, cols)`` of a tower's patch grid, checked to tile exactly and to divide by ``pool``."""
    size, patch = config.image_size, config.patch_size
    grid = []
    for side, step in zip(_pair(size), _pair(patch)):
        if side % step:
            raise ValueError(f"TwoStreamConfig.{field}: image_size {size} is not a multiple of patch_size {patch}")
        if (side // step) % pool:
            raise ValueError(
                f"TwoStreamConfig.{field}: patch grid {side // step} does not divide by the {pool}x{pool} pool"
            )
        grid.append(side // step)
    return grid[0], grid[1]


@dataclass
class TwoStreamConfig:
    """Options of ``TwoStreamEncoder`` (defaults: the paper's K=12 segments of 8 frames).

    ``image_config`` is a ``CLIPVisionConfig`` dict and ``video_config`` a ``VideoMAEConfig`` or
    ``TimesformerConfig`` dict (``video_encoder``); ``None`` takes the paper-shaped defaults
    above. ``video_config["num_frames"]`` must equal ``frames_per_segment`` (both encoders'
    position/time embeddings are sized by it). ``projector_hidden_size`` None means the LLM
    width. JSON-serialisable through ``to_dict`` / ``from_dict``. Validated (and the derived
    grids and token counts fixed) at construction: build a new one to change a field.
    """

    num_segments: int = 12
    frames_per_segment: int = 8
    image_config: dict[str, Any] | None = None
    video_encoder: Literal["videomae", "timesformer"] = "videomae"
    video_config: dict[str, Any] | None = None
    spatial_pool: int = 2
    temporal_spatial_pool: int = 4
    image_feature_layer: int = -2
    projector_hidden_size: int | None = None
    use_separator: bool = True
    freeze_image_tower: bool = True
    freeze_video_tower: bool = True

    def __post_init__(self) -> None:
        for name in ("num_segments", "frames_per_segment", "spatial_pool", "temporal_spatial_pool"):
            value = getattr(self, name)
            if not isinstance(value, int) or value <= 0:
                raise ValueError(f"TwoStreamConfig.{name} must be a positive int, got {value!r}")
        if self.projector_hidden_size is not None and self.projector_hidden_size <= 0:
            raise ValueError(
                f"TwoStreamConfig.projector_hidden_size must be positive, got {self.projector_hidden_size}"
            )
        if self.video_encoder not in VIDEO_ENCODERS:
            raise ValueError(
                f"TwoStreamConfig.video_encoder must be one of {sorted(VIDEO_ENCODERS)}, got {self.video_encoder!r}"
            )
        self.image_config = self._as_dict(self.image_config, PAPER_IMAGE_CONFIG)
        self.video_config = self._as_dict(self.video_config, PAPER_VIDEO_CONFIGS[self.video_encoder])
        image, video = self.image_tower_config(), self.video_tower_config()
        self._image_grid = _patch_grid(image, self.spatial_pool, "image_config")
        self._video_grid = _patch_grid(video, self.temporal_spatial_pool, "video_config")
        self._tubelet = int(video.tubelet_size) if self.video_encoder == "videomae" else 1
        layers = image.num_hidden_layers
        if not -layers <= self.image_feature_layer <= layers or self.image_feature_layer == 0:
            raise ValueError(
                f"TwoStreamConfig.image_feature_layer must pick a layer output in [-{layers}, -1] or [1, {layers}], "
                f"got {self.image_feature_layer}"
            )
        if video.num_frames != self.frames_per_segment:
            raise ValueError(
                f"TwoStreamConfig.video_config.num_frames ({video.num_frames}) must equal "
                f"frames_per_segment ({self.frames_per_segment})"
            )
        if self.frames_per_segment % self._tubelet:
            raise ValueError(
                f"TwoStreamConfig.frames_per_segment ({self.frames_per_segment}) must be a multiple of "
                f"video_config.tubelet_size ({self._tubelet})"
            )

    @property
    def image_grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the image tower's patch grid (before pooling)."""
        return self._image_grid

    @property
    def video_grid(self) -> tuple[int, int]:
        """``(rows, cols)`` of the video tower's patch grid per time step (before pooling)."""
        return self._video_grid

    @property
    def keyframe_index(self) -> int:
        """Index of the keyframe inside a segment: the middle frame, ``frames_per_segment // 2``."""
        return self.frames_per_segment // 2

    @property
    def temporal_steps(self) -> int:
        """Time steps of the temporal stream per segment (VideoMAE: one per tubelet)."""
        return self.frames_per_segment // self._tubelet

    @property
    def spatial_tokens(self) -> int:
        """Tokens of ``F_S`` per segment: the pooled keyframe grid."""
        rows, cols = self.image_grid
        return (rows // self.spatial_pool) * (cols // self.spatial_pool)

    @property
    def temporal_tokens(self) -> int:
        """Tokens of ``F_T`` per segment: time steps x pooled grid."""
        rows, cols = self.video_grid
        pool = self.temporal_spatial_pool
        return self.temporal_steps * (rows // pool) * (cols // pool)

    @property
    def tokens_per_segment(self) -> int:
        """Spatial + temporal tokens, +1 for the separator when used."""
        return self.spatial_tokens + self.temporal_tokens + int(self.use_separator)

    @staticmethod
    def _as_dict(value: dict[str, Any] | PreTrainedConfig | None, default: dict[str, Any]) -> dict[str, Any]:
        if value is None:
            return dict(default)
        if isinstance(value, PreTrainedConfig):
            return value.to_diff_dict()
        return dict(value)

    def image_tower_config(self) -> CLIPVisionConfig:
        """The image encoder's ``CLIPVisionConfig``."""
        return _tower_config(CLIPVisionConfig, self.image_config, "image_config")

    def video_tower_config(self) -> PreTrainedConfig:
        """The video encoder's ``VideoMAEConfig`` / ``TimesformerConfig``."""
        return _tower_config(VIDEO_ENCODERS[self.video_encoder][0], self.video_config, "video_config")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (nested in ``PiteConfig.two_stream``)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TwoStreamConfig:
        """Inverse of ``to_dict``; an unknown key is an error naming it."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"TwoStreamConfig: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**values)

    @classmethod
    def tiny(cls, video_encoder: Literal["videomae", "timesformer"] = "videomae", **overrides: Any) -> TwoStreamConfig:
        """A few-thousand-parameter preset for tests: K=3 segments of 4 frames at 32x32 px, patch 8.

        Per segment: 4x4 CLIP patches pooled 2x2 -> 4 spatial tokens; 4x4 video patches pooled
        4x4 -> 1 token per time step (VideoMAE, tubelet 2: 2 steps; Timesformer: 4 steps).
        """
        tower = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "image_size": 32, "patch_size": 8}
        video = {**tower, "num_frames": 4}
        if video_encoder == "videomae":
            video["tubelet_size"] = 2
        values: dict[str, Any] = {
            "num_segments": 3,
            "frames_per_segment": 4,
            "image_config": {**tower, "projection_dim": 32},
            "video_encoder": video_encoder,
            "video_config": video,
        }
        return cls(**{**values, **overrides})


def _two_layer_mlp(in_features: int, hidden: int, out_features: int) -> nn.Sequential:
    """Linear-GELU-Linear: the paper's f and g."""
    return nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, out_features))


def _pool_space(grid: torch.Tensor, pool: int) -> torch.Tensor:
    """``(N, h, w, C)`` -> ``(N, h/pool * w/pool, C)``: average pool over space, row-major tokens."""
    pooled = F.avg_pool2d(grid.permute(0, 3, 1, 2), kernel_size=pool, stride=pool)
    return pooled.flatten(2).transpose(1, 2)


def _is_frozen(module: nn.Module) -> bool:
    return not any(parameter.requires_grad for parameter in module.parameters())


class TwoStreamEncoder(nn.Module):
    """Grounded-VideoLLM two-stream encoding (docs/papers.md: Two-stream encoding).

    Submodules: ``image_tower`` (CLIPVisionModel), ``video_tower`` (VideoMAEModel or
    TimesformerModel), ``spatial_projector`` (f), ``temporal_projector`` (g), ``separator``
    (a ``(llm_hidden_size,)`` parameter, present when ``config.use_separator``).
    Token counts per segment: ``spatial_tokens`` + ``temporal_tokens`` (+1 separator)
    = ``tokens_per_segment``; within a segment the order is spatial, temporal, separator.
    """

    def __init__(self, config: TwoStreamConfig, llm_hidden_size: int):
        super().__init__()
        self.config = config
        image_config, video_config = config.image_tower_config(), config.video_tower_config()
        self.image_tower = CLIPVisionModel(image_config)
        self.video_tower = VIDEO_ENCODERS[config.video_encoder][1](video_config)
        hidden = config.projector_hidden_size or llm_hidden_size
        self.spatial_projector = _two_layer_mlp(image_config.hidden_size, hidden, llm_hidden_size)
        self.temporal_projector = _two_layer_mlp(video_config.hidden_size, hidden, llm_hidden_size)
        self.separator = nn.Parameter(torch.randn(llm_hidden_size) * 0.02) if config.use_separator else None
        self.image_tower.requires_grad_(not config.freeze_image_tower)
        self.video_tower.requires_grad_(not config.freeze_video_tower)

        self.image_size = int(image_config.image_size)
        self.video_size = _pair(video_config.image_size)
        self.keyframe_index = config.keyframe_index
        self.temporal_steps = config.temporal_steps
        self.spatial_tokens = config.spatial_tokens
        self.temporal_tokens = config.temporal_tokens
        self.tokens_per_segment = config.tokens_per_segment
        self.train()

    def train(self, mode: bool = True) -> TwoStreamEncoder:
        """Like ``nn.Module.train``, but frozen towers stay in eval mode (no dropout/drop-path)."""
        super().train(mode)
        for tower in (self.image_tower, self.video_tower):
            if _is_frozen(tower):
                tower.eval()
        return self

    def num_visual_tokens(self, num_frames: int) -> int:
        """Length of ``F_vid`` for a clip of ``num_frames`` frames (must be K * frames_per_segment)."""
        self._check_frames(num_frames)
        return self.config.num_segments * self.tokens_per_segment

    def _check_frames(self, num_frames: int) -> None:
        expected = self.config.num_segments * self.config.frames_per_segment
        if num_frames != expected:
            raise ValueError(
                f"two-stream encoding needs num_segments * frames_per_segment = {self.config.num_segments} * "
                f"{self.config.frames_per_segment} = {expected} frames, got {num_frames}"
            )

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """pixel_values (B, T, 3, H, W) normalised -> (B, K * tokens_per_segment, llm_hidden_size)."""
        if pixel_values.dim() != 5:
            shape = tuple(pixel_values.shape)
            raise ValueError(f"pixel_values must be (batch, frames, channels, H, W), got shape {shape}")
        batch, frames, channels, height, width = pixel_values.shape
        shape_tail = (channels, height, width)
        self._check_frames(frames)
        expected_channels = self.image_tower.config.num_channels
        if channels != expected_channels:
            raise ValueError(f"pixel_values have {channels} channels, the image tower expects {expected_channels}")
        if (height, width) != (self.image_size, self.image_size):
            size = self.image_size
            raise ValueError(f"pixel_values are {height}x{width} px, the two-stream encoder expects {size}x{size}")
        segments = pixel_values.reshape(batch * self.config.num_segments, self.config.frames_per_segment, *shape_tail)
        spatial = self.spatial_projector(self._spatial_features(segments[:, self.keyframe_index]))
        temporal = self.temporal_projector(self._temporal_features(segments))
        parts = [spatial, temporal.to(spatial.dtype)]
        if self.separator is not None:
            parts.append(self.separator.to(spatial.dtype).expand(segments.shape[0], 1, -1))
        return torch.cat(parts, dim=1).reshape(batch, self.config.num_segments * self.tokens_per_segment, -1)

    def _spatial_features(self, keyframes: torch.Tensor) -> torch.Tensor:
        """F_S: ``(N, 3, H, W)`` keyframes -> ``(N, spatial_tokens, image_hidden)`` pooled CLIP patches."""
        tower = self.image_tower
        layer = self.config.image_feature_layer
        with torch.set_grad_enabled(torch.is_grad_enabled() and not _is_frozen(tower)):
            output = tower(pixel_values=keyframes.to(tower.dtype), output_hidden_states=layer != -1)
            hidden = output.last_hidden_state if layer == -1 else output.hidden_states[layer]
        patches = hidden[:, 1:]  # drop CLS
        grid = patches.reshape(patches.shape[0], *self.config.image_grid, patches.shape[-1])
        return _pool_space(grid, self.config.spatial_pool).to(self._projector_dtype(self.spatial_projector))

    def _temporal_features(self, segments: torch.Tensor) -> torch.Tensor:
        """F_T: ``(N, frames_per_segment, 3, H, W)`` -> ``(N, temporal_tokens, video_hidden)``, time-major."""
        tower = self.video_tower
        count, frames = segments.shape[:2]
        video = segments
        if tuple(video.shape[-2:]) != self.video_size:
            video = F.interpolate(video.flatten(0, 1), size=self.video_size, mode="bilinear", antialias=True)
            video = video.reshape(count, frames, *video.shape[1:])
        with torch.set_grad_enabled(torch.is_grad_enabled() and not _is_frozen(tower)):
            hidden = tower(pixel_values=video.to(tower.dtype)).last_hidden_state
        rows, cols = self.config.video_grid
        width = hidden.shape[-1]
        if self.config.video_encoder == "videomae":  # Conv3d tokens flattened as (t, h, w)
            grid = hidden.reshape(count, self.temporal_steps, rows, cols, width)
        elif tower.config.attention_type == "space_only":  # CLS, then (t, h, w)
            grid = hidden[:, 1:].reshape(count, self.temporal_steps, rows, cols, width)
        else:  # CLS, then (h, w, t)
            grid = hidden[:, 1:].reshape(count, rows, cols, self.temporal_steps, width).permute(0, 3, 1, 2, 4)
        pooled = _pool_space(grid.flatten(0, 1), self.config.temporal_spatial_pool)
        pooled = pooled.reshape(count, -1, width)
        return pooled.to(self._projector_dtype(self.temporal_projector))

    @staticmethod
    def _projector_dtype(projector: nn.Module) -> torch.dtype:
        return next(projector.parameters()).dtype
