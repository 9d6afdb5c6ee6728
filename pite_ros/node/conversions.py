"""An engine's ``AnswerResult`` for a clip -> the ``pite_msgs`` ``Answer`` and ``TrackArray`` it publishes.

Engines speak in clip terms: trajectories normalised to [0, 1] with one row per frame the
model saw, times in seconds from the clip start. The node speaks the camera's terms
(REP 103/105, docs/node.md): source-image pixels (x right, y down, sub-pixel floats), and the
stamps and frame_id of the source images, never ``now()``. So:

- ``(x, y)`` normalised -> ``(x * width, y * height)`` source pixels;
- row ``i`` of a trajectory -> the stamp of frame ``i`` the model saw; rows that fall on
  the same source frame (a clip with fewer frames than the model takes repeats frames)
  are averaged into one point per ``(stamp, point_id)``;
- a time segment's seconds -> ``clip_start + seconds`` on the source clock;
- the header -> the clip's frame_id and the stamp of its last image;
- track ids -> a slug of the phrase without articles (``"the red circle"`` ->
  ``"red-circle"``), stable across messages, ``-2``, ``-3`` ... for repeats in one answer;
- scores clamped to [0, 1]; non-finite coordinates dropped.

``Answer.clip_start``/``clip_end`` are the first and last stamps of the clip window whose
span the engine was told (its time origin), both stamps of real source images; the N
frames the model saw are sampled inside it (``Clip.sample``). Answer text shows temporal
tokens as seconds from the clip start; phrase spans index that rendered text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from builtin_interfaces.msg import Duration, Time
from std_msgs.msg import Header

from pite_msgs.msg import Answer, ObjectTrack, TimeSegment, TrackArray, TrackPoint
from pite_ros.model.temporal import DEFAULT_NUM_TIME_BINS, render_time_tokens
from pite_ros.types import VISIBLE_THRESHOLD, AnswerResult, PhraseTrack

NS_PER_S = 1_000_000_000
_ARTICLES = {"a", "an", "the"}


class SourceFrames(Protocol):
    """What the conversion needs of the frames the model saw (``clip_buffer.Clip`` has it)."""

    stamps: np.ndarray  # (N,) int nanoseconds, one per trajectory row
    frame_id: str
    width: int
    height: int
    start_ns: int
    end_ns: int


def ns_to_time(ns: int) -> Time:
    """``builtin_interfaces/Time`` of ``ns`` nanoseconds since the epoch."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return Time(sec=sec, nanosec=nanosec)


def time_to_ns(stamp: Time) -> int:
    """Nanoseconds of a ``builtin_interfaces/Time``."""
    return stamp.sec * NS_PER_S + stamp.nanosec


def seconds_to_duration(seconds: float) -> Duration:
    """``builtin_interfaces/Duration`` of ``seconds`` (rounded to the nanosecond)."""
    sec, nanosec = divmod(round(seconds * NS_PER_S), NS_PER_S)
    return Duration(sec=sec, nanosec=nanosec)


def clamp_score(score: float) -> float:
    """``score`` clamped to [0, 1]; NaN becomes 0."""
    return 0.0 if math.isnan(score) else min(max(float(score), 0.0), 1.0)


def track_slug(phrase: str) -> str:
    """Lower-case words of ``phrase`` without articles, joined by ``-``: ``"The red circle"`` -> ``"red-circle"``.

    A phrase of articles or punctuation only gives ``"object"``.
    """
    words = [word for word in re.findall(r"[a-z0-9]+", phrase.lower()) if word not in _ARTICLES]
    return "-".join(words) or "object"


def track_ids(phrases: Sequence[str]) -> list[str]:
    """``track_slug`` of each phrase, unique within one answer: repeats get ``-2``, ``-3``, ... in order."""
    used: set[str] = set()
    ids = []
    for phrase in phrases:
        slug = candidate = track_slug(phrase)
        repeat = 1
        while candidate in used:
            repeat += 1
            candidate = f"{slug}-{repeat}"
        used.add(candidate)
        ids.append(candidate)
    return ids


def object_track(phrase: PhraseTrack, track_id: str, frames: SourceFrames, span: tuple[int, int],
                 text: str | None = None) -> ObjectTrack:
    """One phrase's trajectory ``(N, P, 2)`` normalised -> an ``ObjectTrack`` in source pixels and stamps.

    ``span`` is the phrase's character span in the published text and ``text`` the phrase as
    published there (default ``phrase.text``). Raises ``ValueError`` naming the phrase when the
    trajectory does not have one row per frame the model saw.
    """
    trajectory = np.asarray(phrase.trajectory, dtype=np.float64)
    stamps = np.asarray(frames.stamps, dtype=np.int64)
    if trajectory.ndim != 3 or trajectory.shape[0] != len(stamps) or trajectory.shape[2] != 2:
        raise ValueError(
            f"trajectory of '{phrase.text}' has shape {trajectory.shape}; expected ({len(stamps)}, points, 2)"
        )
    score = clamp_score(phrase.score)
    track = ObjectTrack(id=track_id, phrase=phrase.text if text is None else text, span_start=span[0],
                        span_end=span[1], score=score)
    unique, rows = np.unique(stamps, return_inverse=True)  # sorted stamps, the frame of each row
    pixels = trajectory * np.array([frames.width, frames.height], dtype=np.float64)
    visible = point_visibility(phrase, trajectory.shape[:2])
    for frame, stamp_ns in enumerate(unique.tolist()):
        stamp = ns_to_time(stamp_ns)
        points = pixels[rows == frame].mean(axis=0)  # (P, 2): repeated frames averaged
        seen = visible[rows == frame].mean(axis=0) >= VISIBLE_THRESHOLD  # (P,)
        finite = np.isfinite(points).all(axis=1)
        for point_id in np.flatnonzero(finite).tolist():
            x, y = points[point_id]
            track.points.append(TrackPoint(stamp=stamp, point_id=point_id, x=float(x), y=float(y), score=score,
                                           state=_state(seen[point_id])))
        if finite.any():
            shown = finite & seen if (finite & seen).any() else finite  # the centroid of what is seen, if any
            cx, cy = points[shown].mean(axis=0)
            track.centroid.append(TrackPoint(stamp=stamp, point_id=0, x=float(cx), y=float(cy), score=score,
                                             state=_state(bool((finite & seen).any()))))
    return track


def point_visibility(phrase: PhraseTrack, shape: tuple[int, int]) -> np.ndarray:
    """``(N, P)`` probabilities that each point is visible: the model's visibility head, or 1
    everywhere for a model without one. A head of another shape is an error naming the phrase."""
    if phrase.visibility is None:
        return np.ones(shape)
    visibility = np.asarray(phrase.visibility, dtype=np.float64)
    if visibility.shape != shape:
        raise ValueError(f"visibility of '{phrase.text}' has shape {visibility.shape}; expected {shape}")
    return visibility


def _state(visible: bool) -> int:
    return TrackPoint.STATE_OBSERVED if visible else TrackPoint.STATE_OCCLUDED


def to_messages(
    result: AnswerResult,
    frames: SourceFrames,
    *,
    question: str,
    query_id: str,
    model_name: str,
    inference_seconds: float,
    score_threshold: float = 0.0,
    clip_start_ns: int | None = None,
    clip_end_ns: int | None = None,
    num_time_bins: int = DEFAULT_NUM_TIME_BINS,
) -> tuple[Answer, TrackArray]:
    """The ``Answer`` and ``TrackArray`` of ``result`` about the frames the model saw.

    ``frames`` are the N sampled frames (``Clip.sample``): their stamps stamp the trajectory
    rows. ``clip_start_ns``/``clip_end_ns`` default to ``frames.start_ns``/``end_ns`` (the
    window the engine's clock runs over). Phrases scoring below ``score_threshold`` are
    left out; ``num_time_bins`` is the engine's M for rendering temporal tokens.
    """
    start_ns = frames.start_ns if clip_start_ns is None else int(clip_start_ns)
    end_ns = frames.end_ns if clip_end_ns is None else int(clip_end_ns)
    header = Header(stamp=ns_to_time(end_ns), frame_id=frames.frame_id)
    duration = (end_ns - start_ns) / NS_PER_S
    text, offsets = (
        render_time_tokens(result.text, duration, num_time_bins) if duration > 0
        else (result.text, list(range(len(result.text) + 1)))
    )
    kept = [phrase for phrase in result.phrases if clamp_score(phrase.score) >= score_threshold]
    last = len(result.text)
    spans = [tuple(offsets[min(max(i, 0), last)] for i in phrase.span) for phrase in kept]
    # The published phrase IS the published text at its span (the engine's phrase holds no
    # temporal token: pite_ros.text takes them out before parsing), and its id comes from it.
    published = [text[start:end] for start, end in spans]
    tracks = [
        object_track(phrase, track_id, frames, span, text=words)
        for phrase, span, words, track_id in zip(kept, spans, published, track_ids(published))
    ]
    segments = []
    for segment in result.segments:
        low, high = sorted((segment.start, segment.end))
        segments.append(TimeSegment(start=ns_to_time(start_ns + round(low * NS_PER_S)),
                                    end=ns_to_time(start_ns + round(high * NS_PER_S)), text=segment.text))
    answer = Answer(
        header=header, query_id=query_id, question=question, text=text, tracks=tracks, segments=segments,
        clip_start=ns_to_time(start_ns), clip_end=ns_to_time(end_ns), frame_count=len(frames.stamps),
        width=frames.width, height=frames.height, model_name=model_name,
        inference_time=seconds_to_duration(inference_seconds),
    )
    track_array = TrackArray(
        header=header, clip_start=answer.clip_start, clip_end=answer.clip_end, width=frames.width,
        height=frames.height, query_id=query_id, tracks=tracks,
    )
    return answer, track_array
