"""One video through the three stages: noun phrases, referring masks, point tracks -> a stage-2 record.

PiTe-143k (docs/papers.md, "the automatic annotation pipeline"): noun phrases of the caption,
a mask per phrase in the frames, points inside each mask tracked through the clip into
trajectories with visibility. A back-end that separates a phrase's objects (``sam3-video``)
gives several instances; each is tracked on its own and becomes its own phrase entry with an
``instance`` index (0 = the most visible, ``segment_instances``; at most ``max_instances``).
Tracking runs over every decoded frame between the first and the last of the N uniformly
sampled frames (or every k-th frame when there are more than ``max_track_frames``; the
sampled frames are always kept), and the record reports the N sampled ones. Frames larger
than ``max_side`` are downscaled first; coordinates are normalised as ``(x + 0.5) / width``
(pixel centres at integers, as ``training.synth``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pite_ros.text import extract_phrases
from pite_ros.video import VideoReadError, nearest_frame_indices, read_frames, uniform_frame_times, video_info
from training.annotate.records import NO_PHRASE, NO_TRACK, Failure, VideoTask, stage2_record
from training.annotate.segmenters import ClipContext, Segmenter, build_segmenter, segment_instances
from training.annotate.tracking import TrackerConfig, track_points
from training.datasets.report import BAD_TIME, MISSING_VIDEO, UNREADABLE_VIDEO

STAGES = ("decode", "phrases", "segment", "track")


@dataclass(frozen=True)
class AnnotateConfig:
    """Everything that decides a video's annotation (picklable, so workers get the same)."""

    num_frames: int = 8  # N
    num_points: int = 8  # P
    segmenter: str = "classical"
    segmenter_options: tuple[tuple[str, object], ...] = ()
    tracker: TrackerConfig = TrackerConfig()
    max_side: int = 640
    max_track_frames: int = 300
    max_instances: int = 4  # instances kept per phrase (the most visible)
    phrase_backend: str | None = None  # "spacy", "rules" or None (spaCy when installed)


@dataclass
class VideoResult:
    """What annotating one video gave: a record or a failure, and counts/timings for the summary."""

    id: str
    record: dict | None = None
    failure: Failure | None = None
    phrases: int = 0
    phrases_without_mask: int = 0
    tracks: int = 0
    frames: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))


@lru_cache(maxsize=2)
def cached_segmenter(name: str, options: tuple[tuple[str, object], ...]) -> Segmenter:
    """One segmenter per process and configuration (model weights load once per worker)."""
    return build_segmenter(name, **dict(options))


def frame_plan(
    clip: tuple[float, float], fps: float, count: int, num_frames: int, max_frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(decoded (T,), sampled (N,))``: video frame indices to track through, and each sample's position in them."""
    samples = nearest_frame_indices(uniform_frame_times(clip[0], clip[1], num_frames), fps, count)
    first, last = int(samples[0]), int(samples[-1])
    stride = max(1, int(np.ceil((last - first + 1) / max_frames)))
    decoded = np.union1d(np.arange(first, last + 1, stride), samples)
    return decoded, np.searchsorted(decoded, samples)


def annotate_video(task: VideoTask, config: AnnotateConfig, segmenter: Segmenter | None = None) -> VideoResult:
    """Annotate one video; bad input gives ``result.failure`` (never an exception for expected faults)."""
    result = VideoResult(task.id)
    timer = time.perf_counter()
    phrases = extract_phrases(task.caption, config.phrase_backend)  # type: ignore[arg-type]
    result.seconds["phrases"] = time.perf_counter() - timer
    result.phrases = len(phrases)
    if not phrases:
        message = f"no noun phrase in caption {task.caption!r:.80}"
        result.failure = Failure(task.id, NO_PHRASE, message, task.video, task.line)
        return result
    if not Path(task.video).is_file():
        result.failure = Failure(task.id, MISSING_VIDEO, f"{task.video} does not exist", task.video, task.line)
        return result
    timer = time.perf_counter()
    try:
        fps, count, width, height = video_info(task.video)
        clip = task.clip or (0.0, count / fps)
        if clip[1] > count / fps + 0.01:
            result.failure = Failure(task.id, BAD_TIME, f"clip {list(clip)} ends after the video ({count / fps:.3f} s)",
                                     task.video, task.line)
            return result
        decoded, sampled = frame_plan(clip, fps, count, config.num_frames, config.max_track_frames)
        scale = min(1.0, config.max_side / max(width, height))
        size = None if scale == 1.0 else (max(1, round(width * scale)), max(1, round(height * scale)))
        frames = read_frames(task.video, (decoded + 0.5) / fps, size)
    except (VideoReadError, cv2.error) as error:
        result.failure = Failure(task.id, UNREADABLE_VIDEO, str(error), task.video, task.line)
        return result
    grey = np.stack([cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in frames])
    result.frames = len(frames)
    result.seconds["decode"] = time.perf_counter() - timer

    segmenter = segmenter or cached_segmenter(config.segmenter, config.segmenter_options)
    keys = np.arange(len(frames)) if segmenter.all_frames else np.unique(sampled)
    shown = frames if segmenter.all_frames else frames[keys]
    context = ClipContext(task.video, task.id, decoded[keys], (width, height))
    proc_height, proc_width = frames.shape[1:3]
    tracked = []
    for phrase in phrases:
        timer = time.perf_counter()
        instances = segment_instances(segmenter, shown, phrase.text, context, config.max_instances)
        result.seconds["segment"] += time.perf_counter() - timer
        timer = time.perf_counter()
        found = 0
        for masks in instances:
            tracks = track_points(grey, {int(k): m for k, m in zip(keys, masks)}, config.num_points, config.tracker)
            if tracks is None:
                continue
            pixels, visible = tracks.sampled(sampled)
            normalised = (pixels + 0.5) / np.array([proc_width, proc_height], dtype=np.float32)
            tracked.append((phrase.text, phrase.span, normalised, visible, found))
            found += 1
        result.seconds["track"] += time.perf_counter() - timer
        result.phrases_without_mask += int(found == 0)
    result.tracks = len(tracked)
    if not tracked:
        result.failure = Failure(task.id, NO_TRACK, f"none of {len(phrases)} phrases found by {segmenter.name}",
                                 task.video, task.line)
        return result
    result.record = stage2_record(task, clip, (width, height), config.num_points, tracked)
    return result
