"""Video back-ends (sam3-video, sam2-video) on tiny RANDOM models, and phrase instances end to end.

The models are built from configs and saved with save_pretrained (tests/training/tiny_hf.py):
loading, prompting, propagation, post-processing and point sampling run for real; the masks
mean nothing. The instance bookkeeping is checked on the synthetic world with its true masks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("transformers")

import tiny_hf  # noqa: E402

from pite_ros.video import video_info  # noqa: E402
from training.annotate.cli import main as cli_main  # noqa: E402
from training.annotate.pipeline import AnnotateConfig, annotate_video, frame_plan  # noqa: E402
from training.annotate.records import VideoTask  # noqa: E402
from training.annotate.runner import run  # noqa: E402
from training.annotate.segmenters import build_segmenter, segment_instances  # noqa: E402
from training.annotate.segmenters.hf import Owlv2Boxes  # noqa: E402
from training.annotate.segmenters.video import FramePreprocessing, exclusive  # noqa: E402
from training.annotate.tracking import TrackerConfig  # noqa: E402
from training.datasets.stage2 import TrajectoryCaptionDataset  # noqa: E402
from training.synth import generate, load_ground_truth  # noqa: E402
from training.train import main as train_main  # noqa: E402
from training.trainer.metrics_log import MetricsLog  # noqa: E402

FRAMES = np.random.default_rng(0).integers(0, 255, (5, 48, 64, 3), dtype=np.uint8)
PLURAL_CLIP = "eval_v000002"  # seed 11: a large purple circle and a small red circle (and a green square)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import torch

    torch.manual_seed(0)  # random weights, but the same ones every run
    root = tmp_path_factory.mktemp("video-models")
    return {"sam3": tiny_hf.sam3_video(root / "sam3"), "sam2": tiny_hf.sam2_video(root / "sam2"),
            "owlv2": tiny_hf.owlv2(root / "owlv2")}


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, videos=3, images=0, split="eval", seed=11)
    return root


def test_sam3_video_gives_non_overlapping_instances_over_every_frame(folders: dict[str, Path]) -> None:
    segmenter = build_segmenter("sam3-video", model_dir=str(folders["sam3"]))
    assert segmenter.all_frames is True
    instances = segmenter.instances(FRAMES, "a red circle")
    assert instances, "thresholds 0: the random model detects something"
    for masks in instances:
        assert masks.shape == FRAMES.shape[:3] and masks.dtype == bool and masks.any()
    stacked = np.stack(instances).astype(int)
    assert stacked.sum(axis=0).max() <= 1  # a pixel belongs to one object at most
    assert np.array_equal(segmenter.segment(FRAMES, "a red circle"), stacked.sum(axis=0) > 0)
    ordered = segment_instances(segmenter, FRAMES, "a red circle", limit=2)
    assert len(ordered) == min(2, len(instances))
    assert [int(m.sum()) for m in ordered] == sorted((int(m.sum()) for m in instances), reverse=True)[:2]


def test_sam3_video_threshold_overrides_the_checkpoints(folders: dict[str, Path]) -> None:
    strict = build_segmenter("sam3-video", model_dir=str(folders["sam3"]), threshold=1.0)  # scores never exceed 1
    assert strict.instances(FRAMES, "a red circle") == [] and strict.segment(FRAMES, "a red circle") is None


def test_frame_settings_come_from_either_processor_layout(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no processor config with a frame size, mean and std"):
        FramePreprocessing.from_pretrained(str(tmp_path))
    settings = {"size": {"height": 8, "width": 6}, "image_mean": [0.1] * 3, "image_std": [0.2] * 3}
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))  # the older, separate file
    read = FramePreprocessing.from_pretrained(str(tmp_path))
    assert read == FramePreprocessing((8, 6), (0.1,) * 3, (0.2,) * 3)
    pixels = read.pixels(np.full((3, 16, 12, 3), 51, dtype=np.uint8))
    assert tuple(pixels.shape) == (3, 3, 8, 6) and np.allclose(pixels.numpy(), (0.2 - 0.1) / 0.2)


def test_exclusive_gives_a_shared_pixel_to_the_higher_score() -> None:
    masks = np.array([[[True, True, False]], [[False, True, True]]])
    kept = exclusive(masks, np.array([0.2, 0.9]))
    assert kept.tolist() == [[[True, False, False]], [[False, True, True]]]


def test_sam2_video_propagates_the_first_box_through_the_clip(folders: dict[str, Path]) -> None:
    segmenter = build_segmenter("sam2-video", model_dir=str(folders["owlv2"]), sam_dir=str(folders["sam2"]),
                                threshold=0.0)
    assert isinstance(segmenter.detector, Owlv2Boxes)  # picked from the folder's config
    start, box = segmenter.first_box(FRAMES, "a red circle")
    # The random detector's first box of at least a pixel is on the last frame (seeded weights).
    assert start == 4 and 0 <= box[0] < box[2] <= 63 and 0 <= box[1] < box[3] <= 47
    instances = segmenter.instances(FRAMES, "a red circle")
    assert len(instances) == 1 and instances[0].shape == FRAMES.shape[:3]
    assert instances[0].any(axis=(1, 2)).all()  # propagated backward from the box's frame to every frame
    blind = build_segmenter("sam2-video", model_dir=str(folders["owlv2"]), sam_dir=str(folders["sam2"]),
                            threshold=1.0)
    assert blind.first_box(FRAMES, "a red circle") is None and blind.instances(FRAMES, "a red circle") == []


def test_sam2_video_refuses_a_model_dir_that_is_no_detector(folders: dict[str, Path]) -> None:
    with pytest.raises(ValueError, match="sam2_video.*is not a box detector"):
        build_segmenter("sam2-video", model_dir=str(folders["sam2"]), sam_dir=str(folders["sam2"]))


class Recorder:
    """Wraps a segmenter and keeps what ``instances`` returned, per phrase."""

    def __init__(self, inner: object) -> None:
        self.inner, self.name, self.all_frames = inner, inner.name, inner.all_frames
        self.returned: dict[str, list[np.ndarray]] = {}

    def segment(self, frames: np.ndarray, phrase: str, context: object = None) -> np.ndarray | None:
        return self.inner.segment(frames, phrase, context)

    def instances(self, frames: np.ndarray, phrase: str, context: object = None) -> list[np.ndarray]:
        self.returned[phrase] = self.inner.instances(frames, phrase, context)
        return self.returned[phrase]


def test_sam3_video_points_stay_inside_their_instances_masks(folders: dict[str, Path], synth: Path) -> None:
    record = json.loads((synth / "stage2.jsonl").read_text().splitlines()[1])
    task = VideoTask(record["id"], str(synth / record["video"]), record["caption"], None, 1)
    config = AnnotateConfig(max_instances=2, max_track_frames=12)  # every 5th frame: a quicker test
    recorder = Recorder(build_segmenter("sam3-video", model_dir=str(folders["sam3"])))
    result = annotate_video(task, config, recorder)
    assert result.record is not None, result.failure
    margin = TrackerConfig().mask_margin
    fps, count, _, _ = video_info(task.video)
    _, sampled = frame_plan(tuple(result.record["clip"]), fps, count, config.num_frames, config.max_track_frames)
    for phrase in result.record["phrases"]:
        kept = sorted(recorder.returned[phrase["text"]], key=lambda m: -int(m.sum()))[: config.max_instances]
        masks = kept[phrase["instance"]][sampled]  # the instance's masks at the N reported frames
        points = np.rint(np.asarray(phrase["trajectory"]) * [128, 128] - 0.5).astype(int)
        for k, (frame_points, seen) in enumerate(zip(points, np.asarray(phrase["visibility"], dtype=bool))):
            for x, y in frame_points[seen]:
                window = masks[k, max(0, y - margin) : y + margin + 1, max(0, x - margin) : x + margin + 1]
                assert window.any(), f"{phrase['text']} #{phrase['instance']}: ({x}, {y}) outside its mask at {k}"
    instances = [p["instance"] for p in result.record["phrases"]]
    assert len(instances) == result.tracks and max(instances) < config.max_instances


def test_ground_truth_instances_are_numbered_most_visible_first(synth: Path, tmp_path: Path) -> None:
    """'the circles' names two objects: two entries of one span, instance 0 the larger; stage 2 keeps that one."""
    lines = {json.loads(line)["id"]: json.loads(line) for line in (synth / "stage2.jsonl").read_text().splitlines()}
    source = lines[PLURAL_CLIP]
    caption = "the circles move while a small green square leaves."
    task = {"id": "plural", "video": source["video"], "caption": caption}
    (synth / "plural.jsonl").write_text(json.dumps(task) + "\n")
    summary = run(synth / "plural.jsonl", tmp_path, AnnotateConfig(segmenter="gt", phrase_backend="rules"),
                  workers=1, progress=False)
    assert summary.records == 1
    record = json.loads((tmp_path / "annotations.jsonl").read_text())
    entries = [(p["text"], p["span"], p["instance"]) for p in record["phrases"]]
    assert entries == [("the circles", [0, 11], 0), ("the circles", [0, 11], 1),
                       ("a small green square", [23, 43], 0)]

    truth = load_ground_truth(synth / "gt" / PLURAL_CLIP)
    decoded, sampled = frame_plan(tuple(record["clip"]), truth.fps, len(truth.times), 8, 300)
    circles = [i for i, o in enumerate(truth.objects) if o["shape"] == "circle"]
    followed = []
    for phrase in record["phrases"][:2]:
        points = np.rint(np.asarray(phrase["trajectory"]) * [truth.width, truth.height] - 0.5).astype(int)
        visible = np.asarray(phrase["visibility"], dtype=bool)
        hits = [sum(int(truth.masks[i, decoded[s], y, x]) for s, row, seen in zip(sampled, points, visible)
                    for x, y in row[seen]) for i in circles]
        followed.append(circles[int(np.argmax(hits))])
        assert sorted(hits) == [0, max(hits)] and max(hits) >= 0.9 * visible.sum()  # on one object (the rest
        # lie within the tracker's mask margin of it)
    assert sorted(followed) == circles  # each instance follows its own circle
    areas = [int(truth.masks[i, decoded].sum()) for i in followed]
    assert areas[0] > areas[1]  # instance 0 is the most visible

    dataset = TrajectoryCaptionDataset(tmp_path / "annotations.jsonl")
    assert len(dataset) == 1 and dataset.extra_instances == 1 and dataset.report.skipped == 0
    trajectories = dataset.items[0][1].trajectories
    assert [(t.start, t.end) for t in trajectories] == [(0, 11), (23, 43)]
    assert np.allclose(trajectories[0].points, record["phrases"][0]["trajectory"])


def _stage2_line(instances: list[int], span: list[int] | None = None) -> dict:
    """A minimal stage-2 record (check_media off) whose one phrase has the given instance indices."""
    phrase = {"text": "the circles", "span": span or [0, 11], "trajectory": [[[0.5, 0.5]]], "visibility": [[1]]}
    return {"id": "r", "video": "v.mp4", "clip": [0, 1], "caption": "the circles move.", "num_frames": 1,
            "num_points": 1, "width": 8, "height": 8,
            "phrases": [{**phrase, "instance": k, "trajectory": [[[0.1 * (k + 1), 0.5]]]} for k in instances]}


def test_stage2_keeps_the_lowest_instance_and_refuses_a_repeated_one(tmp_path: Path) -> None:
    (tmp_path / "v.mp4").write_bytes(b"")
    lines = [_stage2_line([2, 1]), _stage2_line([0, 0]), _stage2_line([-1])]
    (tmp_path / "s2.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    dataset = TrajectoryCaptionDataset(tmp_path / "s2.jsonl", check_media=False)
    assert len(dataset) == 1 and dataset.extra_instances == 1
    assert np.allclose(dataset.items[0][1].trajectories[0].points, [[[0.2, 0.5]]])  # instance 1, not 2
    fields = sorted(example.field for examples in dataset.report.examples.values() for example in examples)
    assert fields == ["phrases[0].instance", "phrases[1].instance"]


def test_cli_names_missing_weights_before_any_video(tmp_path: Path) -> None:
    for back_end in (["sam3-video"], ["sam2-video", "--sam-dir", "owner/sam2"]):
        with pytest.raises(SystemExit, match="absent does not exist"):
            cli_main(["run", str(tmp_path / "in.jsonl"), "--out", str(tmp_path), "--segmenter", *back_end,
                      "--model-dir", str(tmp_path / "absent")])


def test_cli_runs_sam3_video_and_stage_2_trains_on_its_records(folders: dict[str, Path], synth: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "ann"
    first_two = (synth / "stage2.jsonl").read_text().splitlines()[:2]
    (tmp_path / "two.jsonl").write_text("".join(line + "\n" for line in first_two))
    cli_main(["run", str(tmp_path / "two.jsonl"), "--media-root", str(synth), "--out", str(out),
              "--segmenter", "sam3-video", "--model-dir", str(folders["sam3"]), "--max-instances", "2",
              "--max-track-frames", "12", "--no-progress"])
    records = [json.loads(line) for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        by_span: dict[tuple[int, int], list[int]] = {}
        for phrase in record["phrases"]:
            by_span.setdefault(tuple(phrase["span"]), []).append(phrase["instance"])
        assert all(indices == list(range(len(indices))) and len(indices) <= 2 for indices in by_span.values())
    config = {"stage": 2, "model": "tiny", "vocabulary": "synth", "output_dir": str(tmp_path / "stage2"),
              "data": [{"format": "pite143k", "path": str(out / "annotations.jsonl")}], "max_steps": 2,
              "batch_size": 2, "save_every": 2, "learning_rate": 1e-3}
    (tmp_path / "stage2.yaml").write_text(yaml.safe_dump(config))
    assert train_main(["--stage", "2", "--config", str(tmp_path / "stage2.yaml"), "--no-progress"]) == 0
    rows = MetricsLog.read(tmp_path / "stage2" / "metrics.jsonl")
    assert [row["step"] for row in rows] == [1, 2] and all(row["loss"] > 0 for row in rows)


def test_the_back_ends_match_the_processors_where_torchvision_imports(folders: dict[str, Path],
                                                                      tmp_path: Path) -> None:
    """Sam3VideoProcessor / Sam2VideoProcessor (torchvision) against the back-ends' own steps, same model."""
    pytest.importorskip("torchvision")
    import shutil

    import torch
    import transformers as t

    frames = np.random.default_rng(1).integers(0, 255, (8, 120, 160, 3), dtype=np.uint8)
    frames[:, 30:90, 40:100] = (200, 30, 30)
    sam3 = Path(shutil.copytree(folders["sam3"], tmp_path / "sam3"))
    video = t.Sam2VideoVideoProcessor(size={"height": 56, "width": 56}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    t.Sam3VideoProcessor(image_processor=t.Sam3ImageProcessor(size={"height": 56, "width": 56}), video_processor=video,
                         tokenizer=t.AutoTokenizer.from_pretrained(sam3)).save_pretrained(sam3)
    ours, processor = build_segmenter("sam3-video", model_dir=str(sam3)), t.Sam3VideoProcessor.from_pretrained(sam3)
    session = processor.add_text_prompt(processor.init_video_session(video=frames), "a red circle")
    theirs: dict[int, np.ndarray] = {}
    for output in ours.model.propagate_in_video_iterator(inference_session=session):
        post = processor.postprocess_outputs(session, output)
        for object_id, mask in zip(post["object_ids"].tolist(), post["masks"]):
            theirs.setdefault(object_id, np.zeros(frames.shape[:3], dtype=bool))[output.frame_idx] = mask.numpy()
    mine = ours.instances(frames, "a red circle")
    assert len(mine) == len(theirs) > 0
    for a, b in zip(mine, (theirs[k] for k in sorted(theirs))):
        assert (a & b).sum() / (a | b).sum() > 0.99

    sam2 = Path(shutil.copytree(folders["sam2"], tmp_path / "sam2"))
    square = {"height": 64, "width": 64}
    t.Sam2VideoProcessor(image_processor=t.Sam2ImageProcessor(size=square),
                         video_processor=t.Sam2VideoVideoProcessor(size=square)).save_pretrained(sam2)
    ours2 = build_segmenter("sam2-video", model_dir=str(folders["owlv2"]), sam_dir=str(sam2), threshold=0.0)
    processor2 = t.Sam2VideoProcessor.from_pretrained(sam2)
    start, box = 3, [40.0, 30.0, 99.0, 89.0]  # the red square, from the middle of the clip
    session = processor2.init_video_session(video=frames)
    processor2.add_inputs_to_inference_session(session, frame_idx=start, obj_ids=1, input_boxes=[[box]])
    reference = np.zeros(frames.shape[:3], dtype=bool)
    with torch.inference_mode():
        for reverse in (False, True):
            for output in ours2.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                reference[output.frame_idx] = processor2.post_process_masks(
                    [output.pred_masks], original_sizes=[[120, 160]])[0][0, 0].numpy()
    found = ours2.propagate(frames, start, box)
    assert found.any(axis=(1, 2)).all() and (found & reference).sum() / (found | reference).sum() > 0.99
