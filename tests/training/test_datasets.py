"""Dataset readers: they parse what pite-synth writes, and skip and count bad records."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from pite_ros.model.temporal import DEFAULT_NUM_TIME_BINS, parse_segments, temporal_vocabulary
from training.datasets import (
    ConversationDataset,
    DenseCaptionDataset,
    GroundingDataset,
    LocalizedNarrativesDataset,
    MultipleChoiceDataset,
    TrajectoryCaptionDataset,
    merged_report,
    open_stage,
    read_jsonl,
    resample_trajectory,
)
from training.datasets import report as reasons
from training.datasets.prompts import GROUNDED_TOKEN
from training.synth import WorldConfig, generate, load_ground_truth, split_words, vocabulary

VIDEOS, IMAGES, SIZE = 8, 6, 64


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, videos=VIDEOS, images=IMAGES, split="eval", seed=11)
    return out


def _write(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def test_stage1_word_locations_land_on_their_objects(synth: Path) -> None:
    data = LocalizedNarrativesDataset(synth / "stage1.jsonl", image_size=SIZE)
    assert len(data) == IMAGES and data.report.skipped == 0
    located = 0
    for example in data:
        assert example.frames.shape == (1, SIZE, SIZE, 3) and example.frames.dtype == np.uint8
        assert example.prompt == "Describe the image." and example.duration == 0.0
        truth = load_ground_truth(synth / "gt" / example.id.split("/")[1])
        parts = re.split(r", | and ", example.response.removeprefix("there is ").rstrip("."))
        offset = len("there is ")
        for part in parts:
            start = example.response.index(part, offset)
            words = part.split()
            obj = truth.object_by_phrase(f"the {words[2]} {words[3]}")
            inside = [p for p in example.points if start <= p.start < start + len(part)]
            assert len(inside) == len(words)
            for point in inside:
                x, y = (np.asarray(point.xy) * (truth.width, truth.height) - 0.5).round().astype(int)
                assert truth.masks[obj["index"], 0, y, x]
                located += 1
            offset = start + len(part)
        fillers = {example.response[p.start:p.end] for p in example.points} & {"there", "is"}
        assert not fillers
    assert located > IMAGES * 4


def test_stage2_reader_returns_frames_and_phrase_trajectories(synth: Path) -> None:
    data = TrajectoryCaptionDataset(synth / "stage2.jsonl", image_size=(SIZE, SIZE - 16))
    records = read_jsonl(synth / "stage2.jsonl")
    assert len(data) == VIDEOS and data.report.skipped == 0
    for example, record in zip(data, records):
        n, p = record["num_frames"], record["num_points"]
        assert example.frames.shape == (n, SIZE - 16, SIZE, 3)
        assert example.response == record["caption"] and example.prompt == "Describe the video."
        assert len(example.trajectories) == len(record["phrases"])
        for target, phrase in zip(example.trajectories, record["phrases"]):
            assert example.response[target.start:target.end] == phrase["text"]
            assert target.points.shape == (n, p, 2) and target.visible.shape == (n, p)
            assert target.visible.dtype == bool and 0 <= target.points.min() <= target.points.max() <= 1


def test_stage2_visible_points_lie_on_their_object_in_decoded_frames(synth: Path) -> None:
    data = TrajectoryCaptionDataset(synth / "stage2.jsonl")
    for example in list(data)[:3]:
        truth = load_ground_truth(synth / "gt" / example.id)
        frames = np.round((np.arange(8) + 0.5) * example.duration / 8 * truth.fps - 0.5).astype(int)
        for target in example.trajectories:
            phrase = example.response[target.start:target.end].split()
            obj = truth.object_by_phrase(f"the {phrase[-2]} {phrase[-1]}")["index"]
            pixels = np.round(target.points * (truth.width, truth.height) - 0.5).astype(int)
            k, j = np.nonzero(target.visible)
            assert truth.masks[obj, frames[k], pixels[k, j, 1], pixels[k, j, 0]].all()


def test_resampling_a_linear_trajectory_is_exact() -> None:
    times = (np.arange(8) + 0.5) / 8 * 4.0
    points = np.stack([np.stack([times / 4, 1 - times / 4], axis=1)] * 3, axis=1)  # (8, 3, 2)
    visible = np.zeros((8, 3), bool)
    visible[4:] = True
    moved, seen = resample_trajectory(points, visible, (0.0, 4.0), 4)
    new_times = (np.arange(4) + 0.5) / 4 * 4.0
    clamped = np.clip(new_times, times[0], times[-1]) / 4
    assert np.allclose(moved[:, 0, 0], clamped) and np.allclose(moved[:, 2, 1], 1 - clamped)
    assert seen[:, 0].tolist() == [False, False, True, True]


def test_stage3_readers_parse_synth_output(synth: Path) -> None:
    conversations = ConversationDataset(synth / "stage3_conversations.jsonl", image_size=SIZE, num_frames=4)
    turns = sum(len(r["conversations"]) // 2 for r in read_jsonl(synth / "stage3_conversations.jsonl"))
    assert len(conversations) == turns > VIDEOS and conversations.report.skipped == 0
    for example in conversations:
        assert example.frames.shape == (4, SIZE, SIZE, 3) and "<video>" not in example.prompt
        assert example.response.endswith(".")
    later = [e for e in conversations if e.id.endswith("#1")]
    assert later and all(e.prompt.startswith("USER: ") and "\nASSISTANT: " in e.prompt for e in later)
    for cls, name in ((DenseCaptionDataset, "dense"), (MultipleChoiceDataset, "mcq"), (GroundingDataset, "grounding")):
        data = cls(synth / f"stage3_{name}.jsonl", image_size=SIZE, num_frames=4)
        assert len(data) == len(read_jsonl(synth / f"stage3_{name}.jsonl")) > 0 and data.report.skipped == 0
        assert data[0].frames.shape == (4, SIZE, SIZE, 3)


def test_grounding_tokens_map_back_to_event_times(synth: Path) -> None:
    data = GroundingDataset(synth / "stage3_grounding.jsonl", num_frames=2)
    assert len(data) > 0
    for (_, item), record in zip(data.items, read_jsonl(synth / "stage3_grounding.jsonl")):
        truth = json.loads((synth / "gt" / Path(record["video"]).with_suffix(".json").name).read_text())
        assert item.prompt.startswith(GROUNDED_TOKEN) and record["query"] in item.prompt
        name = " ".join(record["query"].split()[:3])
        obj = next(o for o in truth["objects"] if o["phrase"] == name)
        kind = {"enters": "enter", "moves": "move", "leaves": "leave", "passes": "pass-in-front"}[record["query"].split()[3]]
        expected = [(e["start"], e["end"]) for e in obj["events"] if e["type"] == kind]
        found = parse_segments(item.response, item.duration)
        assert len(found) == len(expected)
        for segment, (start, end) in zip(found, expected):
            tolerance = truth["duration"] / DEFAULT_NUM_TIME_BINS
            assert abs(segment.start - start) <= tolerance and abs(segment.end - end) <= tolerance


def test_dense_and_choice_responses(synth: Path) -> None:
    dense = DenseCaptionDataset(synth / "stage3_dense.jsonl", num_frames=2)
    for (_, item), record in zip(dense.items, read_jsonl(synth / "stage3_dense.jsonl")):
        segments = parse_segments(item.response, item.duration)
        assert [s.text for s in segments] == [e["caption"] for e in sorted(
            record["events"], key=lambda e: tuple(e["timestamps"]))]
    choice = MultipleChoiceDataset(synth / "stage3_mcq.jsonl", num_frames=2)
    for (_, item), record in zip(choice.items, read_jsonl(synth / "stage3_mcq.jsonl")):
        letter = "ABCD"[record["answer"]]
        assert item.response.startswith(f"{record['options'][record['answer']]} ({letter}).")
        assert item.prompt.endswith("\n".join(f"({'ABCD'[i]}) {o}" for i, o in enumerate(record["options"])))
        assert ("timestamps" in record) == ("From <" in item.response) == item.prompt.startswith(GROUNDED_TOKEN)


def test_every_prompt_and_response_is_in_the_world_vocabulary(synth: Path) -> None:
    words = set(vocabulary()) | set(temporal_vocabulary())
    datasets = [
        LocalizedNarrativesDataset(synth / "stage1.jsonl"),
        TrajectoryCaptionDataset(synth / "stage2.jsonl"),
        *(cls(synth / f"stage3_{name}.jsonl") for cls, name in (
            (ConversationDataset, "conversations"), (GroundingDataset, "grounding"),
            (DenseCaptionDataset, "dense"), (MultipleChoiceDataset, "mcq"))),
    ]
    for data in datasets:
        for _, item in data.items:
            assert set(split_words(item.prompt + " " + item.response)) <= words, item.id


def test_conversation_seconds_become_temporal_tokens(synth: Path, tmp_path: Path) -> None:
    video = str(synth / "videos" / "eval_v000000.mp4")
    duration = read_jsonl(synth / "stage2.jsonl")[0]["clip"][1]
    turns = [{"from": "human", "value": "<video>\nwhat happens from <1.00> to <2.5>?"},
             {"from": "gpt", "value": "from <1.0> to <2.50>."}]
    path = _write(tmp_path / "c.jsonl", [{"video_file": video, "question_id": "q7", "conversation": turns}])
    example = ConversationDataset(path, num_frames=2)[0]
    first, second = round(300 * 1.0 / duration), round(300 * 2.5 / duration)
    assert example.id == "q7#0" and example.duration == duration
    assert example.prompt == f"{GROUNDED_TOKEN} what happens from <{first}> to <{second}>?"
    assert example.response == f"from <{first}> to <{second}>."


def _stage2_record(synth: Path) -> dict:
    return read_jsonl(synth / "stage2.jsonl")[0]


def _with(record: dict, path: str, value: object) -> dict:
    """A deep copy of ``record`` with the field at dotted ``path`` set (or deleted for ...)."""
    copy = json.loads(json.dumps(record))
    *parents, last = path.split(".")
    target = copy
    for key in parents:
        target = target[int(key)] if key.isdigit() else target[key]
    if value is ...:
        del target[last]
    else:
        target[int(last) if last.isdigit() else last] = value
    return copy


def test_bad_stage2_records_are_skipped_and_counted(synth: Path, tmp_path: Path) -> None:
    good = _stage2_record(synth)
    good["video"] = str(synth / good["video"])
    (tmp_path / "broken.mp4").write_text("not a video")
    caption = good["caption"]
    trajectory = good["phrases"][0]["trajectory"]
    bad = {
        reasons.MISSING_VIDEO: _with(good, "video", str(tmp_path / "absent.mp4")),
        reasons.UNREADABLE_VIDEO: _with(good, "video", str(tmp_path / "broken.mp4")),
        reasons.MISSING_FIELD: _with(good, "caption", ...),
        reasons.BAD_FIELD: _with(good, "num_frames", "8"),
        reasons.OUT_OF_RANGE: _with(good, "phrases.0.trajectory.0.0.0", 1.5),
        reasons.BAD_SPAN: _with(good, "phrases.0.span", [len(caption) - 2, len(caption) + 5]),
        reasons.SPAN_MISMATCH: _with(good, "phrases.0.span", [1, 1 + len(good["phrases"][0]["text"])]),
        reasons.BAD_SHAPE: _with(good, "phrases.0.trajectory", trajectory[:-1]),
        reasons.BAD_TIME: _with(good, "clip", [0.0, good["clip"][1] + 5.0]),
        reasons.NO_TARGET: _with(good, "phrases", []),
    }
    path = _write(tmp_path / "s2.jsonl", [good, *bad.values(), "{not json", good])
    data = TrajectoryCaptionDataset(path, image_size=SIZE)
    assert len(data) == 2 and data.report.loaded == 2
    assert dict(data.report.counts) == {**{reason: 1 for reason in bad}, reasons.BAD_JSON: 1}
    shape_error = data.report.examples[reasons.BAD_SHAPE][0]
    assert shape_error.file == str(path) and shape_error.line == 9 and shape_error.field == "phrases[0].trajectory"
    assert data.report.examples[reasons.BAD_FIELD][0].field == "num_frames"
    assert data[1].frames.shape[0] == good["num_frames"]
    assert "skipped 11" in data.report.summary()


def test_bad_stage1_records_are_skipped_and_counted(synth: Path, tmp_path: Path) -> None:
    good = read_jsonl(synth / "stage1.jsonl")[0]
    good["image"] = str(synth / good["image"])
    far = _with(good, "traces.0.0.x", 1.3)
    near = _with(good, "traces.0.0.x", 1.02)  # within the overshoot margin: clipped, kept
    silent = _with(good, "traces", [])
    no_image = _with(good, "image", str(tmp_path / "none.png"))
    bad_time = _with(good, "timed_caption.0.start_time", "soon")
    data = LocalizedNarrativesDataset(_write(tmp_path / "s1.jsonl", [good, far, near, silent, no_image, bad_time]))
    assert len(data) == 2
    assert dict(data.report.counts) == {
        reasons.OUT_OF_RANGE: 1, reasons.NO_TARGET: 1, reasons.MISSING_VIDEO: 1, reasons.BAD_FIELD: 1}
    assert data.report.examples[reasons.BAD_FIELD][0].field == "timed_caption[0].start_time"


def test_bad_stage3_records_are_skipped_and_counted(synth: Path, tmp_path: Path) -> None:
    video = str(synth / "videos" / "eval_v000001.mp4")
    grounding = {"video": video, "duration": 4.0, "query": "the red circle moves left", "timestamps": [[0.5, 1.5]]}
    rows = [grounding, _with(grounding, "timestamps", [[1.5, 0.5]]), _with(grounding, "timestamps", [[1.0, 9.0]]),
            _with(grounding, "query", ...)]
    data = GroundingDataset(_write(tmp_path / "g.jsonl", rows), num_frames=2)
    assert len(data) == 1 and dict(data.report.counts) == {reasons.BAD_TIME: 2, reasons.MISSING_FIELD: 1}
    mcq = {"video": video, "duration": 4.0, "question": "what colour?", "options": ["red", "blue"], "answer": 1}
    data = MultipleChoiceDataset(_write(tmp_path / "m.jsonl", [mcq, _with(mcq, "answer", 2), _with(mcq, "options", "red")]))
    assert len(data) == 1 and data.report.counts[reasons.BAD_FIELD] == 2
    assert data[0].response == "blue (B)." and data[0].prompt == "Question: what colour?\nOptions:\n(A) red\n(B) blue"
    talk = {"video": video, "conversations": [{"from": "gpt", "value": "hello."}]}
    dense = {"video": video, "duration": 4.0, "events": [{"timestamps": [0, 1], "caption": "x"}, {"caption": "y"}]}
    assert ConversationDataset(_write(tmp_path / "c.jsonl", [talk])).report.counts[reasons.BAD_FIELD] == 1
    dense_data = DenseCaptionDataset(_write(tmp_path / "d.jsonl", [dense]))
    assert dense_data.report.examples[reasons.MISSING_FIELD][0].field == "events[1].timestamps"


def test_a_video_lost_after_validation_falls_back_to_the_next_record(synth: Path, tmp_path: Path) -> None:
    records = read_jsonl(synth / "stage2.jsonl")[:3]
    for record in records:
        shutil.copy(synth / record["video"], tmp_path / Path(record["video"]).name)
        record["video"] = Path(record["video"]).name
    data = TrajectoryCaptionDataset(_write(tmp_path / "s2.jsonl", records))
    (tmp_path / records[1]["video"]).unlink()
    assert data[1].id == records[2]["id"] and data[0].id == records[0]["id"]
    assert data.report.counts[reasons.UNREADABLE_VIDEO] == 1
    assert data[1].id == records[2]["id"] and data.report.counts[reasons.UNREADABLE_VIDEO] == 1


def test_open_stage_reads_every_file_of_a_synth_folder(synth: Path) -> None:
    counts = {stage: [len(d) for d in open_stage(synth, stage, image_size=SIZE, num_frames=4)] for stage in (1, 2, 3)}
    assert counts[1] == [IMAGES] and counts[2] == [VIDEOS] and len(counts[3]) == 4
    stage2 = open_stage(synth, 2, num_frames=4)[0][0]
    assert stage2.frames.shape[0] == 4 and stage2.trajectories[0].points.shape[0] == 4
    report = merged_report(open_stage(synth, 3))
    assert report.skipped == 0 and report.loaded == sum(counts[3])


def test_open_stage_reads_the_folders_records_annotated_at_the_asked_frame_count(tmp_path: Path) -> None:
    """A folder with ``stage2_16f.jsonl`` gives its exact 16-frame trajectories for num_frames=16
    (not ``stage2.jsonl``'s 8 rows resampled, which miss a stop or start between two rows);
    another frame count still resamples ``stage2.jsonl``."""
    generate(tmp_path, videos=4, images=0, split="eval", seed=5, config=WorldConfig(extra_num_frames=(16,)))
    exact = TrajectoryCaptionDataset(tmp_path / "stage2_16f.jsonl")
    resampled = TrajectoryCaptionDataset(tmp_path / "stage2.jsonl", num_frames=16)
    opened = open_stage(tmp_path, 2, num_frames=16)
    assert len(opened) == 1 and len(opened[0]) == len(exact) == 4
    pairs = [(a, b, c) for i in range(4) for a, b, c in
             zip(opened[0][i].trajectories, exact[i].trajectories, resampled[i].trajectories)]
    assert all(np.array_equal(a.points, b.points) and np.array_equal(a.visible, b.visible) for a, b, _ in pairs)
    assert any(not np.allclose(a.points, c.points) for a, _, c in pairs)
    six = open_stage(tmp_path, 2, num_frames=6)[0][0]
    assert six.trajectories[0].points.shape[0] == 6 and six.id == resampled[0].id


def test_stage1_utterances_are_matched_in_order_and_case_insensitively(synth: Path, tmp_path: Path) -> None:
    image = str(synth / read_jsonl(synth / "stage1.jsonl")[0]["image"])
    record = {
        "image": image,
        "caption": "In this image, a dog. A dog runs.",
        "timed_caption": [
            {"utterance": "in this", "start_time": 0.0, "end_time": 1.0},
            {"utterance": "a dog", "start_time": 2.0, "end_time": 3.0},
            {"utterance": "cat", "start_time": 3.0, "end_time": 3.5},
            {"utterance": "a dog", "start_time": 4.0, "end_time": 5.0},
        ],
        "traces": [[{"x": 0.1, "y": 0.2, "t": 0.5}, {"x": 0.3, "y": 0.4, "t": 0.7}],
                   [{"x": 0.8, "y": 0.9, "t": 4.5}]],
    }
    example = LocalizedNarrativesDataset(_write(tmp_path / "ln.jsonl", [record]))[0]
    spans = [(example.response[p.start:p.end], p.xy) for p in example.points]
    assert spans[:2] == [("In", pytest.approx((0.2, 0.3))), ("this", pytest.approx((0.2, 0.3)))]
    assert [text for text, _ in spans[2:]] == ["A", "dog"]  # the second "a dog"; the first has no trace
    assert example.points[2].start == example.response.index("A dog")
    assert spans[2][1] == pytest.approx((0.8, 0.9))
