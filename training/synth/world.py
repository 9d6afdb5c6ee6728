"""The synthetic world's objects and how they move: sampled scenes with analytic motion.

An object is a flat shape (circle, square, triangle, star) of one colour and size whose
centre moves piecewise-linearly: a list of phases, each still or moving along one axis at a
constant speed. A scene's stories (stay still, move, move then stop, stay then move,
enter from a side, enter and stop, leave through a side) are sampled so that at the first
and last frame every object is either fully inside or fully outside the frame, and every
object is visible for at least a second. What the captions say is later read off the
rendered frames (``events``), not off these stories.

Pixel coordinates follow OpenCV: x right, y down, pixel ``(i, j)`` centred at ``(i, j)``.
Frame ``i`` shows the world at time ``(i + 0.5) / fps`` (the convention of
``pite_ros.video.read_frames``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# Vocabulary of the world (RGB colours chosen far apart in hue so MPEG-4 keeps them apart).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 190, 60),
    "blue": (50, 90, 240),
    "yellow": (240, 220, 40),
    "purple": (170, 60, 220),
    "orange": (250, 140, 20),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star")
# Radius (half extent) of an object as a fraction of min(width, height).
SIZES: dict[str, float] = {"small": 0.075, "large": 0.13}
# Unit motion of each direction word, in pixel axes (y down).
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
# The frame side an object crosses when moving in a direction, and its opposite.
EXIT_SIDE = {"left": "left", "right": "right", "up": "top", "down": "bottom"}
ENTRY_SIDE = {"left": "right", "right": "left", "up": "bottom", "down": "top"}
BACKGROUND: tuple[int, int, int] = (60, 60, 60)
MAX_OBJECTS = 6
STORIES = ("still", "move", "move_stop", "still_move", "enter", "enter_stop", "leave")


@dataclass(frozen=True)
class WorldConfig:
    """Sizes and counts of the rendered world (defaults: small and fast)."""

    width: int = 128
    height: int = 128
    fps: int = 8
    min_seconds: int = 4
    max_seconds: int = 8
    min_objects: int = 1
    max_objects: int = 3
    num_frames: int = 8  # N: trajectory frames per stage-2 record
    # Further N: the same stage-2 records annotated at each of these frame counts too, in
    # stage2_{N}f.jsonl. A model reading another N than a record's resamples its trajectory
    # linearly, which is not where a piecewise-linear mover is (see records.stage2_file).
    extra_num_frames: tuple[int, ...] = ()
    num_points: int = 8  # P: tracked points per object
    min_speed: float = 0.25  # fraction of min(width, height) per second
    max_speed: float = 0.45

    def __post_init__(self) -> None:
        if not 1 <= self.min_objects <= self.max_objects <= MAX_OBJECTS:
            raise ValueError(f"need 1 <= min_objects <= max_objects <= {MAX_OBJECTS} (count words go to six)")
        if not 1 <= self.min_seconds <= self.max_seconds:
            raise ValueError("need 1 <= min_seconds <= max_seconds")
        if min(self.width, self.height) < 24 or self.fps < 1 or self.num_frames < 1 or self.num_points < 1:
            raise ValueError("frames must be at least 24x24 pixels, and fps, num_frames, num_points positive")
        extra = tuple(self.extra_num_frames)
        if any(n < 1 or n == self.num_frames for n in extra) or len(set(extra)) != len(extra):
            raise ValueError(f"extra_num_frames must be distinct positive counts other than num_frames, got {extra}")
        object.__setattr__(self, "extra_num_frames", extra)  # a list from JSON becomes the tuple


@dataclass(frozen=True)
class Phase:
    """A time interval ``[start, end]`` (s) of constant velocity ``(vx, vy)`` px/s (zero: still)."""

    start: float
    end: float
    velocity: tuple[float, float]

    @property
    def moving(self) -> bool:
        return self.velocity != (0.0, 0.0)


@dataclass(frozen=True)
class ObjectSpec:
    """One object: appearance, depth (larger is nearer) and motion from ``origin`` at t = 0."""

    index: int
    colour: str
    shape: str
    size: str
    radius: float
    depth: int
    origin: tuple[float, float]
    phases: tuple[Phase, ...]

    @property
    def name(self) -> str:
        """The definite referring phrase, unique within a scene: ``the red circle``."""
        return f"the {self.colour} {self.shape}"

    def position(self, time: float | np.ndarray) -> np.ndarray:
        """Centre ``(2,)`` or ``(T, 2)`` in pixels at ``time`` seconds."""
        t = np.asarray(time, dtype=np.float64)
        centre = np.broadcast_to(np.asarray(self.origin, dtype=np.float64), t.shape + (2,)).copy()
        for phase in self.phases:
            elapsed = np.clip(t, phase.start, phase.end) - phase.start
            centre += elapsed[..., None] * np.asarray(phase.velocity)
        return centre


@dataclass(frozen=True)
class Scene:
    """A clip: its size, timing and objects (``frame_count = seconds * fps``)."""

    config: WorldConfig
    seconds: int
    objects: tuple[ObjectSpec, ...] = field(default_factory=tuple)

    @property
    def frame_count(self) -> int:
        return self.seconds * self.config.fps

    def frame_times(self) -> np.ndarray:
        """World time shown by each frame, ``(T,)``: frame centres ``(i + 0.5) / fps``."""
        return (np.arange(self.frame_count) + 0.5) / self.config.fps


def _inside_range(extent: float, radius: float) -> tuple[float, float]:
    """Centre coordinates along an axis of ``extent`` pixels that keep the object fully inside."""
    return radius + 1.0, extent - 2.0 - radius


def _state(spec: ObjectSpec, time: float, width: int, height: int) -> str:
    """``inside`` / ``outside`` / ``partial`` of an object's bounding box at ``time``."""
    x, y = spec.position(time)
    r = spec.radius
    if r + 1 <= x <= width - 2 - r and r + 1 <= y <= height - 2 - r:
        return "inside"
    if x < -r - 1 or x > width + r or y < -r - 1 or y > height + r:
        return "outside"
    return "partial"


def _acceptable(spec: ObjectSpec, scene_seconds: int, config: WorldConfig) -> bool:
    """Fully in or out at the first and last frame, and fully inside for at least a second."""
    times = (np.arange(scene_seconds * config.fps) + 0.5) / config.fps
    states = [_state(spec, t, config.width, config.height) for t in (times[0], times[-1])]
    if "partial" in states:
        return False
    inside = sum(_state(spec, t, config.width, config.height) == "inside" for t in times)
    return inside >= config.fps


def _story(
    rng: np.random.Generator, story: str, seconds: int, radius: float, speed: float, config: WorldConfig
) -> tuple[tuple[float, float], tuple[Phase, ...]]:
    """Origin and phases for one story (not yet checked against the frame)."""
    extent = {"x": config.width, "y": config.height}
    direction = str(rng.choice(list(DIRECTIONS)))
    ux, uy = DIRECTIONS[direction]
    velocity = (float(ux * speed), float(uy * speed))
    still = (0.0, 0.0)
    axis, other = ("x", "y") if ux else ("y", "x")
    sign = ux or uy
    lo, hi = _inside_range(extent[axis], radius)
    cross = float(rng.uniform(*_inside_range(extent[other], radius)))
    split = float(np.round(rng.uniform(0.3, 0.7) * seconds, 3))
    if story == "still":
        along, phases = float(rng.uniform(lo, hi)), (Phase(0.0, seconds, still),)
    elif story in ("move", "move_stop", "still_move"):
        moving_time = seconds if story == "move" else (split if story == "move_stop" else seconds - split)
        travel = speed * moving_time
        start_lo, start_hi = (lo, hi - travel) if sign > 0 else (lo + travel, hi)
        along = float(rng.uniform(start_lo, max(start_lo, start_hi)))
        phases = {
            "move": (Phase(0.0, seconds, velocity),),
            "move_stop": (Phase(0.0, split, velocity), Phase(split, seconds, still)),
            "still_move": (Phase(0.0, split, still), Phase(split, seconds, velocity)),
        }[story]
    elif story in ("enter", "enter_stop"):
        # Start outside the side opposite the motion, so that entering begins after a delay.
        delay = float(rng.uniform(0.2, 0.4) * seconds)
        outside = -radius - 2.0 if sign > 0 else extent[axis] + radius + 1.0
        along = outside - sign * speed * delay
        phases = (Phase(0.0, seconds, velocity),)
        if story == "enter_stop":
            entered = delay + (2 * radius + 4) / speed
            stop = float(np.round(rng.uniform(entered + 0.3, max(entered + 0.3, seconds - 0.5)), 3))
            phases = (Phase(0.0, stop, velocity), Phase(stop, seconds, still))
    else:  # leave: stay, then move out through the side ahead
        exit_at = extent[axis] + radius + 1.0 if sign > 0 else -radius - 2.0
        reach = speed * (seconds - split)
        start_lo, start_hi = (max(lo, exit_at - reach), hi) if sign > 0 else (lo, min(hi, exit_at + reach))
        along = float(rng.uniform(start_lo, max(start_lo, start_hi)))
        phases = (Phase(0.0, split, still), Phase(split, seconds, velocity))
    origin = (along, cross) if axis == "x" else (cross, along)
    return origin, phases


def sample_scene(rng: np.random.Generator, config: WorldConfig) -> Scene:
    """A random scene: duration, objects with unique (colour, shape), stories that fit the frame."""
    seconds = int(rng.integers(config.min_seconds, config.max_seconds + 1))
    count = int(rng.integers(config.min_objects, config.max_objects + 1))
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    chosen = rng.choice(len(pairs), size=count, replace=False)
    depths = rng.permutation(count)
    scale = min(config.width, config.height)
    objects = []
    for index, pair_index in enumerate(chosen):
        colour, shape = pairs[int(pair_index)]
        size = str(rng.choice(list(SIZES)))
        radius = SIZES[size] * scale
        spec = None
        for _ in range(30):
            story = str(rng.choice(STORIES))
            speed = float(rng.uniform(config.min_speed, config.max_speed) * scale)
            origin, phases = _story(rng, story, seconds, radius, speed, config)
            candidate = ObjectSpec(index, colour, shape, size, radius, int(depths[index]), origin, phases)
            if _acceptable(candidate, seconds, config):
                spec = candidate
                break
        if spec is None:  # a still object always fits
            origin = tuple(float(rng.uniform(*_inside_range(e, radius))) for e in (config.width, config.height))
            spec = ObjectSpec(index, colour, shape, size, radius, int(depths[index]), origin,
                              (Phase(0.0, seconds, (0.0, 0.0)),))
        objects.append(spec)
    return Scene(config, seconds, tuple(objects))


def sample_still_scene(rng: np.random.Generator, config: WorldConfig, max_objects: int = 4) -> Scene:
    """A one-frame scene for stage 1: 1..max_objects still objects, fully inside, not touching."""
    count = int(rng.integers(1, max_objects + 1))
    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    chosen = rng.choice(len(pairs), size=count, replace=False)
    scale = min(config.width, config.height)
    objects: list[ObjectSpec] = []
    for pair_index in chosen:
        colour, shape = pairs[int(pair_index)]
        size = str(rng.choice(list(SIZES)))
        radius = SIZES[size] * scale
        for _ in range(50):
            origin = tuple(float(rng.uniform(*_inside_range(e, radius))) for e in (config.width, config.height))
            if all(np.hypot(origin[0] - o.origin[0], origin[1] - o.origin[1]) > radius + o.radius + 3 for o in objects):
                index = len(objects)  # indices stay 0..n-1 when an object finds no room
                objects.append(ObjectSpec(index, colour, shape, size, radius, index, origin,
                                          (Phase(0.0, 1.0, (0.0, 0.0)),)))
                break
    return Scene(config, 1, tuple(objects))
