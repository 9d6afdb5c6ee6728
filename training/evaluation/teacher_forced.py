"""Teacher-forced trajectories: the model reads the ground-truth caption, and each ground-truth
phrase gets the trajectory the model predicts for it.

Why: in generation a phrase is scored only when the model names it in the same words, so the
generated-trajectory score mixes wording with tracking. Here the wording is fixed (the
reference caption), which measures the trajectory projector alone, as PiTe's stage-2 loss
does (docs/papers.md, PiTe "Training", L2).

Which hidden states: the training shift (``pite_ros.model.losses``): the hidden state at
position i predicts token i+1 and where it is, so a phrase's tokens are read at the positions
just before them. As in generation (``pite_ros.model.generation``), the phrase's trajectory
is the trajectory projector on the MEAN of those hidden states, so both scores read the
model the same way. Token offsets come from ``encode_answer`` and the layout from
``PiteProcessor`` (the one splice), as in training.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from pite_ros.model.processor import PiteProcessor
from pite_ros.model.prompt import encode_answer, encode_prompt
from pite_ros.types import Example

if TYPE_CHECKING:
    from pite_ros.model.modeling import PiteForConditionalGeneration


@torch.inference_mode()
def teacher_forced_trajectories(
    model: PiteForConditionalGeneration, processor: PiteProcessor, examples: Sequence[Example]
) -> list[list[np.ndarray | tuple[np.ndarray, np.ndarray] | None]]:
    """For each example, one ``(N, P, 2)`` trajectory per ``example.trajectories`` span, in order
    (a pair with its ``(N, P)`` visibility for a model with a visibility head). ``processor`` is
    the model's: it lays the rows out as training does.

    A span none of whose answer tokens fits in the model's context (the row was truncated)
    gets None.
    """
    tokenizer = processor.tokenizer
    batch = processor([dataclasses.replace(e, points=[], trajectories=[]) for e in examples])
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        output = model(
            input_ids=batch["input_ids"].to(device),
            attention_mask=batch["attention_mask"].to(device),
            position_ids=batch["position_ids"].to(device),
            pixel_values=batch["pixel_values"].to(device),
            frame_mask=batch["frame_mask"].to(device),
        )
    finally:
        model.train(training)
    hidden = output.hidden_states  # (B, L, d)
    lengths = batch["attention_mask"].sum(1).tolist()  # right padding: real tokens first
    results = []
    for row, example in enumerate(examples):
        # The one <video> id of the prompt becomes num_visual positions; the answer follows.
        visual = processor.num_visual_tokens(len(example.frames))
        answer_start = len(encode_prompt(tokenizer, example.prompt, model.config)) - 1 + visual
        _, offsets = encode_answer(tokenizer, example.response)
        tracks: list[np.ndarray | None] = []
        for span in example.trajectories:
            tokens = [answer_start + j for j, (a, b) in enumerate(offsets) if a < b and a < span.end and b > span.start]
            tokens = [t for t in tokens if t < lengths[row]]
            if not tokens:
                tracks.append(None)
                continue
            pooled = hidden[row, [t - 1 for t in tokens]].mean(0)
            patches = None if output.patch_tokens is None else output.patch_tokens[row : row + 1]
            trajectory = model.project(pooled[None], patches)[1][0].float().cpu().numpy()
            visibility = model.visibility(pooled[None])
            tracks.append(trajectory if visibility is None else (trajectory, visibility[0].float().cpu().numpy()))
        results.append(tracks)
    return results
