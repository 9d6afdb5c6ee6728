"""The one interface every inference engine offers the node, the evaluator and the benchmarks.

An engine answers a question about a clip of uint8 RGB frames; it owns preprocessing
(resizing to its tower's input) and returns normalised trajectories and clip-relative
times, which the caller maps to source pixels and stamps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from pite_ros.types import AnswerResult, TokenCallback


class EngineError(RuntimeError):
    """An engine cannot be loaded or cannot run: the message names the file or input."""


class Engine(Protocol):
    """What the node needs from a model runtime."""

    name: str  # model name for Answer.model_name
    num_frames: int  # frames per clip the model expects (N)
    image_size: int  # the tower's square input side: frames already this size skip the resize

    def answer(
        self,
        frames: np.ndarray,
        question: str,
        duration: float,
        *,
        max_new_tokens: int | None = None,
        on_token: TokenCallback | None = None,
    ) -> AnswerResult:
        """Answer ``question`` about ``frames`` ``(N, H, W, 3)`` uint8 RGB spanning ``duration`` s."""
        ...

    def close(self) -> None:
        """Release the model (memory, sessions)."""
        ...


def answers_from_engine(
    engine: Engine,
    clips: Sequence[np.ndarray],
    questions: Sequence[str],
    durations: Sequence[float],
    *,
    max_new_tokens: int | None = None,
) -> list[AnswerResult]:
    """Answers for several clips: the engine's own ``answer_batch`` when it has one (optional;
    the torch engine batches the whole greedy loop), else ``engine.answer`` one clip at a time.
    Results are in input order either way."""
    batched = getattr(engine, "answer_batch", None)
    if batched is not None:
        return batched(list(clips), list(questions), list(durations), max_new_tokens=max_new_tokens)
    return [
        engine.answer(clip, question, duration, max_new_tokens=max_new_tokens)
        for clip, question, duration in zip(clips, questions, durations, strict=True)
    ]
