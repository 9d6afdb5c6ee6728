"""Soft-argmax point read-out: a hidden state finds its object among a frame's patch tokens.

PiTe's projectors (docs/papers.md, PiTe "Architecture") regress coordinates from the hidden
state alone: ``φ(h_i)`` and ``Linear(h_i) -> N × P × 2``. The LLM then has to carry every
object's position through one CLS token per frame. With the pretrained CLIP of the paper
that works; for a tower trained from scratch on a CPU it does not (the default model's CLS
token never learned where several objects are: centre L1 stayed at the mean predictor's
0.2), while the same tower's patch tokens located them within 50 steps when read by
attention. So ``trajectory_readout: soft_argmax`` (a deviation, chosen per config) reads
points from the patch tokens:

- per point p, a query ``q_p = W_q h`` (the hidden state says WHICH object and which of its
  points); per patch g of a frame, a key ``k_g = W_k LN(patch_g)``;
- ``α = softmax_g(τ cos(q_p, k_g))`` with a learned temperature τ (from 10): cosine scores
  keep the attention trainable from the LM's small initial weights (a dot product of two
  0.02-std projections starts uniform and stays so: φ did not leave the image centre in
  400 steps), and τ lets it sharpen to one patch; the point is ``Σ_g α_g c_g`` with ``c_g`` the patch
  centres in normalised image coordinates (x right, y down), refined by a bounded offset
  read from the attended keys, ``tanh(W_o Σ_g α_g k_g) · max_offset``, for positions finer
  than a patch and for points off the object's centre;
- clamped to [0, 1] like the targets (the sigmoid of the projector form).

The same module serves φ (one point, from the clip's first frame: stage-1 data are still
images) and the trajectory head (P points on each of the N rows).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

INITIAL_TEMPERATURE = 10.0


def patch_centres(grid: int) -> torch.Tensor:
    """``(grid * grid, 2)`` centres (x, y) of a row-major ``grid × grid`` patch layout, in [0, 1]."""
    steps = (torch.arange(grid, dtype=torch.float32) + 0.5) / grid
    y, x = torch.meshgrid(steps, steps, indexing="ij")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def trajectory_rows(num_frames: int, rows: int) -> torch.Tensor:
    """Which of ``num_frames`` frames each of ``rows`` trajectory rows reads: the one whose
    time is nearest the row's, both sampled at bin centres ((i + 0.5) / count of the clip);
    identity when equal, and a still image serves every row."""
    return ((2 * torch.arange(rows) + 1) * num_frames) // (2 * rows)


class SoftArgmaxReadout(nn.Module):
    """``(B, ..., d)`` hidden states and ``(B, R, G², D_v)`` patch tokens of R frames ->
    ``(B, ..., R, P, 2)`` points in [0, 1]."""

    def __init__(self, hidden_size: int, patch_size: int, grid: int, num_points: int, key_dim: int,
                 max_offset: float) -> None:
        super().__init__()
        self.num_points, self.key_dim, self.max_offset = num_points, key_dim, max_offset
        self.query = nn.Linear(hidden_size, num_points * key_dim)
        self.key_norm = nn.LayerNorm(patch_size)
        self.key = nn.Linear(patch_size, key_dim)
        self.offset = nn.Linear(key_dim, 2)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(INITIAL_TEMPERATURE)))
        self.register_buffer("centres", patch_centres(grid), persistent=False)

    def forward(self, hidden: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        batch, middle = hidden.shape[0], hidden.shape[1:-1]
        queries = self.query(hidden.reshape(batch, -1, hidden.shape[-1]))
        queries = queries.unflatten(-1, (self.num_points, self.key_dim))  # (B, L, P, D)
        queries = F.normalize(queries, dim=-1)
        keys = F.normalize(self.key(self.key_norm(patches.to(queries.dtype))), dim=-1)  # (B, R, G, D)
        scores = torch.einsum("blpd,brgd->blrpg", queries, keys) * self.log_temperature.exp()
        weights = scores.softmax(-1)
        centre = torch.einsum("blrpg,gc->blrpc", weights, self.centres.to(weights.dtype))
        attended = torch.einsum("blrpg,brgd->blrpd", weights, keys)
        points = centre + torch.tanh(self.offset(attended)) * self.max_offset
        return points.clamp(0.0, 1.0).reshape(batch, *middle, *points.shape[2:])

    @torch.no_grad()
    def tile_from(self, source: SoftArgmaxReadout) -> None:
        """Every point starts as ``source``'s single point: keys and offsets copied, the one
        query repeated P times (PiTe's φ-initialised trajectory projector, in this form)."""
        if source.num_points != 1:
            raise ValueError(f"tile from a one-point read-out, got {source.num_points} points")
        for name in ("key_norm", "key", "offset"):
            getattr(self, name).load_state_dict(getattr(source, name).state_dict())
        self.log_temperature.copy_(source.log_temperature)
        self.query.weight.copy_(source.query.weight.repeat(self.num_points, 1))
        self.query.bias.copy_(source.query.bias.repeat(self.num_points))
