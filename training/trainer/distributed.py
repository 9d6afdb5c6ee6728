"""What one stage's run needs to be the same run in 1 or N processes (``accelerate launch``,
``torchrun``): the accelerator, and the full (gathered) state for checkpoints and the final model.

``batch_size`` is the global batch: accelerate splits each batch of the sampler among the
processes (``split_batches``), so a config means the same optimisation, batch order and
resume point on any number of processes. Under FSDP a rank holds only a shard of the weights
and of the optimizer's moments: torch's distributed ``state_dict`` API (checkpoints: the
trainable tensors only) and ``accelerator.get_state_dict`` (the final model) gather them,
which every rank must call (collectives) even though only the main process writes files.
Plain single-process and DDP runs take the same path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, gather_object
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)

from training.trainer import rng
from training.trainer.build import build_model_for_stage
from training.trainer.checkpoint import save_training_state
from training.trainer.config import ConfigError, TrainConfig


def resolve_precision(requested: str) -> str:
    """``auto`` means bf16 on a GPU that supports it and full precision elsewhere (CPU bf16 is slow)."""
    if requested != "auto":
        return requested
    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"


def make_accelerator(config: TrainConfig) -> Accelerator:
    """The run's accelerator; stops with the field named when ``batch_size`` cannot be split evenly,
    and under DeepSpeed, whose optimizer the checkpoints cannot save.

    Without a GPU accelerate runs processes launched by ``accelerate launch``/``torchrun`` as
    one process each unless told ``cpu=True`` (then gloo, DDP: accelerate does not shard
    with FSDP on CPU).
    """
    accelerator = Accelerator(
        cpu=not torch.accelerator.is_available(),
        dataloader_config=DataLoaderConfiguration(split_batches=True),
        gradient_accumulation_steps=config.grad_accum,
        mixed_precision=resolve_precision(config.mixed_precision),
    )
    if accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise ConfigError("accelerate config: DeepSpeed is not supported (its ZeRO optimizer state cannot be "
                          "checkpointed as a torch optimizer's); use training/configs/accelerate_fsdp.yaml")
    if config.batch_size % accelerator.num_processes:
        raise ConfigError(f"{config.source}: field 'batch_size' ({config.batch_size}) is the global batch and must "
                          f"be a multiple of the number of processes ({accelerator.num_processes})")
    return accelerator


def _full(**extra: bool) -> StateDictOptions:
    """Whole tensors, gathered to the main process's CPU (other ranks get nothing)."""
    return StateDictOptions(full_state_dict=True, cpu_offload=True, **extra)


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's whole state keyed by parameter name, on the main process (a collective)."""
    return get_optimizer_state_dict(model, getattr(optimizer, "optimizer", optimizer), options=_full())


def save_full_checkpoint(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    names: list[str],
    root: Path,
    step: int,
    keep: int,
) -> None:
    """Gather the trainable weights ``names``, the optimizer's moments and every rank's random
    state, and write checkpoint ``step`` from the main process. Every rank must call it (the
    gathers are collectives); none returns before the checkpoint is complete."""
    weights = get_model_state_dict(model, options=_full(ignore_frozen_params=True))  # the frozen 7B stay put
    optimizer_state = full_optimizer_state(model, optimizer)
    random_states = gather_object([rng.capture()])
    if accelerator.is_main_process:
        save_training_state(root, step, {name: weights[name] for name in names}, optimizer_state, scheduler.state_dict(),
                        random_states, keep)
    accelerator.wait_for_everyone()


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a ``full_optimizer_state`` into a prepared model's optimizer (each rank takes its shard)."""
    set_optimizer_state_dict(model, getattr(optimizer, "optimizer", optimizer), state,
                             options=StateDictOptions(full_state_dict=True))


def save_final_model(accelerator: Accelerator, model: torch.nn.Module, config: TrainConfig, directory: Path) -> None:
    """Write the trained model (HF layout, LoRA merged) and its processor's tokenizer from the main process.

    Under FSDP the live modules hold shards (and their names and wrappers are FSDP's), so the
    main process builds the stage's model again on the CPU and gives it the gathered weights (the same path for one process and DDP, so the tests run it). Every
    rank must call this (the gather is a collective).
    """
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    whole, processor = build_model_for_stage(config)
    whole.load_state_dict(state, strict=True, assign=True)
    whole.save_pretrained(directory)
    processor.save_pretrained(directory)
