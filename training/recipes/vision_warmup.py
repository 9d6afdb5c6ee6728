"""Stage 0 of the default-model recipe: the vision tower learns to see the synthetic world.

Deviation from PiTe (REFERENCE.md, "Architecture": a *pretrained* CLIP tower, frozen): no
pretrained tower can be had here, and one trained from scratch through stages 1-3 alone never
learned where objects are (measured on the first default model: a linear probe of its visual
tokens predicted positions no better than the mean, L1 0.39 vs 0.40, and the coordinate loss's
gradient reaching the tower was ~300x smaller than the LM loss's). So, standing in for CLIP's
pretraining, the tower first learns directly from the stage-2 records it will see later: for
every frame, a throw-away linear head on the tower's per-frame feature predicts, for each
object *named* in the caption, whether it is visible and where its centre is (the mean of its
trajectory points). A slot per distinct phrase (article dropped) makes this a closed-vocabulary
objective: right for the synthetic world (a few dozen objects), not for real data, where the
paper-size config starts from CLIP instead.

Output: the whole PiTe model (the untouched LM, adapter and projectors with the warmed-up
tower) in ``OUT/final``, for stage 1's ``model:``; ``OUT/metrics.jsonl`` per step.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pite_ros.model import PiteForConditionalGeneration, PiteProcessor, build_model, build_tokenizer, load_config
from pite_ros.types import Example
from training.datasets.frame_cache import FrameCache
from training.datasets.stage2 import TrajectoryCaptionDataset
from training.synth import vocabulary

ARTICLES = ("a ", "an ", "the ")


def slot_name(phrase: str) -> str:
    """``"a large orange triangle"`` -> ``"large orange triangle"``: one slot per object kind."""
    lowered = phrase.strip().lower()
    return next((lowered[len(a):] for a in ARTICLES if lowered.startswith(a)), lowered)


def slot_targets(example: Example, slots: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per frame and slot: visible ``(T, S)``, centre ``(T, S, 2)``, known ``(T, S)`` (named in the caption)."""
    frames = example.frames.shape[0]
    visible = np.zeros((frames, len(slots)), np.float32)
    centre = np.zeros((frames, len(slots), 2), np.float32)
    known = np.zeros((frames, len(slots)), np.float32)
    for target in example.trajectories:
        slot = slots.get(slot_name(example.response[target.start:target.end]))
        if slot is None:
            continue
        visible[:, slot] = target.visible.any(axis=1)
        centre[:, slot] = target.points.mean(axis=1)
        known[:, slot] = 1.0
    return visible, centre, known


class SlotHead(nn.Module):
    """The throw-away head: per-frame feature -> per slot (visibility logit, x, y)."""

    def __init__(self, features: int, slots: int) -> None:
        super().__init__()
        self.slots = slots
        self.linear = nn.Linear(features, slots * 3)

    def forward(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.linear(feature).view(*feature.shape[:-1], self.slots, 3)
        return out[..., 0], torch.sigmoid(out[..., 1:])


def warmup_loss(
    logits: torch.Tensor, centre: torch.Tensor, batch: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, float]]:
    """BCE on visibility of named objects + L1 on centres of visible named objects."""
    known, visible = batch["known"], batch["visible"]
    bce = nn.functional.binary_cross_entropy_with_logits(logits, visible, weight=known, reduction="sum")
    bce = bce / known.sum().clamp(min=1)
    seen = known * visible
    l1 = ((centre - batch["centre"]).abs().sum(-1) * seen).sum() / seen.sum().clamp(min=1) / 2
    return bce + 10.0 * l1, {"bce": bce.item(), "L1": l1.item()}


class Collate:
    """Examples -> pixel values and slot targets."""

    def __init__(self, processor: PiteProcessor, slots: dict[str, int]) -> None:
        self.processor, self.slots = processor, slots

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor]:
        batch = self.processor.pixel_batch([e.frames for e in examples])
        targets = [slot_targets(e, self.slots) for e in examples]
        for index, name in enumerate(("visible", "centre", "known")):
            batch[name] = torch.from_numpy(np.stack([t[index] for t in targets]))
        return batch


def tower_features(model: PiteForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """The tower's per-frame feature (what the adapter μ reads): ``(B, T, 3, S, S)`` -> ``(B, T, F)``."""
    output = model.vision_tower(pixel_values=pixel_values.flatten(0, 1))
    feature = output.image_embeds if model.config.vision_feature == "projected" else output.pooler_output
    return feature.view(*pixel_values.shape[:2], -1)


def warm_up(args: argparse.Namespace) -> Path:
    """Train the tower and head for ``args.steps``; save the model to ``args.out/final``."""
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    config = load_config(args.model)
    if config.visual_encoding != "pite":
        raise SystemExit(f"stage 0 warms up the single-stream tower; {args.model} is {config.visual_encoding}")
    model = build_model(config, build_tokenizer(vocabulary(), config.num_time_bins))
    data = TrajectoryCaptionDataset(args.data, image_size=config.image_size, num_frames=config.num_frames)
    data.frame_cache = FrameCache(args.frame_cache_mb * 2**20)
    names = sorted({slot_name(p["text"]) for record in map(json.loads, Path(args.data).read_text().splitlines())
                    for p in record.get("phrases", [])})
    slots = {name: index for index, name in enumerate(names)}
    print(f"[stage 0] {len(data)} clips, {len(slots)} object slots, {args.steps} steps of {args.batch_size}", flush=True)
    sample = tower_features(model, torch.zeros(1, 1, 3, config.image_size, config.image_size))
    head = SlotHead(sample.shape[-1], len(slots))
    parameters = list(model.vision_tower.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=args.learning_rate, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.learning_rate, total_steps=args.steps,
                                                   pct_start=0.05)
    generator = torch.Generator().manual_seed(args.seed)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True, generator=generator, drop_last=True,
                        collate_fn=Collate(PiteProcessor(model.tokenizer, config), slots))
    args.out.mkdir(parents=True, exist_ok=True)
    model.vision_tower.train()
    step = 0
    with (args.out / "metrics.jsonl").open("w") as log:
        while step < args.steps:
            for batch in loader:
                began = time.perf_counter()
                logits, centre = head(tower_features(model, batch["pixel_values"]))
                loss, parts = warmup_loss(logits, centre, batch)
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                optimizer.step()
                schedule.step()
                step += 1
                row = {"step": step, "loss": float(loss), **parts, "seconds": time.perf_counter() - began}
                log.write(json.dumps(row) + "\n")
                if step % 50 == 0 or step == args.steps:
                    print(f"[stage 0] step {step}: loss {row['loss']:.4f} L1 {row['L1']:.4f} bce {row['bce']:.4f}",
                          flush=True)
                if step == args.steps:
                    break
    model.save_pretrained(args.out / "final")
    (args.out / "slots.json").write_text(json.dumps(names, indent=1) + "\n")
    return args.out / "final"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.recipes.vision_warmup", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="stage-2 (PiTe-143k style) JSONL")
    parser.add_argument("--out", type=Path, required=True, help="output folder (the model goes to OUT/final)")
    parser.add_argument("--model", default="default", help="model config preset or JSON file")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--frame-cache-mb", type=int, default=512)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    print(f"[stage 0] model saved to {warm_up(parse_args(argv))}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
