"""answer(): greedy decoding with a KV cache, on a tiny model that memorised one clip's answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pite_ros.model import PiteProcessor, build_model, load_config, setup_stage
from pite_ros.model.config import ConfigError, PiteConfig
from pite_ros.model.generation import Step, choose_tokens, generate, token_spans
from pite_ros.types import Example, SpanTrajectory
from pite_ros.model.torch_generation import answer_with_model, answers_with_model

ANSWER = "from <30> to <60>, a red circle moves left."
PHRASE = (ANSWER.index("a red circle"), ANSWER.index("a red circle") + len("a red circle"))


def red_circle(text: str) -> list[tuple[int, int]]:
    """A phrase_fn for the tests: every "a red circle" in the text."""
    spans, start = [], text.find("a red circle")
    while start >= 0:
        spans.append((start, start + 12))
        start = text.find("a red circle", start + 1)
    return spans


@pytest.fixture(scope="module")
def trained(tokenizer, memorised_example):
    """The tiny model after 60 full-parameter steps on one example (stage-3 row overridden)."""
    config = load_config("tiny")
    config.stage_trainable = {"3": ["vision_tower", "adapter", "llm", "embeddings", "traj_projector"]}
    torch.manual_seed(0)
    model = build_model(config, tokenizer)
    setup_stage(model, 3)
    processor = PiteProcessor(tokenizer, model.config)
    batch = processor([memorised_example])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(60):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model, processor, memorised_example


@pytest.fixture(scope="module")
def memorised_example() -> Example:
    trajectory = np.linspace(0.2, 0.8, 32, dtype=np.float32).reshape(4, 4, 2)
    frames = np.random.default_rng(2).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    return Example("vid", frames, "describe the video.", ANSWER, 6.0,
                   trajectories=[SpanTrajectory(*PHRASE, trajectory, np.ones((4, 4), bool))])


def test_answer_text_phrases_segments(trained):
    model, processor, example = trained
    result = answer_with_model(model, processor, example.frames, example.prompt, example.duration, phrase_fn=red_circle)
    assert result.text == ANSWER
    assert result.token_ids == processor.tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    [phrase] = result.phrases
    assert phrase.span == PHRASE and result.text[slice(*phrase.span)] == phrase.text == "a red circle"
    assert phrase.trajectory.shape == (4, 4, 2)
    assert ((phrase.trajectory >= 0) & (phrase.trajectory <= 1)).all()
    # Learnt through the shifted loss, read back from the hidden states that produced the tokens.
    assert np.abs(phrase.trajectory - example.trajectories[0].points).mean() < 0.05
    assert 0.5 < phrase.score <= 1.0
    [segment] = result.segments
    assert (segment.start, segment.end) == pytest.approx((0.6, 1.2))
    assert np.allclose(result.frame_times, [0.75, 2.25, 3.75, 5.25])


def test_default_phrase_fn_finds_the_noun_phrase(trained):
    model, processor, example = trained
    result = answer_with_model(model, processor, example.frames, example.prompt, example.duration)
    assert "a red circle" in [phrase.text for phrase in result.phrases]
    for phrase in result.phrases:
        assert 0 <= phrase.span[0] < phrase.span[1] <= len(result.text)
        assert result.text[slice(*phrase.span)] == phrase.text


def test_batched_equals_unbatched(trained):
    model, processor, example = trained
    other = np.random.default_rng(5).integers(0, 256, (2, 24, 30, 3), dtype=np.uint8)
    clips, questions, durations = [example.frames, other], [example.prompt, "what colour is the circle?"], [6.0, 3.0]
    batched = answers_with_model(model, processor, clips, questions, durations, phrase_fn=red_circle, max_new_tokens=10)
    for result, clip, question, duration in zip(batched, clips, questions, durations):
        alone = answer_with_model(model, processor, clip, question, duration, phrase_fn=red_circle, max_new_tokens=10)
        assert result.token_ids == alone.token_ids and result.text == alone.text
        assert [p.span for p in result.phrases] == [p.span for p in alone.phrases]
        for a, b in zip(result.phrases, alone.phrases):
            assert np.allclose(a.trajectory, b.trajectory, atol=1e-5)
    assert batched[0].text == "from <30> to <60>, a red circle moves left"  # 10 tokens
    again = answers_with_model(model, processor, clips, questions, durations, phrase_fn=red_circle, max_new_tokens=10)
    assert [r.token_ids for r in again] == [r.token_ids for r in batched]


def test_on_token_streams_and_cancels(trained):
    model, processor, example = trained
    seen = []

    def on_token(token_id: int, text: str) -> bool:
        seen.append((token_id, text))
        return len(seen) < 3

    result = answer_with_model(model, processor, example.frames, example.prompt, example.duration, on_token=on_token,
                               phrase_fn=red_circle)
    assert [text for _, text in seen] == ["from", "from <30>", "from <30> to"]
    assert result.token_ids == [token for token, _ in seen] and result.text == "from <30> to"
    assert result.segments == [] and result.phrases == []
    with pytest.raises(ValueError, match="single clip"):
        answers_with_model(model, processor, [example.frames] * 2, ["q", "q"], [1.0, 1.0], on_token=on_token)


def test_still_image_and_token_limit(trained):
    model, processor, example = trained
    result = answer_with_model(model, processor, example.frames[:1], example.prompt, 0.0, max_new_tokens=2,
                               phrase_fn=red_circle)
    assert len(result.token_ids) == 2 and result.segments == []
    assert np.array_equal(result.frame_times, np.zeros(4))


def test_token_spans_follow_the_decoder(tokenizer):
    ids = tokenizer("a red circle.", add_special_tokens=False)["input_ids"]
    assert token_spans(tokenizer, ids) == [(0, 1), (1, 5), (5, 12), (12, 13)]


def test_choose_tokens_takes_the_median_time_bin():
    # Vocabulary of 10: ids 3..9 are the bins <0>..<6>. Row 0 argmax is a word; row 1 puts 0.4
    # on <0> (the mode) and 0.3 each on <4> and <5>: the median bin is <4> (cumulative 0.7).
    time_ids = np.arange(3, 10)
    probabilities = np.full((2, 10), 1e-9)
    probabilities[0, [1, 5]] = [0.9, 0.1]
    probabilities[1, [3, 7, 8]] = [0.4, 0.3, 0.3]
    logits = np.log(probabilities).astype(np.float32)
    assert choose_tokens(logits).tolist() == [1, 3]
    assert choose_tokens(logits, time_ids).tolist() == [1, 7]
    probabilities[1, [3, 7, 8]] = [0.6, 0.2, 0.2]  # most mass on the mode: the median is the mode
    assert choose_tokens(np.log(probabilities), time_ids).tolist() == [1, 3]


class ScriptedBackend:
    """A ``GreedyBackend`` whose decoder returns scripted logits, one row per step (unit test only)."""

    def __init__(self, config, tokenizer, script: list[np.ndarray]) -> None:
        self.config, self.tokenizer, self.script, self.fed = config, tokenizer, script, []

    def _step(self) -> Step:
        logits = self.script[min(len(self.fed), len(self.script) - 1)][None]
        return Step(logits.astype(np.float32), np.zeros((1, self.config.hidden_size), np.float32), None)

    def encode(self, pixel_values):
        return None

    def prefill(self, visual, frame_mask, input_ids, attention_mask, position_ids) -> Step:
        return self._step()

    def decode(self, token_ids, attention_mask, position_ids, cache) -> Step:
        self.fed.append(int(token_ids[0, 0]))
        return self._step()

    def heads(self, hidden, visual, row):
        return np.zeros((self.config.num_frames, self.config.num_points, 2), np.float32), None


@pytest.mark.parametrize("decoding, expected", [("argmax", "from <0> to <60>"), ("median", "from <40> to <60>")])
def test_time_token_decoding_follows_the_config(model, tokenizer, decoding, expected):
    """``time_token_decoding`` picks each temporal token of the answer (and feeds it back)."""
    config = model.config
    config.time_token_decoding = decoding
    ids = tokenizer.convert_tokens_to_ids

    def one_hot(token: str) -> np.ndarray:
        logits = np.full(len(tokenizer), -30.0)
        logits[ids(token)] = 0.0
        return logits

    spread = np.full(len(tokenizer), -30.0)  # mode <0> (0.4); half the mass is reached at <40>
    spread[[ids("<0>"), ids("<39>"), ids("<40>"), ids("<41>")]] = np.log([0.4, 0.05, 0.3, 0.25])
    script = [one_hot("from"), spread, one_hot("to"), one_hot("<60>"), one_hot(tokenizer.eos_token)]
    backend = ScriptedBackend(config, tokenizer, script)
    [result] = generate(backend, [np.zeros((4, 8, 8, 3), np.uint8)], ["describe the video."], [6.0],
                        phrase_fn=lambda text: [])
    assert result.text == expected
    assert backend.fed[1] == ids(expected.split()[1])  # the decoder was fed the chosen bin
    assert [(s.start, s.end) for s in result.segments] == [
        pytest.approx((int(expected.split()[1][1:-1]) / 50, 1.2))]


def test_unknown_time_token_decoding_is_refused_by_name():
    with pytest.raises(ConfigError, match="time_token_decoding"):
        PiteConfig(time_token_decoding="mean")
