"""What a vision tower's patch tokens tell about the objects on them: a linear probe.

``python -m training.evaluation.tower_probe --model DIR``: still scenes of the synthetic
world (``sample_still_scene``, rendered at the world's size), the tower's final-layer patch
token at each object's centre, and a linear classifier of the object's shape and one of its
colour, fitted on the tokens of fresh images each step (the tower frozen) and scored on a
fixed set of others. Prints JSON: accuracy per attribute, and chance. The default model's
card reports these figures (shape: 36 % for a tower trained only through the caption loss,
98 % after stage 0).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch
from torch import nn

from pite_ros.model import PiteForConditionalGeneration
from pite_ros.model.checkpoint import CheckpointError
from pite_ros.model.preprocess import preprocess_frames
from training.synth.render import render
from training.synth.world import COLOURS, SHAPES, WorldConfig, sample_still_scene
from training.trainer.tower_pretraining import patch_index

ATTRIBUTES = {"shape": list(SHAPES), "colour": list(COLOURS)}


def probe_batch(
    rng: np.random.Generator, images: int, model: PiteForConditionalGeneration, world: WorldConfig
) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    """``images`` still scenes: pixel values ``(I, 3, S, S)``, each object's ``(image, patch)``
    ``(K, 2)``, and its label per attribute ``(K,)``."""
    config, grid = model.config, model.config.patch_grid
    pixels, images_of, centres, labels = [], [], [], {name: [] for name in ATTRIBUTES}
    for image in range(images):
        scene = sample_still_scene(rng, world)
        frame = render(scene, np.array([0.5])).frames
        pixels.append(preprocess_frames(frame, config.image_size, config.image_mean, config.image_std)[0])
        for spec in scene.objects:
            images_of.append(image)
            centres.append((spec.origin[0] / world.width, spec.origin[1] / world.height))
            labels["shape"].append(SHAPES.index(spec.shape))
            labels["colour"].append(list(COLOURS).index(spec.colour))
    cells = torch.stack([torch.tensor(images_of), patch_index(torch.tensor(centres).view(-1, 2), grid)], 1)
    return (torch.from_numpy(np.stack(pixels)), cells,
            {name: torch.tensor(values) for name, values in labels.items()})


@torch.no_grad()
def object_tokens(model: PiteForConditionalGeneration, pixels: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """The frozen tower's final-layer patch token at each object's centre ``(K, D)``."""
    hidden = model.vision_tower(pixel_values=pixels.to(model.vision_tower.dtype)).last_hidden_state[:, 1:]
    return hidden[cells[:, 0], cells[:, 1]].float()


def probe_tower(
    model: PiteForConditionalGeneration, steps: int = 1000, batch_images: int = 32, test_images: int = 300,
    learning_rate: float = 3e-3, seed: int = 0, world: WorldConfig | None = None,
) -> dict[str, float]:
    """Held-out accuracy (%) of a linear probe per attribute, fitted for ``steps`` AdamW steps."""
    world = world or WorldConfig()
    torch.manual_seed(seed)
    width = int(model.config.vision_config.hidden_size)
    heads = {name: nn.Linear(width, len(classes)) for name, classes in ATTRIBUTES.items()}
    optimizer = torch.optim.AdamW([p for head in heads.values() for p in head.parameters()],
                                  lr=learning_rate, weight_decay=0.01)
    test_pixels, test_cells, test_labels = probe_batch(np.random.default_rng([seed, 1]), test_images, model, world)
    test_tokens = object_tokens(model, test_pixels, test_cells)
    rng = np.random.default_rng([seed, 2])
    for _ in range(steps):
        pixels, cells, labels = probe_batch(rng, batch_images, model, world)
        tokens = object_tokens(model, pixels, cells)
        loss = sum(nn.functional.cross_entropy(heads[name](tokens), labels[name]) for name in heads)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        return {name: round(100.0 * float((head(test_tokens).argmax(-1) == test_labels[name]).float().mean()), 1)
                for name, head in heads.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluation.tower_probe", description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a PiTe checkpoint folder (a single vision tower)")
    parser.add_argument("--steps", type=int, default=1000, help="probe fitting steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model = PiteForConditionalGeneration.from_pretrained(args.model).eval()
    except (CheckpointError, OSError, ValueError) as error:
        print(f"tower_probe: cannot load {args.model}: {error}", file=sys.stderr)
        return 1
    if model.config.visual_encoding == "two_stream":
        print("tower_probe: a two-stream encoder has no single tower to probe", file=sys.stderr)
        return 2
    accuracy = probe_tower(model, steps=args.steps, seed=args.seed)
    chance = {name: round(100.0 / len(classes), 1) for name, classes in ATTRIBUTES.items()}
    print(json.dumps({"model": args.model, "steps": args.steps, "accuracy": accuracy, "chance": chance}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
