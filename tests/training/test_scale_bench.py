"""pite-bench scale: the README's markers take the table (fast), and the benchmark measures
every figure (slow: `make bench`)."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from training.scale_bench import BEGIN, END, README, add_arguments, run_scale_bench, table, write_readme

FIGURES = {"videos": 4, "steps": 6, "cpus": 2, "load_before": [1.5, 1, 1], "load_after": [2.5, 1, 1],
           "annotate_pool_1": 10.0, "annotate_pool_2": 19.0, "train_1": 3.5, "train_2": 5.25}
BETWEEN = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.S)


def test_the_table_goes_between_the_readmes_markers_and_nowhere_else(tmp_path: Path) -> None:
    page = tmp_path / "README.md"
    page.write_text(README.read_text())
    write_readme(page, table(FIGURES))
    written = page.read_text()
    inside = written.split(BEGIN)[1].split(END)[0]
    assert "| 10.0 videos/min | 19.0 videos/min |" in inside and "| 3.5 steps/s | 5.25 steps/s |" in inside
    assert "Ray, local cluster (4 synthetic clips) | not run | not run |" in inside
    assert "load average 1.5 before, 2.5 after" in inside
    assert BETWEEN.sub("", written) == BETWEEN.sub("", README.read_text())
    page.write_text("no markers\n")
    with pytest.raises(SystemExit, match="no <!-- pite-bench scale --> ... <!-- /pite-bench scale --> markers"):
        write_readme(page, table(FIGURES))


@pytest.mark.slow
def test_the_benchmark_measures_every_figure(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    page = tmp_path / "README.md"
    page.write_text(README.read_text())
    figures = run_scale_bench(parser.parse_args(["--videos", "4", "--steps", "6", "--out", str(tmp_path / "work"),
                                                 "--readme", str(page)]))
    for key in ("annotate_pool_1", "annotate_pool_2", "annotate_ray_1", "annotate_ray_2", "train_1", "train_2"):
        assert figures[key] > 0, key
    assert "not run" not in page.read_text().split(BEGIN)[1]
