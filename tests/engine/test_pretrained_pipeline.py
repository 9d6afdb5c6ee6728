"""The whole path on a model initialised from pretrained-format parts (a CLIP tower with projection,
a LLaMA with its own byte-level BPE tokenizer, both built by the test): init -> a stage-1 run ->
export (weights as external data, as a 7B's must be) -> the ONNX engine answers as torch does ->
the node answers a query with it."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parents[1]))
sys.path.insert(0, str(Path(__file__).parents[1] / "node"))
from pretrained_parts import save_clip, save_llama  # noqa: E402

from pite_ros.engine import onnx_graphs  # noqa: E402
from pite_ros.engine.export import export_onnx  # noqa: E402
from pite_ros.engine.loader import load_engine  # noqa: E402
from pite_ros.model import PiteForConditionalGeneration, load_model_and_processor  # noqa: E402
from pite_ros.tools.model_cli import main as model_cli  # noqa: E402
from training.synth import generate  # noqa: E402
from training.train import main as train_main  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("pretrained")
    init = root / "init"
    assert model_cli(["init", "--vision", str(save_clip(root / "clip")), "--llm", str(save_llama(root / "llama")),
                      "--preset", "tiny", "--vision-feature", "projected", "--dtype", "float32",
                      "--out", str(init)]) == 0
    generate(root / "data", videos=4, images=8, split="train", seed=3)
    config = {"stage": 1, "model": str(init), "output_dir": str(root / "stage1"), "max_steps": 3, "batch_size": 4,
              "save_every": 3, "learning_rate": 1e-2,
              "data": [{"format": "localized_narratives", "path": str(root / "data" / "stage1.jsonl")}]}
    (root / "stage1.yaml").write_text(yaml.safe_dump(config))
    assert train_main(["--stage", "1", "--config", str(root / "stage1.yaml"), "--no-progress"]) == 0
    return {"root": root, "init": init, "final": root / "stage1" / "final"}


def test_stage_1_trains_the_pite_parts_and_keeps_the_tower(trained: dict[str, Path]) -> None:
    before = PiteForConditionalGeneration.from_pretrained(trained["init"])
    after, processor = load_model_and_processor(trained["final"])  # training saved the LLM's tokenizer with it
    assert after.config.stage == 1 and processor.tokenizer.backend_tokenizer.model.__class__.__name__ == "BPE"
    for name, tensor in before.visual_encoder.vision_tower.state_dict().items():
        assert torch.equal(after.visual_encoder.vision_tower.state_dict()[name], tensor), name  # CLIP frozen, as PiTe
    changed = lambda module: any(not torch.equal(a, b) for a, b in zip(  # noqa: E731
        before.get_submodule(module).state_dict().values(), after.get_submodule(module).state_dict().values()))
    assert changed("visual_encoder.adapter") and changed("coordinate_head.loc_projector") and changed("language_model")  # μ, φ, the merged LoRA


def test_export_answers_as_torch_does(trained: dict[str, Path], tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(onnx_graphs, "EXTERNAL_DATA_BYTES", 0)  # every graph's weights beside it, as a 7B's
    out = tmp_path / "onnx"
    result = export_onnx(trained["final"], out, max_new_tokens=8)
    assert result.parity["passed"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert {"vision.onnx.data", "decoder.onnx.data"} <= set(manifest["files"])
    assert "tokenizer.json" in manifest["tokenizer_files"]
    assert json.loads((out / "tokenizer.json").read_text())["model"]["type"] == "BPE"  # the LLM's own travels
    torch_engine, onnx_engine = load_engine("torch", trained["final"]), load_engine("onnx", out)
    rng = np.random.default_rng(4)
    for question in ("what moves?", "describe the video.", "where is the red circle?"):
        frames = rng.integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
        expected = torch_engine.answer(frames, question, 3.0, max_new_tokens=12)
        answer = onnx_engine.answer(frames, question, 3.0, max_new_tokens=12)
        assert answer.token_ids == expected.token_ids and answer.text == expected.text
        assert [p.span for p in answer.phrases] == [p.span for p in expected.phrases]
        for ours, theirs in zip(answer.phrases, expected.phrases):
            assert np.abs(ours.trajectory - theirs.trajectory).max() < 1e-4


@pytest.mark.ros
def test_the_node_answers_with_the_initialised_model(trained: dict[str, Path], ros_domain: int, tmp_path: Path) -> None:
    from node_harness import NodeHarness, rgb_image

    harness = NodeHarness(tmp_path, trained["final"])
    try:
        harness.wait_active()
        harness.publish([rgb_image(1_700_000_000_000_000_000 + i * 100_000_000, "cam") for i in range(12)])
        response = harness.ask("what moves?")
        assert response.success, response.message
        assert response.answer.model_name == "final" and response.answer.frame_count == 4
    finally:
        harness.close()
