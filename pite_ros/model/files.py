"""The files of a model directory (Hugging Face layout) and the error that names them.

A model directory is ``config.json`` + ``model.safetensors`` (the model's ``save_pretrained``)
+ ``tokenizer.json`` + ``tokenizer_config.json`` (``PiteProcessor.save_pretrained``). Torch
stays out of this module: the processor, which the ONNX runtime uses, reads the directory too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pite_ros.model.config import ConfigError, PiteConfig, load_config

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.json"


class CheckpointError(RuntimeError):
    """A checkpoint cannot be loaded or saved; the message names the file (and tensor)."""


def require_files(directory: Path, names: Iterable[str]) -> None:
    """CheckpointError unless ``directory`` exists and holds every file of ``names``."""
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory does not exist")
    for name in names:
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory / name}: missing from the checkpoint")


def read_config(directory: Path) -> PiteConfig:
    """The ``PiteConfig`` of ``directory``'s ``config.json`` (a problem names the file)."""
    try:
        return load_config(directory)
    except ConfigError as error:
        raise CheckpointError(f"{directory / CONFIG_NAME}: {error}") from error
