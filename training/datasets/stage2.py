"""Stage 2 (Pixel-Temporal Alignment): PiTe-143k style records -> caption with phrase trajectories.

Schema (written by the annotation pipeline and by pite-synth, read here; see docs/data-formats.md):
``{"id", "video", "clip": [start_s, end_s], "caption", "num_frames": N, "num_points": P,
"width": W, "height": H, "phrases": [{"text", "span": [a, b], "instance"?: k, "trajectory": (N, P, 2),
"visibility": (N, P)}]}``. Trajectories are normalised by width/height to [0, 1]; frame ``k``
is at ``uniform_frame_times(clip[0], clip[1], N)[k]``. A phrase whose ``caption[a:b]`` is not
its text, a trajectory of another shape, or a coordinate outside [0, 1] makes the record bad.

Several instances of one phrase (entries with the same span and different ``instance``
indices, 0 when absent; a video segmenter separated several objects): PiTe's phrases name one
object and the model answers one trajectory per phrase, so the lowest index (the annotation
pipeline's most visible object) stands for the phrase and the other instances are left out,
counted in ``extra_instances``. The same index twice for one span makes the record bad.

``num_frames`` (constructor): frames per example. None (default) uses each record's N; any
other value samples that many frames over the clip and resamples the trajectories to those
times (linear in time for positions, nearest annotated frame for visibility; our choice).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pite_ros.types import SpanTrajectory
from pite_ros.video import uniform_frame_times
from training.datasets.base import ImageSize, Prepared, RecordDataset
from training.datasets.fields import array, get, positive_int, segment, span, text, unit_coordinates
from training.datasets.prompts import STAGE2_PROMPT
from training.datasets.report import BAD_FIELD, BAD_TIME, NO_TARGET, SPAN_MISMATCH, RecordError


def spread_point_indices(have: int, want: int) -> np.ndarray:
    """``want`` of ``have`` point slots, evenly spread (annotation spreads its points, so every
    k-th of them stays spread): how training and evaluation fit P points to a model's P."""
    if have < want:
        raise ValueError(f"{have} points per phrase, the model needs {want}")
    return np.round(np.linspace(0, have - 1, want)).astype(int)


def resample_trajectory(
    points: np.ndarray, visible: np.ndarray, window: tuple[float, float], frames: int
) -> tuple[np.ndarray, np.ndarray]:
    """Trajectory ``(N, P, 2)`` and visibility ``(N, P)`` at ``frames`` uniform times instead of N."""
    source = uniform_frame_times(window[0], window[1], points.shape[0])
    target = uniform_frame_times(window[0], window[1], frames)
    flat = points.reshape(points.shape[0], -1)
    moved = np.stack([np.interp(target, source, flat[:, j]) for j in range(flat.shape[1])], axis=1)
    nearest = np.abs(target[:, None] - source[None, :]).argmin(axis=1)
    return moved.reshape(frames, *points.shape[1:]), visible[nearest]


class TrajectoryCaptionDataset(RecordDataset):
    """Stage-2 examples: N frames of the clip, ``STAGE2_PROMPT``, the caption, a ``SpanTrajectory`` per phrase."""

    def __init__(
        self,
        path: str | Path,
        *,
        image_size: ImageSize = None,
        num_frames: int | None = None,
        media_root: str | Path | None = None,
        check_media: bool = True,
    ) -> None:
        self.num_frames = num_frames
        self.extra_instances = 0  # phrase instances left out (the lowest index of each span is kept)
        super().__init__(path, image_size=image_size, media_root=media_root, check_media=check_media)

    def parse(self, record: dict, line: int) -> list[Prepared]:
        caption = text(record, "caption")
        window = segment(get(record, "clip"), "clip")
        frames, points = positive_int(record, "num_frames"), positive_int(record, "num_points")
        positive_int(record, "width"), positive_int(record, "height")
        phrases = get(record, "phrases")
        if not isinstance(phrases, list):
            raise RecordError(BAD_FIELD, "phrases", "expected a list")
        if not phrases:
            raise RecordError(NO_TARGET, "phrases", "no phrase to align")
        parsed = [self._phrase(p, f"phrases[{i}]", caption, frames, points) for i, p in enumerate(phrases)]
        trajectories = self._first_instances(parsed)
        extra = len(parsed) - len(trajectories)
        video = self.media_path(record, "video")
        if self.check_media:
            length = self.video_duration(video)
            if window[1] > length + 1e-3:
                raise RecordError(BAD_TIME, "clip", f"clip ends at {window[1]} s, video lasts {length:.3f} s")
        count = self.num_frames or frames
        if count != frames:
            trajectories = [
                SpanTrajectory(t.start, t.end, *resample_trajectory(t.points, t.visible, window, count))
                for t in trajectories
            ]
        example_id = self.record_id(record, line)
        self.extra_instances += extra
        return [
            Prepared(example_id, video, window, count, STAGE2_PROMPT, caption, window[1] - window[0],
                     trajectories=trajectories)
        ]

    @staticmethod
    def _first_instances(parsed: list[tuple[SpanTrajectory, int]]) -> list[SpanTrajectory]:
        """Per span, the trajectory of the lowest instance index, in the order the spans first appear."""
        chosen: dict[tuple[int, int], tuple[int, SpanTrajectory]] = {}
        seen: set[tuple[int, int, int]] = set()
        for number, (trajectory, instance) in enumerate(parsed):
            span_key = (trajectory.start, trajectory.end)
            if (*span_key, instance) in seen:
                raise RecordError(BAD_FIELD, f"phrases[{number}].instance",
                                  f"instance {instance} of span {list(span_key)} given twice")
            seen.add((*span_key, instance))
            if span_key not in chosen or instance < chosen[span_key][0]:
                chosen[span_key] = (instance, trajectory)
        return [trajectory for _, trajectory in chosen.values()]

    @staticmethod
    def _phrase(
        phrase: object, name: str, caption: str, frames: int, points: int
    ) -> tuple[SpanTrajectory, int]:
        if not isinstance(phrase, dict):
            raise RecordError(BAD_FIELD, name, "expected {text, span, trajectory, visibility}")
        phrase_text = text(phrase, "text", where=f"{name}.")
        start, end = span(get(phrase, "span", where=f"{name}."), f"{name}.span", caption)
        if caption[start:end] != phrase_text:
            raise RecordError(
                SPAN_MISMATCH, f"{name}.span", f"caption[{start}:{end}]={caption[start:end]!r} != {phrase_text!r}"
            )
        trajectory = unit_coordinates(
            array(get(phrase, "trajectory", where=f"{name}."), f"{name}.trajectory", (frames, points, 2)), f"{name}.trajectory"
        )
        visibility = array(get(phrase, "visibility", where=f"{name}."), f"{name}.visibility", (frames, points))
        if not np.isin(visibility, (0.0, 1.0)).all():
            raise RecordError(BAD_FIELD, f"{name}.visibility", "entries must be 0 or 1")
        instance = phrase.get("instance", 0)
        if isinstance(instance, bool) or not isinstance(instance, int) or instance < 0:
            raise RecordError(BAD_FIELD, f"{name}.instance", f"expected an integer >= 0, got {instance!r:.60}")
        return SpanTrajectory(start, end, trajectory.astype(np.float32), visibility.astype(bool)), instance
