"""What one stage's run needs to be the same run in 1 or N processes (``accelerate launch``,
``torchrun``): the accelerator, and the full (gathered) state for checkpoints and the final model.

``batch_size`` is the global batch: accelerate splits each batch of the sampler among the
processes (``split_batches``), so a config means the same optimisation, batch order and
resume point on any number of processes. Under FSDP a rank holds only a shard of the weights
and of the optimizer's moments: ``accelerator.get_state_dict`` and torch's distributed
``state_dict`` API gather them, which every rank must call (collectives) even though only the
main process writes files. Plain single-process and DDP runs take the same path.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import DataLoaderConfiguration, DistributedType, gather_object
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict, set_optimizer_state_dict

from training.trainer import rng
from training.trainer.build import build_model_for_stage
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


def rng_states(accelerator: Accelerator) -> list[dict]:
    """Every rank's random state, in rank order (a collective: every rank calls it)."""
    return gather_object([rng.capture()])


def full_trainable_state(accelerator: Accelerator, model: torch.nn.Module, names: list[str]) -> dict[str, torch.Tensor]:
    """The whole trainable tensors ``names`` on the main process (empty elsewhere under FSDP)."""
    state = accelerator.get_state_dict(model)
    return {name: state[name] for name in names} if accelerator.is_main_process else {}


def _optimizer_options(**extra: bool) -> StateDictOptions:
    return StateDictOptions(full_state_dict=True, **extra)


def full_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's whole state keyed by parameter name, on the main process (a collective)."""
    return get_optimizer_state_dict(model, getattr(optimizer, "optimizer", optimizer),
                                    options=_optimizer_options(cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """Load a ``full_optimizer_state`` into a prepared model's optimizer (each rank takes its shard)."""
    set_optimizer_state_dict(model, getattr(optimizer, "optimizer", optimizer), state, options=_optimizer_options())


def save_final_model(accelerator: Accelerator, model: torch.nn.Module, config: TrainConfig, directory: Path) -> None:
    """Write the trained model (HF layout, LoRA merged) from the main process.

    The model's ``save_pretrained`` takes no state dict, and under FSDP the live modules hold
    shards; so the main process builds the stage's model again on the CPU and gives it the
    gathered weights (the same path for one process and DDP, so the tests run it). Every
    rank must call this (the gather is a collective).
    """
    state = accelerator.get_state_dict(model)
    if not accelerator.is_main_process:
        return
    whole, _ = build_model_for_stage(config)
    whole.load_state_dict(state, strict=True, assign=True)
    whole.save_pretrained(directory)
