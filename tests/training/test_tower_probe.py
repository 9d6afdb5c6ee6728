"""The tower probe: a random tower's patch tokens carry colour (a projection of the pixels), not shape."""

from __future__ import annotations

import torch

from pite_ros.model import build_model, build_tokenizer, load_config
from training.evaluation.tower_probe import main, probe_tower
from training.synth import vocabulary


def tiny_model():
    torch.manual_seed(0)
    return build_model(load_config("tiny"), build_tokenizer(vocabulary(), 300)).eval()


def test_a_random_tower_tells_colours_apart_but_not_shapes() -> None:
    accuracy = probe_tower(tiny_model(), steps=300, batch_images=16, test_images=100, learning_rate=1e-2)
    assert accuracy["colour"] >= 75.0  # six colours far apart: nearly linear in the pixels (84.3 measured)
    assert accuracy["shape"] <= 50.0  # four shapes at 4-8 px after resizing to 32: chance is 25 (33.2)
    assert accuracy["colour"] - accuracy["shape"] >= 30.0


def test_the_probe_is_deterministic_for_its_seed() -> None:
    model = tiny_model()
    assert probe_tower(model, steps=5, batch_images=4, test_images=20) == \
        probe_tower(model, steps=5, batch_images=4, test_images=20)


def test_the_command_prints_accuracy_and_chance(tmp_path, capsys) -> None:
    tiny_model().save_pretrained(tmp_path)
    assert main(["--model", str(tmp_path), "--steps", "2", "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert '"chance": {"shape": 25.0, "colour": 16.7}' in printed
    assert main(["--model", str(tmp_path / "missing")]) == 1
