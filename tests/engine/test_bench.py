"""pite-bench engine: the comparison arithmetic, the docs writer, the Hugging Face peer, the CLI's checks,
and (slow) a real run on the tiny model."""

from __future__ import annotations

import json

import pytest

from pite_ros.engine.bench_docs import write_docs
from pite_ros.engine.bench_peers import HfGenerateRunner
from pite_ros.engine.onnx_bench import GOALS, BenchSettings, compare, format_report, goals_for, run_benchmark
from pite_ros.model.generation import generate
from pite_ros.model.torch_generation import TorchBackend
from pite_ros.tools.bench import main as bench_main


def engine(e2e: float, tokens: list[list[int]], rss: float = 500.0) -> dict:
    return {"path": "x", "load_s": 0.1, "frames": 4, "vision_ms": e2e / 10, "prefill_ms": e2e / 5,
            "decode_ms_per_token": e2e / 20, "e2e_ms": e2e, "arrival_resize_ms_per_frame": 0.25, "tokens_per_answer": 2.0, "rss_peak_mb": rss,
            "rss_model_mb": rss - 400, "token_ids": tokens}


def test_compare_ratios_agreement_and_goals():
    measured = {"torch": engine(300.0, [[1, 2, 3], [4]], rss=800.0), "torch-compile": engine(200.0, [[1, 2, 3], [4]]),
                "onnx-fp32": engine(100.0, [[1, 2, 3], [4]]), "onnx-int8": engine(250.0, [[1, 5], [4]])}
    measured["torch-compile"]["vision_ms"] = 5.0  # the best torch setting's vision beats int8's (25 ms)
    export = {"int8_agreement": {"measured": True, "token_agreement": 0.96, "tokens": 50, "logits_max_abs_diff": 0.2}}
    comparison = compare(measured, export)
    assert comparison["onnx-fp32"]["e2e_ms_speedup"] == pytest.approx(3.0)
    assert comparison["onnx-fp32"]["decode_ms_per_token_speedup"] == pytest.approx(3.0)
    assert comparison["onnx-fp32"]["e2e_ms_vs_best_torch"] == pytest.approx(2.0)
    assert comparison["onnx-fp32"]["vision_ms_vs_best_torch"] == pytest.approx(0.5)
    assert comparison["onnx-fp32"]["rss_peak_ratio"] == pytest.approx(500 / 800)
    assert comparison["onnx-fp32"]["answers_identical"] == "2/2"
    assert comparison["onnx-fp32"]["token_agreement_positionwise"] == 1.0
    # int8: answer 1 agrees on 1 of 3 positions (the longer answer counts), answer 2 on 1 of 1
    assert comparison["onnx-int8"]["answers_identical"] == "1/2"
    assert comparison["onnx-int8"]["token_agreement_positionwise"] == pytest.approx(2 / 4)
    goals = comparison["goals"]
    for part in ("vision_ms", "prefill_ms", "decode_ms_per_token", "e2e_ms"):
        assert goals[f"onnx_fp32_{part}_speedup"] == {"value": pytest.approx(3.0), "goal": 1.5, "met": True}
    assert goals["onnx_int8_e2e_ms_speedup"] == {"value": pytest.approx(1.2), "goal": 4.0, "met": False}
    assert goals["onnx_fp32_vs_best_torch"] == {"value": pytest.approx(0.5), "goal": 1.0, "met": False}  # vision
    assert goals["onnx_int8_vs_best_torch"]["value"] == pytest.approx(0.2)
    assert goals["int8_token_agreement"]["met"] is True
    # The goals a run is held to: the 4x answer goal is bench-400m's, the agreement goal trained weights'.
    assert set(GOALS) - set(goals_for(None, random_weights=False)) == {"onnx_int8_e2e_ms_speedup"}
    assert set(GOALS) - set(goals_for("bench-400m", random_weights=True)) == {"int8_token_agreement"}
    assert set(GOALS) - set(goals_for("tiny", random_weights=True)) == {"onnx_int8_e2e_ms_speedup", "int8_token_agreement"}
    assert set(compare(measured, export, goals_for("bench-400m", True))["goals"]) == set(goals) - {"int8_token_agreement"}
    table = format_report(report(measured, comparison, export))
    assert "onnx-int8" in table and "3.00x" in table and "goal onnx_int8_e2e_ms_speedup >= 4.0: 1.20 -> NOT met" in table
    assert "96.0% over 50 tokens" in table and "vs best torch" in table
    assert "320x240 camera frames resized to the model's input as they arrived (the node's buffer does it: 0.25 ms" in table


def report(measured: dict, comparison: dict, export: dict) -> dict:
    return {"model": {"source": "preset tiny", "parameters": 2e5, "checkpoint": "c"},
            "settings": {"threads": 2, "rounds": 2, "repeats": 3, "clips": 3, "frame_size": [240, 320]},
            "machine": {"cpu": "cpu", "cores": 2, "load_average_1min": 1.0, "load_average_1min_end": 1.5,
                        "torch": "t", "onnxruntime": "o"},
            "export": {"reused": False, "directory": "d", "parity": {"passed": True}, **export},
            "engines": measured, "comparison": comparison}


def test_docs_blocks_are_rewritten_with_the_run(tmp_path):
    measured = {"torch": engine(300.0, [[1]]), "onnx-fp32": engine(100.0, [[1]])}
    measured["onnx-fp32"]["load_average"] = [0.5, 0.75]
    export = {"int8_agreement": {"measured": False}}
    run = report(measured, compare(measured, export), export)
    page, other, missing = tmp_path / "page.md", tmp_path / "other.md", tmp_path / "missing.md"
    page.write_text("before\n<!-- pite-bench engine: tiny -->\nold figures\n<!-- /pite-bench engine: tiny -->\nafter\n")
    other.write_text("<!-- pite-bench engine: bench-400m -->\nkept\n<!-- /pite-bench engine: bench-400m -->\n")
    assert write_docs(run, "tiny", [page, other, missing]) == [other, missing]
    text = page.read_text()
    assert text.startswith("before\n<!-- pite-bench engine: tiny -->\n| engine |") and text.endswith("tiny -->\nafter\n")
    assert "old figures" not in text and "| onnx-fp32 | 10.0 | 20.0 | 5.00 | 100.0 | 3.00× / 3.00× / 3.00× / 3.00× | 3.00× / 3.00× / 3.00× / 3.00× |" in text
    assert "320x240 camera frames resized" in text and "0.25 ms a frame, not in the answer times). Goals met" in text
    assert "0.5-0.8 |" in text and "Goals met: 5 of 6; not met: int8_token_agreement nan." in text
    assert "kept" in other.read_text()


def test_hf_generate_peer_answers_as_the_greedy_loop(torch_model, torch_processor, memorised_example):
    from pite_ros.engine.onnx_parity import Probe

    clip = Probe(memorised_example.frames, memorised_example.prompt, 6.0)
    runner = HfGenerateRunner(torch_model, torch_processor)
    ids = runner.answer(clip, 24)
    expected = generate(TorchBackend(torch_model, torch_processor), [clip.frames], [clip.question], [6.0], max_new_tokens=24,
                        phrase_fn=lambda text: [])[0]
    assert ids == expected.token_ids and expected.text == memorised_example.response
    assert len(runner.times["encode"]) == len(runner.times["prefill"]) == 1
    assert len(runner.times["decode"]) == len(ids) and min(runner.times["decode"]) > 0  # the last one: the end token


def test_cli_checks_its_options(capsys, tmp_path):
    assert bench_main(["engine", "--engines", "torch,tensorflow"]) == 2
    assert "--engines must be a subset" in capsys.readouterr().err
    missing = ["engine", "--model", str(tmp_path / "missing"), "--engines", "torch", "--work-dir", str(tmp_path)]
    assert bench_main(missing) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_main(["engine", "--model", "a", "--preset", "tiny"])  # one or the other
    assert bench_main(["node", "--model", str(tmp_path / "no_model"), "--engines", "onnx"]) == 2
    assert "no_model: neither a preset" in capsys.readouterr().err


def test_torch_compile_without_a_compiler_is_named(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no C++ compiler on it
    assert bench_main(["engine", "--preset", "tiny", "--engines", "torch-compile", "--work-dir", str(tmp_path)]) == 2
    assert "needs a C++ compiler" in capsys.readouterr().err


@pytest.mark.slow
def test_engine_bench_on_the_tiny_model(tmp_path, checkpoint):
    kinds = ("torch", "hf-generate", "onnx-fp32", "onnx-int8")  # torch.compile's compiling takes minutes
    report = run_benchmark(checkpoint, tmp_path / "onnx", "memorised tiny", BenchSettings(repeats=1, clips=2, rounds=1),
                           kinds)
    engines = report["engines"]
    assert set(engines) == set(kinds)
    for values in engines.values():
        assert values["frames"] == 4 and values["e2e_ms"] > values["decode_ms_per_token"] > 0
        assert values["rss_peak_mb"] > 100 and values["arrival_resize_ms_per_frame"] > 0
    assert report["comparison"]["onnx-fp32"]["answers_identical"] == "2/2"
    assert report["export"]["parity"]["passed"] and not report["export"]["reused"]
    settings = BenchSettings(repeats=1, clips=1, rounds=2)
    again = run_benchmark(checkpoint, tmp_path / "onnx", "memorised tiny", settings, ("onnx-fp32",))
    assert again["export"]["reused"] and len(again["engines"]["onnx-fp32"]["e2e_ms_rounds"]) == 2 and json.dumps(again)
