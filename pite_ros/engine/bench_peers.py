"""The benchmark's torch peers of the ONNX Runtime engine (``pite-bench engine``).

- ``compile_model``: torch's best CPU setting that the model's own greedy loop can use:
  ``torch.compile`` (inductor, dynamic shapes) of the vision encoder and the LLM's decoder
  stack, in place (eager already runs SDPA attention, transformers' default).
- ``HfGenerateRunner``: what a researcher would call: the same clip embeddings (this model's
  vision tower, adapter and splice) fed to Hugging Face ``generate()`` of the same LLM
  weights (greedy, KV cache), timed through a streamer: prefill is the time to the first
  token, decode the time between tokens. It returns text tokens only: no noun phrases,
  trajectories or segments, and plain argmax for temporal tokens (the model's loop may take
  the median bin, ``generation.choose_tokens``), so its answers can differ from torch's there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import PreTrainedModel

from pite_ros.model.generation import stop_token_ids
from pite_ros.model.processor import PiteProcessor
from pite_ros.model.torch_generation import TorchBackend

if TYPE_CHECKING:
    from pite_ros.engine.onnx_parity import Probe
    from pite_ros.model.modeling import PiteForConditionalGeneration


def compile_model(model: PiteForConditionalGeneration) -> PiteForConditionalGeneration:
    """``torch.compile`` the vision towers and the LLM's decoder layers in place (dynamic shapes:
    prompts and caches grow without recompiling each length); the first answers compile."""
    for tower in model.visual_encoder.children():
        if isinstance(tower, PreTrainedModel):  # FrameEncoder's vision_tower; the two streams' towers
            tower.compile(dynamic=True)
    model.causal_lm().model.compile(dynamic=True)
    return model


class _Clock:
    """A ``generate`` streamer that only notes when each ``put`` (prompt, then every token) came."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def put(self, value: Any) -> None:
        self.times.append(time.perf_counter())

    def end(self) -> None:
        pass


class HfGenerateRunner:
    """Answers a probe with ``causal_lm().generate(inputs_embeds=...)`` (see the module doc);
    ``times`` collects ``encode``, ``prefill`` and ``decode`` milliseconds per call."""

    def __init__(self, model: PiteForConditionalGeneration, processor: PiteProcessor) -> None:
        self.model, self.config, self.tokenizer = model, model.config, processor.tokenizer
        self.backend = TorchBackend(model, processor)
        self.processor = processor
        self.stops = [int(token) for token in stop_token_ids(model.config, processor.tokenizer)]
        self.times: dict[str, list[float]] = {"encode": [], "prefill": [], "decode": []}

    @torch.no_grad()
    def answer(self, clip: Probe, max_new_tokens: int) -> list[int]:
        pixels = self.processor.pixel_batch([clip.frames])
        prompt = self.processor.prompt_batch([clip.question], [len(clip.frames)])
        start = time.perf_counter()
        visual = self.backend.encode(pixels["pixel_values"].numpy())
        self.times["encode"].append(1000 * (time.perf_counter() - start))
        model = self.model
        embeds = model.merge_visual(prompt["input_ids"], visual[0], model.visual_mask(pixels["frame_mask"]))
        clock = _Clock()
        start = time.perf_counter()
        output = model.causal_lm().generate(
            inputs_embeds=embeds, attention_mask=prompt["attention_mask"], max_new_tokens=max_new_tokens,
            do_sample=False, num_beams=1, use_cache=True, eos_token_id=self.stops,
            pad_token_id=self.tokenizer.pad_token_id, streamer=clock)
        tokens = clock.times[1:]  # the first put is the (empty) prompt of ids
        if tokens:
            self.times["prefill"].append(1000 * (tokens[0] - start))
            self.times["decode"] += [1000 * gap for gap in np.diff(tokens)]
        ids = [int(token) for token in output[0]]
        return ids[: next((index for index, token in enumerate(ids) if token in self.stops), len(ids))]
