"""The PyTorch engine: the model definition itself, eager, on CPU or GPU.

``device`` is ``cpu`` (the default), ``cuda`` or ``cuda:N``; ``dtype`` the weights' and
activations' type: ``float32`` (default), ``bfloat16`` or ``float16`` (``float16`` only on a
GPU: CPU kernels for it are slow or missing). ``auto`` keeps the dtype the checkpoint was
saved in. Both are checked before anything loads, with an ``EngineError`` naming the value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pite_ros.engine.base import EngineError, TokenCallback
from pite_ros.model import CheckpointError, load_model_and_processor
from pite_ros.model.torch_generation import answer_with_model, answers_with_model
from pite_ros.types import AnswerResult


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "auto": None}


def resolve_device(device: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` as a torch device that exists here, else EngineError."""
    text = device.strip().lower()
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise EngineError(f"device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise EngineError(f"device {device!r}: this torch ({torch.__version__}) sees no CUDA GPU")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise EngineError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return parsed


def resolve_dtype(dtype: str, device: str) -> torch.dtype | None:
    """The torch dtype named by ``dtype`` (None for ``auto``: as saved), else EngineError."""
    name = dtype.strip().lower()
    if name not in DTYPES:
        raise EngineError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    if name == "float16" and not device.strip().lower().startswith("cuda"):
        raise EngineError(f"dtype 'float16' needs device 'cuda' (got {device!r}); on a CPU use bfloat16 or float32")
    return DTYPES[name]


class TorchEngine:
    """Loads a checkpoint directory (HF layout, safetensors: the model and its processor) and
    answers with ``answer_with_model``."""

    def __init__(
        self, model_dir: str | Path, *, device: str = "cpu", dtype: str = "float32", num_threads: int = 0
    ) -> None:
        torch_device, torch_dtype = resolve_device(device), resolve_dtype(dtype, device)
        if num_threads > 0:
            torch.set_num_threads(num_threads)
        try:
            self.model, self.processor = load_model_and_processor(model_dir, device=torch_device, dtype=torch_dtype)
        except (CheckpointError, OSError, ValueError) as error:
            raise EngineError(f"cannot load the torch model from {model_dir}: {error}") from error
        self.name = Path(model_dir).resolve().name
        self.num_frames, self.image_size = int(self.model.config.num_frames), int(self.model.config.image_size)

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
            return answer_with_model(self.model, self.processor, frames, question, duration, max_new_tokens=max_new_tokens,
                                     on_token=on_token)

    def answer_batch(
        self,
        clips: list[np.ndarray],
        questions: list[str],
        durations: list[float],
        *,
        max_new_tokens: int | None = None,
    ) -> list[AnswerResult]:
        """Answers for several clips in one left-padded greedy loop (``answers_with_model``)."""
        with torch.inference_mode():
            return answers_with_model(self.model, self.processor, clips, questions, durations, max_new_tokens=max_new_tokens)

    def close(self) -> None:
        del self.model
