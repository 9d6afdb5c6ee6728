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

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, CLIPVisionModel

from pite_ros.model.two_stream_config import TwoStreamConfig, as_pair

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
        self.video_tower = AutoModel.from_config(video_config)
        hidden = config.projector_hidden_size or llm_hidden_size
        self.spatial_projector = _two_layer_mlp(image_config.hidden_size, hidden, llm_hidden_size)
        self.temporal_projector = _two_layer_mlp(video_config.hidden_size, hidden, llm_hidden_size)
        self.separator = nn.Parameter(torch.randn(llm_hidden_size) * 0.02) if config.use_separator else None
        self.image_tower.requires_grad_(not config.freeze_image_tower)
        self.video_tower.requires_grad_(not config.freeze_video_tower)

        self.image_size = int(image_config.image_size)
        self.video_size = as_pair(video_config.image_size)
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

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, None]:
        """``F_vid`` (``forward``) and no patch tokens: the ``VisualEncoder`` interface."""
        return self(pixel_values), None

    def visual_mask(self, frame_mask: torch.Tensor | None) -> None:
        """Every token is real: each clip has exactly K segments."""
        return None

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
