"""The synthetic world: determinism, ground truth consistency, true captions and answers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from pite_ros.model.temporal import temporal_vocabulary
from pite_ros.video import read_frames
from training.datasets import read_jsonl
from training.synth import generate, load_ground_truth, split_words, vocabulary
from training.synth.events import direction_of
from training.synth.records import STAGE_FILES
from training.synth.render import point_offsets, render
from training.synth.world import COLOURS, DIRECTIONS, WorldConfig, sample_scene, sample_still_scene

VIDEOS, IMAGES = 16, 6


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, videos=VIDEOS, images=IMAGES, split="train", seed=3)
    return out


def _decoded_colour(frames: np.ndarray, mask: np.ndarray) -> str:
    """Nearest palette colour of the decoded pixels inside an eroded mask."""
    inner = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    mean = frames[inner].mean(axis=0)
    return min(COLOURS, key=lambda c: np.abs(mean - COLOURS[c]).sum())


def test_same_seed_gives_identical_files_and_frames(synth: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, videos=VIDEOS, images=IMAGES, split="train", seed=3, workers=2)
    for name in (*STAGE_FILES, "manifest.json"):
        assert (again / name).read_bytes() == (synth / name).read_bytes(), name
    times = np.arange(0.0, 4.0, 0.5) + 0.0625
    for video in ("train_v000000.mp4", "train_v000007.mp4"):
        first = read_frames(synth / "videos" / video, times)
        second = read_frames(again / "videos" / video, times)
        assert np.array_equal(first, second)
    other = tmp_path / "eval"
    generate(other, videos=4, images=0, split="eval", seed=3)
    held_out = read_jsonl(other / "stage2.jsonl")
    trained = read_jsonl(synth / "stage2.jsonl")
    assert held_out[0]["id"] == "eval_v000000"
    assert all(h["phrases"] != t["phrases"] for h, t in zip(held_out, trained))


def test_manifest_counts_match_files(synth: Path) -> None:
    manifest = json.loads((synth / "manifest.json").read_text())
    assert manifest["counts"]["videos"] == VIDEOS and manifest["seed"] == 3
    for name in STAGE_FILES:
        assert manifest["counts"][name] == len(read_jsonl(synth / name))
    assert manifest["counts"]["stage2.jsonl"] == VIDEOS and manifest["counts"]["stage1.jsonl"] == IMAGES


def test_extra_frame_counts_annotate_the_same_phrases_at_those_frames(synth: Path, tmp_path: Path) -> None:
    """``extra_num_frames=(16,)`` adds stage2_16f.jsonl and changes no other file; its visible
    points lie on their object in the frames a 16-frame reader decodes."""
    generate(tmp_path, videos=VIDEOS, images=IMAGES, split="train", seed=3, config=WorldConfig(extra_num_frames=(16,)))
    for name in STAGE_FILES:
        assert (tmp_path / name).read_bytes() == (synth / name).read_bytes(), name
    dense, sparse = read_jsonl(tmp_path / "stage2_16f.jsonl"), read_jsonl(synth / "stage2.jsonl")
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"]["stage2_16f.jsonl"] == VIDEOS
    for record, eight in zip(dense, sparse):
        assert (record["id"], record["caption"], record["num_frames"]) == (eight["id"], eight["caption"], 16)
        truth = load_ground_truth(tmp_path / "gt" / f"{record['id']}.npz")
        frames = np.round((np.arange(16) + 0.5) * record["clip"][1] / 16 * truth.fps - 0.5).astype(int)
        for phrase, other in zip(record["phrases"], eight["phrases"]):
            assert (phrase["text"], phrase["span"]) == (other["text"], other["span"])
            points, visible = np.array(phrase["trajectory"]), np.array(phrase["visibility"], bool)
            assert points.shape == (16, 8, 2) and visible.any()
            obj = truth.object_by_phrase(f"the {' '.join(phrase['text'].split()[-2:])}")["index"]
            pixels = np.round(points * (truth.width, truth.height) - 0.5).astype(int)
            k, j = np.nonzero(visible)
            assert truth.masks[obj, frames[k], pixels[k, j, 1], pixels[k, j, 0]].all()
    with pytest.raises(ValueError, match="extra_num_frames"):
        WorldConfig(extra_num_frames=(8,))


def test_masks_agree_with_centres(synth: Path) -> None:
    checked = 0
    for index in range(VIDEOS):
        truth = load_ground_truth(synth / "gt" / f"train_v{index:06d}.npz")
        assert truth.masks.shape[:2] == truth.centres.shape[:2] == truth.visible.shape
        assert truth.masks.shape[1] == round(truth.duration * truth.fps)
        assert np.array_equal(truth.visible, truth.masks.any(axis=(2, 3)))
        areas = truth.masks.sum(axis=(2, 3))
        # No object hides behind another all along: each shows half its area for a second.
        assert ((areas >= 0.5 * areas.max(axis=1, keepdims=True)).sum(axis=1) >= truth.fps).all()
        for obj in range(areas.shape[0]):
            for frame in np.flatnonzero(areas[obj] == areas[obj].max()):
                ys, xs = np.nonzero(truth.masks[obj, frame])
                # Whole, unhidden symmetric shapes: the mask's centroid is the centre.
                assert abs(xs.mean() - truth.centres[obj, frame, 0]) < 1.0
                assert abs(ys.mean() - truth.centres[obj, frame, 1]) < 1.0
                checked += 1
    assert checked > VIDEOS


def test_point_offsets_lie_inside_rendered_shapes() -> None:
    config = WorldConfig()
    scene = sample_scene(np.random.default_rng(0), config)
    for spec in scene.objects:
        for shape in ("circle", "square", "triangle", "star"):
            offsets = point_offsets(shape, 8)
            assert offsets.shape == (8, 2) and len({tuple(o) for o in offsets.round(3)}) == 8
    one = render(scene, np.array([0.0625]))
    for spec in scene.objects:
        pixels = np.round(one.centres[spec.index, 0] + point_offsets(spec.shape, 8) * spec.radius).astype(int)
        inside = (pixels >= 0).all(axis=1) & (pixels[:, 0] < config.width) & (pixels[:, 1] < config.height)
        assert one.silhouettes[spec.index, 0][pixels[inside, 1], pixels[inside, 0]].all()


def test_captions_match_rendered_motion(synth: Path) -> None:
    seen = set()
    for record in read_jsonl(synth / "stage2.jsonl"):
        truth = load_ground_truth(synth / "gt" / record["id"])
        for obj in truth.objects:
            events = obj["events"]
            index = obj["index"]
            for event in events:
                seen.add(event["type"])
                frames = (np.asarray([event["start"], event["end"]]) * truth.fps - 0.5).round().astype(int)
                if event["type"] == "move":
                    shift = truth.centres[index, frames[1]] - truth.centres[index, frames[0]]
                    assert direction_of(shift) == event["direction"]
                    assert f"moves {event['direction']}" in record["caption"] or any(
                        e["type"] == "enter" for e in events)
                if event["type"] == "enter":
                    assert not truth.visible[index, 0] and truth.visible[index, frames[0]]
                    assert f"enters from the {event['side']}" in record["caption"]
                if event["type"] == "leave":
                    assert not truth.visible[index, -1] and truth.visible[index, frames[1]]
                    assert f"leaves at the {event['side']}" in record["caption"]
        for phrase in record["phrases"]:
            assert record["caption"][slice(*phrase["span"])] == phrase["text"]
    assert {"enter", "move"} <= seen


def test_answers_are_true_of_the_rendered_video(synth: Path) -> None:
    checked = {"colour_of_mover": 0, "count": 0, "direction": 0}
    for record in read_jsonl(synth / "stage3_conversations.jsonl"):
        truth = load_ground_truth(synth / "gt" / record["id"].removesuffix("_conv"))
        turns = record["conversations"]
        for question, answer in zip(turns[::2], turns[1::2]):
            text, reply = question["value"].replace("<video>\n", ""), answer["value"].rstrip(".")
            if match := re.fullmatch(r"what colour is the object that moves (\w+)\?", text):
                movers = [
                    o for o in truth.objects
                    if any(e["type"] == "move" and e["direction"] == match[1] for e in o["events"])
                ]
                assert len(movers) == 1
                frames = read_frames(synth / "videos" / f"{truth.id}.mp4", truth.times)
                frame = int(np.argmax(truth.masks[movers[0]["index"]].sum(axis=(1, 2))))
                assert _decoded_colour(frames[frame], truth.masks[movers[0]["index"], frame]) == reply
                checked["colour_of_mover"] += 1
            elif text == "how many objects are there?":
                words = ["zero", "one", "two", "three", "four", "five"]
                assert words.index(reply) == int(truth.visible.any(axis=1).sum())
                checked["count"] += 1
            elif match := re.fullmatch(r"which way does the (\w+) (\w+) move\?", text):
                obj = truth.object_by_phrase(f"the {match[1]} {match[2]}")
                move = next(e for e in obj["events"] if e["type"] == "move")
                frames = (np.asarray([move["start"], move["end"]]) * truth.fps - 0.5).round().astype(int)
                shift = truth.centres[obj["index"], frames[1]] - truth.centres[obj["index"], frames[0]]
                assert np.sign(shift) @ np.asarray(DIRECTIONS[reply]) > 0
                checked["direction"] += 1
    assert sum(checked.values()) >= 3


def test_grounding_records_name_the_event_type_of_their_segments(synth: Path) -> None:
    verbs = {"enter": "enters from", "move": "moves", "leave": "leaves at", "pass-in-front": "passes in front of"}
    records = read_jsonl(synth / "stage3_grounding.jsonl")
    for record in records:
        assert verbs[record["kind"]] in record["query"]
        truth = load_ground_truth(synth / "gt" / record["id"].rsplit("_g", 1)[0])
        subject = truth.object_by_phrase(" ".join(record["query"].split()[:3]))
        own = {(round(e["start"], 3), round(e["end"], 3)) for e in subject["events"] if e["type"] == record["kind"]}
        assert {tuple(s) for s in record["timestamps"]} <= own
    assert {"enter", "move"} <= {r["kind"] for r in records}


def test_vocabulary_covers_every_text(synth: Path) -> None:
    words = set(vocabulary()) | set(temporal_vocabulary())
    assert {"red", "circle", "enters", "left", "three", "<grounded>", "?", "(", "A"} <= words
    texts = []
    for name in STAGE_FILES:
        for record in read_jsonl(synth / name):
            texts += [record.get(k, "") for k in ("caption", "query", "question")]
            texts += record.get("options", []) + [e["caption"] for e in record.get("events", [])]
            texts += [turn["value"] for turn in record.get("conversations", [])]
    unknown = {w for text in texts for w in split_words(re.sub(r"<\d+\.\d+>", "", text))} - words - {"<video>"}
    assert not unknown


def test_crowded_still_scenes_keep_object_indices_contiguous() -> None:
    config = WorldConfig(width=32, height=32)
    counts = []
    for seed in range(10):
        scene = sample_still_scene(np.random.default_rng(seed), config, max_objects=8)
        assert [o.index for o in scene.objects] == list(range(len(scene.objects)))
        masks = render(scene, np.array([0.5])).masks
        assert masks.shape[0] == len(scene.objects) and masks.any(axis=(1, 2, 3)).all()
        counts.append(len(scene.objects))
    assert max(counts) < 8  # objects that find no room are left out
