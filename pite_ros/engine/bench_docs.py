"""``pite-bench engine --write-docs``: the run's figures written into the project's docs.

A file holds one block per model between the markers ``<!-- pite-bench engine: NAME -->``
and ``<!-- /pite-bench engine: NAME -->``; ``write_docs`` replaces each block's body with the
run's table (``markdown_table``), so the documented figures are the measured ones, with the
date, machine and load they were measured under. A file without the markers is named in the
returned list and left as it is (as is a missing file: an installed package has no docs).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pite_ros.engine.onnx_bench import TIMES, arrival_note
from pite_ros.tools.marked_block import replace_block


def markdown_table(report: dict[str, Any]) -> str:
    """The engines' medians, speed-ups over torch eager and over the best torch setting, and a
    line on the run and its goals."""
    engines, comparison, machine = report["engines"], report["comparison"], report["machine"]
    frames = next(iter(engines.values()))["frames"]
    lines = [f"| engine | vision ms ({frames} frames) | prefill ms | decode ms/token | answer ms | "
             "vs torch eager: vision / prefill / decode / answer | vs best torch | load avg |",
             "|---|---|---|---|---|---|---|---|"]
    for kind, values in engines.items():
        ratios = comparison.get(kind)
        columns = [" / ".join(f"{ratios[f'{name}_{suffix}']:.2f}×" for name in TIMES) if ratios else "reference"
                   for suffix in ("speedup", "vs_best_torch")]
        load = values.get("load_average", [float("nan")] * 2)
        lines.append(f"| {kind} | {values['vision_ms']:.1f} | {values['prefill_ms']:.1f} | "
                     f"{values['decode_ms_per_token']:.2f} | {values['e2e_ms']:.1f} | {columns[0]} | {columns[1]} | "
                     f"{load[0]:.1f}-{load[1]:.1f} |")
    model, settings = report["model"], report["settings"]
    agreement = report["export"]["int8_agreement"]
    goals = comparison.get("goals", {})
    missed = [name for name, goal in goals.items() if not goal["met"]]
    lines += ["", f"{model['source']}, {model['parameters'] / 1e6:.1f} M parameters; `pite-bench engine` "
                  f"{time.strftime('%Y-%m-%d')}, {machine['cpu']} ({machine['cores']} cores), {settings['threads']} "
                  f"threads, {settings['rounds']} rounds × {settings['repeats']} passes × {settings['clips']} clips, "
                  f"fastest round's medians; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}. "
                  f"{arrival_note(report)}."]
    if agreement.get("measured"):
        lines[-1] += (f" int8 agrees with torch on {agreement['token_agreement']:.1%} of {agreement['tokens']} "
                      "greedy tokens (teacher forced, held-out clips).")
    if goals:
        misses = ", ".join(f"{name} {goals[name]['value']:.2f}" for name in missed)
        lines[-1] += f" Goals met: {len(goals) - len(missed)} of {len(goals)}" + (f"; not met: {misses}." if missed else ".")
    return "\n".join(lines)


def write_docs(report: dict[str, Any], name: str, files: list[Path]) -> list[Path]:
    """Replace the ``name`` block of each file with ``markdown_table(report)``; the files without
    that block (left unchanged) are returned."""
    table = markdown_table(report)
    opening, closing = f"<!-- pite-bench engine: {name} -->", f"<!-- /pite-bench engine: {name} -->"
    missing = []
    for path in files:
        written = replace_block(path.read_text() if path.is_file() else "", opening, closing, table)
        if written is None:
            missing.append(path)
        else:
            path.write_text(written)
    return missing
