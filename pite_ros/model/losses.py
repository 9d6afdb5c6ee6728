"""PiTe's three training losses (docs/papers.md, PiTe "Training: three stages").

    L1 = 1/ℓ Σ_i ( CE(w_i) + λ |p̂_i − p_i| )                          stage 1
    L2 = 1/ℓ Σ_i ( CE(w_i) + λ/(P·N) Σ_j Σ_k |p̂_ijk − p_ijk| )          stage 2
    L3 = 1/ℓ Σ_i CE(w_i)      (label-smoothed)                          stage 3

Normalisation: ℓ is the number of answer tokens (labels ≠ -100, after the shift) in the
whole batch, as the paper's 1/ℓ; the coordinate sums are divided by the same ℓ, so a token
without a coordinate target adds 0 to the sum but still counts in ℓ (the paper's per-token
sum, not a mean over located tokens only). ``lm_loss + coord_loss == loss``.

Shift: like the LM loss, the outputs at position i are scored against token i+1 — the hidden
state that predicts token i+1 also predicts where that token is (PiTe's ``p_i = φ(h_i)`` with
``h_i`` computed from ``w_{1:i-1}``).

``|p̂ − p|`` of a 2-D point is its L1 distance ``|Δx| + |Δy|``. In stage 2 a point the tracker
marks invisible (occluded or out of frame) has no reliable position and contributes 0, while
the normaliser stays the paper's P·N; the authors' code instead averages an unmasked L1
over every element, padding included, which we do not copy. Data whose hidden positions are
known sets ``PiteConfig.trajectory_loss_points="all"``: the processor then marks every point
of a phrase token, and the sum is the paper's over all j, k.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pite_ros.model.splice import IGNORE_INDEX


@dataclass
class LossTerms:
    """``loss = lm_loss + coord_loss`` (scalars); ``num_tokens`` is ℓ."""

    loss: torch.Tensor
    lm_loss: torch.Tensor
    coord_loss: torch.Tensor
    num_tokens: int


def lm_loss_sum(logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> tuple[torch.Tensor, int]:
    """Σ_i CE over answer tokens and ℓ. ``logits`` ``(B, L, V)``, ``labels`` ``(B, L)``; position i
    predicts ``labels[:, i + 1]``."""
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    total = F.cross_entropy(
        shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX, reduction="sum", label_smoothing=label_smoothing
    )
    return total, int((shifted_labels != IGNORE_INDEX).sum())


def location_l1_sum(loc: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_i |p̂_i − p_i| over tokens with a target. ``loc``/``targets`` ``(B, L, 2)``, ``mask`` ``(B, L)``."""
    distance = (loc[:, :-1].float() - targets[:, 1:].float()).abs().sum(-1)
    return (distance * mask[:, 1:].to(distance.dtype)).sum()


def trajectory_l1_sum(traj: torch.Tensor, targets: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """Σ_i 1/(P·N) Σ_j Σ_k |p̂_ijk − p_ijk| over the scored points of phrase tokens.

    ``traj``/``targets`` ``(B, L, N, P, 2)``, ``visible`` ``(B, L, N, P)``: the points scored
    (the visible ones, or all with ``trajectory_loss_points="all"``; all False where a token
    has no target).
    """
    frames, points = traj.shape[2], traj.shape[3]
    distance = (traj[:, :-1].float() - targets[:, 1:].float()).abs().sum(-1)
    return (distance * visible[:, 1:].to(distance.dtype)).sum() / (frames * points)


def visibility_bce_sum(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Σ_i 1/(P·N) Σ_j Σ_k BCE(v̂_ijk, v_ijk) over the points of phrase tokens (a visibility head).

    ``logits`` ``(B, L, N, P)`` (before the sigmoid), ``targets`` ``(B, L, N, P, 1)`` (1: visible),
    ``mask`` ``(B, L, N, P)``; shifted like the trajectory term. PiTe marks absent objects with
    (-1, -1) and predicts no visibility; this term lets a model say where its points are hidden.
    """
    frames, points = logits.shape[2], logits.shape[3]
    loss = F.binary_cross_entropy_with_logits(logits[:, :-1].float(), targets[:, 1:, ..., 0].float(), reduction="none")
    return (loss * mask[:, 1:].to(loss.dtype)).sum() / (frames * points)


def pite_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    coord_weight: float,
    label_smoothing: float = 0.0,
    loc: torch.Tensor | None = None,
    loc_targets: torch.Tensor | None = None,
    loc_mask: torch.Tensor | None = None,
    traj: torch.Tensor | None = None,
    traj_targets: torch.Tensor | None = None,
    traj_mask: torch.Tensor | None = None,
    vis_logits: torch.Tensor | None = None,
    vis_targets: torch.Tensor | None = None,
    vis_mask: torch.Tensor | None = None,
) -> LossTerms:
    """The stage loss: CE plus λ times whichever coordinate terms have targets, all over ℓ.

    Stage 1 passes ``loc*``, stage 2 ``traj*`` (and ``vis*`` with a visibility head, whose BCE
    joins the coordinate term), stage 3 neither and ``label_smoothing > 0``.
    """
    ce_sum, count = lm_loss_sum(logits, labels, label_smoothing)
    coord_sum = ce_sum.new_zeros(())
    if loc_targets is not None:
        coord_sum = coord_sum + location_l1_sum(loc, loc_targets, loc_mask)
    if traj_targets is not None:
        coord_sum = coord_sum + trajectory_l1_sum(traj, traj_targets, traj_mask)
    if vis_targets is not None:
        coord_sum = coord_sum + visibility_bce_sum(vis_logits, vis_targets, vis_mask)
    denominator = max(count, 1)
    lm = ce_sum / denominator
    coord = coord_weight * coord_sum / denominator
    return LossTerms(loss=lm + coord, lm_loss=lm, coord_loss=coord, num_tokens=count)
