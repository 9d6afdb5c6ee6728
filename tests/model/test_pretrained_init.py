"""``pite-model init`` on pretrained-format models the test builds: what is carried over, what is new,
and the bad inputs that must stop with the folder named and nothing written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from transformers import AutoModelForCausalLM, CLIPVisionConfig, CLIPVisionModel, CLIPVisionModelWithProjection, LlamaConfig

sys.path.insert(0, str(Path(__file__).parents[1]))
from pretrained_parts import (  # noqa: E402
    IMAGE_MEAN, IMAGE_STD, bpe_tokenizer, clip_config, save_clip, save_llama, save_sentencepiece_llama,
    stage_in_hub_cache)

from pite_ros.model import PiteForConditionalGeneration, load_model_and_processor  # noqa: E402
from pite_ros.model.generation import stop_token_ids  # noqa: E402
from pite_ros.model.prompt import VICUNA_SYSTEM_PROMPT, encode_prompt  # noqa: E402
from pite_ros.model.temporal import temporal_vocabulary  # noqa: E402
from pite_ros.tools.model_cli import main as model_cli  # noqa: E402
from pite_ros.model.torch_generation import answer_with_model


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("parts")
    return {"clip": save_clip(root / "clip"), "llama": save_llama(root / "llama"), "root": root}


@pytest.fixture(scope="module")
def initialised(parts: dict[str, Path]) -> Path:
    out = parts["root"] / "init"
    assert model_cli(["init", "--vision", str(parts["clip"]), "--llm", str(parts["llama"]), "--preset", "tiny",
                      "--vision-feature", "projected", "--dtype", "float32", "--out", str(out)]) == 0
    return out


def test_init_carries_the_pretrained_weights_and_adds_the_pite_tokens(parts, initialised: Path) -> None:
    model, processor = load_model_and_processor(initialised)
    config = model.config
    clip = CLIPVisionModelWithProjection.from_pretrained(parts["clip"])
    llama = AutoModelForCausalLM.from_pretrained(parts["llama"])
    # sub-configs and preprocessing from the pretrained folders, the PiTe parts from the preset
    assert (config.vision_config.hidden_size, config.vision_config.projection_dim, config.image_size) == (32, 24, 32)
    assert config.text_config.hidden_size == 64 and config.text_config.num_key_value_heads == 2
    assert config.image_mean == pytest.approx(IMAGE_MEAN) and config.image_std == pytest.approx(IMAGE_STD)
    assert (config.num_frames, config.num_points, config.vision_feature, config.stage) == (4, 4, "projected", 0)
    assert config.prompt_format == "vicuna_v1" and config.system_prompt == VICUNA_SYSTEM_PROMPT
    # the tower and every LLM weight as pretrained (the tower untouched by any stage: PiTe freezes CLIP)
    for name, tensor in clip.state_dict().items():
        assert torch.equal(model.visual_encoder.vision_tower.state_dict()[name], tensor), name
    ours = model.causal_lm().state_dict()
    old_rows = llama.config.vocab_size
    for name, tensor in llama.state_dict().items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(ours[name][:old_rows], tensor)
            new = ours[name][old_rows:]
            assert new.shape[0] == 3 + 301 and torch.allclose(new, tensor.mean(0).expand_as(new), atol=1e-6)
        else:
            assert torch.equal(ours[name], tensor), name
    # the LLM's own BPE tokenizer, extended: <video> <grounded> <sep> then <0>..<300>, ids bound in the config
    tokenizer = processor.tokenizer
    assert len(tokenizer) == old_rows + 304 == config.text_config.vocab_size
    assert tokenizer.convert_tokens_to_ids("<video>") == config.video_token_id == old_rows
    assert tokenizer.convert_tokens_to_ids(temporal_vocabulary(300)) == config.time_token_ids()
    assert tokenizer.eos_token == "</s>" and config.text_config.eos_token_id == tokenizer.eos_token_id
    ids = encode_prompt(tokenizer, "what moves?", config)
    assert ids[0] == tokenizer.bos_token_id and ids.count(config.video_token_id) == 1
    assert tokenizer.decode(ids[1:]).startswith("A chat between a curious user")


def test_init_loads_in_the_dtype_asked_and_saves_it(parts, tmp_path: Path) -> None:
    out = tmp_path / "bf16"
    assert model_cli(["init", "--vision", str(parts["clip"]), "--llm", str(parts["llama"]), "--preset", "tiny",
                      "--out", str(out)]) == 0  # bfloat16 is the default
    with safe_open(str(out / "model.safetensors"), framework="pt") as handle:
        dtypes = {handle.get_slice(key).get_dtype() for key in handle.keys()}
    assert dtypes == {"BF16"}
    model = PiteForConditionalGeneration.from_pretrained(out)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.config.vision_feature == "pooled"  # the tiny preset's, through CLIPVisionModel


def test_a_dry_run_with_the_pite_7b_shapes_counts_7_05_billion(tmp_path: Path, capsys) -> None:
    """Config-only folders shaped as clip-vit-large-patch14 and vicuna-7b-v1.5: nothing else is read."""
    CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                     image_size=224, patch_size=14, projection_dim=768).save_pretrained(tmp_path / "clip-l")
    LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                num_attention_heads=32, tie_word_embeddings=False).save_pretrained(tmp_path / "vicuna")
    bpe_tokenizer().save_pretrained(tmp_path / "vicuna")
    assert model_cli(["init", "--vision", str(tmp_path / "clip-l"), "--llm", str(tmp_path / "vicuna"),
                      "--dry-run"]) == 0
    table = capsys.readouterr().out
    total = int(re.search(r"^total\s+([\d,]+)", table, re.M).group(1).replace(",", ""))
    assert 7.04e9 < total < 7.06e9, table
    assert not list(tmp_path.glob("init*"))


def _init(parts, out: Path, vision: Path | str | None = None, llm: Path | str | None = None, *extra: str) -> int:
    return model_cli(["init", "--vision", str(vision or parts["clip"]), "--llm", str(llm or parts["llama"]),
                      "--preset", "tiny", "--out", str(out), *extra])


def test_bad_sources_are_named_and_nothing_is_written(parts, tmp_path: Path, capsys) -> None:
    root = parts["root"]
    no_eos = save_llama(tmp_path / "no-eos", eos_token=None)
    CLIPVisionModel(clip_config()).save_pretrained(tmp_path / "no-projection")
    cases = [
        ({"vision": parts["llama"]}, f"--vision {parts['llama']}: a 'llama' model, not a CLIP vision model"),
        ({"llm": parts["clip"]}, f"--llm {parts['clip']}: a 'clip_vision_model' model, not a causal language model"),
        ({"llm": no_eos}, f"--llm {no_eos}: its tokenizer has no EOS token"),
        ({"vision": tmp_path / "missing"}, f"--vision model folder {tmp_path / 'missing'} does not exist"),
        ({"vision": root}, f"--vision {root}: no config.json there"),
        ({"vision": tmp_path / "no-projection", "extra": ("--vision-feature", "projected")},
         "lacks the weights ['visual_projection.weight'] (a CLIPVisionModel folder has no projection"),
    ]
    for case, message in cases:
        out = tmp_path / "out"
        assert _init(parts, out, case.get("vision"), case.get("llm"), *case.get("extra", ())) == 2
        assert message in capsys.readouterr().err
        assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_offline_hub_ids_come_from_the_local_hub_cache(parts, tmp_path: Path) -> None:
    """HF_HUB_OFFLINE=1: Hub ids already in the cache are used; one that is not is named, and nothing is written."""
    hf_home = tmp_path / "hf"
    stage_in_hub_cache(parts["clip"], hf_home, "someone/tiny-clip")
    stage_in_hub_cache(parts["llama"], hf_home, "someone/tiny-llama")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home)}

    def init(vision: str, out: Path) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "pite_ros.tools.model_cli", "init", "--vision", vision,
                   "--llm", "someone/tiny-llama", "--preset", "tiny", "--dtype", "float32", "--out", str(out)]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)

    result = init("someone/tiny-clip", tmp_path / "cached")
    assert result.returncode == 0, result.stderr[-2000:]
    config = json.loads((tmp_path / "cached" / "config.json").read_text())
    assert config["vision_config"]["hidden_size"] == json.loads((parts["clip"] / "config.json").read_text())["hidden_size"]
    result = init("openai/clip-vit-large-patch14", tmp_path / "absent")
    assert result.returncode == 2
    assert ("--vision Hub id openai/clip-vit-large-patch14 (HF_HUB_OFFLINE is set and it is not in the local "
            "Hub cache): cannot be loaded") in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "absent").exists()


def test_an_existing_output_is_kept_unless_forced(parts, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _init(parts, out, None, None, "--dtype", "float32") == 2
    assert "exists and is not empty (use --force" in capsys.readouterr().err and (out / "keep.txt").exists()
    assert _init(parts, out, None, None, "--dtype", "float32", "--force") == 0
    assert not (out / "keep.txt").exists() and json.loads((out / "config.json").read_text())["model_type"] == "pite"


def test_a_chat_llm_gets_its_own_template_and_stops_on_each_of_its_end_ids(tmp_path: Path) -> None:
    template = ("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}</s>{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    llm = save_llama(tmp_path / "chat", chat_template=template)
    config = LlamaConfig.from_pretrained(llm)
    config.eos_token_id = [config.eos_token_id, 7]  # a second end id, as Llama 3's <|eot_id|>
    config.save_pretrained(llm)
    out = tmp_path / "init"
    assert model_cli(["init", "--vision", str(save_clip(tmp_path / "clip")), "--llm", str(llm), "--preset", "tiny",
                      "--dtype", "float32", "--out", str(out)]) == 0
    model, processor = load_model_and_processor(out)
    config, tokenizer = model.config, processor.tokenizer
    assert (config.prompt_format, config.system_prompt) == ("chat_template", "")
    ids = encode_prompt(tokenizer, "what moves?", config)
    assert ids[0] == tokenizer.bos_token_id and ids.count(config.video_token_id) == 1
    assert tokenizer.decode(ids[1:]) == "<|user|><video>\nwhat moves?</s><|assistant|>"
    assert stop_token_ids(config, tokenizer).tolist() == sorted({tokenizer.eos_token_id, 7})


def test_a_sentencepiece_llm_as_vicuna_ships_it(parts, tmp_path: Path) -> None:
    llm = save_sentencepiece_llama(tmp_path / "vicuna")
    assert sorted(p.name for p in llm.iterdir() if p.name.startswith("tokenizer")) == \
        ["tokenizer.model", "tokenizer_config.json"]
    out = tmp_path / "init"
    assert model_cli(["init", "--vision", str(parts["clip"]), "--llm", str(llm), "--preset", "tiny",
                      "--dtype", "float32", "--out", str(out)]) == 0
    model, processor = load_model_and_processor(out)
    tokenizer, config = processor.tokenizer, model.config
    assert len(tokenizer) == 320 + 304 and config.prompt_format == "vicuna_v1"
    text = "From <3> to <40>, a red circle moves."
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert config.time_token_offset + 3 in ids and config.time_token_offset + 40 in ids
    assert tokenizer.decode(ids) == text
    answer = answer_with_model(model, processor, np.zeros((4, 32, 32, 3), np.uint8), "what moves?", 2.0, max_new_tokens=4)
    assert len(answer.token_ids) <= 4
