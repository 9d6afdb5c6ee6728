"""Writing a whole synthetic data set: every item, the six JSONL files and ``manifest.json``.

Layout under ``out``: ``videos/*.mp4``, ``images/*.png``, ``gt/*.npz|json``, the stage files
of ``records.STAGE_FILES`` and ``manifest.json`` (version, seed, split, config, counts).
Items are made in worker processes (``workers``) but records are written in item order, so
the output does not depend on the number of workers.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from functools import partial
from multiprocessing import get_context
from pathlib import Path

import cv2

from training.synth.records import IMAGE, SPLITS, VIDEO, image_item, stage_files, video_item
from training.synth.world import WorldConfig

SYNTH_VERSION = "1"


def _make(job: tuple[int, int], out: Path, split: str, seed: int, config: WorldConfig) -> dict[str, list[dict]]:
    kind, index = job
    cv2.setNumThreads(1)
    make = video_item if kind == VIDEO else image_item
    return make(out, split, seed, index, config)


def generate(
    out: str | Path,
    *,
    videos: int,
    images: int,
    split: str = "train",
    seed: int = 0,
    config: WorldConfig = WorldConfig(),
    workers: int = 1,
) -> dict:
    """Make ``videos`` clips and ``images`` stage-1 images under ``out``; return the manifest."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    out = Path(out)
    for folder in ("videos", "images", "gt"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    jobs = [(VIDEO, i) for i in range(videos)] + [(IMAGE, i) for i in range(images)]
    make = partial(_make, out=out, split=split, seed=seed, config=config)
    records: dict[str, list[dict]] = {name: [] for name in stage_files(config)}

    def collect(results) -> None:
        for result in results:
            for name, rows in result.items():
                records[name].extend(rows)

    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            collect(pool.imap(make, jobs, chunksize=4))
    else:
        collect(map(make, jobs))
    for name, rows in records.items():
        with (out / name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    manifest = {
        "version": SYNTH_VERSION,
        "seed": seed,
        "split": split,
        "config": asdict(config),
        "counts": {"videos": videos, "images": images, **{name: len(rows) for name, rows in records.items()}},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest
