"""``pite-annotate bench``: how good and how fast the annotation pipeline is.

On synthetic clips (``training.synth``, exact ground truth):
- phrase recall: caption phrases that get a trajectory / objects the caption names;
- mask IoU of the classical back-end against the true visible masks (frames where either
  is non-empty);
- trajectory error (pixels) with ground-truth masks (tracking alone) and end to end
  (classical masks). Objects only translate, so a point's true position at frame k is its
  position at the reference frame (where the object's mask is largest) moved by the
  object's centre displacement; the error is averaged over points visible in both the
  record and the ground truth. A re-seeded point counts with its jump.
- throughput: videos per minute and frames per second of each stage with ``--workers``.
On a real video (``--real``, default Debian opencv-doc's vtest.avi, skipped with a message
when absent): the classical motion back-end on "people walking" and a PNG strip to look at.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from pite_ros.video import nearest_frame_indices, read_frames, uniform_frame_times
from training.annotate.overlay import draw_strip
from training.annotate.pipeline import AnnotateConfig
from training.annotate.runner import Summary, run
from training.annotate.segmenters.classical import ClassicalSegmenter
from training.annotate.segmenters.groundtruth import match_object
from training.synth import WorldConfig, generate, load_ground_truth

REAL_VIDEO = "/usr/share/doc/opencv-doc/examples/data/vtest.avi"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=int, default=12, help="synthetic clips")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--real", default=REAL_VIDEO, help="a real video for the motion back-end (skipped if absent)")
    parser.add_argument("--real-clip", type=float, nargs=2, default=(0.0, 20.0), metavar=("START", "END"))
    parser.add_argument("--out", default="build/annotate-bench",
                        help="folder for the bench's clips, outputs and the real video's overlay PNG")


def trajectory_errors(record: dict, truth_dir: Path) -> list[float]:
    """Pixel errors of every visible point of a record against the synthetic ground truth (module docstring)."""
    truth = load_ground_truth(truth_dir / record["id"])
    times = uniform_frame_times(record["clip"][0], record["clip"][1], record["num_frames"])
    frames = nearest_frame_indices(times, truth.fps, len(truth.times))
    errors: list[float] = []
    for phrase in record["phrases"]:
        index = match_object(truth.objects, phrase["text"])
        if index is None:
            continue
        points = np.asarray(phrase["trajectory"]) * [truth.width, truth.height] - 0.5
        visible = np.asarray(phrase["visibility"], dtype=bool) & truth.visible[index, frames][:, None]
        centres = truth.centres[index, frames]
        reference = int(np.argmax(truth.masks[index, frames].sum(axis=(1, 2))))
        expected = centres[:, None, :] + (points[reference] - centres[reference])[None]
        errors += np.linalg.norm(points - expected, axis=2)[visible].tolist()
    return errors


def mask_iou(data: Path, names: list[str]) -> float:
    """Mean IoU of classical masks vs true visible masks over every (object, frame) where either is non-empty."""
    segmenter = ClassicalSegmenter()
    ious = []
    for name in names:
        truth = load_ground_truth(data / "gt" / name)
        frames = read_frames(data / "videos" / f"{name}.mp4", truth.times)
        for index, facts in enumerate(truth.objects):
            found = segmenter.segment(frames, facts["phrase"])
            found = np.zeros_like(truth.masks[index]) if found is None else found
            union = (found | truth.masks[index]).sum(axis=(1, 2))
            inter = (found & truth.masks[index]).sum(axis=(1, 2))
            ious += (inter[union > 0] / union[union > 0]).tolist()
    return float(np.mean(ious)) if ious else float("nan")


def _annotate(data: Path, out: Path, segmenter: str, workers: int) -> tuple[Summary, list[dict]]:
    config = AnnotateConfig(segmenter=segmenter, num_frames=8, num_points=8)
    summary = run(data / "stage2.jsonl", out, config, workers=workers, progress=False)
    lines = (out / "annotations.jsonl").read_text(encoding="utf-8").splitlines()
    return summary, [json.loads(line) for line in lines]


def run_bench(args: argparse.Namespace) -> dict[str, float]:
    """Print the figures (module docstring) and return the synthetic ones by name."""
    root = Path(args.out)
    for previous in ("synth", "out-gt", "out-classical", "out-real"):  # measure from scratch, skip nothing
        shutil.rmtree(root / previous, ignore_errors=True)
    figures: dict[str, float] = {}
    data = root / "synth"
    began = time.perf_counter()
    generate(data, videos=args.videos, images=0, split="eval", seed=args.seed, config=WorldConfig())
    print(f"synthetic: {args.videos} clips of {WorldConfig().width}x{WorldConfig().height} "
          f"in {time.perf_counter() - began:.1f} s")
    named = sum(len(json.loads(line)["phrases"]) for line in (data / "stage2.jsonl").read_text().splitlines())
    names = [json.loads(line)["id"] for line in (data / "stage2.jsonl").read_text().splitlines()]
    for segmenter in ("gt", "classical"):
        summary, records = _annotate(data, root / f"out-{segmenter}", segmenter, args.workers)
        found = sum(len({tuple(p["span"]) for p in r["phrases"]}) for r in records)
        errors = np.array([e for r in records for e in trajectory_errors(r, data / "gt")])
        figures[f"{segmenter}_recall"] = found / max(named, 1)
        figures[f"{segmenter}_error_mean"] = float(errors.mean())
        figures[f"{segmenter}_videos_per_minute"] = summary.done_now / (summary.wall_seconds / 60)
        print(f"[{segmenter}] phrase recall {found}/{named} = {found / max(named, 1):.3f}; "
              f"trajectory error mean {errors.mean():.2f} px, median {np.median(errors):.2f} px, "
              f"p90 {np.percentile(errors, 90):.2f} px over {len(errors)} visible points")
        print("\n".join(f"  {line}" for line in summary.lines()))
    figures["classical_mask_iou"] = mask_iou(data, names)
    print(f"[classical] mask IoU {figures['classical_mask_iou']:.3f} (mean over object-frames)")
    real = Path(args.real)
    if not real.is_file():
        print(f"[real] skipped: {real} not found (apt-get install opencv-doc)")
        return figures
    task = root / "real.jsonl"
    task.write_text(json.dumps({"id": "vtest", "video": str(real), "clip": list(args.real_clip),
                                "caption": "people walking"}) + "\n")
    out = root / "out-real"
    summary = run(task, out, AnnotateConfig(num_points=16), workers=1, progress=False)
    print("[real] " + "\n  ".join(summary.lines()))
    record_file = out / "records" / "vtest.json"
    if record_file.is_file():
        strip = draw_strip(json.loads(record_file.read_text()), root / "vtest_overlay.png")
        print(f"[real] overlay {strip} (look at it: points should sit on walking people)")
    return figures
