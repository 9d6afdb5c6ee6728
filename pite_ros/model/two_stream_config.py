"""``TwoStreamConfig``: the options of Grounded-VideoLLM's two-stream visual encoder
(``pite_ros.model.two_stream``), validated; torch-free, so that ``PiteConfig`` and the ONNX
runtime read a two-stream config without loading the encoder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from transformers import CLIPVisionConfig, PreTrainedConfig, TimesformerConfig, VideoMAEConfig

# The video encoders by name (their configs; the towers are built with ``AutoModel.from_config``).
VIDEO_CONFIGS: dict[str, type[PreTrainedConfig]] = {"videomae": VideoMAEConfig, "timesformer": TimesformerConfig}

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


def as_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """An ``image_size`` / ``patch_size`` as ``(height, width)``."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _patch_grid(config: PreTrainedConfig, pool: int, field: str) -> tuple[int, int]:
    """``(rows, cols)`` of a tower's patch grid, checked to tile exactly and to divide by ``pool``."""
    size, patch = config.image_size, config.patch_size
    grid = []
    for side, step in zip(as_pair(size), as_pair(patch)):
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
        if self.video_encoder not in VIDEO_CONFIGS:
            raise ValueError(
                f"TwoStreamConfig.video_encoder must be one of {sorted(VIDEO_CONFIGS)}, got {self.video_encoder!r}"
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
        return _tower_config(VIDEO_CONFIGS[self.video_encoder], self.video_config, "video_config")

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
