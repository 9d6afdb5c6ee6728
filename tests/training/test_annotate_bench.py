"""The benchmark (slow: `make bench`): synthetic figures above the bounds the README reports against."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from training.annotate.bench import add_arguments, run_bench


@pytest.mark.slow
def test_bench_figures(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--videos", "12", "--workers", "2", "--out", str(tmp_path), "--real-clip", "0", "5"])
    figures = run_bench(args)
    assert figures["gt_recall"] == 1.0 and figures["classical_recall"] > 0.95
    assert figures["gt_error_mean"] < 1.5 and figures["classical_error_mean"] < 2.0
    assert figures["classical_mask_iou"] > 0.9
    if Path(args.real).is_file():
        assert (tmp_path / "vtest_overlay.png").is_file()
