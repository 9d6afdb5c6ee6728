"""Plain result and example types shared by the model, the engines, training and the node.

Coordinates are normalised to [0, 1] (x right, y down, as REP 103 image frames); times
are seconds from the start of the clip. Nothing here imports torch or rclpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class SpanPoint:
    """Stage-1 target: the location of the characters ``response[start:end]`` in the image."""

    start: int
    end: int
    xy: tuple[float, float]


@dataclass(frozen=True)
class SpanTrajectory:
    """Stage-2 target: the trajectory of the object named by ``response[start:end]``.

    ``points`` is ``(frames, points, 2)`` normalised; ``visible`` is ``(frames, points)`` bool.
    """

    start: int
    end: int
    points: np.ndarray
    visible: np.ndarray


@dataclass
class Example:
    """One model-ready training or evaluation example, independent of any tokenizer.

    ``frames`` is ``(N, H, W, 3)`` uint8 RGB, sampled uniformly over the clip (see
    ``pite_ros.video.uniform_frame_times``). ``response`` may hold temporal tokens such as
    ``<47>`` (see ``pite_ros.model.temporal``); span targets index characters of ``response``.
    """

    id: str
    frames: np.ndarray
    prompt: str
    response: str
    duration: float
    points: list[SpanPoint] = field(default_factory=list)
    trajectories: list[SpanTrajectory] = field(default_factory=list)


# Called after each generated token with (token id, answer text so far); returning False stops
# generation there (the node's action uses it for streamed feedback and cancel).
TokenCallback = Callable[[int, str], bool]

# A point whose visibility probability (``PhraseTrack.visibility``) is below this counts as hidden:
# the node publishes it STATE_OCCLUDED, and the evaluation scores the head's calls so.
VISIBLE_THRESHOLD = 0.5


@dataclass
class PhraseTrack:
    """A noun phrase of an answer and the trajectory the model predicts for it.

    ``trajectory`` is ``(N, P, 2)`` normalised, one row per input frame; ``visibility``
    ``(N, P)`` the probability that each point is visible in its frame, from a model with a
    visibility head (None without one).
    """

    text: str
    span: tuple[int, int]
    trajectory: np.ndarray
    score: float
    visibility: np.ndarray | None = None


@dataclass(frozen=True)
class TimeSegment:
    """A time interval named by temporal tokens, in seconds from the clip start."""

    start: float
    end: float
    text: str = ""


@dataclass
class AnswerResult:
    """What an engine returns for one (clip, question)."""

    text: str
    phrases: list[PhraseTrack]
    segments: list[TimeSegment]
    token_ids: list[int]
    frame_times: np.ndarray
