"""``train_only``: one run trains the groups it names (a new visibility head on frozen weights), and
the model it saves is the input plus that head; wrong group names stop the run with the field named."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from pite_ros.model import (
    PiteForConditionalGeneration,
    PiteProcessor,
    build_model,
    build_tokenizer,
    load_config,
    save_model_and_processor,
)
from training.synth import generate, vocabulary
from training.train import main as train_main
from training.trainer.build import build_model_for_stage
from training.trainer.config import ConfigError
from training.trainer.config import load_config as load_train_config


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("train_only")
    generate(root / "data", videos=6, images=0, split="train", seed=4)
    torch.manual_seed(0)
    tokenizer = build_tokenizer(vocabulary(), 300)
    model = build_model(load_config("tiny"), tokenizer)
    save_model_and_processor(root / "base", model, PiteProcessor(tokenizer, model.config))
    return root


def config(root: Path, name: str, **extra) -> Path:
    values = {"stage": 3, "model": str(root / "base"), "output_dir": str(root / name), "max_steps": 3,
              "batch_size": 4, "save_every": 3, "learning_rate": 1e-2,
              "data": [{"format": "pite143k", "path": str(root / "data" / "stage2.jsonl")}],
              "model_overrides": {"visibility_head": True}, **extra}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_only_the_named_groups_train_and_the_rest_is_saved_unchanged(root: Path) -> None:
    model, _ = build_model_for_stage(load_train_config(config(root, "head", train_only=["vis_projector"])))
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trained and all(name.startswith("vis_projector.") for name in trained)
    assert train_main(["--stage", "3", "--config", str(root / "head.yaml"), "--no-progress"]) == 0
    base = PiteForConditionalGeneration.from_pretrained(root / "base").state_dict()
    out = PiteForConditionalGeneration.from_pretrained(root / "head" / "final")
    assert out.config.visibility_head and out.config.stage == 3 and not out.config.stage_trainable
    state = out.state_dict()
    assert set(state) - set(base) == {name for name in state if name.startswith("vis_projector.")}
    assert all(torch.equal(state[name], tensor) for name, tensor in base.items())  # the LoRA merged as zero


def test_unknown_or_empty_groups_are_named(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"train_only \['vision'\]: not parameter groups"):
        build_model_for_stage(load_train_config(config(root, "bad", train_only=["vision"])))
    with pytest.raises(ConfigError, match=r"train_only \['vis_projector'\]: the model has no such parameters"):
        build_model_for_stage(load_train_config(config(root, "bad", train_only=["vis_projector"], model_overrides={})))
    with pytest.raises(ConfigError, match="field 'train_only' must be a non-empty list"):
        load_train_config(config(root, "bad", train_only="vis_projector"))


def test_model_overrides_pass_the_model_configs_validation(root: Path) -> None:
    with pytest.raises(ConfigError, match=r"bad.yaml: model_overrides: PiteConfig.trajectory_readout must be one of"):
        build_model_for_stage(load_train_config(config(root, "bad", model_overrides={"trajectory_readout": "argmax"})))
    with pytest.raises(ConfigError, match=r"model_overrides: PiteConfig has no field 'coord_weights'"):
        build_model_for_stage(load_train_config(config(root, "bad", model_overrides={"coord_weights": 2.0})))
