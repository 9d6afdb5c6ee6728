"""pite-bench engine: the comparison arithmetic, the CLI's checks, and (slow) a real run on the tiny model."""

from __future__ import annotations

import json

import pytest

from pite_ros.engine.onnx_bench import BenchSettings, compare, format_report, run_benchmark
from pite_ros.tools.bench import main as bench_main


def engine(e2e: float, tokens: list[list[int]], rss: float = 500.0) -> dict:
    return {"path": "x", "load_s": 0.1, "frames": 4, "vision_ms": e2e / 10, "prefill_ms": e2e / 5,
            "decode_ms_per_token": e2e / 20, "e2e_ms": e2e, "tokens_per_answer": 2.0, "rss_peak_mb": rss,
            "rss_model_mb": rss - 400, "token_ids": tokens}


def test_compare_ratios_agreement_and_goals():
    measured = {"torch": engine(300.0, [[1, 2, 3], [4]], rss=800.0), "onnx-fp32": engine(100.0, [[1, 2, 3], [4]]),
                "onnx-int8": engine(150.0, [[1, 5], [4]])}
    export = {"int8_agreement": {"measured": True, "token_agreement": 0.96, "tokens": 50, "logits_max_abs_diff": 0.2}}
    comparison = compare(measured, export)
    assert comparison["onnx-fp32"]["e2e_ms_speedup"] == pytest.approx(3.0)
    assert comparison["onnx-fp32"]["decode_ms_per_token_speedup"] == pytest.approx(3.0)
    assert comparison["onnx-fp32"]["rss_peak_ratio"] == pytest.approx(500 / 800)
    assert comparison["onnx-fp32"]["answers_identical"] == "2/2"
    assert comparison["onnx-fp32"]["token_agreement_positionwise"] == 1.0
    # int8: answer 1 agrees on 1 of 3 positions (the longer answer counts), answer 2 on 1 of 1
    assert comparison["onnx-int8"]["answers_identical"] == "1/2"
    assert comparison["onnx-int8"]["token_agreement_positionwise"] == pytest.approx(2 / 4)
    goals = comparison["goals"]
    assert goals["onnx_fp32_e2e_speedup"] == {"value": pytest.approx(3.0), "goal": 1.5, "met": True}
    assert goals["onnx_int8_e2e_speedup"] == {"value": pytest.approx(2.0), "goal": 2.5, "met": False}
    assert goals["int8_token_agreement"]["met"] is True
    report = {"model": {"source": "preset tiny", "parameters": 2e5, "checkpoint": "c"}, "settings": {"threads": 2},
              "machine": {"cpu": "cpu", "cores": 2, "load_average_1min": 1.0, "load_average_1min_end": 1.5,
                          "torch": "t", "onnxruntime": "o"},
              "export": {"reused": False, "directory": "d", "parity": {"passed": True}, **export},
              "engines": measured, "comparison": comparison}
    table = format_report(report)
    assert "onnx-int8" in table and "3.00x" in table and "goal onnx_int8_e2e_speedup >= 2.5: 2.00 -> NOT met" in table
    assert "96.0% over 50 tokens" in table


def test_cli_checks_its_options(capsys, tmp_path):
    assert bench_main(["engine", "--engines", "torch,tensorflow"]) == 2
    assert "--engines must be a subset" in capsys.readouterr().err
    missing = ["engine", "--model", str(tmp_path / "missing"), "--engines", "torch", "--work-dir", str(tmp_path)]
    assert bench_main(missing) == 2
    assert "missing" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_main(["engine", "--model", "a", "--preset", "tiny"])  # one or the other


@pytest.mark.slow
def test_engine_bench_on_the_tiny_model(tmp_path, checkpoint):
    report = run_benchmark(checkpoint, tmp_path / "onnx", "memorised tiny", BenchSettings(repeats=1, clips=2, rounds=1))
    engines = report["engines"]
    assert set(engines) == {"torch", "onnx-fp32", "onnx-int8"}
    for values in engines.values():
        assert values["frames"] == 4 and values["e2e_ms"] > values["decode_ms_per_token"] > 0
        assert values["rss_peak_mb"] > 100
    assert report["comparison"]["onnx-fp32"]["answers_identical"] == "2/2"
    assert report["export"]["parity"]["passed"] and not report["export"]["reused"]
    settings = BenchSettings(repeats=1, clips=1, rounds=2)
    again = run_benchmark(checkpoint, tmp_path / "onnx", "memorised tiny", settings, ("onnx-fp32",))
    assert again["export"]["reused"] and len(again["engines"]["onnx-fp32"]["e2e_ms_rounds"]) == 2 and json.dumps(again)
