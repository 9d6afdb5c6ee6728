"""What a stage's run is made of: the model set up for its stage, the collate, the data.

The model comes from a preset (stage 0 or 1 from scratch, with a tokenizer built locally from a
vocabulary) or from the previous stage's output directory; ``model_overrides`` sets model
config fields (λ, label smoothing, LoRA rank, extra trainable groups) for this run;
``visibility_head: true`` on a checkpoint without one adds a new head to fine-tune.
"""

from __future__ import annotations

from torch import nn
from torch.utils.data import Dataset

from pite_ros.model import (
    PiteConfig,
    PiteForConditionalGeneration,
    PiteProcessor,
    build_model,
    build_tokenizer,
    load_model_and_processor,
)
from pite_ros.model import ConfigError as ModelConfigError
from pite_ros.model import load_config as load_model_config
from pite_ros.model.stages import parameter_groups, setup_stage
from training.datasets import SkipReport
from training.trainer.config import ConfigError, TrainConfig
from training.trainer.data import build_training_set as read_training_set
from training.trainer.tower_pretraining import TowerPretraining


def _vocabulary(config: TrainConfig) -> list[str]:
    """Words for a locally built tokenizer: the synthetic world's, or one word per line of a file."""
    if config.vocabulary in (None, "synth"):
        from training.synth import vocabulary

        return vocabulary()
    path = config.resolve(config.vocabulary)
    try:
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    except OSError as error:
        raise ConfigError(f"{config.source}: field 'vocabulary': cannot read {path} ({error.strerror})") from error


def _apply_overrides(model_config: PiteConfig, config: TrainConfig) -> None:
    """``model_overrides`` set on the model config through its own validation (``update_checked``)."""
    try:
        model_config.update_checked(config.model_overrides)
    except ModelConfigError as error:
        raise ConfigError(f"{config.source}: model_overrides: {error}") from error


def _train_only(model: PiteForConditionalGeneration, config: TrainConfig) -> None:
    """Freeze everything but ``config.train_only``'s groups (the stage's fresh LoRA then stays zero,
    so merging it changes nothing)."""
    groups = parameter_groups(model)
    unknown = [group for group in config.train_only if group not in groups]
    if unknown:
        raise ConfigError(f"{config.source}: train_only {unknown}: not parameter groups ({', '.join(groups)})")
    empty = [group for group in config.train_only if not groups[group]]
    if empty:
        raise ConfigError(f"{config.source}: train_only {empty}: the model has no such parameters")
    chosen = {name for group in config.train_only for name in groups[group]}
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in chosen)


def build_model_for_stage(config: TrainConfig) -> tuple[nn.Module, PiteProcessor]:
    """The model with this stage's LoRA and trainable parameters, and the batch collate
    (stage 0: the model inside ``TowerPretraining``, which adds its word head)."""
    source = config.model
    if config.resolve(source).is_dir():
        model, processor = load_model_and_processor(config.resolve(source))
        _apply_overrides(model.config, config)
        if model.config.visibility_head and not hasattr(model, "vis_projector"):  # asked for by an override
            model.add_visibility_head()
    else:
        preset = str(config.resolve(source)) if source.endswith(".json") else source
        model_config = load_model_config(preset)
        _apply_overrides(model_config, config)
        tokenizer = build_tokenizer(_vocabulary(config), model_config.num_time_bins)
        model = build_model(model_config, tokenizer)
        processor = PiteProcessor(tokenizer, model.config)
    setup_stage(model, config.stage)
    if config.train_only:
        _train_only(model, config)
    trained = TowerPretraining(model) if config.stage == 0 else model
    trained.train()
    return trained, processor


def build_training_set(config: TrainConfig, model_config: PiteConfig) -> tuple[Dataset, SkipReport]:
    """The run's examples at the model's image size and frame count."""
    return read_training_set(config, model_config.image_size, model_config.num_frames, model_config.num_points)


