"""Which parameters train in each PiTe stage: the one table, and the set-up that applies it.

docs/papers.md, PiTe "Training: three stages", and the authors' code:

======  =================================================  ==================================
stage   trains                                             why
======  =================================================  ==================================
0       the vision tower alone (no LoRA; optional)         stands in for CLIP's pre-training
                                                           where none can be had (training/
                                                           trainer/tower_pretraining.py)
1       adapter μ, localization projector φ, a LoRA        the paper's stage 1
2       adapter μ, trajectory projector, a new LoRA        paper; the authors' release keeps
        (and the visibility head, where there is one)      a stage-2 ``vision_adapter.bin``
3       a new LoRA, the temporal-token rows                paper; rows as Grounded-VideoLLM
======  =================================================  ==================================

Earlier LoRAs are MERGED into the LM's weights when the next stage starts (the authors'
``inference.py`` merges stage 1, 2, 3 in turn): frozen-and-stacked is the same function
with extra matmuls per layer; merged keeps every stage's checkpoint a plain HF model that
exports to ONNX as ordinary Linear layers.

Temporal-token rows (``<0>..<M>`` and ``<grounded>``) train through peft's
``trainable_token_indices`` on both the input embeddings and the LM head: only those rows
are parameters (``trainable_tokens_delta``), so the optimiser's weight decay cannot touch
the rest of the vocabulary, which a gradient mask over the full matrix would not prevent.

Parameter groups (every parameter is in exactly one): ``vision_tower`` (two-stream: both
towers), ``adapter`` (two-stream: f, g and the separator),
``llm`` (LM weights except embeddings/head), ``embeddings`` (input embeddings and LM head),
``time_tokens``, ``lora``, ``loc_projector``, ``traj_projector``, ``vis_projector`` (empty
without a visibility head). ``config.extra_trainable``
adds groups to every stage but 0 (whose loss reaches the tower alone) and ``config.stage_trainable[str(stage)]`` replaces a stage's row
(small models trained from random init, where LoRA alone cannot learn); with ``embeddings``
training, ``time_tokens`` is dropped (those rows train as part of the full matrices).
"""

from __future__ import annotations

import warnings
from typing import Any

import peft
from peft import PeftModel

from pite_ros.model.config import ConfigError, PiteConfig
from pite_ros.model.modeling import PiteForConditionalGeneration

STAGE_TRAINABLE: dict[int, tuple[str, ...]] = {
    0: ("vision_tower",),
    1: ("adapter", "loc_projector", "lora"),
    2: ("adapter", "traj_projector", "vis_projector", "lora"),
    3: ("lora", "time_tokens"),
}
# The coordinate terms of each stage's loss (``forward``'s ``coordinate_terms``): docs/papers.md,
# PiTe L1 (location), L2 (trajectory), L3 (none). Stage 3 keeps the trajectory term for batches
# that carry trajectories, i.e. stage-2 examples mixed into its data (rehearsal: the paper's
# stage-3 data carries none, so its recipe is unchanged; a from-scratch model that fine-tunes its
# whole LLM in stage 3 would otherwise lose its trajectories). Stage 0 trains the tower on its own loss.
STAGE_COORDINATE_TERMS: dict[int, tuple[str, ...]] = {0: (), 1: ("loc",), 2: ("traj",), 3: ("traj",)}
GROUPS = ("vision_tower", "adapter", "llm", "embeddings", "time_tokens", "lora", "loc_projector", "traj_projector",
          "vis_projector")


def stage_loss_terms(config: PiteConfig, stage: int) -> dict[str, Any]:
    """``forward``'s loss arguments for training ``stage``: its coordinate terms, and stage 3's
    label smoothing (``config.label_smoothing``)."""
    if stage not in STAGE_COORDINATE_TERMS:
        raise ConfigError(f"stage must be one of {sorted(STAGE_COORDINATE_TERMS)}, got {stage}")
    return {"coordinate_terms": STAGE_COORDINATE_TERMS[stage],
            "label_smoothing": config.label_smoothing if stage == 3 else 0.0}


def trainable_groups(model: PiteForConditionalGeneration, stage: int) -> tuple[str, ...]:
    """The groups that train in ``stage``: the table's row (or the config's override) + extras."""
    if stage not in STAGE_TRAINABLE:
        raise ConfigError(f"stage must be one of {sorted(STAGE_TRAINABLE)}, got {stage}")
    config = model.config
    if stage == 0:  # the tower's pre-training: nothing else sees its loss
        return STAGE_TRAINABLE[0]
    row = config.stage_trainable.get(str(stage), STAGE_TRAINABLE[stage])
    groups = tuple(dict.fromkeys([*row, *config.extra_trainable]))
    if "embeddings" in groups:  # the temporal rows are inside the full matrices then
        groups = tuple(group for group in groups if group != "time_tokens")
    unknown = [group for group in groups if group not in GROUPS]
    if unknown:
        raise ConfigError(f"unknown parameter groups {unknown}: expected some of {list(GROUPS)}")
    return groups


def parameter_groups(model: PiteForConditionalGeneration) -> dict[str, list[str]]:
    """Every parameter name of ``model`` under its group (see the module docstring)."""
    lm = model.causal_lm()
    embedding_ids = {
        id(parameter)
        for module in (lm.get_input_embeddings(), lm.get_output_embeddings())
        for name, parameter in module.named_parameters()
        if "trainable_tokens_" not in name
    }
    groups: dict[str, list[str]] = {group: [] for group in GROUPS}
    for name, parameter in model.named_parameters():
        top, _, rest = name.partition(".")
        if top == "visual_encoder":  # the tower(s) (two-stream: both), and the rest (μ; f, g, separator)
            group = "vision_tower" if rest.startswith(("vision_tower.", "image_tower.", "video_tower.")) else "adapter"
        elif top == "coordinate_head":
            group = rest.partition(".")[0]  # loc_projector, traj_projector
        elif top != "language_model":
            group = top
        elif "lora_" in name:
            group = "lora"
        elif "trainable_tokens_" in name:
            group = "time_tokens"
        elif id(parameter) in embedding_ids:
            group = "embeddings"
        else:
            group = "llm"
        groups[group].append(name)
    return groups


def init_trajectory_from_localization(model: PiteForConditionalGeneration) -> None:
    """Tile φ over the trajectory projector (PiTe's ablation: this start matters): before
    training, every predicted point of every frame equals φ's point. Each coordinate head does
    it in its form (``coordinate_head.ProjectorHead`` / ``SoftArgmaxHead``)."""
    model.coordinate_head.init_trajectory_from_localization()


def setup_stage(model: PiteForConditionalGeneration, stage: int) -> list[str]:
    """Prepare ``model`` for training ``stage``; returns the trainable parameter names.

    Merges the previous stage's LoRA, tiles φ into the trajectory projector (entering stage 2
    from an earlier stage; a model already through stage 2 keeps its projector), adds a
    fresh LoRA named ``stage{k}`` (with the temporal-token rows in stage 3; none in stage 0),
    and sets ``requires_grad`` exactly for the groups of ``trainable_groups``.
    """
    groups = trainable_groups(model, stage)
    config = model.config
    if isinstance(model.language_model, PeftModel):
        model.language_model = model.language_model.merge_and_unload()
    if stage > 0:
        _add_stage_lora(model, stage, "time_tokens" in groups)
    names = set()
    by_group = parameter_groups(model)
    for group in groups:
        names.update(by_group[group])
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in names)
    config.stage = stage
    return sorted(names)


def _add_stage_lora(model: PiteForConditionalGeneration, stage: int, time_tokens: bool) -> None:
    """Tile φ when entering stage 2, then wrap the LM in a fresh LoRA ``stage{k}``."""
    config = model.config
    if stage == 2 and config.stage < 2:  # not when continuing from a stage-2 (or later) checkpoint
        init_trajectory_from_localization(model)
    rows = _time_token_rows(model) if time_tokens else None
    lora = peft.LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        trainable_token_indices=rows,
    )
    with warnings.catch_warnings():  # peft 0.21 calls a transformers method deprecated in v5
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        model.language_model = peft.get_peft_model(model.language_model, lora, adapter_name=f"stage{stage}")


def _time_token_rows(model: PiteForConditionalGeneration) -> dict[str, list[int]]:
    """peft's ``trainable_token_indices``: the temporal tokens and ``<grounded>`` in both the
    input embeddings and the LM head, by module name."""
    config = model.config
    rows = [*config.time_token_ids(), config.grounded_token_id]
    lm = model.language_model
    names = {id(module): name for name, module in lm.named_modules()}
    return {names[id(lm.get_input_embeddings())]: rows, names[id(lm.get_output_embeddings())]: rows}
