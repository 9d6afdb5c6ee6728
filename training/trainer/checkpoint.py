"""Atomic, pickle-free training checkpoints for ``--resume``.

A checkpoint is a directory ``checkpoints/step-000040`` holding the trainable weights, the
optimiser's tensors (safetensors) and everything else as JSON, including each rank's random
state (rng.py). It is written under a temporary name and renamed into place, so a run killed
at any instant leaves either the previous checkpoints or the new one complete, never a torn
one. This module only reads and writes files: the full (gathered) state comes from
distributed.py, which collects it from every rank of a multi-process run.
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
RNG = "rng.json"


class ResumeError(RuntimeError):
    """A checkpoint cannot be resumed: names the file and what is wrong with it."""


@dataclass
class TrainingState:
    """What a resumed run needs besides the tensors."""

    step: int
    scheduler: dict
    optimizer: dict  # torch.distributed.checkpoint's full form: parameter names, not indices
    rng: list[dict]  # one rng.capture() per rank


def checkpoint_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:06d}"


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint with the highest step under ``root`` (temporary dirs are ignored)."""
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _NAME.match(p.name)) and p.is_dir()]
    return max(found)[1] if found else None


def _optimizer_tensors(optimizer: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """A full optimizer state dict (keyed by parameter name) as safetensors + JSON parts."""
    tensors = {
        f"{name}/{key}": value.detach().contiguous().cpu()
        for name, entries in optimizer["state"].items()
        for key, value in entries.items()
        if isinstance(value, torch.Tensor)
    }
    scalars = {
        name: {key: value for key, value in entries.items() if not isinstance(value, torch.Tensor)}
        for name, entries in optimizer["state"].items()
    }
    return tensors, {"param_groups": optimizer["param_groups"], "scalars": scalars}


def save_training_state(
    root: Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: dict,
    scheduler: dict,
    rng: list[dict],
    keep: int,
) -> Path:
    """Write checkpoint ``step`` atomically and keep only the newest ``keep`` checkpoints.

    ``optimizer`` is a full optimizer state dict keyed by parameter name, ``scheduler`` the
    scheduler's state dict and ``rng`` one ``rng.capture()`` per rank, in rank order."""
    root.mkdir(parents=True, exist_ok=True)
    final = checkpoint_dir(root, step)
    tmp = root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    save_file({name: t.detach().contiguous().cpu() for name, t in trainable.items()}, tmp / WEIGHTS)
    tensors, optimizer_json = _optimizer_tensors(optimizer)
    save_file(tensors, tmp / OPTIMIZER)
    (tmp / RNG).write_text(json.dumps(rng))
    state = {"step": step, "scheduler": scheduler, "optimizer": optimizer_json, "parameters": list(trainable),
             "processes": len(rng)}
    (tmp / STATE).write_text(json.dumps(state, indent=1))
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(p for p in root.iterdir() if _NAME.match(p.name))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def load_training_state(path: Path, parameters: dict[str, torch.nn.Parameter], processes: int) -> TrainingState:
    """Restore trainable weights in place; return step, optimizer, scheduler and random state.

    Raises ``ResumeError`` naming the file when a file is missing or corrupt, when the
    checkpoint's parameters do not match the run's (a changed config cannot be resumed), or
    when it was written by another number of processes (each rank's random state belongs to
    its rank: a resumed run could not reproduce the uninterrupted one).
    """
    try:
        state = json.loads((path / STATE).read_text())
        weights = load_file(path / WEIGHTS)
        optimizer_tensors = load_file(path / OPTIMIZER)
        rng = json.loads((path / RNG).read_text())
    except (OSError, ValueError, KeyError, SafetensorError) as error:
        raise ResumeError(f"{path}: unreadable checkpoint ({error})") from error
    if state["parameters"] != list(parameters):
        raise ResumeError(f"{path / STATE}: trainable parameters differ from this run's; was the config changed?")
    if len(rng) != processes:
        raise ResumeError(f"{path}: written by a run of {len(rng)} process(es), this run has {processes}; "
                          f"resume with {len(rng)} (e.g. accelerate launch --num_processes {len(rng)}) or start "
                          f"a new output_dir")
    with torch.no_grad():
        for name, parameter in parameters.items():
            value = weights.get(name)
            if value is None or value.shape != parameter.shape:
                raise ResumeError(f"{path / WEIGHTS}: tensor {name} missing or of the wrong shape")
            parameter.copy_(value)
    optimizer: dict = {"param_groups": state["optimizer"]["param_groups"],
                       "state": {name: dict(scalars) for name, scalars in state["optimizer"]["scalars"].items()}}
    for key, tensor in optimizer_tensors.items():
        name, entry = key.rsplit("/", 1)
        optimizer["state"].setdefault(name, {})[entry] = tensor
    return TrainingState(step=state["step"], scheduler=state["scheduler"], optimizer=optimizer, rng=rng)
