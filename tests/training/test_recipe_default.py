"""The default model's recipe: its stage configs validate and chain, and its card renders."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from training.recipes import default_model as recipe
from training.recipes import numerics
from training.trainer.config import load_config


def test_stage_configs_chain_into_one_another() -> None:
    configs = {name: load_config(recipe.RECIPE_DIR / f"{name}.yaml") for name, _ in (*recipe.STAGES, recipe.ABLATION)}
    stage0, stage1, stage2, stage3, continued, third, visibility = (configs[name] for name, _ in recipe.STAGES)
    assert [c.stage for c in (stage0, stage1, stage2, stage3, continued, third, visibility)] == [0, 1, 2, 3, 3, 3, 3]
    assert stage0.model == "default" and stage0.vocabulary == "synth"
    assert stage0.data == stage1.data  # the tower learns on stage 1's images and traces
    assert stage1.resolve(stage1.model) == stage0.resolve(stage0.output_dir) / "final"
    assert stage2.resolve(stage2.model) == stage1.resolve(stage1.output_dir) / "final"
    assert stage3.resolve(stage3.model) == stage2.resolve(stage2.output_dir) / "final"
    assert continued.resolve(continued.model) == stage3.resolve(stage3.output_dir) / "final"
    assert continued.data == stage3.data and continued.learning_rate == stage3.learning_rate / 2
    assert third.resolve(third.model) == continued.resolve(continued.output_dir) / "final"
    assert third.learning_rate == continued.learning_rate and len({stage3.seed, continued.seed, third.seed}) == 3
    assert third.model_overrides == {"trajectory_loss_points": "all", "num_frames": 16}
    # the visibility head alone, on the third pass's frozen weights, from its 16-frame trajectories
    assert visibility.resolve(visibility.model) == third.resolve(third.output_dir) / "final"
    assert visibility.train_only == ["vis_projector"] and visibility.model_overrides == {"visibility_head": True}
    assert [s.path for s in visibility.data] == [s.path for s in third.data if s.format == "pite143k"]
    # Multiple choice twice, and the rehearsed trajectories annotated at the pass's 16 frames
    # (a file the recipe's world writes), not resampled from stage 2's 8 rows.
    exact = [dataclasses.replace(s, path=s.path.replace("stage2.jsonl", "stage2_16f.jsonl"))
             if s.format == "pite143k" else s for s in stage3.data]
    assert sorted(third.data, key=str) == sorted([*exact, *(s for s in stage3.data if s.format == "mcq")], key=str)
    assert recipe.WORLD.extra_num_frames == (16,) and stage2.data[0].path.endswith("/stage2.jsonl")
    assert recipe.EQUAL_BUDGET == "stage3"  # the ablation is compared before the continued pass
    for config in configs.values():
        for spec in config.data:
            assert config.resolve(spec.path).parent == recipe.WORK_DIR / "data" / "train"
    ablation = configs[recipe.ABLATION[0]]
    assert ablation.resolve(ablation.model) == stage1.resolve(stage1.output_dir) / "final"
    assert ablation.max_steps == stage2.max_steps + stage3.max_steps  # the same budget
    assert ablation.batch_size == stage2.batch_size == stage3.batch_size
    assert not any(spec.format == "pite143k" for spec in ablation.data)  # no trajectories at all
    assert any(spec.format == "pite143k" for spec in stage3.data)  # rehearsal in the full recipe


def report(mcq: float, l1: float) -> dict:
    return {"tasks": {"mcq": {"count": 200, "metrics": {"accuracy": mcq},
                              "by_kind": {"size": {"count": 120, "accuracy": mcq + 1}}},
                      "trajectory_teacher_forced": {"count": 300, "metrics": {"L1": l1}}}}


def test_card_renders_all_three_columns_and_every_placeholder(tmp_path: Path) -> None:
    run = {"config": "stage1.yaml", "stage": 1, "steps": 500, "seconds": 130.0, "median_step_seconds": 0.24,
           "final_loss": 0.8}
    summary = {"stages": [run], "ablation": [{**run, "config": "stage3_without_stage2.yaml", "stage": 3}],
               "parameters": 2_169_090, "size_mb": 8.3}
    recipe.render_card(tmp_path, summary, report(93.5, 0.0412), report(91.0, 0.05), report(88.0, 0.4))
    card = (tmp_path / "README.md").read_text()
    assert "{{" not in card
    assert "| multiple-choice VideoQA accuracy (%) | >= 90 | 93.5 | 91.0 | 88.0 |" in card
    assert "| trajectory L1, teacher-forced (normalised) | <= 0.05 | 0.041 | 0.050 | 0.400 |" in card
    assert "| open-ended QA exact match (%) | >= 80 | n/a | n/a | n/a |" in card
    assert "| stage3_without_stage2.yaml | 3 | 500 | 0.24 | 130 | 0.8 |" in card
    assert "2 minutes of training (steps × median step time" in card  # 500 × 0.24 s of the full recipe's one stage
    assert "2,169,090" in card
    assert "| size | multiple choice | 120 | 94.5 | 92.0 | 89.0 |" in card  # accuracy per question kind
    assert ("| metric | goal | default model (stages 0-1-2-3, stage 3 continued twice) | stages 0-1-2-3 | without stage 2 |"
            in card)
    recipe.render_card(tmp_path, summary, report(93.5, 0.0412), None, None)
    assert "| 93.5 | not run | not run |" in (tmp_path / "README.md").read_text()


def test_a_column_decoded_otherwise_says_how(tmp_path: Path) -> None:
    """A report names its ``time_token_decoding`` in ``meta``; one from before the setting used the argmax."""
    summary = {"stages": [], "parameters": 1, "size_mb": 1.0}
    main = {**report(93.5, 0.0412), "meta": {"time_token_decoding": "median"}}
    recipe.render_card(tmp_path, summary, main, main, report(88.0, 0.4))
    card = (tmp_path / "README.md").read_text()
    assert ", stage 3 continued twice) | stages 0-1-2-3 | without stage 2 (argmax temporal tokens) |" in card
    assert "| question kind | task | n | default model | stages 0-1-2-3 | without stage 2 (argmax temporal tokens) |" in card
    recipe.render_card(tmp_path, summary, main, main, {**report(88.0, 0.4), "meta": {"time_token_decoding": "median"}})
    assert ", stage 3 continued twice) | stages 0-1-2-3 | without stage 2 |" in (tmp_path / "README.md").read_text()


def test_a_report_older_than_the_weights_is_evaluated_again(tmp_path: Path, monkeypatch) -> None:
    """Retraining must not leave the previous model's figures in the card."""
    import os

    model, report_path = tmp_path / "model", tmp_path / "eval.json"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    report_path.write_text('{"tasks": {}, "run": "previous"}')
    os.utime(report_path, (1_000, 1_000))  # written before the weights
    calls = []

    def fake_eval(command, check, env):
        assert env.items() >= numerics.pinned_numerics()[0].items()  # with the pinned numerics
        calls.append(command)
        report_path.write_text('{"tasks": {}, "run": "new"}')

    monkeypatch.setattr(recipe.subprocess, "run", fake_eval)
    assert recipe.evaluate(model, report_path, 1)["run"] == "new" and len(calls) == 1
    assert recipe.evaluate(model, report_path, 1)["run"] == "new" and len(calls) == 1  # fresh: kept


def test_data_is_made_again_when_any_field_of_its_spec_changes(tmp_path: Path, monkeypatch) -> None:
    """A recipe that asks for more images, or another world (such as stage-2 trajectories at
    more frame counts), must not train on the old data."""
    made: list[dict] = []

    def generate(folder: Path, **spec) -> None:
        made.append(spec)
        folder.mkdir(parents=True)
        counts = {"videos": spec["videos"], "images": spec["images"], "stage1.jsonl": spec["images"]}
        (folder / "manifest.json").write_text(json.dumps({"seed": spec["seed"], "split": spec["split"],
                                                          "config": dataclasses.asdict(spec["config"]),
                                                          "counts": counts}))

    monkeypatch.setattr(recipe, "generate", generate)
    spec = {"split": "train", "seed": 1, "videos": 3, "images": 2}
    recipe.make_data(tmp_path / "data", spec, workers=1)
    recipe.make_data(tmp_path / "data", spec, workers=1)
    assert len(made) == 1  # present: kept
    recipe.make_data(tmp_path / "data", {**spec, "images": 10}, workers=1)
    recipe.make_data(tmp_path / "data", {**spec, "seed": 2, "images": 10}, workers=1)
    assert [(m["images"], m["seed"]) for m in made] == [(2, 1), (10, 1), (10, 2)]
    monkeypatch.setattr(recipe, "WORLD", dataclasses.replace(recipe.WORLD, extra_num_frames=(12,)))
    recipe.make_data(tmp_path / "data", {**spec, "seed": 2, "images": 10}, workers=1)
    assert len(made) == 4 and made[-1]["config"].extra_num_frames == (12,)


def test_numerics_are_pinned_on_hosts_with_avx2_kernels_and_not_elsewhere() -> None:
    for capability in ("AVX2", "AVX512"):
        assert numerics.pinned_numerics(capability) == (numerics.PINNED, None)
    pins, reason = numerics.pinned_numerics("DEFAULT")
    assert pins == {} and "DEFAULT" in reason
    assert numerics.PINNED["ATEN_CPU_CAPABILITY"] == "avx2" and numerics.PINNED["MKL_CBWR"] == "AVX2"


def test_the_build_installs_the_last_stage_3_pass_and_compares_the_ablation_before_it(tmp_path: Path,
                                                                                     monkeypatch) -> None:
    """The shipped model is the last stage's; the ablation's partner is stage 3 of the same budget."""
    monkeypatch.setattr(recipe, "make_data", lambda folder, spec, workers: None)
    started_from: dict[str, Path | None] = {}

    def run_stage(name: str, stage: int, model: Path | None = None) -> dict:
        started_from[name] = model
        final = tmp_path / "work" / name / "final"
        final.mkdir(parents=True, exist_ok=True)
        save_file({"w": torch.zeros(2, 3)}, str(final / "model.safetensors"))
        return {"stage": stage, "config": f"{name}.yaml", "steps": 10, "seconds": 5.0,
                "median_step_seconds": 0.5, "final_loss": 1.0, "model": str(final)}

    evaluated: dict[str, Path] = {}

    def evaluate(model: Path, report_path: Path, threads: int) -> dict:
        evaluated[report_path.name] = Path(model)
        return report(70.0, 0.3)

    monkeypatch.setattr(recipe, "run_stage", run_stage)
    monkeypatch.setattr(recipe, "evaluate", evaluate)
    out = tmp_path / "model"
    assert recipe.main(["--out", str(out), "--ablation"]) == 0
    assert evaluated == {"eval.json": out, "ablation_eval.json": tmp_path / "work" / "stage3_without_stage2" / "final",
                         "equal_budget_eval.json": tmp_path / "work" / "stage3" / "final"}
    training = json.loads((out / "training.json").read_text())
    assert [run["config"] for run in training["stages"]] == ["stage0.yaml", "stage1.yaml", "stage2.yaml",
                                                             "stage3.yaml", "stage3_continued.yaml",
                                                             "stage3_third_pass.yaml", "visibility_head.yaml"]
    assert training["parameters"] == 6 and training["ablation"][0]["config"] == "stage3_without_stage2.yaml"
    assert (out / "model.safetensors").is_file() and "{{" not in (out / "README.md").read_text()

    # --visibility-only: the installed model's recorded stages stay, the head is fitted on its weights,
    # and only the main report is evaluated again (the compared runs are not retrained)
    started_from.clear()
    evaluated.clear()
    assert recipe.main(["--out", str(out), "--visibility-only"]) == 0
    assert started_from == {"visibility_head": out}
    assert evaluated == {"eval.json": out}
    again = json.loads((out / "training.json").read_text())
    assert [run["config"] for run in again["stages"]] == [run["config"] for run in training["stages"]]
    assert again["ablation"] == training["ablation"]
