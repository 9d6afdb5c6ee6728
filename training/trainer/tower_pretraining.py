"""Stage 0: the vision tower learns to name what lies under the annotator's mouse.

PiTe starts from a pretrained CLIP (docs/papers.md, PiTe "Architecture"), whose patch
features already tell shapes, colours and sizes apart. None can be had here, and a tower
trained from random weights only through the LLM's caption loss learns colours at once but
shapes hardly at all (the default model's card: a linear probe reads shape at 35-41 %).
This stage stands in for that pretraining, on the stage-1 data itself (Localized
Narratives records, ``LocalizedNarrativesDataset``): each word with a trace location is
predicted from the tower's patch token under that location by a linear head over the
vocabulary, a word-region alignment in the manner of grounded pre-training. The head is
dropped afterwards; the saved model is the whole PiTe model, only its tower trained
(``pite_ros.model.stages``: stage 0 trains ``vision_tower`` alone, no LoRA).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pite_ros.model.modeling import PiteForConditionalGeneration


@dataclass
class TowerOutput:
    """Stage 0's loss and the share of traced words the head names right (the loop logs the loss)."""

    loss: torch.Tensor
    word_accuracy: torch.Tensor


def patch_index(points: torch.Tensor, grid: int) -> torch.Tensor:
    """Normalised ``(x, y)`` points ``(K, 2)`` -> the index ``(K,)`` of the patch of a ``grid``
    × ``grid`` tower under each (row-major, as the tower's tokens come)."""
    cells = (points * grid).long().clamp(0, grid - 1)  # column, row
    return cells[:, 1] * grid + cells[:, 0]


class TowerPretraining(nn.Module):
    """``model``'s vision tower and a word head: the cross-entropy of each traced word."""

    def __init__(self, model: PiteForConditionalGeneration) -> None:
        super().__init__()
        if model.config.visual_encoding == "two_stream":
            raise ValueError("stage 0 pre-trains a single vision tower; a two-stream encoder has two")
        self.model = model
        self.word_head = nn.Linear(int(model.config.vision_config.hidden_size), int(model.config.text_config.vocab_size))

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor,
        loc_targets: torch.Tensor,
        loc_mask: torch.Tensor,
        **_: object,
    ) -> TowerOutput:
        """``pixel_values`` ``(B, 1, 3, S, S)``; each ``loc_mask`` token's word id is read from
        the patch token at its ``loc_targets`` ``(x, y)`` (normalised, the nearest patch)."""
        grid = self.model.config.patch_grid
        hidden = self.model.patch_tokens(pixel_values[:, 0])  # (B, G², D)
        rows, positions = loc_mask.bool().nonzero(as_tuple=True)
        logits = self.word_head(hidden[rows, patch_index(loc_targets[rows, positions], grid)])
        words = input_ids[rows, positions]
        loss = nn.functional.cross_entropy(logits, words)
        accuracy = (logits.argmax(-1) == words).float().mean().detach()
        return TowerOutput(loss, accuracy)

    def save_pretrained(self, directory: str | Path) -> None:
        """The PiTe model alone (the word head is this stage's scaffolding)."""
        self.model.save_pretrained(directory)
