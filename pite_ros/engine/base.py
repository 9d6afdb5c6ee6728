"""The one interface every inference engine offers the node, the evaluator and the benchmarks.

An engine answers a question about a clip of uint8 RGB frames; it owns preprocessing
(resizing to its tower's input) and returns normalised trajectories and clip-relative
times, which the caller maps to source pixels and stamps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from pite_ros.types import AnswerResult

# Called after each generated token with (token id, answer text so far); returning False
# stops generation there (the node's action uses it for streamed feedback and cancel).
TokenCallback = Callable[[int, str], bool]


class EngineError(RuntimeError):
    """An engine cannot be loaded or cannot run: the message names the file or input."""


class Engine(Protocol):
    """What the node needs from a model runtime."""

    name: str  # model name for Answer.model_name
    num_frames: int  # frames per clip the model expects (N)

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
