"""Stage 1 (Referring Expression Localization): Localized Narratives records -> one location per word.

Record fields are the real Localized Narratives JSONL ones (``dataset_id``, ``image_id``,
``annotator_id``, ``caption``, ``timed_caption`` [{utterance, start_time, end_time}],
``traces`` [[{x, y, t}]], ``voice_recording``) plus ``image``, the image path relative to the
JSONL's folder (we have no image_id lookup). Only ``caption``, ``timed_caption``, ``traces``
and ``image`` are required.

Word location (our choice; the paper says only that each word has a location): the mean of
the trace points whose time ``t`` lies in the word's utterance ``[start_time, end_time]``.
Every word of an utterance gets its utterance's location; words whose utterance has no
trace point get no target; an utterance not found in the caption (searched in order,
case-insensitively) gives no target. Mouse traces overshoot the image border a little, so
points within ``trace_margin`` outside ``[0, 1]`` are clipped in; farther ones make the
record out of range. A record with no word target is skipped (stage 1 trains localisation).
One visual token per the paper (docs/papers.md, stage 1: ``z = {z_1}``): frames ``(1, H, W, 3)``;
an image has no duration, so ``Example.duration`` is 0.0.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from pite_ros.types import SpanPoint
from training.datasets.base import ImageSize, Prepared, RecordDataset
from training.datasets.fields import get, number, text
from training.datasets.prompts import STAGE1_PROMPT
from training.datasets.report import BAD_FIELD, NO_TARGET, OUT_OF_RANGE, RecordError

_WORD = re.compile(r"\w+(?:'\w+)?")


def trace_points(traces: object, margin: float) -> np.ndarray:
    """All trace points as ``(K, 3)`` rows ``x, y, t``, x/y clipped from the margin into [0, 1]."""
    if not isinstance(traces, list) or not all(isinstance(segment, list) for segment in traces):
        raise RecordError(BAD_FIELD, "traces", "expected a list of lists of {x, y, t}")
    rows = []
    for segment in traces:
        for point in segment:
            if not isinstance(point, dict):
                raise RecordError(BAD_FIELD, "traces", f"expected {{x, y, t}}, got {point!r:.60}")
            rows.append([number(point.get(key), f"traces.{key}") for key in ("x", "y", "t")])
    points = np.asarray(rows, dtype=np.float64).reshape(-1, 3)
    xy = points[:, :2]
    if xy.size and (xy.min() < -margin or xy.max() > 1.0 + margin):
        raise RecordError(OUT_OF_RANGE, "traces", f"a point lies more than {margin} outside [0, 1]")
    points[:, :2] = np.clip(xy, 0.0, 1.0)
    return points


def word_spans(caption: str, timed_caption: object) -> list[tuple[int, int, float, float]]:
    """``(start, end, t0, t1)`` for every word of every utterance found in ``caption``."""
    if not isinstance(timed_caption, list):
        raise RecordError(BAD_FIELD, "timed_caption", "expected a list of utterances")
    cursor = 0
    spans = []
    for index, entry in enumerate(timed_caption):
        name = f"timed_caption[{index}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("utterance"), str):
            raise RecordError(BAD_FIELD, name, "expected {utterance, start_time, end_time}")
        t0 = number(entry.get("start_time"), f"{name}.start_time")
        t1 = number(entry.get("end_time"), f"{name}.end_time")
        if t1 < t0:
            raise RecordError(BAD_FIELD, name, f"end_time {t1} before start_time {t0}")
        utterance = entry["utterance"].strip()
        # Searched in the caption itself (not a lower-cased copy, whose offsets can differ).
        found = re.compile(re.escape(utterance), re.IGNORECASE).search(caption, cursor) if utterance else None
        if found is None:
            continue
        for word in _WORD.finditer(found.group()):
            spans.append((found.start() + word.start(), found.start() + word.end(), t0, t1))
        cursor = found.end()
    return spans


class LocalizedNarrativesDataset(RecordDataset):
    """Stage-1 examples: the image, ``STAGE1_PROMPT``, the caption and a ``SpanPoint`` per word."""

    def __init__(
        self,
        path: str | Path,
        *,
        image_size: ImageSize = None,
        media_root: str | Path | None = None,
        check_media: bool = True,
        trace_margin: float = 0.05,
    ) -> None:
        self.trace_margin = trace_margin
        super().__init__(path, image_size=image_size, media_root=media_root, check_media=check_media)

    def parse(self, record: dict, line: int) -> list[Prepared]:
        caption = text(record, "caption")
        image = self.media_path(record, "image")
        points = trace_points(get(record, "traces"), self.trace_margin)
        targets = []
        for start, end, t0, t1 in word_spans(caption, get(record, "timed_caption")):
            inside = (points[:, 2] >= t0) & (points[:, 2] <= t1)
            if inside.any():
                x, y = points[inside, :2].mean(axis=0)
                targets.append(SpanPoint(start, end, (float(x), float(y))))
        if not targets:
            raise RecordError(NO_TARGET, "traces", "no word of the caption has a trace point")
        keys = [record.get(key) for key in ("dataset_id", "image_id", "annotator_id")]
        default = "/".join(str(key) for key in keys) if all(k is not None for k in keys) else None
        example_id = self.record_id(record, line) if default is None or "id" in record else default
        return [Prepared(example_id, image, None, 1, STAGE1_PROMPT, caption, 0.0, points=targets)]
