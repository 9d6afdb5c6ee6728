"""``pite-model import-pite`` on small random weights written in the PiTe authors' release layout,
checked against the authors' equations computed here from the files (not by our import run twice):
μ(v) = W_μ v + b_μ; each LoRA'd weight W + Σ_stages (α / r) B A; φ(h) = W_φ h + b_φ; the
trajectory head's raw output viewed (3, 100, 2) as ``pite.py`` does."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

sys.path.insert(0, str(Path(__file__).parents[1]))
from pretrained_parts import save_clip, save_llama  # noqa: E402

from pite_ros.model import load_model_and_processor  # noqa: E402
from pite_ros.tools.model_cli import main as model_cli  # noqa: E402

HIDDEN, CLIP_PROJECTION, RANK, ALPHA = 64, 24, 4, 8
LLM_TARGETS = ("self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj")


def lora(generator: torch.Generator, module: str, rows: int, columns: int) -> dict[str, torch.Tensor]:
    """One LoRA pair under peft's saved names (the adapter name left out, as peft saves it)."""
    prefix = f"base_model.model.{module}"
    return {f"{prefix}.lora_A.weight": torch.randn(RANK, columns, generator=generator) * 0.1,
            f"{prefix}.lora_B.weight": torch.randn(rows, RANK, generator=generator) * 0.1}


def write_stage(directory: Path, loras: dict[str, torch.Tensor], non_lora: dict[str, torch.Tensor],
                adapter: dict[str, torch.Tensor] | None = None) -> None:
    directory.mkdir(parents=True)
    targets = sorted({key.split(".lora_")[0].rsplit(".", 1)[-1] for key in loras})
    (directory / "adapter_config.json").write_text(json.dumps(
        {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": RANK, "lora_alpha": ALPHA, "lora_dropout": 0.05,
         "target_modules": targets, "bias": "none", "fan_in_fan_out": False}))
    save_file(loras, str(directory / "adapter_model.safetensors"))
    torch.save(non_lora, directory / "non_lora_trainables.bin")
    if adapter is not None:
        torch.save(adapter, directory / "vision_adapter.bin")


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Vicuna-, CLIP- and stage-folders as the authors' ``checkpoint/`` holds them, and their tensors."""
    root = tmp_path_factory.mktemp("authors")
    generator = torch.Generator().manual_seed(5)
    layers = AutoModelForCausalLM.from_pretrained(save_llama(root / "vicuna")).config.num_hidden_layers
    save_clip(root / "clip")
    shapes = {"self_attn.q_proj": (HIDDEN, HIDDEN), "self_attn.v_proj": (32, HIDDEN), "mlp.down_proj": (HIDDEN, 128)}
    stages = []
    for stage in (1, 2, 3):
        loras = {}
        for layer in range(layers):
            for target in LLM_TARGETS:
                loras |= lora(generator, f"model.layers.{layer}.{target}", *shapes[target])
        non_lora, adapter = {}, None
        if stage == 1:
            non_lora = {"base_model.model.model.localization_projector.weight": torch.randn(2, HIDDEN, generator=generator),
                        "base_model.model.model.localization_projector.bias": torch.rand(2, generator=generator)}
        if stage == 2:
            non_lora = {"base_model.model.model.trajectory_projector.weight":
                        torch.randn(600, HIDDEN, generator=generator) * 0.1,
                        "base_model.model.model.trajectory_projector.bias": torch.rand(600, generator=generator)}
            adapter = {"model.vision_adapter.weight": torch.randn(HIDDEN, CLIP_PROJECTION, generator=generator),
                       "model.vision_adapter.bias": torch.randn(HIDDEN, generator=generator)}
        if stage == 3:  # the authors' find_all_linear_names also targets their heads
            loras |= lora(generator, "model.trajectory_projector", 600, HIDDEN)
        write_stage(root / f"pite-vicuna-7b-v1.5-stage{stage}", loras, non_lora, adapter)
        stages.append({"lora": loras, "non_lora": non_lora, "adapter": adapter})
    return {"root": root, "stages": stages, "layers": layers}


def run_import(release: dict, out: Path, **replace: Path) -> int:
    root = release["root"]
    dirs = {f"--stage{k}": replace.get(f"stage{k}", root / f"pite-vicuna-7b-v1.5-stage{k}") for k in (1, 2, 3)}
    return model_cli(["import-pite", "--vicuna", str(root / "vicuna"), "--clip", str(root / "clip"),
                      *[str(part) for item in dirs.items() for part in item], "--dtype", "float32", "--out", str(out)])


def merged(release: dict, base: torch.Tensor, module: str) -> torch.Tensor:
    """W + Σ over stages of (α / r) · B A, the authors' merge_and_unload in order."""
    weight = base.double()
    for stage in release["stages"]:
        down = stage["lora"].get(f"base_model.model.{module}.lora_A.weight")
        if down is not None:
            weight = weight + (ALPHA / RANK) * stage["lora"][f"base_model.model.{module}.lora_B.weight"].double() @ down.double()
    return weight


def test_the_import_computes_the_authors_model(release: dict, tmp_path: Path) -> None:
    assert run_import(release, tmp_path / "pite") == 0
    model, processor = load_model_and_processor(tmp_path / "pite")  # the tokenizer saved with it, ids bound
    config = model.config
    assert processor.tokenizer.convert_tokens_to_ids("<video>") == config.video_token_id
    assert (config.num_frames, config.num_points, config.coordinate_activation, config.stage) == (100, 3, "identity", 3)
    assert config.vision_feature == "projected" and config.prompt_format == "vicuna_v1"
    vicuna = AutoModelForCausalLM.from_pretrained(release["root"] / "vicuna").state_dict()
    ours = model.causal_lm().state_dict()
    for layer in range(release["layers"]):
        for target in LLM_TARGETS:
            name = f"model.layers.{layer}.{target}"
            expected = merged(release, vicuna[f"{name}.weight"], name)
            assert torch.allclose(ours[f"{name}.weight"].double(), expected, atol=1e-5), name
    assert torch.equal(ours["model.norm.weight"], vicuna["model.norm.weight"])

    generator = torch.Generator().manual_seed(9)
    feature, hidden = torch.randn(5, CLIP_PROJECTION, generator=generator), torch.randn(5, HIDDEN, generator=generator)
    adapter = release["stages"][1]["adapter"]
    expected_visual = feature @ adapter["model.vision_adapter.weight"].T + adapter["model.vision_adapter.bias"]
    with torch.no_grad():
        assert torch.allclose(model.visual_encoder.adapter(feature), expected_visual, atol=1e-5)
        loc, traj = model.project(hidden)
    phi = release["stages"][0]["non_lora"]
    expected_loc = hidden @ phi["base_model.model.model.localization_projector.weight"].T \
        + phi["base_model.model.model.localization_projector.bias"]
    assert torch.allclose(loc, expected_loc.clamp(0, 1), atol=1e-5)
    head = release["stages"][1]["non_lora"]
    weight = merged(release, head["base_model.model.model.trajectory_projector.weight"], "model.trajectory_projector")
    raw = (hidden.double() @ weight.T + head["base_model.model.model.trajectory_projector.bias"].double())
    theirs = raw.view(5, 3, 100, 2).clamp(0, 1)  # pite.py: view(..., 3, 100, 2): P points x N frames
    assert traj.shape == (5, 100, 3, 2)
    assert torch.allclose(traj.double(), theirs.transpose(1, 2), atol=1e-5)
    assert 0.0 < float((raw < 0).double().mean() + (raw > 1).double().mean())  # the clamp was exercised


def test_a_release_with_a_missing_part_is_named_and_nothing_is_written(release: dict, tmp_path: Path, capsys) -> None:
    root = release["root"]
    broken = tmp_path / "stage3"
    stage = release["stages"][2]
    lonely = {key: value for key, value in stage["lora"].items() if not key.endswith("layers.0.self_attn.q_proj.lora_B.weight")}
    write_stage(broken, lonely, {})
    assert run_import(release, tmp_path / "out", stage3=broken) == 2
    assert f"{broken / 'adapter_model.safetensors'}: LoRA of model.layers.0.self_attn.q_proj lacks its lora_B weight" \
        in capsys.readouterr().err
    no_adapter = tmp_path / "stage2"
    write_stage(no_adapter, release["stages"][1]["lora"], release["stages"][1]["non_lora"])
    assert run_import(release, tmp_path / "out", stage2=no_adapter) == 2
    assert f"{no_adapter / 'vision_adapter.bin'}: missing (and none in {root / 'pite-vicuna-7b-v1.5-stage1'})" \
        in capsys.readouterr().err
    stray = tmp_path / "stage1"
    write_stage(stray, release["stages"][0]["lora"], {"base_model.model.model.mm_projector.weight": torch.zeros(2, 2)})
    assert run_import(release, tmp_path / "out", stage1=stray) == 2
    assert f"{stray / 'non_lora_trainables.bin'}: tensor model.mm_projector.weight names no parameter" \
        in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
