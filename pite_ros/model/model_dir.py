"""A model directory read and written whole: the model (config, weights) and its processor
(the tokenizer), as the engines, training and ``pite-model`` use it.

The layout stays Hugging Face's (``pite_ros.model.files``): the model's ``save_pretrained``
writes ``config.json`` and ``model.safetensors``, ``PiteProcessor.save_pretrained`` the
tokenizer's files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from pite_ros.model.modeling import PiteForConditionalGeneration
from pite_ros.model.processor import PiteProcessor


def load_model_and_processor(
    directory: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> tuple[PiteForConditionalGeneration, PiteProcessor]:
    """The model of ``directory`` (eval mode, on ``device`` in ``dtype``: default the CPU, as
    saved) and its processor, sharing one config; a problem is a ``CheckpointError`` naming the file."""
    model = PiteForConditionalGeneration.from_pretrained(directory, dtype=dtype, device_map=device)
    return model, PiteProcessor.from_pretrained(directory, model.config)


def save_model_and_processor(
    directory: str | Path, model: PiteForConditionalGeneration, processor: PiteProcessor, **kwargs: Any
) -> None:
    """``model.save_pretrained(directory, **kwargs)`` (Hugging Face's arguments: ``state_dict``,
    ``is_main_process``...) and, from the main process, the processor's tokenizer beside it."""
    model.save_pretrained(directory, **kwargs)
    if kwargs.get("is_main_process", True):
        processor.save_pretrained(directory)
