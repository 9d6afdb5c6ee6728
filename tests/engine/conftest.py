"""Shared fixtures: a tiny model that memorised one answer, its checkpoint, and ONE export of it
(fp32 + int8 + fp16) for every engine test (exporting is the slow part). Each comes in both
trajectory read-outs: the paper's projector, and the default model's form: the soft-argmax over
patch tokens and each frame's pooled patch tokens as extra visual tokens (``frame_patch_pool``;
its graphs carry the patch tokens and splice several tokens per frame)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pite_ros.engine.export import ExportResult, export_onnx
from pite_ros.model import (
    PiteProcessor,
    build_model,
    build_tokenizer,
    load_config,
    save_model_and_processor,
    setup_stage,
)
from pite_ros.types import Example, SpanTrajectory

ANSWER = "from <30> to <60>, a red circle moves left."
PHRASE = (ANSWER.index("a red circle"), ANSWER.index("a red circle") + len("a red circle"))
WORDS = "there is a red circle small blue square moves left what colour the describe video image from to , . ?".split()


@pytest.fixture(scope="session")
def memorised_example() -> Example:
    trajectory = np.linspace(0.2, 0.8, 32, dtype=np.float32).reshape(4, 4, 2)
    frames = np.random.default_rng(2).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    return Example("vid", frames, "describe the video.", ANSWER, 6.0,
                   trajectories=[SpanTrajectory(*PHRASE, trajectory, np.ones((4, 4), bool))])


@pytest.fixture(scope="session", params=["projector", "soft_argmax"])
def checkpoint(request, tmp_path_factory, memorised_example):
    """The tiny model after 60 full-parameter steps on one example, saved (LoRA merged)."""
    config = load_config("tiny")
    config.trajectory_readout = request.param
    config.frame_patch_pool = 2 if request.param == "soft_argmax" else 0
    config.stage_trainable = {"3": ["vision_tower", "adapter", "llm", "embeddings", "traj_projector"]}
    torch.manual_seed(0)
    tokenizer = build_tokenizer(WORDS, 300)
    model = build_model(config, tokenizer)
    setup_stage(model, 3)
    processor = PiteProcessor(tokenizer, model.config)
    batch = processor([memorised_example])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    for _ in range(60):
        model(**batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    directory = tmp_path_factory.mktemp("ckpt") / "memorised"
    save_model_and_processor(directory, model, processor)
    return directory


@pytest.fixture(scope="session")
def exported(tmp_path_factory, checkpoint) -> ExportResult:
    return export_onnx(checkpoint, tmp_path_factory.mktemp("onnx") / "export", int8=True, fp16=True, held_out=2,
                       max_new_tokens=8)


@pytest.fixture(scope="session")
def torch_model(checkpoint):
    from pite_ros.model import PiteForConditionalGeneration

    return PiteForConditionalGeneration.from_pretrained(checkpoint)


@pytest.fixture(scope="session")
def torch_processor(checkpoint, torch_model):
    return PiteProcessor.from_pretrained(checkpoint, torch_model.config)
