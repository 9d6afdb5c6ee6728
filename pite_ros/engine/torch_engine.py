"""The PyTorch engine: the model definition itself, eager, on CPU or GPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pite_ros.engine.base import EngineError, TokenCallback
from pite_ros.model import CheckpointError, PiteForConditionalGeneration
from pite_ros.types import AnswerResult


class TorchEngine:
    """Loads a checkpoint directory (HF layout, safetensors) and answers with ``model.answer``."""

    def __init__(self, model_dir: str | Path, *, device: str = "cpu", num_threads: int = 0) -> None:
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            self.model = PiteForConditionalGeneration.from_pretrained(model_dir, device=device)
        except (CheckpointError, OSError, ValueError) as error:
            raise EngineError(f"cannot load the torch model from {model_dir}: {error}") from error
        self.name = Path(model_dir).resolve().name
        self.num_frames = int(self.model.config.num_frames)

    def answer(
        self,
        frames: np.ndarray,
        question: str,
        duration: float,
        *,
        max_new_tokens: int | None = None,
        on_token: TokenCallback | None = None,
    ) -> AnswerResult:
        with torch.inference_mode():
            return self.model.answer(frames, question, duration, max_new_tokens=max_new_tokens, on_token=on_token)

    def answer_batch(
        self,
        clips: list[np.ndarray],
        questions: list[str],
        durations: list[float],
        *,
        max_new_tokens: int | None = None,
    ) -> list[AnswerResult]:
        """Answers for several clips in one left-padded greedy loop (``model.answer_batch``)."""
        with torch.inference_mode():
            return self.model.answer_batch(clips, questions, durations, max_new_tokens=max_new_tokens)

    def close(self) -> None:
        del self.model
