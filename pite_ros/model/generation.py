"""Greedy answers with a KV cache: text, noun phrases with trajectories, time segments.

Clips are encoded once (``encode_frames``), spliced into left-padded prompts and run
through ``decoder_step`` with a ``transformers`` ``DynamicCache``; each step appends the
argmax token of every unfinished row. A row stops at ``</s>``; all stop at
``max_new_tokens`` or when ``on_token`` returns False (single clip only).

Trajectories: the hidden state that predicted a token also predicts its coordinates (the
training shift), so each generated token keeps that hidden state. A noun phrase's
trajectory is the trajectory projector applied to the MEAN of the hidden states of the
tokens overlapping the phrase (one projection of the phrase's pooled state rather than a
mean of per-token trajectories, so the phrase gets one consistent track; with a linear
projector the two differ only by the sigmoid). Its score is the mean probability the model
gave its tokens. Phrases come from ``phrase_fn(text) -> [(start, end)]``, by default
``pite_ros.text.noun_phrases`` (spaCy, rule-based fallback). Time segments are the pairs of
temporal tokens of the text (``temporal.parse_segments``), in seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from transformers.cache_utils import DynamicCache

from pite_ros.model.processor import PiteProcessor
from pite_ros.model.temporal import parse_segments
from pite_ros.types import AnswerResult, PhraseTrack
from pite_ros.video import uniform_frame_times

if TYPE_CHECKING:
    from pite_ros.model.modeling import PiteForConditionalGeneration

PhraseFn = Callable[[str], list[tuple[int, int]]]
TokenCallback = Callable[[int, str], bool]


def default_phrase_fn() -> PhraseFn:
    """``pite_ros.text.noun_phrases``, imported only when needed (it may load spaCy)."""
    from pite_ros.text import noun_phrases

    return noun_phrases


@torch.no_grad()
def answer_batch(
    model: PiteForConditionalGeneration,
    clips: Sequence[np.ndarray],
    questions: Sequence[str],
    durations: Sequence[float],
    *,
    max_new_tokens: int | None = None,
    on_token: TokenCallback | None = None,
    phrase_fn: PhraseFn | None = None,
) -> list[AnswerResult]:
    """One ``AnswerResult`` per clip; ``clips[i]`` is ``(N, H, W, 3)`` uint8 RGB of ``durations[i]`` s."""
    if model.tokenizer is None:
        raise ValueError("the model has no tokenizer attached (load a checkpoint or use build_model)")
    if not len(clips) == len(questions) == len(durations) or not clips:
        raise ValueError(f"need as many clips, questions and durations (>0), got {len(clips)}, {len(questions)}, {len(durations)}")
    if on_token is not None and len(clips) != 1:
        raise ValueError("on_token works with a single clip")
    training = model.training
    model.eval()  # no LoRA dropout while answering
    try:
        return _generate(model, clips, questions, durations, max_new_tokens or model.config.max_new_tokens,
                         on_token, phrase_fn or default_phrase_fn())
    finally:
        model.train(training)


def _generate(
    model: PiteForConditionalGeneration,
    clips: Sequence[np.ndarray],
    questions: Sequence[str],
    durations: Sequence[float],
    limit: int,
    on_token: TokenCallback | None,
    phrase_fn: PhraseFn,
) -> list[AnswerResult]:
    """The greedy loop of ``answer_batch``."""
    tokenizer, config = model.tokenizer, model.config
    processor = PiteProcessor(tokenizer, config)
    device = next(model.parameters()).device
    pixels = processor.pixel_batch(clips)
    prompts = processor.prompt_batch(questions, [len(clip) for clip in clips])
    visual = model.encode_frames(pixels["pixel_values"].to(device))
    embeds = model.merge_visual(prompts["input_ids"].to(device), visual, model.visual_mask(pixels["frame_mask"].to(device)))
    mask = prompts["attention_mask"].to(device)
    step = model.decoder_step(embeds, mask, prompts["position_ids"].to(device), DynamicCache(config=config.text_config))
    positions = prompts["position_ids"][:, -1:].to(device)

    batch = len(clips)
    tokens: list[list[int]] = [[] for _ in range(batch)]
    hiddens: list[list[torch.Tensor]] = [[] for _ in range(batch)]
    probabilities: list[list[float]] = [[] for _ in range(batch)]
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    eos = tokenizer.eos_token_id
    for _ in range(limit):
        last = step.logits[:, -1].float()
        chosen = last.argmax(-1)
        chosen_probability = last.softmax(-1).gather(-1, chosen[:, None])[:, 0]
        for row in range(batch):
            if done[row] or chosen[row] == eos:
                continue
            tokens[row].append(int(chosen[row]))
            hiddens[row].append(step.hidden[row, -1])
            probabilities[row].append(float(chosen_probability[row]))
        done |= chosen == eos
        if on_token is not None and not done[0]:
            if not on_token(tokens[0][-1], tokenizer.decode(tokens[0], skip_special_tokens=True)):
                break
        if bool(done.all()):
            break
        chosen = chosen.masked_fill(done, tokenizer.pad_token_id)
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        positions = positions + 1
        step = model.decoder_step(model.embed_tokens(chosen[:, None]), mask, positions, step.past_key_values)

    return [
        _result(model, tokens[row], hiddens[row], probabilities[row], float(durations[row]), phrase_fn)
        for row in range(batch)
    ]


def _result(
    model: PiteForConditionalGeneration,
    tokens: list[int],
    hiddens: list[torch.Tensor],
    probabilities: list[float],
    duration: float,
    phrase_fn: PhraseFn,
) -> AnswerResult:
    """Text, phrases with trajectories and segments of one generated answer."""
    tokenizer, config = model.tokenizer, model.config
    text = tokenizer.decode(tokens, skip_special_tokens=True)
    spans = token_spans(tokenizer, tokens)
    phrases = []
    for start, end in phrase_fn(text):
        members = [i for i, (a, b) in enumerate(spans) if a < end and b > start and text[a:b].strip()]
        if not members:
            continue
        pooled = torch.stack([hiddens[i] for i in members]).mean(0)
        trajectory = model.project(pooled)[1].float().cpu().numpy()
        score = float(np.mean([probabilities[i] for i in members]))
        phrases.append(PhraseTrack(text=text[start:end], span=(start, end), trajectory=trajectory, score=score))
    if duration > 0:
        segments = parse_segments(text, duration, config.num_time_bins)
        frame_times = uniform_frame_times(0.0, duration, config.num_frames)
    else:  # a still image: no time axis
        segments, frame_times = [], np.zeros(config.num_frames)
    return AnswerResult(text=text, phrases=phrases, segments=segments, token_ids=tokens, frame_times=frame_times)


def token_spans(tokenizer, tokens: Sequence[int]) -> list[tuple[int, int]]:
    """Each token's character span in ``decode(tokens)``: from the end of the text decoded
    before it to the end of the text decoded with it (works for any tokenizer's decoder)."""
    spans, previous = [], 0
    for count in range(1, len(tokens) + 1):
        end = len(tokenizer.decode(tokens[:count], skip_special_tokens=True))
        spans.append((min(previous, end), end))
        previous = end
    return spans
