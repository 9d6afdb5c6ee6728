"""Reading timestamped open QA pairs (JSONL) for ``pite-mcq``; bad lines are counted, not fatal.

One record per line::

    {"id": "v1_q0", "video": "videos/v1.mp4", "duration": 12.5,
     "question": "what does the man pick up?", "answer": "a red cup",
     "timestamps": [[3.0, 6.5]]}

``question``, ``answer`` and ``video`` are required; ``id`` defaults to ``<file stem>:<line>``;
``duration`` (positive) and ``timestamps`` (``[[s, e], ...]`` or one ``[s, e]``, ``0 <= s < e``,
``e <= duration`` when a duration is given) are optional and passed through. Reasons for
skipping come from ``training.datasets.report`` (``invalid json``, ``missing field``,
``wrong field type or value``, ``out-of-range timestamps``) plus ``duplicate id``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from training.datasets.fields import get, number, segment, text
from training.datasets.report import BAD_FIELD, BAD_JSON, RecordError, SkipReport

DUPLICATE_ID = "duplicate id"


@dataclass(frozen=True)
class QAPair:
    """One validated open QA pair; ``timestamps`` is None when the record has none;
    ``file`` and ``line`` say where it was read (for messages)."""

    id: str
    video: str
    question: str
    answer: str
    duration: float | None = None
    timestamps: tuple[tuple[float, float], ...] | None = None
    file: str = ""
    line: int = 0


def parse_qa(record: object, file: str, line: int) -> QAPair:
    """Validate one decoded JSON record; ``RecordError`` names the failing field."""
    if not isinstance(record, dict):
        raise RecordError(BAD_JSON, "<line>", "a record must be a JSON object")
    raw_id = record.get("id")
    if raw_id is not None and (isinstance(raw_id, bool) or not isinstance(raw_id, (str, int))):
        raise RecordError(BAD_FIELD, "id", f"expected a string or an integer, got {raw_id!r:.40}")
    duration = None
    if record.get("duration") is not None:
        duration = number(record["duration"], "duration")
        if duration <= 0:
            raise RecordError(BAD_FIELD, "duration", f"expected a positive number, got {duration}")
    timestamps = None
    if record.get("timestamps") is not None:
        value = get(record, "timestamps")
        if isinstance(value, list) and value and not isinstance(value[0], list):
            value = [value]
        if not isinstance(value, list) or not value:
            raise RecordError(BAD_FIELD, "timestamps", "expected [[start, end], ...]")
        timestamps = tuple(segment(v, f"timestamps[{i}]", duration) for i, v in enumerate(value))
    return QAPair(
        id=str(raw_id) if raw_id is not None else f"{Path(file).stem}:{line}",
        video=text(record, "video"),
        question=text(record, "question").strip(),
        answer=text(record, "answer").strip(),
        duration=duration,
        timestamps=timestamps,
        file=file,
        line=line,
    )


def read_qa_pairs(paths: Sequence[str | Path], report: SkipReport) -> list[QAPair]:
    """All valid QA pairs of the JSONL files, in order; every skipped line goes into
    ``report`` with its ``file:line`` and reason. Ids are unique across the files (a
    repeated id is skipped: output records must be addressable by id)."""
    pairs: list[QAPair] = []
    seen: set[str] = set()
    for path in map(Path, paths):
        with path.open("rb") as lines:
            for line_number, raw in enumerate(lines, start=1):
                if not raw.strip():
                    continue
                try:
                    try:
                        record = json.loads(raw.decode("utf-8"))
                    except (UnicodeDecodeError, json.JSONDecodeError) as error:
                        raise RecordError(BAD_JSON, "<line>", str(error)) from None
                    pair = parse_qa(record, str(path), line_number)
                    if pair.id in seen:
                        raise RecordError(DUPLICATE_ID, "id", f"'{pair.id}' appeared earlier")
                except RecordError as error:
                    report.skip(str(path), line_number, error)
                    continue
                seen.add(pair.id)
                pairs.append(pair)
    return pairs
