"""The PiTe model: one definition used by training, evaluation, export and the node (no ROS).

Modules, each one job: ``config`` (PiteConfig, presets, the one validation),
``two_stream_config``, ``tokenizer``, ``prompt`` (the template), ``preprocess`` (frames to
pixels), ``splice`` (visual tokens into text, targets), ``processor`` (collate), ``modeling``
(the model's composition and forward), its parts ``visual_encoder`` (per-frame CLS or
``two_stream``) and ``coordinate_head`` (projectors or the soft-argmax ``readout``),
``losses``, ``stages`` (what trains when, each stage's loss terms), ``checkpoint``
(HF-layout I/O), ``generation`` (the greedy loop, NumPy only) and ``torch_generation`` (it on
the torch model), ``describe`` (parameter counts), ``temporal`` (time tokens),
``time_embeddings`` (the added tokens' embedding rows), ``files`` (a model directory's files),
``model_dir`` (a model and its processor loaded and saved together).

Imports go one way (config < parts < modeling < stages), without a circle. Names below are
imported lazily, so ``pite_ros.model.temporal`` stays light (no torch), and the ONNX runtime's
modules (``config``, ``processor``, ``generation``) run without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ConfigError": "config",
    "PiteConfig": "config",
    "load_config": "config",
    "preset_names": "config",
    "add_pite_tokens": "time_embeddings",
    "answer_with_model": "torch_generation",
    "answers_with_model": "torch_generation",
    "bind_tokenizer": "tokenizer",
    "build_tokenizer": "tokenizer",
    "PiteForConditionalGeneration": "modeling",
    "PiteOutput": "modeling",
    "DecoderStep": "modeling",
    "build_model": "modeling",
    "PiteProcessor": "processor",
    "SpliceItem": "splice",
    "splice_batch": "splice",
    "LossTerms": "losses",
    "pite_loss": "losses",
    "lm_loss_sum": "losses",
    "location_l1_sum": "losses",
    "trajectory_l1_sum": "losses",
    "STAGE_TRAINABLE": "stages",
    "init_trajectory_from_localization": "stages",
    "parameter_groups": "stages",
    "setup_stage": "stages",
    "stage_loss_terms": "stages",
    "trainable_groups": "stages",
    "CheckpointError": "files",
    "load_model_and_processor": "model_dir",
    "save_model_and_processor": "model_dir",
    "preprocess_frames": "preprocess",
    "count_parameters": "describe",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
