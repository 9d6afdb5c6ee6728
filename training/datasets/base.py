"""A map-style dataset over one JSONL file: records validated up front, media decoded lazily.

Why map-style: the trainer needs a fixed order and indexing to resume mid-epoch. Every
record is parsed and checked when the dataset is built (fields, shapes, spans, ranges, and
that the video or image exists and its header opens); bad ones are counted in ``report``
and left out, so ``len`` and indices are stable. Frames are decoded in ``__getitem__``; if a
file that passed the header check still fails to decode, that index is counted, marked
broken and the next good index (wrapping around) is returned instead, so a run never stops.
Failures found lazily inside DataLoader worker processes are counted in those workers'
copies of the report only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

from pite_ros.types import Example, SpanPoint, SpanTrajectory
from pite_ros.video import VideoReadError, read_frames, uniform_frame_times, video_info
from training.datasets.frame_cache import FrameCache
from training.datasets.report import (
    BAD_FIELD,
    BAD_JSON,
    MISSING_FIELD,
    MISSING_VIDEO,
    UNREADABLE_VIDEO,
    RecordError,
    SkipReport,
)

ImageSize = int | tuple[int, int] | None


@dataclass
class Prepared:
    """A validated record, ready to decode: everything of an ``Example`` but the frames.

    ``window`` is the clip ``(start, end)`` in seconds of the video, or None for a still
    image (one frame). ``frames`` is how many frames to sample from the window.
    """

    id: str
    media: Path
    window: tuple[float, float] | None
    frames: int
    prompt: str
    response: str
    duration: float
    points: list[SpanPoint] = field(default_factory=list)
    trajectories: list[SpanTrajectory] = field(default_factory=list)


def size_pair(image_size: ImageSize) -> tuple[int, int] | None:
    """``(width, height)`` from an int (square), a pair, or None (keep the source size)."""
    if image_size is None:
        return None
    if isinstance(image_size, int):
        return (image_size, image_size)
    width, height = image_size
    return (int(width), int(height))


def read_image(path: Path, size: tuple[int, int] | None) -> np.ndarray:
    """An image file as ``(1, H, W, 3)`` uint8 RGB, resized to ``size`` (width, height)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise VideoReadError(f"{path}: cannot decode image")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if size is not None:
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb[None]


class RecordDataset(Dataset):
    """Base class: subclasses implement ``parse(record, line) -> list[Prepared]``.

    ``path``: the JSONL file. ``media_root``: folder that relative ``video``/``image`` paths
    are resolved against (default: the JSONL's folder). ``image_size``: output frame size
    (int for square, or ``(width, height)``; None keeps the source size). ``check_media``:
    open every video header / check every image up front (False: only check the file exists).
    ``frame_cache``: a ``FrameCache`` for decoded frames (None: decode every time); the
    trainer gives all of a run's readers one.
    """

    frame_cache: FrameCache | None = None

    def __init__(
        self,
        path: str | Path,
        *,
        image_size: ImageSize = None,
        media_root: str | Path | None = None,
        check_media: bool = True,
    ) -> None:
        self.path = Path(path)
        self.root = Path(media_root) if media_root is not None else self.path.parent
        self.size = size_pair(image_size)
        self.check_media = check_media
        self.report = SkipReport()
        self._video_info: dict[Path, tuple[float, int, int, int]] = {}
        self._broken: set[int] = set()
        self.items: list[tuple[int, Prepared]] = []
        with self.path.open(encoding="utf-8") as lines:
            for line_number, line in enumerate(lines, start=1):
                if line.strip():
                    self._add(line, line_number)
        self.report.loaded = len(self.items)

    def _add(self, line: str, line_number: int) -> None:
        try:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise RecordError(BAD_JSON, "<line>", str(error)) from None
            if not isinstance(record, dict):
                raise RecordError(BAD_JSON, "<line>", "a record must be a JSON object")
            prepared = self.parse(record, line_number)
        except RecordError as error:
            self.report.skip(str(self.path), line_number, error)
            return
        self.items.extend((line_number, item) for item in prepared)

    def parse(self, record: dict, line: int) -> list[Prepared]:
        """Validate one record and turn it into zero or more prepared examples."""
        raise NotImplementedError

    # --- helpers for subclasses -----------------------------------------------------------
    def record_id(self, record: dict, line: int, *keys: str) -> str:
        """The record's id (``id`` or the given keys), else ``<jsonl stem>:<line>``."""
        for key in ("id", *keys):
            value = record.get(key)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return str(value)
        return f"{self.path.stem}:{line}"

    def media_path(self, record: dict, name: str, *aliases: str) -> Path:
        """Resolve a media path field (relative to ``media_root``) that must exist."""
        for key in (name, *aliases):
            value = record.get(key)
            if value is not None:
                if not isinstance(value, str) or not value:
                    raise RecordError(BAD_FIELD, key, f"expected a path string, got {value!r:.60}")
                path = Path(value) if Path(value).is_absolute() else self.root / value
                if not path.is_file():
                    raise RecordError(MISSING_VIDEO, key, f"{path} does not exist")
                return path
        raise RecordError(MISSING_FIELD, name)

    def video(self, path: Path, name: str = "video") -> tuple[float, int, int, int]:
        """``(fps, frames, width, height)`` of a video, cached; ``UNREADABLE_VIDEO`` on failure."""
        if path not in self._video_info:
            try:
                self._video_info[path] = video_info(path)
            except VideoReadError as error:
                raise RecordError(UNREADABLE_VIDEO, name, str(error)) from None
        return self._video_info[path]

    def video_duration(self, path: Path, name: str = "video") -> float:
        """Length of a video in seconds (frame count / fps)."""
        fps, count, _, _ = self.video(path, name)
        return count / fps

    # --- map-style access -----------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Example:
        if not 0 <= index < len(self.items):
            raise IndexError(index)
        for attempt in range(len(self.items)):
            current = (index + attempt) % len(self.items)
            if current in self._broken:
                continue
            line, item = self.items[current]
            try:
                return self.load(item)
            except (VideoReadError, cv2.error) as error:
                self._broken.add(current)
                self.report.skip(str(self.path), line, RecordError(UNREADABLE_VIDEO, "video", str(error)))
        raise VideoReadError(f"{self.path}: no record left whose media decodes")

    def load(self, item: Prepared) -> Example:
        """Decode the frames of a prepared record into an ``Example``."""
        if item.window is None:
            key, decode = (item.media, self.size), lambda: read_image(item.media, self.size)
        else:
            times = uniform_frame_times(item.window[0], item.window[1], item.frames)
            key, decode = (item.media, tuple(times), self.size), lambda: read_frames(item.media, times, self.size)
        frames = decode() if self.frame_cache is None else self.frame_cache.get(key, decode)
        return Example(
            id=item.id,
            frames=frames,
            prompt=item.prompt,
            response=item.response,
            duration=item.duration,
            points=list(item.points),
            trajectories=list(item.trajectories),
        )


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every record of a JSONL file (for tools and tests; readers validate line by line)."""
    with Path(path).open(encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]
