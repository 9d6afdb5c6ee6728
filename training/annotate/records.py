"""Input tasks (one video + caption per JSONL line) and output stage-2 records.

Input line: ``{"id"?, "video": path, "clip": [s, e]?, "caption": "..."}``; a relative
``video`` is resolved against ``media_root`` (default: the JSONL's folder, as the trainer's
readers do). Output record (the stage-2 schema of ``training.datasets.stage2``):
``{"id", "video", "clip", "caption", "num_frames": N, "num_points": P, "width": W,
"height": H, "phrases": [{"text", "span", "instance": k, "trajectory": (N, P, 2), "visibility": (N, P)}]}``;
``instance`` numbers the objects one phrase names (0 = the most visible; several entries share
the phrase's text and span when the segmenter separated several objects).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets.fields import get, segment
from training.datasets.report import BAD_FIELD, BAD_JSON, RecordError

# Failure reasons of the annotation pipeline (stable keys: summaries and tests match on them).
# Reading the input reuses the readers' keys (BAD_JSON, MISSING_FIELD, BAD_FIELD, MISSING_VIDEO,
# UNREADABLE_VIDEO, BAD_TIME from training.datasets.report).
EMPTY_CAPTION = "empty caption"
DUPLICATE_ID = "duplicate id"
NO_PHRASE = "no noun phrase"
NO_TRACK = "no phrase found in the video"
WORKER_CRASHED = "worker crashed"
INTERNAL_ERROR = "internal error"


@dataclass(frozen=True)
class VideoTask:
    """One video to annotate. ``clip`` None means the whole video; ``line`` is 1-based."""

    id: str
    video: str
    caption: str
    clip: tuple[float, float] | None
    line: int


@dataclass(frozen=True)
class Failure:
    """Why one input line or video produced no record."""

    id: str
    reason: str
    message: str
    video: str = ""
    line: int = 0

    def to_json(self) -> dict:
        return {"id": self.id, "video": self.video, "line": self.line, "reason": self.reason, "message": self.message}


def safe_name(task_id: str) -> str:
    """A file name for an id: characters other than letters, digits, ``._-`` become ``_``."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", task_id).lstrip(".")
    return name or "_"


def read_tasks(path: str | Path, media_root: str | Path | None = None) -> Iterator[VideoTask | Failure]:
    """Every non-blank line of the input JSONL as a task, or a ``Failure`` naming line and field.

    An id repeats (after ``safe_name``) only as a ``DUPLICATE_ID`` failure, so output files never clash.
    """
    source = Path(path)
    root = Path(media_root) if media_root is not None else source.parent
    seen: set[str] = set()
    with source.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            fallback = f"{source.stem}-line{number}"
            try:
                task = _task(line, number, root, fallback)
            except RecordError as error:
                yield Failure(_line_id(line, fallback), error.reason, f"{source}:{number}: {error}", line=number)
                continue
            if safe_name(task.id) in seen:
                yield Failure(task.id, DUPLICATE_ID, f"{source}:{number}: id {task.id!r} already used",
                              task.video, number)
                continue
            seen.add(safe_name(task.id))
            yield task


def _task(line: str, number: int, root: Path, fallback: str) -> VideoTask:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise RecordError(BAD_JSON, "<line>", str(error)) from None
    if not isinstance(record, dict):
        raise RecordError(BAD_JSON, "<line>", "a record must be a JSON object")
    video = get(record, "video")
    if not isinstance(video, str) or not video:
        raise RecordError(BAD_FIELD, "video", f"expected a path string, got {video!r:.60}")
    video_path = Path(video) if Path(video).is_absolute() else root / video
    clip = segment(record["clip"], "clip") if record.get("clip") is not None else None
    raw_id = record.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)) or raw_id == ""):
        raise RecordError(BAD_FIELD, "id", f"expected a non-empty string or integer, got {raw_id!r:.60}")
    task_id = str(raw_id) if raw_id is not None else _default_id(video_path, clip, fallback)
    caption = get(record, "caption")
    if not isinstance(caption, str):
        raise RecordError(BAD_FIELD, "caption", f"expected a string, got {caption!r:.60}")
    if not caption.strip():
        raise RecordError(EMPTY_CAPTION, "caption")
    return VideoTask(task_id, str(video_path), caption, clip, number)


def _line_id(line: str, fallback: str) -> str:
    """The id a bad line names, if it parses that far, so its failure can be found by id."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return fallback
    raw = record.get("id") if isinstance(record, dict) else None
    return str(raw) if isinstance(raw, (str, int)) and not isinstance(raw, bool) and raw != "" else fallback


def _default_id(video: Path, clip: tuple[float, float] | None, fallback: str) -> str:
    if not video.stem:
        return fallback
    return video.stem if clip is None else f"{video.stem}_{clip[0]:g}-{clip[1]:g}"


def stage2_record(
    task: VideoTask,
    clip: tuple[float, float],
    size: tuple[int, int],
    num_points: int,
    phrases: list[tuple[str, tuple[int, int], np.ndarray, np.ndarray, int]],
) -> dict:
    """The output record. ``phrases``: ``(text, span, trajectory (N, P, 2) normalised, visible (N, P), instance)``."""
    frames = phrases[0][2].shape[0] if phrases else 0
    return {
        "id": task.id,
        "video": task.video,
        "clip": [round(float(clip[0]), 6), round(float(clip[1]), 6)],
        "caption": task.caption,
        "num_frames": int(frames),
        "num_points": int(num_points),
        "width": int(size[0]),
        "height": int(size[1]),
        "phrases": [
            {
                "text": text,
                "span": [int(span[0]), int(span[1])],
                "instance": int(instance),
                "trajectory": np.round(np.clip(trajectory, 0.0, 1.0), 5).tolist(),
                "visibility": visible.astype(int).tolist(),
            }
            for text, span, trajectory, visible, instance in phrases
        ],
    }
