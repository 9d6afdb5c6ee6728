"""Stage 0: the tower names the word under each trace point, and nothing but the tower trains."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors import safe_open

from pite_ros.model import PiteForConditionalGeneration
from pite_ros.model.stages import parameter_groups, setup_stage
from pite_ros.types import Example, SpanPoint
from training.trainer.config import ConfigError, config_from_dict
from training.trainer.tower_pretraining import TowerPretraining


def traced_examples() -> list[Example]:
    """Two images whose "red"/"blue" words are traced to opposite corners (different patches)."""
    response = "there is a red circle and a blue square."
    red, blue = response.index("red circle"), response.index("blue square")
    return [
        Example(f"img{seed}", np.random.default_rng(seed).integers(0, 256, (1, 40, 48, 3), dtype=np.uint8), "describe the image.", response, 0.0,
                points=[SpanPoint(red, red + len("red circle"), (0.1, 0.1)),
                        SpanPoint(blue, blue + len("blue square"), (0.9, 0.85))])
        for seed in (3, 4)
    ]


def test_stage0_trains_the_tower_alone_without_a_lora(model, processor):
    names = setup_stage(model, 0)
    assert set(names) == set(parameter_groups(model)["vision_tower"])
    assert not any("lora_" in name for name, _ in model.named_parameters())
    trained = TowerPretraining(model)
    trained(**processor(traced_examples())).loss.backward()
    with_grad = {name for name, p in trained.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    # The head reads the last hidden state, as the heads of stages 1-3 do; the final layer
    # norm is on the LLM's path only (the pooled tokens), so it waits for stage 1.
    tower = {f"model.{name}" for name in names if ".post_layernorm." not in name}
    assert with_grad == tower | {"word_head.weight", "word_head.bias"}


def test_each_traced_word_is_read_from_the_patch_under_it(model, processor):
    setup_stage(model, 0)
    trained = TowerPretraining(model)
    batch = processor(traced_examples())
    grid = model.config.patch_grid
    hidden = model.visual_encoder.vision_tower(pixel_values=batch["pixel_values"][:, 0]).last_hidden_state[:, 1:]
    # (0.1, 0.1) is the top-left patch, (0.9, 0.85) the bottom-right one, for every grid size.
    cells = {(0.1, 0.1): 0, (0.9, 0.85): grid * grid - 1}
    logits, words = [], []
    for row, position in zip(*batch["loc_mask"].nonzero(as_tuple=True), strict=True):
        point = tuple(round(float(v), 2) for v in batch["loc_targets"][row, position])
        logits.append(trained.word_head(hidden[row, cells[point]]))
        words.append(batch["input_ids"][row, position])
    assert len(words) == 8  # "red circle" and "blue square" in two images
    expected = torch.nn.functional.cross_entropy(torch.stack(logits), torch.stack(words))
    assert torch.allclose(trained(**batch).loss, expected, atol=1e-6)


def test_a_few_steps_learn_to_name_the_traced_words(model, processor):
    torch.manual_seed(0)
    setup_stage(model, 0)
    trained = TowerPretraining(model)
    batch = processor(traced_examples())
    optimizer = torch.optim.AdamW([p for p in trained.parameters() if p.requires_grad], lr=3e-3)
    first = trained(**batch)
    for _ in range(60):
        optimizer.zero_grad()
        trained(**batch).loss.backward()
        optimizer.step()
    last = trained(**batch)
    assert float(first.word_accuracy) < 0.5
    assert last.loss.item() < 0.25 * first.loss.item()
    # Each patch holds two words ("red"+"circle"; "blue"+"square"): the best is half right.
    assert float(last.word_accuracy) == pytest.approx(0.5)


def test_the_saved_model_is_the_pite_model_without_the_head(model, processor, tmp_path):
    setup_stage(model, 0)
    trained = TowerPretraining(model)
    trained.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as tensors:
        assert not any("word_head" in key for key in tensors.keys())
    reloaded = PiteForConditionalGeneration.from_pretrained(tmp_path)
    assert reloaded.config.stage == 0
    for (name, saved), (_, kept) in zip(reloaded.visual_encoder.vision_tower.state_dict().items(),
                                        model.visual_encoder.vision_tower.state_dict().items(), strict=True):
        assert torch.equal(saved, kept), name


def test_stage0_reads_localized_narratives_only():
    raw = {"stage": 0, "model": "tiny", "output_dir": "out", "data": [{"format": "pite143k", "path": "a.jsonl"}]}
    with pytest.raises(ConfigError, match=r"data\[0\]\.format.*localized_narratives"):
        config_from_dict(raw)
    raw["data"] = [{"format": "localized_narratives", "path": "a.jsonl"}]
    assert config_from_dict(raw).stage == 0
