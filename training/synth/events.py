"""Events read off a rendered scene: what captions, questions and ground truth talk about.

Times are seconds on the frame-centre clock of ``Scene.frame_times``. Every event has a
``start`` and an ``end`` (equal for instants):
- ``enter``: from the first frame with any of the object inside the frame to the first
  frame with all of it inside; ``side`` is where it came from.
- ``leave``: from the last frame fully inside to the last frame with any of it inside.
- ``move``: a moving phase, clipped to the time the object is in the frame (at least 0.25 s);
  ``direction`` from the actual displacement (dominant axis).
- ``stop`` / ``start``: a moving phase followed by a still one, or the reverse, while in frame.
- ``pass-in-front``: the object's silhouette overlaps ``other``'s (which is farther) for a
  run of frames that neither starts at the first frame nor ends at the last one, while one
  of the two moves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from training.synth.render import Rendering
from training.synth.world import DIRECTIONS, Scene

MIN_MOVE_SECONDS = 0.25
MIN_OVERLAP_PIXELS = 4


@dataclass(frozen=True)
class Event:
    """One event of one object (see the module docstring for each ``type``)."""

    type: str
    start: float
    end: float
    side: str | None = None
    direction: str | None = None
    other: int | None = None

    def to_json(self) -> dict:
        """Fields that apply to this type, times rounded to milliseconds."""
        data = {k: v for k, v in asdict(self).items() if v is not None}
        data["start"], data["end"] = round(self.start, 3), round(self.end, 3)
        return data


def direction_of(displacement: np.ndarray) -> str:
    """The direction word of a displacement ``(dx, dy)`` in pixels (y down)."""
    dx, dy = displacement
    unit = (int(np.sign(dx)), 0) if abs(dx) >= abs(dy) else (0, int(np.sign(dy)))
    return next(word for word, vector in DIRECTIONS.items() if vector == unit)


def side_of(centre: np.ndarray, width: int, height: int) -> str:
    """The frame side a centre outside the frame lies beyond (the farthest overshoot)."""
    x, y = centre
    overshoot = {"left": -x, "right": x - (width - 1), "top": -y, "bottom": y - (height - 1)}
    return max(overshoot, key=overshoot.get)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``(first, last)`` index pairs of the runs of True in a 1-D bool array."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    changes = np.flatnonzero(np.diff(padded))
    return [(int(a), int(b) - 1) for a, b in zip(changes[::2], changes[1::2])]


def object_events(scene: Scene, rendering: Rendering, index: int) -> list[Event]:
    """Events of object ``index`` except pass-in-front, ordered by start time."""
    spec = scene.objects[index]
    times = rendering.times
    width, height = scene.config.width, scene.config.height
    present = rendering.in_frame[index] > 0
    full = rendering.in_frame[index] >= 1.0
    if not present.any():
        return []
    first, last = int(np.argmax(present)), len(present) - 1 - int(np.argmax(present[::-1]))
    seen = (times[first], times[last])
    events = []
    if first > 0:
        first_full = first + int(np.argmax(full[first:])) if full[first:].any() else last
        side = side_of(rendering.centres[index, 0], width, height)
        events.append(Event("enter", times[first], times[first_full], side=side))
    for previous, phase in zip((None, *spec.phases[:-1]), spec.phases):
        start, end = max(phase.start, seen[0]), min(phase.end, seen[1])
        if phase.moving and end - start >= MIN_MOVE_SECONDS:
            displacement = spec.position(end) - spec.position(start)
            events.append(Event("move", start, end, direction=direction_of(displacement)))
        if previous is not None and seen[0] <= phase.start <= seen[1] and previous.moving != phase.moving:
            kind = "start" if phase.moving else "stop"
            events.append(Event(kind, phase.start, phase.start))
    if last < len(present) - 1:
        last_full = int(np.flatnonzero(full[: last + 1])[-1]) if full[: last + 1].any() else first
        side = side_of(rendering.centres[index, -1], width, height)
        events.append(Event("leave", times[last_full], times[last], side=side))
    return sorted(events, key=lambda e: (e.start, e.end))


def pass_events(scene: Scene, rendering: Rendering) -> dict[int, list[Event]]:
    """``pass-in-front`` events of every nearer object of an overlapping pair."""
    result: dict[int, list[Event]] = {o.index: [] for o in scene.objects}
    times = rendering.times
    for near in scene.objects:
        for far in scene.objects:
            if near.depth <= far.depth:
                continue
            overlap = (rendering.silhouettes[near.index] & rendering.silhouettes[far.index]).sum(axis=(1, 2))
            for a, b in _runs(overlap >= MIN_OVERLAP_PIXELS):
                if a == 0 or b == len(times) - 1:
                    continue
                moving = any(
                    p.moving and p.start < times[b] and p.end > times[a] for p in near.phases + far.phases
                )
                if moving:
                    result[near.index].append(Event("pass-in-front", times[a], times[b], other=far.index))
    return result


def scene_events(scene: Scene, rendering: Rendering) -> list[list[Event]]:
    """Every object's events (pass-in-front included), each list ordered by start time."""
    passes = pass_events(scene, rendering)
    return [
        sorted(object_events(scene, rendering, o.index) + passes[o.index], key=lambda e: (e.start, e.end))
        for o in scene.objects
    ]
