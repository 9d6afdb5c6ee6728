"""Atomic, pickle-free training checkpoints for ``--resume``.

A checkpoint is a directory ``checkpoints/step-000040`` holding the trainable weights, the
optimiser's tensors (safetensors) and everything else as JSON. It is written under a
temporary name and renamed into place, so a run killed at any instant leaves either the
previous checkpoints or the new one complete, never a torn one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

_NAME = re.compile(r"^step-(\d{6,})$")
WEIGHTS = "trainable.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"


class ResumeError(RuntimeError):
    """A checkpoint cannot be resumed: names the file and what is wrong with it."""


@dataclass
class TrainingState:
    """What a resumed run needs besides the tensors."""

    step: int
    scheduler: dict
    torch_rng: torch.Tensor


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint with the highest step under ``root`` (temporary dirs are ignored)."""
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors = {
        f"state.{index}.{key}": value.detach().contiguous().cpu()
        for index, entries in state["state"].items()
        for key, value in entries.items()
        if isinstance(value, torch.Tensor)
    }
    scalars = {
        str(index): {key: value for key, value in entries.items() if not isinstance(value, torch.Tensor)}
        for index, entries in state["state"].items()
    }
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def save_checkpoint(
    root: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically and keep only the newest ``keep`` checkpoints."""
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, step)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({name: t.detach().contiguous().cpu() for name, t in trainable.items()}, tmp / WEIGHTS)
    tensors, optimizer_json = _optimizer_tensors(optimizer)
    save_file(tensors, tmp / OPTIMIZER)
    save_file({"torch_rng": torch.get_rng_state()}, tmp / "rng.safetensors")
    state = {"step": step, "scheduler": scheduler.state_dict(), "optimizer": optimizer_json,
             "parameters": list(trainable)}
    (tmp / STATE).write_text(json.dumps(state, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in root.iterdir() if _NAME.match(p.name))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_checkpoint(
    path: Path,
    parameters: dict[str, torch.nn.Parameter],
    optimizer: torch.optim.Optimizer,
) -> TrainingState:
    """Restore trainable weights and optimiser state in place; return step, scheduler and RNG.

    Raises ``ResumeError`` naming the file when a file is missing or corrupt, or when the
    checkpoint's parameters do not match the run's (a changed config cannot be resumed).
    """
    try:
        state = json.loads((path / STATE).read_text())
        weights = load_file(path / WEIGHTS)
        optimizer_tensors = load_file(path / OPTIMIZER)
        rng = load_file(path / "rng.safetensors")["torch_rng"]
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise ResumeError(f"{path}: unreadable checkpoint ({error})") from error
    if state["parameters"] != list(parameters):
        raise ResumeError(f"{path / STATE}: trainable parameters differ from this run's; was the config changed?")
    with torch.no_grad():
        for name, parameter in parameters.items():
            value = weights.get(name)
            if value is None or value.shape != parameter.shape:
                raise ResumeError(f"{path / WEIGHTS}: tensor {name} missing or of the wrong shape")
            parameter.copy_(value)
    optimizer_state: dict = {"param_groups": state["optimizer"]["param_groups"], "state": {}}
    for index, scalars in state["optimizer"]["scalars"].items():
        optimizer_state["state"][int(index)] = dict(scalars)
    for key, tensor in optimizer_tensors.items():
        _, index, name = key.split(".", 2)
        optimizer_state["state"].setdefault(int(index), {})[name] = tensor
    optimizer.load_state_dict(optimizer_state)
    return TrainingState(step=state["step"], scheduler=state["scheduler"], torch_rng=rng)
