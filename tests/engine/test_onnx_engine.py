"""OnnxEngine: the same answers as the torch engine, KV cache, manifest checks, providers, threads."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from pite_ros.engine.base import EngineError
from pite_ros.engine.loader import load_engine
from pite_ros.engine.onnx_engine import OnnxEngine
from pite_ros.engine.onnx_parity import decoder_parity, probes
from pite_ros.engine.onnx_providers import CPU, CUDA, TENSORRT, resolve_providers, session_options
from pite_ros.engine.torch_engine import TorchEngine
from pite_ros.model import load_config
from pite_ros.model.generation import generate
from pite_ros.model.torch_generation import TorchBackend


@pytest.fixture(scope="module")
def engines(checkpoint, exported):
    return TorchEngine(checkpoint), OnnxEngine(exported.directory, providers=["cpu"], num_threads=1)


def red_circle(text: str) -> list[tuple[int, int]]:
    """A phrase_fn: every "a red circle" in the text."""
    spans, start = [], text.find("a red circle")
    while start >= 0:
        spans.append((start, start + 12))
        start = text.find("a red circle", start + 1)
    return spans


def clips(memorised_example):
    """The memorised clip, a still image of it, and two synthetic clips (other questions, durations)."""
    others = probes(load_config("tiny"), 2, seed=7)
    return [(memorised_example.frames, memorised_example.prompt, 6.0),
            (memorised_example.frames[:1], "describe the image.", 0.0),
            *[(probe.frames, probe.question, probe.duration) for probe in others]]


def test_answers_equal_the_torch_engine(engines, memorised_example):
    torch_engine, onnx_engine = engines
    assert onnx_engine.name == "memorised" and onnx_engine.num_frames == torch_engine.num_frames == 4
    phrases = 0
    for frames, question, duration in clips(memorised_example):
        expected, found = (engine.answer(frames, question, duration) for engine in engines)
        assert found.text == expected.text and found.token_ids == expected.token_ids
        assert found.segments == expected.segments and np.array_equal(found.frame_times, expected.frame_times)
        assert [(p.text, p.span) for p in found.phrases] == [(p.text, p.span) for p in expected.phrases]
        for ours, theirs in zip(found.phrases, expected.phrases):
            assert ours.trajectory.shape == (4, 4, 2) and ours.trajectory.dtype == np.float32
            assert np.allclose(ours.trajectory, theirs.trajectory, atol=1e-5)
            assert ours.score == pytest.approx(theirs.score, abs=1e-5)
        phrases += len(found.phrases)
    first = onnx_engine.answer(memorised_example.frames, memorised_example.prompt, 6.0)
    assert first.text == memorised_example.response  # the memorised answer
    assert "a red circle" in [p.text for p in first.phrases]
    assert [(s.start, s.end) for s in first.segments] == [pytest.approx((0.6, 1.2))]
    assert phrases >= 1


def test_batched_answers_and_phrase_fn(engines, memorised_example, torch_model, torch_processor):
    _, onnx_engine = engines
    batch = clips(memorised_example)[:3]
    arguments = [list(column) for column in zip(*batch)]
    expected = generate(TorchBackend(torch_model, torch_processor), *arguments, phrase_fn=red_circle, max_new_tokens=10)
    found = generate(onnx_engine.backend, *arguments, phrase_fn=red_circle, max_new_tokens=10)
    assert [r.token_ids for r in found] == [r.token_ids for r in expected]
    [phrase] = found[0].phrases
    span = memorised_example.trajectories[0]
    assert phrase.span == (span.start, span.end)
    assert np.allclose(phrase.trajectory, expected[0].phrases[0].trajectory, atol=1e-5)
    assert np.abs(phrase.trajectory - span.points).mean() < 0.1  # learnt, read back through the projector graph


@pytest.mark.parametrize("size", [1, 2])
def test_kv_cache_over_prefill_and_decode_steps(exported, torch_model, torch_processor, size):
    backend = OnnxEngine(exported.directory).backend
    batch = probes(torch_model.config, size, seed=3)
    if size == 2:  # prompts of different lengths: the shorter is left-padded
        batch[1] = type(batch[1])(batch[1].frames[:2], "what colour is the small blue square that moves?", 3.0)
    report = decoder_parity(torch_model, torch_processor, backend, batch, decode_steps=6)
    assert report["positions"] >= size * 6 + 10
    assert {"logits", "hidden"} <= set(report["max_abs_diff"])
    for name, diff in report["max_abs_diff"].items():
        assert diff < 1e-5, name


def test_streaming_and_cancel(engines, memorised_example):
    _, onnx_engine = engines
    seen = []

    def on_token(token_id: int, text: str) -> bool:
        seen.append(text)
        return len(seen) < 3

    result = onnx_engine.answer(memorised_example.frames, memorised_example.prompt, 6.0, on_token=on_token)
    assert seen == ["from", "from <30>", "from <30> to"] and result.text == "from <30> to"
    short = onnx_engine.answer(memorised_example.frames, memorised_example.prompt, 6.0, max_new_tokens=2)
    assert len(short.token_ids) == 2


def test_bad_frames_are_named(engines):
    _, onnx_engine = engines
    with pytest.raises(ValueError, match="uint8 RGB"):
        onnx_engine.answer(np.zeros((4, 8, 8), np.uint8), "describe the video.", 1.0)


def test_tampered_or_missing_files_are_refused(tmp_path, exported):
    copy = tmp_path / "copy"
    shutil.copytree(exported.directory, copy)
    data = bytearray((copy / "decoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (copy / "decoder.onnx").write_bytes(bytes(data))
    with pytest.raises(EngineError, match=r"decoder\.onnx: SHA-256 .* differs from manifest\.json"):
        OnnxEngine(copy)
    shutil.copy(exported.directory / "decoder.onnx", copy / "decoder.onnx")
    OnnxEngine(copy)  # restored: loads again
    (copy / "embeddings.npy").unlink()
    with pytest.raises(EngineError, match=r"embeddings\.npy: missing from the ONNX export"):
        load_engine("onnx", copy)
    (copy / "manifest.json").unlink()
    with pytest.raises(EngineError, match=r"manifest\.json: missing"):
        OnnxEngine(copy)
    (copy / "manifest.json").write_text("{not json")
    with pytest.raises(EngineError, match=r"manifest\.json: cannot read"):
        OnnxEngine(copy)


def test_int8_engine_answers(exported, memorised_example):
    engine = load_engine("onnx", exported.variants["int8"], num_threads=1)
    assert engine.name == "memorised-int8" and engine.variant == "int8"
    result = engine.answer(memorised_example.frames, memorised_example.prompt, 6.0, max_new_tokens=4)
    assert len(result.token_ids) == 4 and result.text.startswith("from")


def test_requested_cuda_falls_back_to_cpu_with_a_warning(caplog, exported):
    with caplog.at_level(logging.WARNING, logger="pite_ros.engine.onnx_providers"):
        engine = load_engine("onnx", exported.directory, providers="cuda")
    assert engine.providers == [CPU]
    assert engine.backend.decoder.get_providers() == [CPU] and engine.backend.device == "cpu"
    [record] = caplog.records
    assert "CUDAExecutionProvider not available" in record.getMessage()
    assert "using CPUExecutionProvider" in record.getMessage()


def test_provider_order_and_names(caplog):
    available = [CUDA, CPU, "AzureExecutionProvider"]
    with caplog.at_level(logging.WARNING):
        assert resolve_providers(["tensorrt", "cuda", "cpu"], available) == [CUDA, CPU]
    assert "TensorrtExecutionProvider not available" in caplog.text
    caplog.clear()
    assert resolve_providers(["cpu", "CUDAExecutionProvider"], available) == [CUDA, CPU]  # CPU always last
    assert resolve_providers(None, available) == [CUDA, CPU]  # never the Azure provider
    assert resolve_providers(None, [CPU, "AzureExecutionProvider"]) == [CPU] and not caplog.records  # defaults: silent
    assert resolve_providers(["trt"], [TENSORRT, CUDA, CPU]) == [TENSORRT, CPU]
    with pytest.raises(EngineError, match="unknown ONNX Runtime provider 'cdua'"):
        resolve_providers(["cdua"], available)


def test_thread_options():
    options = session_options(3, 2)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 2)
    assert (session_options().intra_op_num_threads, session_options().inter_op_num_threads) == (0, 0)
    for pool in ("intra", "inter"):  # idle threads sleep: a spinning one holds a core others need
        assert options.get_session_config_entry(f"session.{pool}_op.allow_spinning") == "0"
    with pytest.raises(EngineError, match="thread counts"):
        session_options(-1)


def test_closed_engine_refuses(exported, memorised_example):
    engine = OnnxEngine(exported.directory)
    engine.close()
    with pytest.raises(EngineError, match="closed"):
        engine.answer(memorised_example.frames, memorised_example.prompt, 6.0)
