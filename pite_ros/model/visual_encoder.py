"""The visual encoders: a clip's pixels to the visual tokens the LLM reads, in one of two
swappable forms with one interface (``encode``, ``visual_mask``).

- ``FrameEncoder`` (docs/papers.md, PiTe "Architecture"): each of the T frames through the
  vision tower; its CLS feature (the pooled output after the post-layernorm, or CLIP's
  projected image embedding: ``vision_feature``) through the adapter μ into the LLM's width,
  one visual token per frame. With ``frame_patch_pool`` k > 0 the frame's patch grid is also
  average-pooled k × k and each pooled patch goes the CLS token's way (post-layernorm, CLIP's
  projection when used, μ): ``(G/k)²`` more tokens per frame, a deviation for towers whose CLS
  token cannot carry what several objects look like and do. It also hands out the tower's
  patch tokens, which a soft-argmax coordinate head reads.
- ``TwoStreamEncoder`` (Grounded-VideoLLM, ``pite_ros.model.two_stream``): K segments of
  spatial and temporal tokens; no patch tokens.

``encode(pixel_values)`` returns ``(tokens (B, V, d), patch_tokens (B, T, G², D_v) | None)``.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn
from transformers import AutoModel, CLIPVisionModelWithProjection

from pite_ros.model.config import ConfigError, PiteConfig
from pite_ros.model.coordinate_head import make_projector
from pite_ros.model.two_stream import TwoStreamEncoder


class VisualEncoder(Protocol):
    """What the model needs of a visual encoder (``FrameEncoder`` and ``TwoStreamEncoder`` have it)."""

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, T, 3, S, S)`` pixels -> visual tokens ``(B, V, d)`` and the patch tokens, if any."""
        ...

    def visual_mask(self, frame_mask: torch.Tensor | None) -> torch.Tensor | None:
        """Which visual tokens are real, from the frames' mask ``(B, T)``; None: all."""
        ...


class FrameEncoder(nn.Module):
    """PiTe's per-frame encoding: ``vision_tower`` (a vision model built from ``vision_config``)
    and ``adapter`` (μ)."""

    def __init__(self, config: PiteConfig) -> None:
        super().__init__()
        vision = config.vision_config
        self.projected = config.vision_feature == "projected"
        self.vision_tower = CLIPVisionModelWithProjection(vision) if self.projected else AutoModel.from_config(vision)
        width = int(vision.projection_dim if self.projected else vision.hidden_size)
        self.adapter = make_projector(config.adapter_type, width, config.hidden_size)
        self.grid, self.pool, self.tokens_per_frame = config.patch_grid, config.frame_patch_pool, config.tokens_per_frame
        if self.pool and not hasattr(self._transformer, "post_layernorm"):
            raise ConfigError(f"PiteConfig.frame_patch_pool needs a tower with a post-layernorm after its encoder "
                              f"(CLIP's), not {type(self.vision_tower).__name__}")

    @property
    def _transformer(self) -> nn.Module:
        """The tower's transformer (CLIP's classes wrap it as ``vision_model``; others are it)."""
        return getattr(self.vision_tower, "vision_model", self.vision_tower)

    @property
    def adapter_dtype(self) -> torch.dtype:
        return next(self.adapter.parameters()).dtype

    def encode(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, T, 3, S, S)`` -> ``(B, T * tokens_per_frame, d)`` (each frame's CLS token, then its
        pooled patches) and the tower's patch tokens ``(B, T, G², D_v)`` (its last hidden state
        without CLS), from one pass."""
        batch, frames = pixel_values.shape[:2]
        output = self.vision_tower(pixel_values=pixel_values.flatten(0, 1).to(self.vision_tower.dtype))
        feature = output.image_embeds if self.projected else output.pooler_output
        visual = self.adapter(feature.to(self.adapter_dtype)).view(batch, frames, 1, -1)
        if self.pool:
            visual = torch.cat([visual, self._pooled_patches(output.last_hidden_state).unflatten(0, (batch, frames))], 2)
        return visual.flatten(1, 2), output.last_hidden_state[:, 1:].unflatten(0, (batch, frames))

    def _pooled_patches(self, hidden: torch.Tensor) -> torch.Tensor:
        """``(F, 1 + G², D_v)`` tower states -> ``(F, (G/k)², d)``: the patch grid average-pooled
        k × k, then the CLS token's path. transformers has no call that applies a tower's pooling
        head to other tokens, so the path's modules are the tower's own (checked at construction)."""
        patches = hidden[:, 1:].unflatten(1, (self.grid, self.grid)).permute(0, 3, 1, 2)
        pooled = nn.functional.avg_pool2d(patches, self.pool).flatten(2).transpose(1, 2)
        pooled = self._transformer.post_layernorm(pooled)
        if self.projected:
            pooled = self.vision_tower.visual_projection(pooled)
        return self.adapter(pooled.to(self.adapter_dtype))

    def patch_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """The tower's last hidden state without CLS: ``(N, 3, S, S)`` -> ``(N, G², D_v)``, the
        per-patch features that stage 0 trains and the tower probe reads."""
        return self.vision_tower(pixel_values=images.to(self.vision_tower.dtype)).last_hidden_state[:, 1:]

    def visual_mask(self, frame_mask: torch.Tensor | None) -> torch.Tensor | None:
        """The frames' mask repeated for each token of a frame."""
        return None if frame_mask is None else frame_mask.repeat_interleave(self.tokens_per_frame, dim=1)


def build_visual_encoder(config: PiteConfig) -> FrameEncoder | TwoStreamEncoder:
    """The encoder ``config.visual_encoding`` names."""
    if config.visual_encoding == "two_stream":
        return TwoStreamEncoder(config.two_stream_config(), config.hidden_size)
    return FrameEncoder(config)
