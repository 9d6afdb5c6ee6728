"""Benchmark (slow): pite-synth's speed in clips per minute with two worker processes."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from training.synth import generate


@pytest.mark.slow
def test_synth_makes_hundreds_of_clips_a_minute(tmp_path: Path) -> None:
    clips = 200
    began = time.perf_counter()
    generate(tmp_path, videos=clips, images=clips, workers=2)
    rate = 60.0 * clips / (time.perf_counter() - began)
    print(f"\npite-synth: {rate:.0f} clips/minute (128x128, 4-8 s at 8 fps, with as many stage-1 images, 2 workers)")
    assert rate >= 300
