"""Per-clip ground truth of the synthetic world: ``gt/<id>.npz`` arrays and ``gt/<id>.json`` facts.

``<id>.npz`` (``np.savez_compressed``, no pickled objects): ``masks`` ``(O, T, H, W)`` bool,
each object's visible pixels (parts hidden by a nearer object excluded) in every rendered
frame; ``centres`` ``(O, T, 2)`` float pixel coordinates (OpenCV convention, pixel ``(i, j)``
centred at ``(i, j)``; also when hidden or outside the frame); ``visible`` ``(O, T)`` bool, any
visible pixel; ``times`` ``(T,)`` the time each frame shows, ``(i + 0.5) / fps``.
``<id>.json``: ``id``, ``width``, ``height``, ``fps``, ``duration``, ``frame_count`` and
``objects``: ``[{id, index, phrase, colour, shape, size, radius, depth, events: [{type,
start, end, side?, direction?, other?}]}]`` (event types in ``training.synth.events``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class GroundTruth:
    """Masks, centres, visibility and object facts of one synthetic clip or image."""

    id: str
    width: int
    height: int
    fps: float
    duration: float
    times: np.ndarray
    masks: np.ndarray
    centres: np.ndarray
    visible: np.ndarray
    objects: list[dict]

    def normalised_centres(self) -> np.ndarray:
        """``(O, T, 2)`` centres in [0, 1] image units (``(x + 0.5) / width``), not clipped."""
        return (self.centres + 0.5) / np.array([self.width, self.height])

    def object_by_phrase(self, phrase: str) -> dict:
        """The object whose definite phrase (``the red circle``) is ``phrase``."""
        return next(o for o in self.objects if o["phrase"] == phrase)


def save_ground_truth(folder: Path, truth: GroundTruth) -> None:
    """Write ``<id>.npz`` and ``<id>.json`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        folder / f"{truth.id}.npz",
        masks=truth.masks.astype(bool),
        centres=truth.centres.astype(np.float32),
        visible=truth.visible.astype(bool),
        times=truth.times.astype(np.float64),
    )
    facts = {
        "id": truth.id,
        "width": truth.width,
        "height": truth.height,
        "fps": truth.fps,
        "duration": truth.duration,
        "frame_count": int(truth.times.shape[0]),
        "objects": truth.objects,
    }
    (folder / f"{truth.id}.json").write_text(json.dumps(facts, indent=1) + "\n", encoding="utf-8")


def load_ground_truth(path: str | Path) -> GroundTruth:
    """Load a clip's ground truth from its ``.npz`` or ``.json`` path (or the path without suffix)."""
    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".npz", ".json") else base
    facts = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
    with np.load(base.with_suffix(".npz"), allow_pickle=False) as arrays:
        masks, centres = arrays["masks"], arrays["centres"].astype(np.float64)
        visible, times = arrays["visible"], arrays["times"]
    return GroundTruth(
        id=facts["id"],
        width=int(facts["width"]),
        height=int(facts["height"]),
        fps=float(facts["fps"]),
        duration=float(facts["duration"]),
        times=times,
        masks=masks,
        centres=centres,
        visible=visible,
        objects=facts["objects"],
    )
