"""Shared pieces for the model tests: a vocabulary from a few sentences, the tiny model, examples."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pite_ros.model import PiteProcessor, build_model, build_tokenizer, load_config
from pite_ros.types import Example, SpanPoint, SpanTrajectory

SENTENCES = [
    "there is a red circle.",
    "a small blue square moves left.",
    "what colour is the circle?",
    "describe the video.",
    "describe the image.",
    "from <30> to <60>, a red circle moves left.",
]
MEMORISED = "from <30> to <60>, a red circle moves left."


def words_of(sentences: list[str]) -> list[str]:
    """Word-level vocabulary of ``sentences`` (temporal tokens left out: the tokenizer adds them)."""
    return sorted({w for s in sentences for w in re.findall(r"<\d+>|\w+|[^\w\s]", s) if not w.startswith("<")})


@pytest.fixture(scope="session")
def tokenizer():
    return build_tokenizer(words_of(SENTENCES), 300)


@pytest.fixture
def model(tokenizer):
    torch.manual_seed(0)
    return build_model(load_config("tiny"), tokenizer)


@pytest.fixture
def processor(model, tokenizer):
    return PiteProcessor(tokenizer, model.config)


def frames(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (count, 40, 48, 3), dtype=np.uint8)


@pytest.fixture
def image_example() -> Example:
    """Stage 1: one frame; "red" and "circle" have points."""
    response = "there is a red circle."
    return Example("img", frames(1, 1), "describe the image.", response, 0.0,
                   points=[SpanPoint(11, 14, (0.2, 0.3)), SpanPoint(15, 21, (0.4, 0.5))])


@pytest.fixture
def video_example() -> Example:
    """Stage 2/3: four frames; "a red circle" has a trajectory; the answer holds temporal tokens."""
    trajectory = np.linspace(0.2, 0.8, 32, dtype=np.float32).reshape(4, 4, 2)
    visible = np.ones((4, 4), bool)
    visible[0, 0] = False
    start = MEMORISED.index("a red circle")
    return Example("vid", frames(4, 2), "describe the video.", MEMORISED, 6.0,
                   trajectories=[SpanTrajectory(start, start + len("a red circle"), trajectory, visible)])
