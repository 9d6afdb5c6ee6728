"""``make default-model``: build the shipped default model from nothing, and its model card.

Steps (each skipped when its output is already complete, so an interrupted build resumes):

1. ``pite-synth`` training data (split train, seed 1) and a held-out evaluation set (split
   eval, seed 7: a seed and a random stream no training item uses) under ``work/data``.
2. ``pite-train`` stages 0 (the vision tower's pre-training, standing in for CLIP's), 1, 2, 3
   and two more passes of stage 3 at half the rate (stage 3 alone leaves the model
   underfitting; the third also reads 16 frames a clip instead of 8 and scores the
   trajectories' hidden points) with the YAML
   files beside this module's ``default/`` folder (``--resume``: a killed stage continues
   from its newest checkpoint).
3. The third stage-3 pass is copied to ``pite_ros/assets/default_model`` with the world it knows
   (``synth_world.json``, read by ``pite-demo``) and ``training.json`` (steps, times, data).
4. ``pite-eval`` on the held-out set writes ``eval.json``/``eval.txt`` beside the model.
5. ``--ablation``: stage 3 straight from stage 1 (no pixel-temporal alignment, the steps of
   stages 2 and 3), evaluated the same way, and so is the stage-3 model of the same budget
   (before the passes that continue it); their reports go beside the model as ``ablation_eval.json``
   and ``equal_budget_eval.json``.
6. ``README.md`` (the model card) is rendered from ``default/MODEL_CARD.template.md`` with
   the figures of steps 3-5.

Training and evaluation run with pinned CPU numerics (``training.recipes.numerics``), so the
seeds give the same weights run after run on a host, and are meant to across x86 hosts with
AVX2 (measured once not to: the card); ``training.json`` records the pins.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import shutil
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open

from pite_ros.engine.loader import DEFAULT_MODEL_DIR
from training.recipes.numerics import pinned_numerics
from training.synth import WorldConfig, generate

RECIPE_DIR = Path(__file__).resolve().parent / "default"
REPO = RECIPE_DIR.parents[2]
WORK_DIR = RECIPE_DIR / "work"  # the stage YAMLs' relative paths point here
TRAIN_DATA = {"split": "train", "seed": 1, "videos": 3000, "images": 10000}
EVAL_DATA = {"split": "eval", "seed": 7, "videos": 200, "images": 0}
# Stage-2 trajectories at 16 frames too (stage2_16f.jsonl): the third pass of stage 3 and
# the shipped model read 16 frames, and a trajectory resampled from 8 rows misses the knees
# of the piecewise-linear motion (0.012 of visible-point L1 on the held-out set).
WORLD = WorldConfig(extra_num_frames=(16,))
STAGES = (("stage0", 0), ("stage1", 1), ("stage2", 2), ("stage3", 3), ("stage3_continued", 3),
          ("stage3_third_pass", 3), ("visibility_head", 3))
VISIBILITY = STAGES[-1]  # fits the visibility head alone: --visibility-only runs it on the installed model
EQUAL_BUDGET = "stage3"  # the run whose steps since stage 1 the ablation's match
ABLATION = ("stage3_without_stage2", 3)
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "generation_config.json")


def log(message: str) -> None:
    print(f"[default-model] {message}", flush=True)


def make_data(folder: Path, spec: dict, workers: int) -> None:
    """Synthetic data of ``spec`` in ``WORLD`` in ``folder``, unless a manifest of the same is there."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        done = json.loads(manifest.read_text())
        counts = done.get("counts", {})
        made = {key: done.get(key, counts.get(key)) for key in spec}  # split/seed top level, counts below
        if made == spec and done.get("config") == json.loads(json.dumps(dataclasses.asdict(WORLD))):
            log(f"{folder}: present ({spec})")
            return
    if folder.exists():
        shutil.rmtree(folder)
    log(f"pite-synth {folder} {spec}")
    generate(folder, videos=spec["videos"], images=spec["images"], split=spec["split"], seed=spec["seed"],
             config=WORLD, workers=workers)


def step_environment() -> dict[str, str]:
    """This process's environment with the pinned numerics (``training.recipes.numerics``)."""
    return {**os.environ, **pinned_numerics()[0]}


def run_stage(name: str, stage: int, model: Path | None = None) -> dict:
    """``pite-train`` one stage (resuming; from ``model`` instead of its YAML's when given); its
    steps and seconds from ``metrics.jsonl``."""
    config = RECIPE_DIR / f"{name}.yaml"
    output = WORK_DIR / ("ablation_without_stage2" if name == ABLATION[0] else name)
    if not (output / "final" / "model.safetensors").is_file():
        log(f"pite-train --stage {stage} --config {config.relative_to(RECIPE_DIR.parents[1])}")
        subprocess.run([sys.executable, "-m", "training.train", "--stage", str(stage), "--config", str(config),
                        "--resume", "--no-progress", *(["--model", str(model)] if model else [])],
                       check=True, env=step_environment())
    rows = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines() if line.strip()]
    step_seconds = statistics.median(row["seconds"] for row in rows)
    return {"stage": stage, "config": config.name, "steps": rows[-1]["step"],
            "seconds": round(sum(row["seconds"] for row in rows), 1), "median_step_seconds": round(step_seconds, 3),
            "final_loss": round(rows[-1]["loss"], 4), "model": str((output / "final").relative_to(REPO))}


def install(final: Path, out: Path, summary: dict) -> None:
    """Copy the HF files of ``final`` to ``out`` with the world it knows and how it was made."""
    out.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (final / name).is_file():
            shutil.copy2(final / name, out / name)
    (out / "synth_world.json").write_text(json.dumps(dataclasses.asdict(WORLD), indent=2) + "\n")
    (out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")


def evaluate(model: Path, report: Path, threads: int) -> dict:
    """``pite-eval`` of ``model`` on the held-out set; the report's JSON. A report older than
    the weights it scores is stale (the model was retrained since) and is written again."""
    weights = model / "model.safetensors"
    if not report.is_file() or report.stat().st_mtime < weights.stat().st_mtime:
        log(f"pite-eval --model {model} --data {WORK_DIR / 'data' / 'eval'} --out {report}")
        subprocess.run([sys.executable, "-m", "training.evaluation.cli", "--model", str(model), "--data",
                        str(WORK_DIR / "data" / "eval"), "--batch-size", "16", "--threads", str(threads),
                        "--out", str(report), "--no-progress"], check=True, env=step_environment())
    return json.loads(report.read_text())


def metric(report: dict | None, task: str, name: str) -> str:
    """One figure of a report as the card prints it (``n/a`` when absent)."""
    if report is None:
        return "not run"
    value = report["tasks"].get(task, {}).get("metrics", {}).get(name)
    return "n/a" if value is None else f"{value:.1f}" if name not in ("L1", "L1_visible") else f"{value:.3f}"


CARD_ROWS = (
    ("multiple-choice VideoQA accuracy (%)", "mcq", "accuracy", ">= 90"),
    ("open-ended QA exact match (%)", "open_qa", "accuracy", ">= 80"),
    ("temporal grounding R@0.3 (%)", "grounding", "R@0.3", ""),
    ("temporal grounding R@0.5 (%)", "grounding", "R@0.5", ">= 70"),
    ("temporal grounding R@0.7 (%)", "grounding", "R@0.7", ""),
    ("temporal grounding mIoU", "grounding", "mIoU", ">= 60"),
    ("grounded QA Acc@GQA (%)", "gqa", "Acc@GQA", ""),
    ("grounded QA mIoP", "gqa", "mIoP", ""),
    ("dense captioning SODA_c", "dense_caption", "SODA_c", ""),
    ("dense captioning CIDEr", "dense_caption", "CIDEr", ""),
    ("dense captioning METEOR", "dense_caption", "METEOR", ""),
    ("trajectory L1, teacher-forced (normalised)", "trajectory_teacher_forced", "L1", "<= 0.05"),
    ("trajectory L1, teacher-forced, visible points", "trajectory_teacher_forced", "L1_visible", ""),
    ("trajectory PCK@0.05, teacher-forced (%)", "trajectory_teacher_forced", "PCK@0.05", ""),
    ("trajectory PCK@0.05, teacher-forced, visible points (%)", "trajectory_teacher_forced", "PCK@0.05_visible", ""),
    ("trajectory L1, own captions (normalised)", "trajectory_generated", "L1", "<= 0.05"),
    ("trajectory L1, own captions, visible points", "trajectory_generated", "L1_visible", ""),
    ("trajectory PCK@0.05, own captions (%)", "trajectory_generated", "PCK@0.05", ""),
    ("point visibility accuracy, teacher-forced (%)", "trajectory_teacher_forced", "visibility_accuracy", ""),
    ("hidden points called hidden, teacher-forced (%)", "trajectory_teacher_forced", "hidden_recall", ""),
    ("hidden points among all (%)", "trajectory_teacher_forced", "hidden_share", ""),
)


def kind_accuracy(report: dict | None, task: str, kind: str) -> str:
    """One question kind's accuracy as the card prints it (``n/a`` / ``not run`` when absent)."""
    if report is None:
        return "not run"
    figures = report["tasks"].get(task, {}).get("by_kind", {}).get(kind)
    return "n/a" if figures is None else f"{figures['accuracy']:.1f}"


def time_token_decoding(report: dict) -> str:
    """How the report's model wrote temporal tokens; reports older than the setting used the argmax."""
    return report.get("meta", {}).get("time_token_decoding") or "argmax"


COLUMN_TITLES = ("stages 0-1-2-3, stage 3 continued twice", "stages 0-1-2-3", "without stage 2")


def column_titles(main: dict, compared: tuple[dict | None, ...]) -> list[str]:
    """The compared columns' titles, each naming its temporal-token decoding where it is not the main run's."""
    return [title if report is None or time_token_decoding(report) == time_token_decoding(main)
            else f"{title} ({time_token_decoding(report)} temporal tokens)"
            for title, report in zip(COLUMN_TITLES[1:], compared)]


def table_header(leading: list[str], main_title: str, main: dict, compared: tuple[dict | None, ...]) -> list[str]:
    """A card table's title row and separator: ``leading`` cells, then one column per run."""
    cells = [*leading, main_title, *column_titles(main, compared)]
    return ["| " + " | ".join(cells) + " |", "|" + "---|" * len(cells)]


def kind_table(main: dict, compared: tuple[dict | None, ...]) -> str:
    """Open-ended and multiple-choice accuracy per question kind, all runs side by side."""
    rows = table_header(["question kind", "task", "n"], "default model", main, compared)
    for task, label in (("open_qa", "open QA"), ("mcq", "multiple choice")):
        for kind, figures in main["tasks"].get(task, {}).get("by_kind", {}).items():
            cells = " | ".join(kind_accuracy(report, task, kind) for report in (main, *compared))
            rows.append(f"| {kind} | {label} | {figures['count']} | {cells} |")
    return "\n".join(rows)


def render_card(out: Path, summary: dict, main: dict, equal_budget: dict | None, ablation: dict | None) -> None:
    """``out/README.md`` from the template, with the tables of this build's figures: the shipped
    model, then the ablation's pair at one budget (stage 3 with and without stage 2 before it)."""
    compared = (equal_budget, ablation)
    rows = table_header(["metric", "goal"], f"default model ({COLUMN_TITLES[0]})", main, compared)
    rows += [f"| {label} | {goal} | " + " | ".join(metric(report, task, name) for report in (main, *compared)) + " |"
             for label, task, name, goal in CARD_ROWS]
    stages = ["| run | stage | steps | median s/step | train seconds (summed) | final loss |", "|---|---|---|---|---|---|"]
    stages += [f"| {run['config']} | {run['stage']} | {run['steps']} | {run['median_step_seconds']:.2f} | "
               f"{run['seconds']:.0f} | {run['final_loss']} |" for run in summary["stages"] + summary.get("ablation", [])]
    counts = {task: entry["count"] for task, entry in main["tasks"].items()}
    values = {
        "EVAL_TABLE": "\n".join(rows), "STAGE_TABLE": "\n".join(stages), "KIND_TABLE": kind_table(main, compared),
        "PARAMETERS": f"{summary['parameters']:,}", "SIZE_MB": f"{summary['size_mb']:.1f}",
        "TRAIN_DATA": json.dumps(TRAIN_DATA), "EVAL_DATA": json.dumps(EVAL_DATA),
        "EVAL_COUNTS": ", ".join(f"{task} {count}" for task, count in counts.items()),
        "TRAIN_MINUTES": f"{sum(run['steps'] * run['median_step_seconds'] for run in summary['stages']) / 60:.0f}",
        "SUMMED_MINUTES": f"{sum(run['seconds'] for run in summary['stages']) / 60:.0f}",
    }
    text = (RECIPE_DIR / "MODEL_CARD.template.md").read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    (out / "README.md").write_text(text)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m training.recipes.default_model", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_MODEL_DIR, help="where the model and its card go")
    parser.add_argument("--ablation", action="store_true", help="also train and evaluate the run without stage 2")
    parser.add_argument("--workers", type=int, default=2, help="pite-synth processes")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads of pite-eval")
    parser.add_argument("--visibility-only", action="store_true",
                        help="fit the visibility head on the model installed at --out (its other weights kept), "
                             "evaluate it and render the card again")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.perf_counter()
    numerics, unpinned = pinned_numerics()
    if unpinned:
        log(f"warning: {unpinned}")
    make_data(WORK_DIR / "data" / "train", TRAIN_DATA, args.workers)
    make_data(WORK_DIR / "data" / "eval", EVAL_DATA, args.workers)
    if args.visibility_only:  # the installed model's stages as recorded, then the head on its weights
        recorded = json.loads((args.out / "training.json").read_text())
        stages = [run for run in recorded["stages"] if run["config"] != f"{VISIBILITY[0]}.yaml"]
        stages.append(run_stage(*VISIBILITY, model=args.out))
    else:
        stages = [run_stage(name, stage) for name, stage in STAGES]
    final = REPO / stages[-1]["model"]
    weights = final / "model.safetensors"
    with safe_open(str(weights), "pt") as tensors:
        parameters = sum(math.prod(tensors.get_slice(key).get_shape()) for key in tensors.keys())
    summary = {"train_data": TRAIN_DATA, "eval_data": EVAL_DATA, "world": dataclasses.asdict(WORLD),
               "numerics": numerics or {"unpinned": unpinned}, "stages": stages, "parameters": parameters,
               "size_mb": weights.stat().st_size / 2**20}
    if args.visibility_only and "ablation" in recorded:
        summary["ablation"] = recorded["ablation"]
    install(final, args.out, summary)
    main_report = evaluate(args.out, args.out / "eval.json", args.threads)
    equal_budget_report = ablation_report = None
    if args.visibility_only:  # the runs compared with it are not retrained: their reports as they are
        equal_budget_report, ablation_report = (json.loads(path.read_text()) if path.is_file() else None for path in
                                                (args.out / "equal_budget_eval.json", args.out / "ablation_eval.json"))
    elif args.ablation or (args.out / "ablation_eval.json").is_file():
        summary["ablation"] = [run_stage(*ABLATION)]
        ablation_report = evaluate(REPO / summary["ablation"][0]["model"], args.out / "ablation_eval.json", args.threads)
        equal_budget = next(run for (name, _), run in zip(STAGES, stages) if name == EQUAL_BUDGET)
        equal_budget_report = evaluate(REPO / equal_budget["model"], args.out / "equal_budget_eval.json", args.threads)
        (args.out / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
    render_card(args.out, summary, main_report, equal_budget_report, ablation_report)
    log(f"done in {(time.perf_counter() - began) / 60:.1f} min: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
