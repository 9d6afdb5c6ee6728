"""pite-eval: a tiny model end to end through the CLI, and known answers through the plumbing.

The synthetic eval set (3 clips, seed 1: one multiple-choice record has timestamps, so the
NExT-GQA section appears too) is read with the same readers the evaluator uses; a fake
engine that answers each (prompt, clip) with the reference answer must score perfectly, and
one that answers garbage must score zero, with every count kept.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pite_ros.model import (
    PiteProcessor,
    build_model,
    build_tokenizer,
    load_config,
    load_model_and_processor,
    save_model_and_processor,
)
from pite_ros.types import AnswerResult, Example, PhraseTrack, SpanTrajectory
from pite_ros.model.torch_generation import answers_with_model
from training.datasets import read_jsonl
from training.evaluation.cli import main
from training.evaluation.run import (
    GENERATED,
    POINTS_DIFFER,
    TEACHER_FORCED,
    EvalOptions,
    match_phrases,
    model_setting,
    run_evaluation,
    time_token_decoding,
)
from training.evaluation.sources import FORMATS, SourceError, open_source, resolve_sources
from training.evaluation.teacher_forced import teacher_forced_trajectories
from training.synth import WorldConfig, generate, vocabulary

FRAMES, SIZE = 4, 32  # the tiny preset's N and image size
SECTIONS = ["open_qa", "mcq", "gqa", "grounding", "dense_caption", "trajectory_generated", "trajectory_teacher_forced"]


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval_set")
    config = WorldConfig(width=64, height=64, num_frames=FRAMES, extra_num_frames=(2 * FRAMES,), num_points=4,
                         max_seconds=5)
    generate(out, videos=3, images=0, split="eval", seed=1, config=config)
    return out


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    tokenizer = build_tokenizer(vocabulary(), 300)
    model = build_model(load_config("tiny"), tokenizer)
    path = tmp_path_factory.mktemp("tiny_model")
    save_model_and_processor(path, model, PiteProcessor(tokenizer, model.config))
    return path


def question_kinds(folder: Path) -> dict[str, dict[str, int]]:
    """Scored items per kind, by hand: a conversation's ``kinds`` (one per gpt turn), each
    multiple-choice record's ``kind`` and each grounding record's (its event type)."""
    conversations = read_jsonl(folder / "stage3_conversations.jsonl")
    counted = {"open_qa": Counter(k for r in conversations for k in r["kinds"]),
               "mcq": Counter(r["kind"] for r in read_jsonl(folder / "stage3_mcq.jsonl")),
               "grounding": Counter(r["kind"] for r in read_jsonl(folder / "stage3_grounding.jsonl"))}
    return {task: dict(sorted(kinds.items())) for task, kinds in counted.items()}


def expected_counts(folder: Path) -> dict[str, int]:
    """Items per section, counted from the JSONL files by hand."""
    mcq = read_jsonl(folder / "stage3_mcq.jsonl")
    conversations = read_jsonl(folder / "stage3_conversations.jsonl")
    phrases = sum(len(r["phrases"]) for r in read_jsonl(folder / "stage2.jsonl"))
    return {
        "open_qa": sum(t["from"] == "gpt" for r in conversations for t in r["conversations"]),
        "mcq": len(mcq),
        "gqa": sum("timestamps" in r for r in mcq),
        "grounding": len(read_jsonl(folder / "stage3_grounding.jsonl")),
        "dense_caption": len(read_jsonl(folder / "stage3_dense.jsonl")),
        "trajectory_generated": phrases,
        "trajectory_teacher_forced": phrases,
    }


def expected_examples(folder: Path) -> int:
    """Examples asked: one per gpt turn, per multiple-choice, grounding, dense and stage-2 record."""
    counts = expected_counts(folder)
    clips = len(read_jsonl(folder / "stage2.jsonl"))
    return sum(counts[t] for t in ("open_qa", "mcq", "grounding", "dense_caption")) + clips


def digest(frames: np.ndarray) -> str:
    return hashlib.sha1(frames.tobytes()).hexdigest()


class FakeEngine:
    """Answers from a table keyed by (prompt, clip digest); no ``answer_batch``, so the
    evaluator's one-by-one fallback runs. ``fail_on``: keys that raise."""

    name = "fake"
    num_frames = FRAMES
    num_points = 4
    image_size = SIZE

    def __init__(self, table: dict[tuple[str, str], AnswerResult], fail_on: frozenset = frozenset()) -> None:
        self.table = table
        self.fail_on = fail_on
        self.asked = 0

    def answer(self, frames, question, duration, *, max_new_tokens=None, on_token=None) -> AnswerResult:
        self.asked += 1
        key = (question, digest(frames))
        if key in self.fail_on:
            raise RuntimeError("boom")
        return self.table[key]

    def close(self) -> None:
        pass


def result(text: str, phrases: list[PhraseTrack] | None = None) -> AnswerResult:
    return AnswerResult(text=text, phrases=phrases or [], segments=[], token_ids=[], frame_times=np.zeros(FRAMES))


def reference_table(folder: Path, garbage: bool = False, frames: int = FRAMES) -> dict[tuple[str, str], AnswerResult]:
    """Every example's reference answer (phrases with their true trajectories at ``frames``
    frames, from the folder's annotation at that count when it has one), or garbage."""
    table = {}
    for source in resolve_sources([str(folder)]):
        for example in open_source(source.at_frame_count(frames), num_frames=frames, image_size=SIZE):
            key = (example.prompt, digest(example.frames))
            assert key not in table, "the fake engine needs unique (prompt, clip) keys"
            if garbage:
                table[key] = result("zzz")
                continue
            phrases = [PhraseTrack(example.response[t.start : t.end], (t.start, t.end), t.points, 1.0)
                       for t in example.trajectories]
            table[key] = result(example.response, phrases)
    return table


def test_cli_end_to_end_with_a_tiny_model(eval_dir, model_dir, tmp_path, capsys):
    out = tmp_path / "report.json"
    args = ["--model", str(model_dir), "--data", str(eval_dir), "--out", str(out), "--no-meteor",
            "--batch-size", "4", "--max-new-tokens", "12", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert list(report["tasks"]) == SECTIONS
    for name, count in expected_counts(eval_dir).items():
        assert report["tasks"][name]["count"] == count, name
    for name, section in report["tasks"].items():
        for metric, value in section["metrics"].items():
            if value is None:
                continue
            upper = 2.0 if metric.startswith("L1") else (None if metric == "events_per_video" else 100.0)
            assert value >= 0.0 and (upper is None or value <= upper), (name, metric, value)
    forced = report["tasks"]["trajectory_teacher_forced"]["metrics"]
    assert forced["L1"] is not None and 0.0 < forced["L1"] < 2.0  # measured on every phrase, wording aside
    assert report["tasks"]["dense_caption"]["unavailable"]["METEOR"] == "disabled by the caller"
    meta = report["meta"]
    assert meta["engine"] == "torch" and meta["model"] == str(model_dir) and meta["num_frames"] == FRAMES
    assert meta["time_token_decoding"] == "argmax"  # the tiny preset keeps Grounded-VideoLLM's greedy bins
    assert meta["failed"]["count"] == 0 and meta["skipped_records"]["count"] == 0
    assert meta["examples"] == sum(d["examples"] for d in meta["data"]) == expected_examples(eval_dir)
    assert out.with_suffix(".txt").read_text() in printed
    # Deterministic: the same run gives the same numbers.
    again = tmp_path / "again.json"
    assert main([a if a != str(out) else str(again) for a in args]) == 0
    assert json.loads(again.read_text())["tasks"] == report["tasks"]


def test_reference_answers_score_perfectly(eval_dir):
    engine = FakeEngine(reference_table(eval_dir))
    report = run_evaluation(engine, resolve_sources([str(eval_dir)]), EvalOptions(meteor=False, progress=False))
    counts = expected_counts(eval_dir)
    for name in SECTIONS:
        expected = 0 if name == "trajectory_teacher_forced" else counts[name]
        assert report.sections[name].count == expected, name
    assert report.metric("open_qa", "accuracy") == 100.0
    assert report.metric("mcq", "accuracy") == 100.0
    kinds = question_kinds(eval_dir)  # each item's kind, from the records
    for task in ("open_qa", "mcq"):
        assert report.sections[task].by_kind == {k: {"count": n, "accuracy": 100.0} for k, n in kinds[task].items()}
    grounding = report.sections["grounding"].by_kind
    assert {k: f["count"] for k, f in grounding.items()} == kinds["grounding"]
    assert all(f["R@0.7"] == 100.0 for f in grounding.values())
    assert report.metric("gqa", "Acc@GQA") == 100.0
    assert report.metric("grounding", "R@0.5") == report.metric("grounding", "R@0.7") == 100.0
    assert report.metric("grounding", "mIoU") > 95.0  # segments rounded to 1/300 of the clip
    assert 0.0 < report.metric("grounding", "frame_snap_mIoU") < 100.0  # its FRAMES frames cannot place them so
    events = [len(r["events"]) for r in read_jsonl(eval_dir / "stage3_dense.jsonl")]
    assert report.metric("dense_caption", "events_per_video") == pytest.approx(np.mean(events))
    assert report.metric("dense_caption", "CIDEr") > 0.0
    assert report.metric("trajectory_generated", "L1") == 0.0
    assert report.metric("trajectory_generated", "PCK@0.05") == 100.0
    assert "needs the torch model" in report.sections["trajectory_teacher_forced"].unavailable["L1"]
    assert engine.asked == report.meta["examples"] == expected_examples(eval_dir)


def test_garbage_answers_score_zero_and_keep_counts(eval_dir):
    engine = FakeEngine(reference_table(eval_dir, garbage=True))
    options = EvalOptions(meteor=False, teacher_forced=False, progress=False)
    report = run_evaluation(engine, resolve_sources([str(eval_dir)]), options)
    counts = expected_counts(eval_dir)
    assert list(report.sections) == SECTIONS[:-1]
    for name in SECTIONS[:-1]:
        assert report.sections[name].count == counts[name], name
    assert report.metric("open_qa", "accuracy") == 0.0
    assert {k: f["accuracy"] for k, f in report.sections["open_qa"].by_kind.items()} == dict.fromkeys(
        question_kinds(eval_dir)["open_qa"], 0.0)
    assert report.metric("mcq", "accuracy") == 0.0 and report.sections["mcq"].counts["unparseable"] == counts["mcq"]
    assert report.metric("grounding", "R@0.3") == report.metric("grounding", "mIoU") == 0.0
    assert report.metric("dense_caption", "events_per_video") == 0.0
    assert report.metric("trajectory_generated", "PCK@0.05") == 0.0
    assert report.metric("trajectory_generated", "L1") is None  # no phrase named: nothing to measure L1 on
    assert report.sections["trajectory_generated"].counts["unparseable"] == counts["trajectory_generated"]


def test_an_example_that_raises_is_counted_and_the_run_goes_on(eval_dir):
    table = reference_table(eval_dir)
    mcq = read_jsonl(eval_dir / "stage3_mcq.jsonl")
    first = open_source(resolve_sources([str(eval_dir / "stage3_mcq.jsonl")])[0], num_frames=FRAMES, image_size=SIZE)[0]
    failing = (first.prompt, digest(first.frames))
    engine = FakeEngine(table, fail_on=frozenset({failing}))
    options = EvalOptions(tasks=("mcq", "grounding"), batch_size=8, meteor=False, progress=False)
    report = run_evaluation(engine, resolve_sources([str(eval_dir)]), options)
    assert report.sections["mcq"].count == len(mcq) - 1
    assert report.sections["mcq"].counts["failed"] == 1
    assert report.metric("mcq", "accuracy") == 100.0
    assert report.metric("grounding", "R@0.5") == 100.0  # same batch, answered one by one after the failure
    assert report.meta["failed"]["count"] == 1
    failure = report.meta["failed"]["first"][0]
    assert failure["id"] == mcq[0]["id"] and failure["step"] == "answer" and "boom" in failure["error"]
    assert "gqa" not in report.sections and report.meta["tasks_without_data"] == []


def test_explicit_files_limit_and_bad_records(eval_dir, tmp_path):
    grounding = tmp_path / "g.jsonl"
    shutil.copy(eval_dir / "stage3_grounding.jsonl", grounding)
    with grounding.open("a") as handle:
        handle.write(json.dumps({"id": "bad", "video": "videos/none.mp4", "duration": 4.0}) + "\n")
    (tmp_path / "videos").symlink_to(eval_dir / "videos")
    engine = FakeEngine(reference_table(eval_dir))
    sources = resolve_sources([f"grounding={grounding}", str(eval_dir / "stage3_mcq.jsonl")])
    assert [s.format for s in sources] == ["grounding", "mcq"]
    report = run_evaluation(engine, sources, EvalOptions(limit=2, meteor=False, progress=False))
    assert report.sections["grounding"].count == 2 and report.sections["mcq"].count == 2
    assert report.meta["skipped_records"]["count"] == 1
    assert report.meta["skipped_records"]["by_reason"] == {"missing field": 1}
    assert report.meta["data"][0]["examples"] == 2


def test_trajectories_with_other_point_counts_are_left_out_and_counted(eval_dir):
    engine = FakeEngine(reference_table(eval_dir))
    engine.num_points = 8  # the data has P = 4
    report = run_evaluation(engine, resolve_sources([str(eval_dir)]),
                            EvalOptions(tasks=("trajectory",), meteor=False, progress=False))
    phrases = expected_counts(eval_dir)["trajectory_generated"]
    assert list(report.sections) == [GENERATED, TEACHER_FORCED]
    for name in (GENERATED, TEACHER_FORCED):
        assert report.sections[name].count == 0 and report.sections[name].counts[POINTS_DIFFER] == phrases
    assert report.meta["examples"] == 0 and engine.asked == 0


def test_a_folders_annotation_at_the_models_frame_count_is_scored_instead_of_a_resampled_one(eval_dir):
    """The eval set has N = 4 (stage2.jsonl) and N = 8 (stage2_8f.jsonl); an 8-frame engine that
    answers the 8-frame truth scores L1 0 on the folder, and not on the 4 rows resampled to 8
    (pite-synth's movers stop, start and leave between two of those rows)."""
    frames = 2 * FRAMES
    (stage2,) = [s for s in resolve_sources([str(eval_dir)]) if s.format == "stage2"]
    assert stage2.at_frame_count(frames).path == eval_dir / "stage2_8f.jsonl"
    assert stage2.at_frame_count(FRAMES) == stage2 and stage2.at_frame_count(16) == stage2
    engine = FakeEngine(reference_table(eval_dir, frames=frames))
    engine.num_frames = frames
    options = EvalOptions(tasks=("trajectory",), meteor=False, progress=False, teacher_forced=False)
    exact = run_evaluation(engine, resolve_sources([str(eval_dir)]), options)
    assert exact.meta["data"][0]["source"] == f"stage2={eval_dir / 'stage2_8f.jsonl'}"
    assert exact.sections[GENERATED].count == expected_counts(eval_dir)["trajectory_generated"]
    assert exact.sections[GENERATED].metrics["L1"] == pytest.approx(0.0, abs=1e-6)
    resampled = run_evaluation(engine, resolve_sources([f"stage2={eval_dir / 'stage2.jsonl'}"]), options)
    assert resampled.sections[GENERATED].count == exact.sections[GENERATED].count
    assert resampled.sections[GENERATED].metrics["L1"] > 0.005


def test_bad_data_arguments(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        resolve_sources([str(tmp_path / "missing")])
    with pytest.raises(SourceError, match="holds none of"):
        resolve_sources([str(tmp_path)])
    odd = tmp_path / "odd.jsonl"
    odd.write_text("")
    with pytest.raises(SourceError, match="FORMAT=PATH"):
        resolve_sources([str(odd)])
    assert resolve_sources([f"dense={odd}"])[0].format == "dense" and set(FORMATS) >= {"dense"}
    with pytest.raises(SystemExit) as stop:
        main(["--data", str(odd), "--tasks", "open_qa,bogus"])
    assert stop.value.code == 2


def test_match_phrases_by_normalised_text_each_used_once():
    def track(text: str, value: float) -> PhraseTrack:
        return PhraseTrack(text, (0, len(text)), np.full((FRAMES, 4, 2), value), 1.0)

    predicted = [track("Red circle", 0.1), track("a blue square", 0.2), track("the red circle.", 0.3)]
    targets = [{"phrase": "a red circle"}, {"phrase": "the red circle"}, {"phrase": "a green star"}]
    matched = match_phrases(targets, predicted)
    assert matched[0][0, 0, 0] == 0.1 and matched[1][0, 0, 0] == 0.3 and matched[2] is None


def test_teacher_forcing_reads_the_states_generation_reads(model_dir):
    """Fed the model's own greedy answer, teacher forcing gives each phrase exactly the
    trajectory generation gave it (same hidden states, same pooling)."""
    model, processor = load_model_and_processor(model_dir)
    rng = np.random.default_rng(0)
    clips = [rng.integers(0, 256, (FRAMES, SIZE, SIZE, 3), dtype=np.uint8) for _ in range(2)]
    prompts = ["Describe the video.", "What colour is the circle?"]

    def phrases(text: str) -> list[tuple[int, int]]:  # the whole answer, and its first word
        return [(0, len(text)), (0, text.index(" ") if " " in text else len(text))]

    answers = answers_with_model(model, processor, clips, prompts, [5.0, 4.0], max_new_tokens=10, phrase_fn=phrases)
    examples = [
        Example(f"x{i}", clip, prompt, answer.text, 5.0,
                trajectories=[SpanTrajectory(*p.span, np.zeros((FRAMES, 4, 2)), np.ones((FRAMES, 4), bool))
                              for p in answer.phrases])
        for i, (clip, prompt, answer) in enumerate(zip(clips, prompts, answers))
    ]
    forced = teacher_forced_trajectories(model, processor, examples)
    for answer, tracks in zip(answers, forced):
        assert len(tracks) == len(answer.phrases) == 2
        for phrase, track in zip(answer.phrases, tracks):
            np.testing.assert_allclose(track, phrase.trajectory, atol=1e-5)


def test_references_with_more_points_are_scored_on_the_spread_subset_the_trainer_uses(eval_dir):
    """P = 4 references against a P = 2 model: points 0 and 3 (``spread_point_indices``)."""
    table = reference_table(eval_dir)
    for answer in table.values():
        answer.phrases = [PhraseTrack(p.text, p.span, p.trajectory[:, [0, 3]], p.score) for p in answer.phrases]
    engine = FakeEngine(table)
    engine.num_points = 2
    report = run_evaluation(engine, resolve_sources([str(eval_dir)]),
                            EvalOptions(tasks=("trajectory",), meteor=False, progress=False, teacher_forced=False))
    section = report.sections[GENERATED]
    assert section.count == expected_counts(eval_dir)["trajectory_generated"]
    assert POINTS_DIFFER not in section.counts
    assert section.metrics["L1"] == pytest.approx(0.0, abs=1e-6) and section.metrics["PCK@0.05"] == 100.0


def test_model_settings_are_read_from_a_torch_or_an_onnx_engine():
    """The report's meta names the model's settings whichever runtime scored it: a torch
    engine's ``model.config``, an ONNX engine's ``backend.config``, else the engine's own."""
    torch_engine = SimpleNamespace(model=SimpleNamespace(config=SimpleNamespace(image_size=128, time_token_decoding="median")))
    onnx_engine = SimpleNamespace(backend=SimpleNamespace(config=SimpleNamespace(num_points=8, time_token_decoding="argmax")),
                                  image_size=64)
    assert (model_setting(torch_engine, "image_size"), time_token_decoding(torch_engine)) == (128, "median")
    assert (model_setting(onnx_engine, "num_points"), model_setting(onnx_engine, "image_size")) == (8, 64)
    assert time_token_decoding(onnx_engine) == "argmax"
    assert (model_setting(SimpleNamespace(), "image_size"), time_token_decoding(SimpleNamespace())) == (None, None)
