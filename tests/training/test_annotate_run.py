"""The whole pipeline on synthetic clips: record schema, trainer's reader, accuracy, bad input, re-runs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from training.annotate.bench import trajectory_errors
from training.annotate.cli import main as cli_main
from training.annotate.pipeline import AnnotateConfig, frame_plan
from training.annotate.runner import run
from training.datasets.stage2 import TrajectoryCaptionDataset
from training.synth import generate

RECORD_KEYS = {"id", "video", "clip", "caption", "num_frames", "num_points", "width", "height", "phrases"}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, videos=4, images=0, split="eval", seed=11)
    return root


@pytest.fixture(scope="module")
def annotated(synth: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """The 4 clips plus one bad line of each kind, annotated with ground-truth masks."""
    (synth / "videos" / "broken.mp4").write_bytes(b"this is not a video" * 100)
    lines = (synth / "stage2.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    bad = [
        {"id": "broken", "video": "videos/broken.mp4", "caption": "a red circle moves left."},
        {"id": "missing", "video": "videos/absent.mp4", "caption": "a red circle moves left."},
        {"id": "empty", "video": first["video"], "caption": "   "},
        {"id": "verbs", "video": first["video"], "caption": "moves left and stops."},
        {"id": "late", "video": first["video"], "clip": [0.0, 999.0], "caption": first["caption"]},
        {"id": first["id"], "video": first["video"], "caption": first["caption"]},  # duplicate id
    ]
    source = synth / "input.jsonl"
    source.write_text("\n".join(lines + [json.dumps(b) for b in bad] + ["{not json"]) + "\n")
    out = tmp_path_factory.mktemp("annotated")
    summary = run(source, out, AnnotateConfig(segmenter="gt"), workers=1, progress=False)
    return out, summary


def test_records_follow_the_stage2_schema(synth: Path, annotated) -> None:
    out, summary = annotated
    records = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert len(records) == 4 and summary.records == 4
    for record in records:
        assert set(record) == RECORD_KEYS
        n, p = record["num_frames"], record["num_points"]
        assert (n, p) == (8, 8) and (record["width"], record["height"]) == (128, 128)
        assert record["phrases"]
        for phrase in record["phrases"]:
            assert set(phrase) == {"text", "span", "instance", "trajectory", "visibility"}
            assert phrase["instance"] == 0  # the synthetic captions name one object per phrase
            assert record["caption"][phrase["span"][0] : phrase["span"][1]] == phrase["text"]
            trajectory = np.asarray(phrase["trajectory"])
            assert trajectory.shape == (n, p, 2) and trajectory.min() >= 0 and trajectory.max() <= 1
            assert np.isin(np.asarray(phrase["visibility"]), (0, 1)).all()
    # The synthetic world names each object in the same words: every phrase gets a trajectory.
    expected = [json.loads(line) for line in (synth / "stage2.jsonl").read_text().splitlines()]
    assert [[p["text"] for p in r["phrases"]] for r in records] == [[p["text"] for p in e["phrases"]] for e in expected]


def test_the_trainers_reader_loads_the_records(annotated) -> None:
    out, _ = annotated
    dataset = TrajectoryCaptionDataset(out / "annotations.jsonl", check_media=True)
    assert len(dataset) == 4 and sum(dataset.report.counts.values()) == 0
    example = dataset[0]
    assert example.frames.shape[0] == 8 and example.trajectories


def test_trajectories_follow_the_objects(synth: Path, annotated) -> None:
    out, _ = annotated
    errors = [e for line in (out / "annotations.jsonl").read_text().splitlines()
              for e in trajectory_errors(json.loads(line), synth / "gt")]
    assert len(errors) > 100
    assert np.mean(errors) < 2.0 and np.median(errors) < 0.5  # pixels in 128x128 clips


def test_classical_back_end_end_to_end(synth: Path, tmp_path: Path) -> None:
    summary = run(synth / "stage2.jsonl", tmp_path, AnnotateConfig(segmenter="classical"), workers=1, progress=False)
    records = [json.loads(line) for line in (tmp_path / "annotations.jsonl").read_text().splitlines()]
    assert summary.records == 4 and summary.phrases_without_mask == 0
    errors = [e for record in records for e in trajectory_errors(record, synth / "gt")]
    assert np.mean(errors) < 2.5  # pixels (measured about 0.5 on 24 clips)


def test_frame_plan_tracks_every_frame_between_the_samples() -> None:
    decoded, sampled = frame_plan((1.0, 3.0), fps=10.0, count=50, num_frames=4, max_frames=300)
    # Samples at 1.25, 1.75, 2.25, 2.75 s are frames 12, 17, 22, 27 (frame i shows (i + 0.5) / fps).
    assert decoded.tolist() == list(range(12, 28)) and decoded[sampled].tolist() == [12, 17, 22, 27]
    decoded, sampled = frame_plan((0.0, 60.0), fps=30.0, count=1800, num_frames=8, max_frames=100)
    assert len(decoded) <= 100 + 8 and np.all(np.diff(decoded) > 0)
    samples = decoded[sampled]
    assert samples.tolist() == [112, 337, 562, 787, 1012, 1237, 1462, 1687]


def test_bad_input_is_recorded_with_its_reason(annotated) -> None:
    out, summary = annotated
    failures = {json.loads(line)["id"]: json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()}
    reasons = {key: value["reason"] for key, value in failures.items()}
    assert reasons["broken"] == "unreadable video"
    assert reasons["missing"] == "missing video"
    assert reasons["empty"] == "empty caption"
    assert reasons["verbs"] == "no noun phrase"
    assert reasons["late"] == "out-of-range timestamps"
    assert reasons["input-line11"] == "invalid json"
    assert "duplicate id" in reasons.values()
    assert "broken.mp4" in failures["broken"]["message"]
    assert summary.failures == {"unreadable video": 1, "missing video": 1, "empty caption": 1, "no noun phrase": 1,
                                "out-of-range timestamps": 1, "invalid json": 1, "duplicate id": 1}
    assert summary.videos == 11 and summary.done_now == 8  # the others failed while reading the input


def test_a_rerun_skips_finished_videos(synth: Path, annotated) -> None:
    out, _ = annotated
    before = {path.name: path.stat().st_mtime_ns for path in (out / "records").glob("*.json")}
    summary = run(synth / "input.jsonl", out, AnnotateConfig(segmenter="gt"), workers=1, progress=False)
    assert summary.done_now == 0 and summary.skipped == 8 and summary.records == 4
    assert {path.name: path.stat().st_mtime_ns for path in (out / "records").glob("*.json")} == before
    retried = run(synth / "input.jsonl", out, AnnotateConfig(segmenter="gt"), workers=1, progress=False,
                  retry_failed=True)
    assert retried.done_now == 4 and retried.records == 4  # the failed videos again, and they fail again


def test_cli_overlay_and_ray_message(synth: Path, annotated, tmp_path: Path, capsys, monkeypatch) -> None:
    import cv2

    out, _ = annotated
    video_id = json.loads((synth / "stage2.jsonl").read_text().splitlines()[0])["id"]
    cli_main(["overlay", video_id, "--out", str(out), "--png", str(tmp_path / "strip.png")])
    strip = cv2.imread(str(tmp_path / "strip.png"))
    assert strip is not None and strip.shape[0] == 2 * strip.shape[1] // 4  # 2 rows of 4 square tiles
    # The first phrase's colour (Tableau blue, BGR) is drawn on the frames.
    assert (np.abs(strip.astype(int) - (180, 119, 31)).sum(axis=2) < 30).sum() > 50
    with pytest.raises(SystemExit, match="no record"):
        cli_main(["overlay", "broken", "--out", str(out)])
    monkeypatch.setitem(sys.modules, "ray", None)  # as where Ray is not installed: `import ray` fails
    with pytest.raises(SystemExit, match="pip install"):
        cli_main(["run", str(synth / "input.jsonl"), "--out", str(tmp_path / "ray"), "--ray", "--retry-failed",
                  "--segmenter", "gt"])
