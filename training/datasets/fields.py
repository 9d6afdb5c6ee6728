"""Typed access to JSON record fields: each failure is a ``RecordError`` naming the field."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from training.datasets.report import (
    BAD_FIELD,
    BAD_SHAPE,
    BAD_SPAN,
    BAD_TIME,
    MISSING_FIELD,
    OUT_OF_RANGE,
    RecordError,
)


def get(record: dict, name: str, *aliases: str, where: str = "") -> Any:
    """The value of ``name`` (or the first alias present); ``MISSING_FIELD`` if none is.

    ``where`` prefixes the field name in errors (``phrases[0].`` for nested records).
    """
    for key in (name, *aliases):
        if key in record and record[key] is not None:
            return record[key]
    raise RecordError(MISSING_FIELD, where + name)


def text(record: dict, name: str, *aliases: str, where: str = "") -> str:
    """A non-empty string field."""
    value = get(record, name, *aliases, where=where)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(BAD_FIELD, where + name, f"expected a non-empty string, got {value!r:.60}")
    return value


def number(value: Any, name: str) -> float:
    """A finite real number (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(BAD_FIELD, name, f"expected a finite number, got {value!r:.60}")
    return float(value)


def positive_int(record: dict, name: str) -> int:
    """A strictly positive integer field."""
    value = get(record, name)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise RecordError(BAD_FIELD, name, f"expected a positive integer, got {value!r:.60}")
    return value


def array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """``value`` as a float64 array of exactly ``shape``; ``BAD_SHAPE`` otherwise."""
    try:
        result = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise RecordError(BAD_SHAPE, name, f"not a regular numeric array ({error})") from None
    if result.shape != shape:
        raise RecordError(BAD_SHAPE, name, f"expected shape {shape}, got {result.shape}")
    return result


def unit_coordinates(values: np.ndarray, name: str) -> np.ndarray:
    """``values`` if every entry is finite and inside ``[0, 1]``; ``OUT_OF_RANGE`` otherwise."""
    if not np.all(np.isfinite(values)) or values.min(initial=0.0) < 0.0 or values.max(initial=0.0) > 1.0:
        raise RecordError(OUT_OF_RANGE, name, "normalised coordinates must lie in [0, 1]")
    return values


def segment(value: Any, name: str, duration: float | None = None) -> tuple[float, float]:
    """A ``[start, end]`` pair in seconds with ``0 <= start < end`` (``<= duration`` if given)."""
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise RecordError(BAD_FIELD, name, f"expected [start, end], got {value!r:.60}")
    start, end = number(value[0], name), number(value[1], name)
    # A hundredth of a second of slack absorbs rounding in annotation files.
    if start < 0 or end <= start or (duration is not None and end > duration + 0.01):
        raise RecordError(BAD_TIME, name, f"[{start}, {end}] not inside [0, {duration}] with start < end")
    return start, (min(end, duration) if duration is not None else end)


def span(value: Any, name: str, caption: str) -> tuple[int, int]:
    """A ``[start, end)`` character span inside ``caption`` with ``start < end``."""
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise RecordError(BAD_FIELD, name, f"expected [start, end] integers, got {value!r:.60}")
    start, end = value
    if not 0 <= start < end <= len(caption):
        raise RecordError(BAD_SPAN, name, f"[{start}, {end}] outside caption of {len(caption)} chars")
    return start, end
