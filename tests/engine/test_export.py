"""pite-export: graphs, manifest, parity gate, int8 and fp16 variants, CLI errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pite_ros.engine import export as export_module
from pite_ros.engine.onnx_graphs import GraphSpec
from pite_ros.engine.onnx_manifest import sha256_file
from pite_ros.engine.onnx_parity import Tolerances, check_parity
from pite_ros.tools.export import main as export_main


def test_parity_report_and_manifest(exported, torch_model):
    directory, parity = exported.directory, exported.parity
    soft_argmax = torch_model.config.trajectory_readout == "soft_argmax"
    assert parity["passed"] and parity["failures"] == [] and parity["greedy_identical"] == "3/3"
    # A soft-argmax read-out compares the patch tokens instead of per-position trajectories.
    compared = {"visual", "logits", "hidden", "projector", *(["patches"] if soft_argmax else ["traj"])}
    assert set(parity["max_abs_diff"]) == compared
    for name, diff in parity["max_abs_diff"].items():
        assert diff < 1e-5, name  # fp32 on the same CPU: rounding only
    assert parity["positions"] > 3 * 4  # prefill positions of 3 prompts + 4 decode steps each

    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["variant"] == "fp32" and manifest["opset"] == 18
    assert manifest["variants"] == {"int8": "int8", "fp16": "fp16"}
    assert manifest["parity"] == parity == json.loads((directory / "parity.json").read_text())
    assert manifest["config"]["num_frames"] == 4
    assert {"tokenizer.json", "tokenizer_config.json"} <= set(manifest["tokenizer_files"])
    assert manifest["kv_cache"] == {"num_layers": 2, "num_kv_heads": 4, "head_dim": 16,
                                    "layout": "(batch, kv_heads, past, head_dim)"}
    files = {path.name for path in directory.iterdir() if path.is_file() and path.name != "manifest.json"}
    assert set(manifest["files"]) == files
    assert {"vision.onnx", "decoder.onnx", "projector.onnx", "embeddings.npy"} <= files
    assert all(manifest["files"][name] == sha256_file(directory / name) for name in files)

    graphs = manifest["graphs"]
    decoder = graphs["decoder"]
    assert decoder["inputs"][:4] == ["inputs_embeds", "attention_mask", "position_ids", "past_key_values.0.key"]
    heads = ["logits", "hidden"] if soft_argmax else ["logits", "traj", "hidden"]
    assert decoder["outputs"] == [*heads, "present.0.key", "present.0.value", "present.1.key", "present.1.value"]
    assert graphs["vision"]["outputs"] == ["visual_embeds", "patch_tokens"] if soft_argmax else ["visual_embeds"]
    assert graphs["projector"]["inputs"] == ["hidden", "patch_tokens"] if soft_argmax else ["hidden"]
    for name, spec in graphs.items():
        session = ort.InferenceSession(str(directory / spec["file"]), providers=["CPUExecutionProvider"])
        assert [arg.name for arg in session.get_inputs()] == spec["inputs"], name
        assert [arg.name for arg in session.get_outputs()] == spec["outputs"], name
    # The embedding table beside the graphs is the model's, so text tokens join the visual ones outside.
    table = np.load(directory / "embeddings.npy")
    assert np.array_equal(table, torch_model.causal_lm().get_input_embeddings().weight.detach().numpy())


def test_dynamic_frames_and_batch(exported, torch_model):
    import torch

    session = ort.InferenceSession(str(exported.directory / "vision.onnx"), providers=["CPUExecutionProvider"])
    per_frame = torch_model.config.tokens_per_frame  # 5 with frame_patch_pool 2: CLS + 2x2 pooled patches
    for shape in ((1, 1), (3, 6)):  # a still image; more frames than the model's N
        pixels = torch.randn(*shape, 3, 32, 32)
        with torch.no_grad():
            expected = torch_model.encode_clip(pixels)
        found = session.run(None, {"pixel_values": pixels.numpy()})
        assert found[0].shape == (shape[0], shape[1] * per_frame, 64)
        assert np.abs(found[0] - expected[0].numpy()).max() < 1e-5
        if expected[1] is not None:  # soft-argmax: 32 px / patch 8 -> 16 patches of the tower's 32 wide
            assert found[1].shape == (*shape, 16, 32) and np.abs(found[1] - expected[1].numpy()).max() < 1e-5


def test_projector_graph_matches_torch(exported, torch_model):
    """The trajectory graph on a batch of hidden states; a soft-argmax read-out's rows also read
    the nearest of any number T of frames (a still image: every row)."""
    import torch

    session = ort.InferenceSession(str(exported.directory / "projector.onnx"), providers=["CPUExecutionProvider"])
    hidden = torch.randn(3, 64)
    soft_argmax = torch_model.config.trajectory_readout == "soft_argmax"
    for frames in (1, 4, 7) if soft_argmax else (None,):
        patches = None if frames is None else torch.randn(3, frames, 16, 32)
        with torch.no_grad():
            expected = torch_model.project(hidden, patches)[1].numpy()
        feed = {"hidden": hidden.numpy(), **({} if patches is None else {"patch_tokens": patches.numpy()})}
        found = session.run(None, feed)[0]
        assert found.shape == (3, 4, 4, 2) and np.abs(found - expected).max() < 1e-5, frames


def test_check_parity_names_what_is_off(exported, torch_model, torch_processor):
    from pite_ros.engine.onnx_engine import OnnxEngine

    backend = OnnxEngine(exported.directory).backend
    report = check_parity(torch_model, torch_processor, backend,
                          Tolerances(visual=0.0, logits=0.0, traj=0.0, hidden=0.0, projector=0.0), count=1, decode_steps=1, max_new_tokens=2)
    assert not report["passed"]
    assert any(failure.startswith("logits: max abs diff") for failure in report["failures"])


def test_int8_variant_and_agreement(exported):
    directory, report = exported.variants["int8"], exported.agreement["int8"]
    assert directory == exported.directory / "int8"
    assert report["measured"] and 0.0 <= report["token_agreement"] <= 1.0 and report["tokens"] >= 2
    assert report["probes"] == 2 and np.isfinite(report["logits_max_abs_diff"])
    assert json.loads((directory / "agreement.json").read_text()) == report
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["variant"] == "int8" and manifest["agreement"] == report and "parity" not in manifest
    ops = {node.op_type for node in onnx.load(str(directory / "decoder.onnx")).graph.node}
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= ops
    assert (directory / "decoder.onnx").stat().st_size < (exported.directory / "decoder.onnx").stat().st_size
    # unchanged files are the fp32 ones
    assert sha256_file(directory / "embeddings.npy") == sha256_file(exported.directory / "embeddings.npy")


def test_fp16_variant_is_produced_and_loads(exported, caplog):
    from pite_ros.engine.onnx_engine import OnnxEngine

    directory, report = exported.variants["fp16"], exported.agreement["fp16"]
    graph = onnx.load(str(directory / "decoder.onnx")).graph
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16  # inputs_embeds
    assert graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT16  # logits
    assert json.loads((directory / "manifest.json").read_text())["reduction"]["keep_io_types"] is False
    engine = OnnxEngine(directory)
    assert engine.variant == "fp16" and engine.name == "memorised-fp16"
    assert "fp16 export on the CPU provider runs slowly" in caplog.text
    assert report["measured"] and report["token_agreement"] > 0.9  # this CPU build runs fp16 graphs


@pytest.fixture
def other_checkpoint(tmp_path, checkpoint):
    """The same tiny config and tokenizer with fresh random weights."""
    import torch

    from pite_ros.model import build_model, load_model_and_processor, save_model_and_processor

    model, processor = load_model_and_processor(checkpoint)
    torch.manual_seed(1)
    other = build_model(model.config, processor.tokenizer)
    save_model_and_processor(tmp_path / "other", other, processor)
    return tmp_path / "other"


def test_parity_failure_is_loud(monkeypatch, capsys, tmp_path, exported, other_checkpoint):
    """Graphs that do not belong to the checkpoint (those of another model, copied in place of
    an export): exit 1, a message naming the value and the report, and no manifest."""
    manifest = json.loads((exported.directory / "manifest.json").read_text())

    def copied(model, directory, opset):
        for spec in manifest["graphs"].values():
            shutil.copy(exported.directory / spec["file"], directory / spec["file"])
        return {name: GraphSpec(**spec) for name, spec in manifest["graphs"].items()}

    monkeypatch.setattr(export_module, "export_graphs", copied)
    out = tmp_path / "bad"
    assert export_main([str(other_checkpoint), str(out)]) == 1
    message = capsys.readouterr().err
    assert "do not match the torch model" in message and "logits: max abs diff" in message and "parity.json" in message
    assert not (out / "manifest.json").exists()
    assert json.loads((out / "parity.json").read_text())["passed"] is False


def test_cli_bad_checkpoint(capsys, tmp_path):
    assert export_main([str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert "cannot load the checkpoint" in message and "nowhere" in message and "does not exist" in message
    (tmp_path / "empty").mkdir()
    assert export_main([str(tmp_path / "empty"), str(tmp_path / "out")]) == 2
    assert "config.json: missing" in capsys.readouterr().err
