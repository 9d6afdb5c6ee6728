"""The synthetic world's own masks as a segmenter, to measure the later stages alone.

Reads ``gt/<id>.npz|json`` (``training.synth.load_ground_truth``) and matches a phrase to
the object whose colour AND shape words it contains (a size word breaks a tie; still
ambiguous or unmatched: no mask). As an instance segmenter (``instances``) it returns every
object the phrase's words fit instead: the named colour and/or shape (at least one named),
narrowed by a size word; so "the circles" gives each circle, as a video segmenter would.
``gt_dir`` defaults to ``<video folder>/../gt``, the layout ``pite-synth`` writes
(``videos/``, ``gt/``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from training.annotate.segmenters import words
from training.annotate.segmenters.base import ClipContext, register
from training.synth import GroundTruth, load_ground_truth


def match_object(objects: list[dict], phrase: str) -> int | None:
    """Index into ``objects`` (ground-truth facts) of the object the phrase names, or None."""
    colours, shapes, size = words.colours(phrase), words.shapes(phrase), words.size(phrase)
    matches = [i for i, o in enumerate(objects) if o["colour"] in colours and o["shape"] in shapes]
    if len(matches) > 1 and size is not None:
        matches = [i for i in matches if objects[i].get("size") == size]
    return matches[0] if len(matches) == 1 else None


def match_objects(objects: list[dict], phrase: str) -> list[int]:
    """Indices of every object whose colour and shape fit the phrase's words (those it names)."""
    colours, shapes, size = words.colours(phrase), words.shapes(phrase), words.size(phrase)
    if not colours and not shapes:
        return []
    matches = [i for i, o in enumerate(objects)
               if (not colours or o["colour"] in colours) and (not shapes or o["shape"] in shapes)]
    sized = [i for i in matches if objects[i].get("size") == size]
    return sized if size is not None and sized else matches


class GroundTruthSegmenter:
    """Exact masks of synthetic clips (needs ``ClipContext`` to find the clip and its frames)."""

    name = "gt"
    all_frames = True

    def __init__(self, gt_dir: str | None = None) -> None:
        self.gt_dir = Path(gt_dir) if gt_dir else None

    def segment(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> np.ndarray | None:
        """The matched object's visible masks at ``context.frame_indices``, resized to ``frames``."""
        truth = self._truth(context)
        index = match_object(truth.objects, phrase)
        if index is None:
            return None
        masks = self._masks(truth, index, frames, context)
        return masks if masks.any() else None

    def instances(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> list[np.ndarray]:
        """Masks of every object the phrase's words fit (``match_objects``), in the scene's object order."""
        truth = self._truth(context)
        return [self._masks(truth, index, frames, context) for index in match_objects(truth.objects, phrase)]

    def _truth(self, context: ClipContext | None) -> GroundTruth:
        if context is None:
            raise ValueError("the ground-truth segmenter needs the clip context (video id and frame indices)")
        return _load(str(self._path(context)))

    @staticmethod
    def _masks(truth: GroundTruth, index: int, frames: np.ndarray, context: ClipContext) -> np.ndarray:
        masks = truth.masks[index, np.clip(context.frame_indices, 0, truth.masks.shape[1] - 1)]
        height, width = frames.shape[1:3]
        if masks.shape[1:] != (height, width):
            masks = np.stack([cv2.resize(m.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST)
                              for m in masks]).astype(bool)
        return masks

    def _path(self, context: ClipContext) -> Path:
        folder = self.gt_dir or Path(context.video).resolve().parent.parent / "gt"
        for name in (context.video_id, Path(context.video).stem):
            if (folder / f"{name}.npz").is_file():
                return folder / name
        raise FileNotFoundError(f"no ground truth {context.video_id}.npz in {folder}")


@lru_cache(maxsize=4)
def _load(path: str) -> GroundTruth:
    return load_ground_truth(path)


@register("gt")
def build(**options: object) -> GroundTruthSegmenter:
    """Factory for the registry (option: ``gt_dir``)."""
    return GroundTruthSegmenter(**options)  # type: ignore[arg-type]
