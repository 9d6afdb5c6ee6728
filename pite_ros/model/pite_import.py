"""The PiTe authors' released weights (PiTe-7B/13B) as a PiTe checkpoint folder.

The release (``yliu-cs/PiTe``, ``inference.py`` and ``pite.py``) is three stage folders
``pite-vicuna-{7b,13b}-v1.5-stage{1,2,3}`` over Vicuna v1.5 and ``clip-vit-large-patch14``.
Each stage folder holds a peft LoRA (``adapter_config.json``, ``adapter_model.safetensors`` or
``.bin``) and ``non_lora_trainables.bin`` (the tensors trained outside the LoRA: the
localization projector φ in stage 1, the trajectory projector in stage 2), and stage 2 (else
stage 1) a ``vision_adapter.bin`` (μ: ``Linear(768, hidden)`` on CLIP's projected
``image_embeds``). Their ``load_pretrained_model`` loads Vicuna, μ, then for each stage in
turn its non-LoRA tensors and its LoRA, merged (``merge_and_unload``). This module does the
same arithmetic on our model: ``W <- W + (α / r) · B A`` (α / √r with rsLoRA) for every LoRA
pair, stage after stage, in the authors' key space, then maps their names onto ours:

- ``model.layers.*``, ``model.norm``, ``model.embed_tokens``, ``lm_head`` -> the causal LM;
- ``model.vision_adapter`` -> μ (``visual_encoder.adapter``), ``model.localization_projector`` -> φ
  (``coordinate_head.loc_projector``);
- ``model.trajectory_projector`` (rows laid out P × N × 2 = 3 × 100 × 2) -> ``coordinate_head.traj_projector``
  (rows N × P × 2 here): its rows are permuted, not retrained.

The config is the ``pite-7b`` preset's PiTe parts over the two folders' configs, with the
authors' prompt (Vicuna v1 with its system sentence) and raw projector outputs
(``coordinate_activation="identity"``: their heads have no sigmoid). Vicuna's tokenizer
gains our ``<video>`` (one token where they splice index -200: the same positions), and
``<0>..<300>`` with mean rows, which their model never writes (PiTe writes times as text).

Files are read with ``safetensors`` or ``torch.load(weights_only=True)`` (tensors only,
nothing executed); the output is safetensors. Every problem is an ``InitError`` naming the
file and, for a tensor, its key; nothing is written then.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import safe_open

from pite_ros.model.modeling import PiteForConditionalGeneration
from pite_ros.model.pretrained import InitError, init_from_pretrained
from pite_ros.model.processor import PiteProcessor

VISION_ADAPTER = "vision_adapter.bin"
NON_LORA = "non_lora_trainables.bin"
ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
# The authors' module names under ``PiTeLlamaModel`` that are not the LLM's own.
_HEADS = {"vision_adapter": "visual_encoder.adapter", "localization_projector": "coordinate_head.loc_projector",
          "trajectory_projector": "coordinate_head.traj_projector"}
AUTHORS_POINTS, AUTHORS_FRAMES = 3, 100  # pite.py: Linear(hidden, 3 * 100 * 2), viewed (3, 100, 2)


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a safetensors or a torch ``.bin`` file (``weights_only``: no code runs)."""
    if not path.is_file():
        raise InitError(f"{path}: missing")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                return {key: handle.get_tensor(key) for key in handle.keys()}
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling refused, truncated file, bad header
        raise InitError(f"{path}: not a readable weights file: {str(error).splitlines()[0]}") from error
    if not isinstance(loaded, dict) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise InitError(f"{path}: does not hold a dict of tensors")
    return loaded


def authors_name(key: str) -> str:
    """A key of theirs without peft's and DeepSpeed's prefixes: ``model.layers.0.self_attn.q_proj.weight``
    (``load_lora``'s normalisation: ``base_model.`` and a doubled ``model.`` dropped)."""
    for prefix in ("base_model.model.", "base_model."):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    if key.startswith("model.model."):
        key = key[len("model."):]
    return key


class AuthorsState:
    """The model's tensors under the authors' names (views onto our parameters, edited in place)."""

    def __init__(self, model: PiteForConditionalGeneration) -> None:
        lm = model.causal_lm()
        self.tensors: dict[str, torch.Tensor] = {name: p.data for name, p in lm.named_parameters()}
        for theirs, ours in _HEADS.items():
            for name, parameter in model.get_submodule(ours).named_parameters():
                self.tensors[f"model.{theirs}.{name}"] = parameter.data

    def get(self, key: str, source: Path) -> torch.Tensor:
        if key not in self.tensors:
            raise InitError(f"{source}: tensor {key} names no parameter of the PiTe model")
        return self.tensors[key]

    def load(self, key: str, value: torch.Tensor, source: Path) -> None:
        """Copy ``value`` in; an embedding or head of the pretrained vocabulary fills its first rows."""
        target = self.get(key, source)
        if value.shape == target.shape:
            target.copy_(value.to(target.dtype))
        elif value.dim() == 2 and value.shape[1:] == target.shape[1:] and value.shape[0] < target.shape[0] and \
                key in ("model.embed_tokens.weight", "lm_head.weight"):
            target[: value.shape[0]].copy_(value.to(target.dtype))
        else:
            raise InitError(f"{source}: tensor {key} has shape {list(value.shape)}, the model needs {list(target.shape)}")


def load_vision_adapter(state: AuthorsState, stage_dirs: Sequence[Path]) -> Path:
    """μ from stage 2's ``vision_adapter.bin``, else stage 1's (as ``inference.py``)."""
    path = next((d / VISION_ADAPTER for d in (stage_dirs[1], stage_dirs[0]) if (d / VISION_ADAPTER).is_file()), None)
    if path is None:
        raise InitError(f"{stage_dirs[1] / VISION_ADAPTER}: missing (and none in {stage_dirs[0]})")
    weights = {key.split("vision_adapter.", 1)[1]: value for key, value in read_tensors(path).items()
               if "vision_adapter." in key}
    for name in ("weight", "bias"):
        if name not in weights:
            raise InitError(f"{path}: missing tensor vision_adapter.{name}")
        state.load(f"model.vision_adapter.{name}", weights[name], path)
    return path


def merge_stage(state: AuthorsState, directory: Path) -> str:
    """One stage: its non-LoRA tensors, then its LoRA merged; returns a line for the report."""
    loaded = []
    if (directory / NON_LORA).is_file():
        for key, value in read_tensors(directory / NON_LORA).items():
            name = authors_name(key)
            state.load(name, value, directory / NON_LORA)
            loaded.append(name)
    config_path = directory / ADAPTER_CONFIG
    try:
        lora = json.loads(config_path.read_text())
        rank, alpha = int(lora["r"]), float(lora["lora_alpha"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InitError(f"{config_path}: not a readable LoRA config ({error})") from error
    if lora.get("fan_in_fan_out"):
        raise InitError(f"{config_path}: fan_in_fan_out LoRA is not a Linear LoRA (Vicuna has none)")
    scaling = alpha / (math.sqrt(rank) if lora.get("use_rslora") else rank)
    weights_path = next((directory / name for name in ADAPTER_WEIGHTS if (directory / name).is_file()),
                        directory / ADAPTER_WEIGHTS[0])
    pairs = lora_pairs(read_tensors(weights_path), weights_path)
    for module, (down, up) in pairs.items():
        weight = state.get(f"{module}.weight", weights_path)
        if down.shape[0] != rank or up.shape[1] != rank or (up.shape[0], down.shape[1]) != tuple(weight.shape):
            raise InitError(f"{weights_path}: LoRA of {module} has A {list(down.shape)}, B {list(up.shape)}; "
                            f"rank {rank} over {list(weight.shape)} expected")
        weight.add_((scaling * (up.double() @ down.double())).to(weight.dtype))
    modules = sorted({module.rsplit(".", 1)[-1] for module in pairs})
    return (f"{directory.name}: {len(pairs)} LoRA pairs merged (r={rank}, alpha={alpha:g}, into {', '.join(modules)}); "
            f"{len(loaded)} non-LoRA tensors" + (f" ({', '.join(sorted(loaded)[:4])}{', ...' if len(loaded) > 4 else ''})"
                                                  if loaded else ""))


def lora_pairs(tensors: dict[str, torch.Tensor], source: Path) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{authors' module name: (A, B)}`` from a peft adapter file; an unpaired half is an error."""
    halves: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        for half in ("lora_A", "lora_B"):
            marker = f".{half}."
            if marker in key:
                module = authors_name(key.split(marker)[0])
                halves.setdefault(module, {})[half] = value
                break
        else:
            raise InitError(f"{source}: tensor {key} is not a LoRA A/B weight")
    if not halves:
        raise InitError(f"{source}: holds no LoRA weights")
    for module, found in halves.items():
        if set(found) != {"lora_A", "lora_B"}:
            raise InitError(f"{source}: LoRA of {module} lacks its {({'lora_A', 'lora_B'} - set(found)).pop()} weight")
    return {module: (found["lora_A"], found["lora_B"]) for module, found in sorted(halves.items())}


@torch.no_grad()
def to_our_trajectory_layout(model: PiteForConditionalGeneration) -> None:
    """Permute the trajectory projector's output rows from P × N × 2 (theirs) to N × P × 2 (ours)."""
    head = model.coordinate_head.traj_projector
    for parameter in (head.weight, head.bias):
        rows = parameter.data.unflatten(0, (AUTHORS_POINTS, AUTHORS_FRAMES, 2))
        parameter.data.copy_(rows.transpose(0, 1).flatten(0, 2))


def import_pite(
    vicuna: str, clip: str, stage_dirs: Sequence[str | Path], *, dtype: torch.dtype = torch.bfloat16
) -> tuple[PiteForConditionalGeneration, PiteProcessor, str]:
    """The authors' model as ours, its processor (Vicuna's tokenizer with the PiTe tokens) and a
    report of what was merged."""
    stage_dirs = [Path(directory) for directory in stage_dirs]
    for number, directory in enumerate(stage_dirs, 1):
        if not directory.is_dir():
            raise InitError(f"--stage{number} {directory}: no such folder")
    model, processor = init_from_pretrained(clip, vicuna, preset="pite-7b", dtype=dtype, feature="projected",
                                            prompt_format="vicuna_v1", options=("--clip", "--vicuna"))
    config = model.config
    if (config.num_points, config.num_frames, config.adapter_type, config.projector_type) != \
            (AUTHORS_POINTS, AUTHORS_FRAMES, "linear", "linear"):
        raise InitError("the pite-7b preset no longer matches the authors' heads (P=3, N=100, linear)")
    config.coordinate_activation = "identity"
    state = AuthorsState(model)
    lines = [f"vision adapter: {load_vision_adapter(state, stage_dirs)}"]
    lines += [merge_stage(state, directory) for directory in stage_dirs]
    to_our_trajectory_layout(model)
    config.stage = 3
    return model, processor, "\n".join(lines)
