"""Classical and ground-truth segmenters on a drawn clip with exact masks (training.synth render)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pite_ros.video import read_frames
from training.annotate.segmenters import ClipContext, available, build_segmenter
from training.annotate.segmenters.classical import classify_shape
from training.annotate.segmenters.groundtruth import match_object
from training.synth.groundtruth import GroundTruth, save_ground_truth
from training.synth.records import write_video
from training.synth.render import render
from training.synth.world import ObjectSpec, Phase, Scene, WorldConfig

FPS = 8


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray, list[dict]]:
    """A 3 s clip: a red circle moving right, a still blue square, a still red triangle.

    Returns ``(video path, decoded frames, true masks (O, T, H, W), object facts)``; the
    ground truth is also saved beside it in the pite-synth layout (``videos/``, ``gt/``).
    """
    root = tmp_path_factory.mktemp("drawn")
    config = WorldConfig(width=128, height=96, fps=FPS)
    objects = (
        ObjectSpec(0, "red", "circle", "large", 14.0, 2, (24.0, 30.0), (Phase(0.0, 3.0, (20.0, 0.0)),)),
        ObjectSpec(1, "blue", "square", "large", 14.0, 1, (96.0, 68.0), (Phase(0.0, 3.0, (0.0, 0.0)),)),
        ObjectSpec(2, "red", "triangle", "small", 10.0, 0, (30.0, 72.0), (Phase(0.0, 3.0, (0.0, 0.0)),)),
    )
    scene = Scene(config, 3, objects)
    rendering = render(scene, scene.frame_times())
    (root / "videos").mkdir()
    video = root / "videos" / "drawn.mp4"
    write_video(video, rendering.frames, FPS)
    facts = [{"id": f"obj{o.index}", "index": o.index, "phrase": o.name, "colour": o.colour, "shape": o.shape,
              "size": o.size, "radius": o.radius, "depth": o.depth, "events": []} for o in objects]
    save_ground_truth(root / "gt", GroundTruth("drawn", 128, 96, float(FPS), 3.0, rendering.times, rendering.masks,
                                               rendering.centres, rendering.masks.any(axis=(2, 3)), facts))
    return video, read_frames(video, rendering.times), rendering.masks, facts


def iou(found: np.ndarray, truth: np.ndarray) -> float:
    return float((found & truth).sum() / max((found | truth).sum(), 1))


def test_registry_names() -> None:
    assert {"classical", "gt", "clipseg", "owlv2-sam", "grounding-dino-sam"} <= set(available())
    with pytest.raises(ValueError, match="unknown segmenter"):
        build_segmenter("glamm")


@pytest.mark.parametrize(("phrase", "index"), [("the red circle", 0), ("a large blue square", 1),
                                               ("the small red triangle", 2)])
def test_classical_finds_coloured_shapes(clip, phrase: str, index: int) -> None:
    _, frames, masks, _ = clip
    found = build_segmenter("classical").segment(frames, phrase)
    assert found is not None and found.shape == masks[index].shape and found.dtype == bool
    assert iou(found, masks[index]) > 0.8  # measured about 0.9 (luminance-trimmed colour masks)


def test_classical_says_nothing_for_an_absent_object(clip) -> None:
    _, frames, _, _ = clip
    assert build_segmenter("classical").segment(frames, "the green star") is None


def test_classical_motion_for_phrases_without_colour_or_shape(clip) -> None:
    _, frames, masks, _ = clip
    found = build_segmenter("classical").segment(frames, "something moving")
    assert found is not None
    # Only the circle moves: the motion mask overlaps it and none of the still shapes.
    assert iou(found, masks[0]) > 0.5
    assert (found & (masks[1] | masks[2])).sum() < 0.05 * found.sum()


def test_shape_classes() -> None:
    import cv2

    def contour(draw) -> np.ndarray:
        canvas = np.zeros((64, 64), np.uint8)
        draw(canvas)
        return cv2.findContours(canvas, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)[0][0]

    assert classify_shape(contour(lambda c: cv2.circle(c, (32, 32), 12, 1, -1))) == "circle"
    assert classify_shape(contour(lambda c: cv2.rectangle(c, (20, 20), (44, 44), 1, -1))) == "square"
    triangle = np.array([[32, 10], [54, 50], [10, 50]], np.int32)
    assert classify_shape(contour(lambda c: cv2.fillPoly(c, [triangle], 1))) == "triangle"
    angles = np.deg2rad(-90 + 36 * np.arange(10))
    radii = np.where(np.arange(10) % 2 == 0, 22, 10)
    star = np.stack([32 + radii * np.cos(angles), 32 + radii * np.sin(angles)], 1).astype(np.int32)
    assert classify_shape(contour(lambda c: cv2.fillPoly(c, [star], 1))) == "star"


def test_ground_truth_segmenter_returns_the_true_masks(clip) -> None:
    video, frames, masks, facts = clip
    indices = np.array([0, 5, 11, 23])
    context = ClipContext(str(video), "drawn", indices, (128, 96))
    found = build_segmenter("gt").segment(frames[indices], "a red circle", context)
    assert found is not None and np.array_equal(found, masks[0, indices])
    assert build_segmenter("gt").segment(frames[indices], "the red star", context) is None
    assert match_object(facts, "the triangle") is None  # no colour: no match
    assert match_object(facts, "a red thing") is None


def test_ground_truth_size_breaks_a_tie() -> None:
    facts = [{"colour": "red", "shape": "circle", "size": size} for size in ("large", "small")]
    assert match_object(facts, "the red circle") is None
    assert match_object(facts, "the small red circle") == 1
