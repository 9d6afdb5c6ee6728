"""The coordinate heads: φ (a point per hidden state) and the trajectory projector (N frames ×
P points per hidden state), in one of two swappable forms with one interface.

- ``ProjectorHead`` (docs/papers.md, PiTe "Architecture"): both regress from the hidden state,
  ``linear`` (the authors' code) or ``mlp`` (the paper's words, ``projector_type``); outputs go
  through a sigmoid into [0, 1] like the normalised targets, or are used raw as the authors'
  weights were trained (``coordinate_activation``).
- ``SoftArgmaxHead`` (``trajectory_readout: soft_argmax``): both find the object among the
  vision tower's patch tokens (``pite_ros.model.readout``, a deviation explained there), so they
  need the clip's patches: ``reads_patch_tokens``.

``head(hidden, patch_tokens) -> (loc, traj)``; ``init_trajectory_from_localization`` gives each
form PiTe's start of stage 2 (every trajectory point equal to φ's point).
"""

from __future__ import annotations

import torch
from torch import nn

from pite_ros.model.config import PiteConfig
from pite_ros.model.readout import SoftArgmaxReadout, trajectory_rows


def make_projector(kind: str, in_features: int, out_features: int) -> nn.Module:
    """``linear``: one Linear; ``mlp``: Linear-GELU-Linear (hidden width ``in_features``)."""
    if kind == "linear":
        return nn.Linear(in_features, out_features)
    return nn.Sequential(nn.Linear(in_features, in_features), nn.GELU(), nn.Linear(in_features, out_features))


class ProjectorHead(nn.Module):
    """φ and the trajectory projector regressing from ``(B, ..., d)`` hidden states."""

    reads_patch_tokens = False

    def __init__(self, config: PiteConfig) -> None:
        super().__init__()
        hidden, self.num_frames, self.num_points = config.hidden_size, config.num_frames, config.num_points
        self.loc_projector = make_projector(config.projector_type, hidden, 2)
        self.traj_projector = make_projector(config.projector_type, hidden, self.num_frames * self.num_points * 2)
        self.sigmoid = config.coordinate_activation == "sigmoid"

    def forward(self, hidden: torch.Tensor, patch_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, ..., 2)`` and ``(B, ..., N, P, 2)`` in [0, 1] (``patch_tokens`` unused)."""
        loc, traj = self._coordinates(self.loc_projector(hidden)), self._coordinates(self.traj_projector(hidden))
        return loc, traj.unflatten(-1, (self.num_frames, self.num_points, 2))

    def _coordinates(self, raw: torch.Tensor) -> torch.Tensor:
        """A projector's raw output as coordinates: the sigmoid, or the raw value (the PiTe authors'
        heads), clamped to [0, 1] outside training so that every consumer gets points on the frame
        while the L1 still sees the raw value."""
        if self.sigmoid:
            return torch.sigmoid(raw)
        return raw if self.training else raw.clamp(0.0, 1.0)

    @torch.no_grad()
    def init_trajectory_from_localization(self) -> None:
        """The last Linear's rows (x, y) repeated N·P times; earlier layers of an MLP copied."""
        loc = [m for m in self.loc_projector.modules() if isinstance(m, nn.Linear)]
        traj = [m for m in self.traj_projector.modules() if isinstance(m, nn.Linear)]
        for source, target in zip(loc[:-1], traj[:-1], strict=True):
            target.load_state_dict(source.state_dict())
        repeats = self.num_frames * self.num_points
        traj[-1].weight.copy_(loc[-1].weight.repeat(repeats, 1))
        traj[-1].bias.copy_(loc[-1].bias.repeat(repeats))


class SoftArgmaxHead(nn.Module):
    """φ and the trajectory head reading points from the clip's patch tokens."""

    reads_patch_tokens = True

    def __init__(self, config: PiteConfig) -> None:
        super().__init__()
        size = (config.hidden_size, int(config.vision_config.hidden_size), config.patch_grid)
        self.num_frames = config.num_frames
        self.loc_projector = SoftArgmaxReadout(*size, 1, config.readout_dim, config.readout_max_offset)
        self.traj_projector = SoftArgmaxReadout(*size, config.num_points, config.readout_dim, config.readout_max_offset)

    def forward(self, hidden: torch.Tensor, patch_tokens: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Row b's points from its clip's patches ``patch_tokens[b]`` ``(B, T, G², D_v)``: φ reads the
        first frame, trajectory row n the frame ``trajectory_rows`` gives it (frame n when T = N)."""
        if patch_tokens is None:
            raise ValueError("a soft-argmax read-out needs the clip's patch tokens (encode_clip)")
        rows = trajectory_rows(patch_tokens.shape[1], self.num_frames).to(patch_tokens.device)
        loc = self.loc_projector(hidden, patch_tokens[:, :1])[..., 0, 0, :]
        return loc, self.traj_projector(hidden, patch_tokens.index_select(1, rows))

    def init_trajectory_from_localization(self) -> None:
        """Every point's query, keys and offsets start as φ's (``SoftArgmaxReadout.tile_from``)."""
        self.traj_projector.tile_from(self.loc_projector)


def build_coordinate_head(config: PiteConfig) -> ProjectorHead | SoftArgmaxHead:
    """The head ``config.trajectory_readout`` names."""
    return SoftArgmaxHead(config) if config.trajectory_readout == "soft_argmax" else ProjectorHead(config)
