"""``pite-bench scale``: how the offline pipeline scales out on this machine.

- Annotation: videos per minute of ``pite-annotate run`` (ground-truth masks, Farneback flow,
  rule-based phrases: the pipeline's own cost, no model) over ``--videos`` synthetic clips,
  with 1 and 2 workers, in the local process pool and on a local Ray cluster; the wall time of
  the whole run, Ray's start included (what a user waits for).
- Training: optimiser steps per second of ``pite-train`` stage 1 (the ``tiny`` preset, global
  batch 4, synthetic clips) in 1 and 2 CPU processes (``torchrun``, gloo, one thread each),
  over the steps after the first two (start-up and the first allreduce left out), from the
  run's metrics log.

The machine's load average is printed beside the figures (they move with it); ``--readme``
writes the table between the ``<!-- pite-bench scale -->`` markers of the README.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from pite_ros.tools.marked_block import replace_block
from training.annotate.pipeline import AnnotateConfig
from training.annotate.runner import run as annotate
from training.annotate.tracking import TrackerConfig
from training.synth import generate
from training.trainer.metrics_log import MetricsLog

BEGIN, END = "<!-- pite-bench scale -->", "<!-- /pite-bench scale -->"
README = Path(__file__).resolve().parents[1] / "README.md"
WARM_UP_STEPS = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--videos", type=int, default=24, help="synthetic clips annotated per run (default %(default)s)")
    parser.add_argument("--steps", type=int, default=40, help="training steps per run (default %(default)s)")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray runs")
    parser.add_argument("--out", type=Path, default=Path("build/scale-bench"), help="clips and runs (default %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--readme", nargs="?", type=Path, const=README, default=None,
                        help="write the table into this README between its markers (default: the repository's)")


def annotation_rate(data: Path, out: Path, workers: int, use_ray: bool) -> float:
    """Videos per minute of one annotation run from scratch."""
    shutil.rmtree(out, ignore_errors=True)
    config = AnnotateConfig(segmenter="gt", phrase_backend="rules", tracker=TrackerConfig(method="farneback"))
    summary = annotate(data / "stage2.jsonl", out, config, workers=workers, use_ray=use_ray, progress=False)
    if summary.records != summary.videos:
        raise RuntimeError(f"annotation left {summary.videos - summary.records} of {summary.videos} videos: {out}")
    return summary.done_now / (summary.wall_seconds / 60)


def training_rate(root: Path, processes: int, steps: int) -> float:
    """Steps per second of one stage-1 run in ``processes`` CPU processes (module docstring)."""
    out = root / f"train-{processes}"
    shutil.rmtree(out, ignore_errors=True)
    config = root / f"train-{processes}.yaml"
    config.write_text(yaml.safe_dump({
        "stage": 1, "model": "tiny", "vocabulary": "synth", "output_dir": out.name, "max_steps": steps,
        "data": [{"format": "localized_narratives", "path": "data/stage1.jsonl"}], "batch_size": 4,
        "save_every": 10 * steps, "learning_rate": 3e-3, "mixed_precision": "no"}))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "-m", "training.train", "--stage", "1", "--config", str(config), "--no-progress"]
    done = subprocess.run(command, cwd=root, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True)
    if done.returncode:
        raise RuntimeError(f"pite-train in {processes} processes exited {done.returncode}:\n{done.stdout[-2000:]}"
                           f"{done.stderr[-2000:]}")
    logs = sorted(out.rglob("metrics.jsonl"))
    if not logs:
        raise RuntimeError(f"pite-train wrote no metrics.jsonl under {out}")
    rows = MetricsLog.read(logs[0])[WARM_UP_STEPS:]
    return len(rows) / sum(row["seconds"] for row in rows)


def measure(args: argparse.Namespace) -> dict:
    """Every figure of the module docstring, with the load average before and after."""
    root = args.out.resolve()
    shutil.rmtree(root / "data", ignore_errors=True)
    generate(root / "data", videos=args.videos, images=16, split="train", seed=5)
    figures: dict = {"videos": args.videos, "steps": args.steps, "cpus": os.cpu_count(),
                     "load_before": [round(x, 2) for x in os.getloadavg()]}
    for use_ray in (False,) if args.no_ray else (False, True):
        backend = "ray" if use_ray else "pool"
        for workers in (1, 2):
            rate = annotation_rate(root / "data", root / f"annotate-{backend}-{workers}", workers, use_ray)
            figures[f"annotate_{backend}_{workers}"] = round(rate, 1)
            print(f"annotation, {backend}, {workers} worker(s): {rate:.1f} videos/min", flush=True)
    for processes in (1, 2):
        rate = training_rate(root, processes, args.steps)
        figures[f"train_{processes}"] = round(rate, 2)
        print(f"training, {processes} process(es): {rate:.2f} steps/s", flush=True)
    figures["load_after"] = [round(x, 2) for x in os.getloadavg()]
    return figures


def table(figures: dict) -> str:
    """The figures as a Markdown table with the machine's load under it."""
    def cell(key: str, unit: str) -> str:
        return f"{figures[key]} {unit}" if key in figures else "not run"

    lines = ["| scale-out on this CPU | 1 worker / process | 2 workers / processes |", "|---|---|---|"]
    for backend, name in (("pool", "local processes"), ("ray", "Ray, local cluster")):
        lines.append(f"| `pite-annotate run`, {name} ({figures['videos']} synthetic clips) | "
                     f"{cell(f'annotate_{backend}_1', 'videos/min')} | {cell(f'annotate_{backend}_2', 'videos/min')} |")
    lines.append(f"| `pite-train` stage 1, tiny model, gloo | {cell('train_1', 'steps/s')} | "
                 f"{cell('train_2', 'steps/s')} |")
    lines += ["", f"Measured by `pite-bench scale` on {figures['cpus']} CPU cores shared with other work (load "
                  f"average {figures['load_before'][0]} before, {figures['load_after'][0]} after): the figures move with "
                  f"the load. The tiny model's training step is too small for a second process to pay for its "
                  f"all-reduce on a CPU. GPU figures: not measured (no GPU here)."]
    return "\n".join(lines)


def write_readme(path: Path, text: str) -> None:
    """Replace what lies between the markers of ``path`` with ``text``."""
    written = replace_block(path.read_text(encoding="utf-8"), BEGIN, END, text)
    if written is None:
        raise SystemExit(f"{path}: no {BEGIN} ... {END} markers to write the figures between")
    path.write_text(written, encoding="utf-8")


def run_scale_bench(args: argparse.Namespace) -> dict:
    """Measure, print the table, and write it where asked."""
    figures = measure(args)
    text = table(figures)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    if args.readme:
        write_readme(args.readme, text)
        print(f"wrote the table into {args.readme}")
    return figures
