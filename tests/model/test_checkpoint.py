"""Save -> load gives identical outputs; broken checkpoints stop with an error naming file and tensor.
The model writes and reads its config and weights, its processor the tokenizer beside them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from pite_ros.model import (
    CheckpointError,
    PiteForConditionalGeneration,
    PiteProcessor,
    load_model_and_processor,
    save_model_and_processor,
    setup_stage,
)


@pytest.fixture
def saved(model, processor, tmp_path):
    save_model_and_processor(tmp_path / "ckpt", model, processor)
    return tmp_path / "ckpt"


def test_round_trip_with_an_active_lora_is_merged(model, processor, video_example, tmp_path):
    batch = {k: v for k, v in processor([video_example]).items() if k != "labels"}  # scoring: every head
    setup_stage(model, 3)
    with torch.no_grad():  # make the stage-3 LoRA and the temporal rows matter
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                parameter.add_(torch.randn_like(parameter) * 0.05)
    model.eval()
    expected = model(**batch)
    model.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    processor.save_pretrained(tmp_path / "ckpt")
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == [
        "config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert not any("lora" in name for name in load_file(tmp_path / "ckpt" / "model.safetensors"))
    loaded, loaded_processor = load_model_and_processor(tmp_path / "ckpt")
    assert loaded.config.stage == 3 and not loaded.training
    got = loaded(**batch)
    for key in ("logits", "loc", "traj"):
        assert torch.allclose(got[key], expected[key], atol=1e-5), key
    assert model(**batch).logits.equal(expected.logits), "saving left the live LoRA unmerged"
    assert loaded_processor.config is loaded.config
    assert loaded_processor.tokenizer.convert_tokens_to_ids("<video>") == model.config.video_token_id
    assert not hasattr(loaded, "tokenizer")


def test_plain_round_trip_is_exact(model, processor, image_example, saved):
    batch = processor([image_example])
    model.eval()
    assert PiteForConditionalGeneration.from_pretrained(saved)(**batch).logits.equal(model(**batch).logits)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors", "tokenizer.json"])
def test_missing_file_is_named(saved, name):
    (saved / name).unlink()
    with pytest.raises(CheckpointError, match=f"{name}: missing"):
        load_model_and_processor(saved)


def test_the_model_needs_no_tokenizer_and_the_processor_no_weights(saved, model):
    (saved / "tokenizer.json").unlink()
    assert PiteForConditionalGeneration.from_pretrained(saved).config.video_token_id == model.config.video_token_id
    with pytest.raises(CheckpointError, match="tokenizer.json: missing"):
        PiteProcessor.from_pretrained(saved)


def test_missing_directory(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        PiteForConditionalGeneration.from_pretrained(tmp_path / "nowhere")


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_weights_are_named(saved, damage):
    path = saved / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(b"\x07not a safetensors file" * 3 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: not a readable safetensors file"):
        PiteForConditionalGeneration.from_pretrained(saved)


def test_corrupt_config_is_named(saved):
    (saved / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json"):
        PiteForConditionalGeneration.from_pretrained(saved)


def test_corrupt_tokenizer_is_named(saved):
    (saved / "tokenizer.json").write_text(json.dumps({"model": "nonsense"}))
    with pytest.raises(CheckpointError, match="tokenizer.json: cannot use the tokenizer"):
        load_model_and_processor(saved)


def test_a_tokenizer_that_does_not_match_the_config_is_refused(saved, model):
    """The processor checks the tokenizer against the ids bound in the config (as the engines rely on)."""
    config = json.loads((saved / "config.json").read_text())
    config["video_token_id"] = model.config.video_token_id + 1
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="tokenizer.json: cannot use the tokenizer: tokenizer ids differ"):
        PiteProcessor.from_pretrained(saved)


def test_wrong_shape_tensor_is_named(saved):
    path = saved / "model.safetensors"
    tensors = load_file(path)
    tensors["coordinate_head.loc_projector.weight"] = torch.zeros(3, 64)
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match=r"model.safetensors: tensor coordinate_head.loc_projector.weight has shape \[3, 64\], the config needs \[2, 64\]"):
        PiteForConditionalGeneration.from_pretrained(saved)


def test_missing_and_unexpected_tensors_are_named(saved):
    path = saved / "model.safetensors"
    tensors = load_file(path)
    del tensors["visual_encoder.adapter.bias"]
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="missing tensor visual_encoder.adapter.bias"):
        PiteForConditionalGeneration.from_pretrained(saved)
    tensors["visual_encoder.adapter.bias"] = torch.zeros(64)
    tensors["extra.weight"] = torch.zeros(1)
    save_file(tensors, path)
    with pytest.raises(CheckpointError, match="unexpected tensor extra.weight"):
        PiteForConditionalGeneration.from_pretrained(saved)


def test_hugging_faces_save_arguments(model, processor, tmp_path):
    """``state_dict=`` (what FSDP training gathers) is merged like the live weights; only the main process writes."""
    setup_stage(model, 3)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name or "trainable_tokens_delta" in name:
                parameter.add_(torch.randn_like(parameter) * 0.05)
    gathered = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    model.save_pretrained(tmp_path / "live")
    model.save_pretrained(tmp_path / "given", state_dict=gathered)
    save_model_and_processor(tmp_path / "other", model, processor, is_main_process=False)
    live, given = (load_file(tmp_path / name / "model.safetensors") for name in ("live", "given"))
    assert set(live) == set(given) and all(torch.equal(live[name], given[name]) for name in live)
    assert not (tmp_path / "other").exists() or not any((tmp_path / "other").iterdir())
    merged = model.language_model.merge_and_unload().state_dict()  # peft's own merge, for reference
    for name, tensor in merged.items():
        assert torch.allclose(live[f"language_model.{name}"], tensor, atol=1e-6), name


def test_from_pretrained_refuses_what_it_cannot_honour(saved):
    with pytest.raises(TypeError, match="revision"):
        PiteForConditionalGeneration.from_pretrained(saved, revision="main")
    with pytest.raises(TypeError, match="device_map='auto'"):
        PiteForConditionalGeneration.from_pretrained(saved, device_map="auto")
    loaded = PiteForConditionalGeneration.from_pretrained(saved, dtype=torch.bfloat16, device_map="cpu")
    assert next(loaded.parameters()).dtype == torch.bfloat16


def test_checkpoints_of_the_earlier_layout_load(model, processor, image_example, saved):
    """Tensors named before the encoder and the heads were submodules (``vision_tower.*``,
    ``adapter.*``, ``loc_projector.*``, ``traj_projector.*``: the shipped model's) load renamed."""
    path = saved / "model.safetensors"
    old = {name.removeprefix("visual_encoder.").removeprefix("coordinate_head."): tensor
           for name, tensor in load_file(path).items()}
    assert {"vision_tower.post_layernorm.weight", "adapter.weight", "traj_projector.bias"} <= set(old)
    save_file(old, path)
    loaded = PiteForConditionalGeneration.from_pretrained(saved)
    batch = {k: v for k, v in processor([image_example]).items() if k != "labels"}
    model.eval()
    assert torch.equal(loaded(**batch).logits, model(**batch).logits)
    assert torch.equal(loaded.state_dict()["coordinate_head.traj_projector.bias"], old["traj_projector.bias"])
    save_file({**old, "coordinate_head.traj_projector.bias": old["traj_projector.bias"].clone()}, path)
    with pytest.raises(CheckpointError, match="tensor coordinate_head.traj_projector.bias is stored twice"):
        PiteForConditionalGeneration.from_pretrained(saved)


def test_the_shipped_models_processor_loads_and_saves_its_tokenizer_unchanged(tmp_path):
    """The default model's folder keeps its layout: its processor reads the tokenizer (checked
    against the config's bound ids) and writes back the same two files, byte for byte."""
    from pite_ros.engine.loader import DEFAULT_MODEL_DIR

    processor = PiteProcessor.from_pretrained(DEFAULT_MODEL_DIR)
    assert processor.tokenizer.convert_tokens_to_ids("<video>") == processor.config.video_token_id
    written = processor.save_pretrained(tmp_path)
    assert sorted(path.name for path in written) == ["tokenizer.json", "tokenizer_config.json"]
    for path in written:
        assert path.read_bytes() == (DEFAULT_MODEL_DIR / path.name).read_bytes(), path.name
