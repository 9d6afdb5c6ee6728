"""Parameter counts per component, on the meta device (nothing allocated, even for 7B)."""

from __future__ import annotations

from accelerate import init_empty_weights

from pite_ros.model.config import PiteConfig
from pite_ros.model.modeling import PiteForConditionalGeneration
from pite_ros.model.stages import GROUPS, parameter_groups, setup_stage

COMPONENT_NAMES = {
    "vision_tower": "vision tower",
    "adapter": "adapter μ",
    "llm": "LLM (layers, norms)",
    "embeddings": "LM embeddings + head",
    "time_tokens": "temporal-token rows",
    "lora": "LoRA",
    "loc_projector": "localization projector φ",
    "traj_projector": "trajectory projector",
    "vis_projector": "visibility head",
}


def build_on_meta(config: PiteConfig, stage: int | None = None) -> PiteForConditionalGeneration:
    """The model for ``config`` with every parameter on the meta device, set up for ``stage``."""
    with init_empty_weights():
        model = PiteForConditionalGeneration(config)
        if stage is not None:
            setup_stage(model, stage)
    return model


def count_parameters(model: PiteForConditionalGeneration) -> dict[str, tuple[int, int]]:
    """``{group: (parameters, trainable parameters)}`` for every group of ``stages.GROUPS``."""
    sizes = dict(model.named_parameters())
    return {
        group: (sum(sizes[name].numel() for name in names), sum(sizes[name].numel() for name in names if sizes[name].requires_grad))
        for group, names in parameter_groups(model).items()
    }


def describe(config: PiteConfig, stage: int | None = None) -> str:
    """A table of parameters (and, with ``stage``, trainable parameters) per component, and the total."""
    counts = count_parameters(build_on_meta(config, stage))
    lines = [f"{'component':<28}{'parameters':>16}" + (f"{'trainable':>16}" if stage else "")]
    for group in GROUPS:
        total, trainable = counts[group]
        if total or group in ("lora",):
            lines.append(f"{COMPONENT_NAMES[group]:<28}{total:>16,}" + (f"{trainable:>16,}" if stage else ""))
    total = sum(count for count, _ in counts.values())
    trainable = sum(count for _, count in counts.values())
    lines.append(f"{'total':<28}{total:>16,}" + (f"{trainable:>16,}" if stage else ""))
    return "\n".join(lines)
