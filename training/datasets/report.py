"""Counting what a reader skipped, and why, so bad records never stop a run.

A reader raises ``RecordError`` for a record it cannot use; the dataset catches it, counts
the reason in a ``SkipReport`` and goes on with the next record.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


class RecordError(ValueError):
    """A record cannot be used. ``reason`` is a short stable key; ``field`` names the JSON field."""

    def __init__(self, reason: str, field: str, detail: str = "") -> None:
        super().__init__(f"{reason}: field '{field}'" + (f": {detail}" if detail else ""))
        self.reason = reason
        self.field = field
        self.detail = detail


# The reasons readers use (stable keys: tests and logs match on them).
MISSING_FIELD = "missing field"
BAD_FIELD = "wrong field type or value"
BAD_JSON = "invalid json"
MISSING_VIDEO = "missing video"
UNREADABLE_VIDEO = "unreadable video"
OUT_OF_RANGE = "out-of-range coordinates"
BAD_SPAN = "span outside the caption"
SPAN_MISMATCH = "span text differs from phrase text"
BAD_SHAPE = "trajectory of the wrong shape"
BAD_TIME = "out-of-range timestamps"
NO_TARGET = "no usable target"


@dataclass(frozen=True)
class SkipExample:
    """Where one skipped record lies: file, 1-based line, field and the message."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


@dataclass
class SkipReport:
    """Counts of skipped records by reason, plus the first ``keep`` of each reason in full."""

    keep: int = 5
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[SkipExample]] = field(default_factory=dict)
    loaded: int = 0

    def skip(self, file: str, line: int, error: RecordError | Exception) -> None:
        """Count one skipped record (``RecordError`` carries reason and field)."""
        reason = getattr(error, "reason", type(error).__name__)
        where = getattr(error, "field", "")
        self.counts[reason] += 1
        kept = self.examples.setdefault(reason, [])
        if len(kept) < self.keep:
            kept.append(SkipExample(file, line, where, str(error)))

    @property
    def skipped(self) -> int:
        """Total skipped records."""
        return sum(self.counts.values())

    def merge(self, other: SkipReport) -> None:
        """Add another report's counts and examples to this one."""
        self.loaded += other.loaded
        for reason, count in other.counts.items():
            self.counts[reason] += count
            kept = self.examples.setdefault(reason, [])
            kept.extend(other.examples.get(reason, [])[: max(self.keep - len(kept), 0)])

    def summary(self) -> str:
        """One line per reason with its count and first example, for logs."""
        lines = [f"loaded {self.loaded}, skipped {self.skipped}"]
        for reason, count in self.counts.most_common():
            first = self.examples[reason][0] if self.examples.get(reason) else ""
            lines.append(f"  {count:6d}  {reason}  (e.g. {first})")
        return "\n".join(lines)
