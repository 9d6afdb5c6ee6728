"""Checkpoint directories in Hugging Face layout, safetensors only.

A checkpoint is ``config.json`` + ``model.safetensors`` (the tokenizer's files beside them are
the processor's, ``PiteProcessor``; the layout: ``pite_ros.model.files``). Weights are saved
with the current stage's LoRA (and temporal-token rows) MERGED, so every checkpoint is a plain model: loading needs no
peft, the next stage starts from it (``setup_stage`` adds a fresh LoRA), and ONNX export sees
ordinary Linear layers. Nothing is unpickled (``safetensors`` only, no ``trust_remote_code``);
every problem is a ``CheckpointError`` naming the file and, for weights, the tensor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TypeVar

import torch
from accelerate import init_empty_weights
from peft.tuners.lora import Linear as LoraLinear
from peft.tuners.lora import LoraLayer
from peft.tuners.trainable_tokens.layer import TrainableTokensLayer
from safetensors import safe_open
from transformers import PreTrainedModel

from pite_ros.model.files import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, read_config, require_files

# Any PiTe model class: the loader builds ``cls(config)`` and returns it, typed as given.
ModelT = TypeVar("ModelT", bound=PreTrainedModel)

_PEFT_PARTS = (("language_model.base_model.model.", "language_model."), (".base_layer", ""), (".token_adapter", ""))


@torch.no_grad()
def plain_state_dict(
    model: torch.nn.Module, state_dict: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """``state_dict`` (default: ``model``'s own) as a plain model's: every LoRA merged and peft's
    wrapper names folded, computed aside without touching ``model``.

    A LoRA-wrapped Linear's weight becomes ``W + scaling · B A`` (peft's ``get_delta_weight``, on
    the state's tensors), an embedding or head with trainable token rows gets those rows
    (``get_merged_weights``); adapter tensors are left out. ``model`` gives only the structure
    (which modules are LoRA layers, their scaling), so a state gathered from FSDP shards merges
    alike. Not peft's merge/unmerge, which would leave rounding drift in the live weights.
    """
    state = dict(model.state_dict() if state_dict is None else state_dict)
    for name, module in model.named_modules():
        if isinstance(module, LoraLayer):
            if not isinstance(module, LoraLinear):
                raise CheckpointError(f"{name}: cannot merge a LoRA on a {type(module).__name__} (Linear only)")
            weight = state[f"{name}.base_layer.weight"]
            for adapter in module.active_adapters:
                down, up = state[f"{name}.lora_A.{adapter}.weight"], state[f"{name}.lora_B.{adapter}.weight"]
                half_on_cpu = weight.device.type == "cpu" and weight.dtype in (torch.float16, torch.bfloat16)
                delta = up.float() @ down.float() if half_on_cpu else up @ down  # peft's own rule
                delta = (delta.T if module.fan_in_fan_out else delta) * module.scaling[adapter]
                weight = weight + delta.to(weight.dtype)
            state[f"{name}.base_layer.weight"] = weight
        elif isinstance(module, TrainableTokensLayer):
            weight = state[f"{name}.base_layer.weight"]
            for adapter in module.active_adapters:
                index = torch.tensor(module.token_indices[adapter], device=weight.device)
                weight = weight.index_copy(0, index, state[f"{name}.trainable_tokens_delta.{adapter}"].to(weight))
            state[f"{name}.base_layer.weight"] = weight
    plain = {}
    for name, tensor in state.items():
        if "lora_" in name or "trainable_tokens_" in name:
            continue
        for old, new in _PEFT_PARTS:
            name = name.replace(old, new)
        plain[name] = tensor.detach().contiguous()
    return plain


def load_model_dir(
    cls: type[ModelT],
    directory: str | Path,
    *,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
) -> ModelT:
    """The model of class ``cls`` saved in ``directory`` (its config and weights), in eval mode."""
    directory = Path(directory)
    require_files(directory, (CONFIG_NAME, WEIGHTS_NAME))
    config = read_config(directory)
    with init_empty_weights(include_buffers=False):
        model = cls(config)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    tensors = _read_weights(directory / WEIGHTS_NAME, expected, getattr(cls, "checkpoint_key_renames", {}))
    model.load_state_dict(tensors, strict=True, assign=True)
    return model.to(device=device, dtype=dtype).eval()


def _read_weights(
    path: Path, expected: dict[str, tuple[int, ...]], renames: dict[str, str]
) -> dict[str, torch.Tensor]:
    """Every tensor of ``expected`` from ``path``, after checking names and shapes. A stored name
    is first renamed by the first pattern of ``renames`` (regex -> replacement) that matches it:
    checkpoints of an older module layout load into today's (errors name the stored tensor)."""
    try:
        handle = safe_open(str(path), framework="pt", device="cpu")
    except Exception as error:  # safetensors raises SafetensorError/OSError on bad headers
        raise CheckpointError(f"{path}: not a readable safetensors file: {error}") from error
    with handle:
        stored: dict[str, str] = {}
        for name in handle.keys():
            ours = _renamed(name, renames)
            if ours in stored:
                raise CheckpointError(f"{path}: tensor {ours} is stored twice (as {stored[ours]} and {name})")
            stored[ours] = name
        missing = sorted(set(expected) - set(stored))
        if missing:
            raise CheckpointError(f"{path}: missing tensor {missing[0]}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        unexpected = sorted(stored[name] for name in set(stored) - set(expected))
        if unexpected:
            raise CheckpointError(f"{path}: unexpected tensor {unexpected[0]}" + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
        tensors = {}
        for name, shape in expected.items():
            found = tuple(handle.get_slice(stored[name]).get_shape())
            if found != shape:
                raise CheckpointError(f"{path}: tensor {stored[name]} has shape {list(found)}, the config needs {list(shape)}")
            try:
                tensors[name] = handle.get_tensor(stored[name])
            except Exception as error:
                raise CheckpointError(f"{path}: cannot read tensor {stored[name]}: {error}") from error
    return tensors


def _renamed(name: str, renames: dict[str, str]) -> str:
    """``name`` after the first of ``renames`` whose pattern matches it (unchanged if none does)."""
    for pattern, replacement in renames.items():
        if re.match(pattern, name):
            return re.sub(pattern, replacement, name, count=1)
    return name
