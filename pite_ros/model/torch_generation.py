"""The greedy loop (``pite_ros.model.generation``) on the PyTorch model: ``TorchBackend``
wraps the model's cut points (``encode_clip``, ``merge_visual``, ``decoder_step`` with a
``transformers`` ``DynamicCache``, ``project``, ``visibility``) and takes the tokenizer from
the model's ``PiteProcessor``; ``answer_with_model`` (one clip) and ``answers_with_model``
(several, batched) answer with it.

The model is typed by the ``GeneratingModel`` protocol (what the backend calls), not by its
class, so this module and ``pite_ros.model.modeling`` do not import each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from transformers.cache_utils import DynamicCache

from pite_ros.model.config import PiteConfig
from pite_ros.model.generation import PhraseFn, Step, generate
from pite_ros.model.processor import PiteProcessor
from pite_ros.types import AnswerResult, TokenCallback


class GeneratingModel(Protocol):
    """What ``TorchBackend`` needs of a model (``PiteForConditionalGeneration`` has it)."""

    config: PiteConfig
    coordinate_head: nn.Module
    training: bool

    def parameters(self, recurse: bool = True) -> Any: ...
    def train(self, mode: bool = True) -> Any: ...
    def eval(self) -> Any: ...
    def encode_clip(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]: ...
    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor: ...
    def visual_mask(self, frame_mask: torch.Tensor | None) -> torch.Tensor | None: ...
    def merge_visual(self, input_ids: torch.Tensor, visual_embeds: torch.Tensor,
                     visual_mask: torch.Tensor | None = None) -> torch.Tensor: ...
    def decoder_step(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
                     position_ids: torch.Tensor | None = None, past_key_values: Any = None) -> Any: ...
    def project(self, hidden: torch.Tensor, patch_tokens: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]: ...
    def visibility(self, hidden: torch.Tensor) -> torch.Tensor | None: ...


class TorchBackend:
    """``GreedyBackend`` over the PyTorch model (its device and dtype; no gradients) and the
    tokenizer of its ``processor``."""

    def __init__(self, model: GeneratingModel, processor: PiteProcessor) -> None:
        self.model = model
        self.config = model.config
        self.tokenizer = processor.tokenizer
        self.device = next(model.parameters()).device

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    @staticmethod
    def _step(step) -> Step:
        last = (step.logits[:, -1], step.hidden[:, -1])
        return Step(*(tensor.float().cpu().numpy() for tensor in last), step.past_key_values)

    @torch.no_grad()
    def encode(self, pixel_values: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.model.encode_clip(self._tensor(pixel_values))

    @torch.no_grad()
    def prefill(self, visual, frame_mask, input_ids, attention_mask, position_ids) -> Step:
        model = self.model
        embeds = model.merge_visual(self._tensor(input_ids), visual[0], model.visual_mask(self._tensor(frame_mask)))
        cache = DynamicCache(config=self.config.text_config)
        return self._step(model.decoder_step(embeds, self._tensor(attention_mask), self._tensor(position_ids), cache))

    @torch.no_grad()
    def decode(self, token_ids, attention_mask, position_ids, cache) -> Step:
        embeds = self.model.embed_tokens(self._tensor(token_ids))
        step = self.model.decoder_step(embeds, self._tensor(attention_mask), self._tensor(position_ids), cache)
        return self._step(step)

    @torch.no_grad()
    def heads(self, hidden: np.ndarray, visual, row: int) -> tuple[np.ndarray, np.ndarray | None]:
        dtype = next(self.model.coordinate_head.parameters()).dtype
        patches = None if visual[1] is None else visual[1][row : row + 1]
        state = self._tensor(hidden[None])
        trajectory = self.model.project(state.to(dtype), patches)[1][0].float().cpu().numpy()
        probabilities = self.model.visibility(state)
        return trajectory, None if probabilities is None else probabilities[0].float().cpu().numpy()


def answer_with_model(
    model: GeneratingModel,
    processor: PiteProcessor,
    frames: np.ndarray,
    question: str,
    duration: float,
    *,
    max_new_tokens: int | None = None,
    on_token: TokenCallback | None = None,
    phrase_fn: PhraseFn | None = None,
) -> AnswerResult:
    """Answer ``question`` about ``frames`` ``(N, H, W, 3)`` uint8 RGB spanning ``duration`` s.

    ``on_token(token_id, text_so_far) -> bool`` is called after each token (False stops);
    ``phrase_fn(text) -> [(start, end)]`` finds the noun phrases (default
    ``pite_ros.text.noun_phrases``). See ``pite_ros.model.generation``.
    """
    return answers_with_model(model, processor, [frames], [question], [duration], max_new_tokens=max_new_tokens,
                              on_token=on_token, phrase_fn=phrase_fn)[0]


@torch.no_grad()
def answers_with_model(
    model: GeneratingModel,
    processor: PiteProcessor,
    clips: Sequence[np.ndarray],
    questions: Sequence[str],
    durations: Sequence[float],
    *,
    max_new_tokens: int | None = None,
    on_token: TokenCallback | None = None,
    phrase_fn: PhraseFn | None = None,
) -> list[AnswerResult]:
    """One ``AnswerResult`` per clip from the PyTorch model, in one left-padded greedy loop with one
    KV cache (``generate`` with ``TorchBackend``); ``on_token`` works with a single clip only."""
    backend = TorchBackend(model, processor)
    training = model.training
    model.eval()  # no LoRA dropout while answering
    try:
        return generate(backend, clips, questions, durations, max_new_tokens=max_new_tokens, on_token=on_token,
                        phrase_fn=phrase_fn)
    finally:
        model.train(training)
