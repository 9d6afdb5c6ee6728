"""``EvalReport``: one object, written as JSON (for machines) and as an aligned text table.

Layout of the JSON (``EvalReport.to_dict``)::

    {"meta": {...},
     "tasks": {"grounding": {"count": 3,
                             "metrics": {"R@0.3": 66.67, ..., "mIoU": 41.2},
                             "counts": {"unparseable": 1},
                             "unavailable": {"METEOR": "why"},
                             "notes": ["..."]}, ...}}

Metric values are floats (percentages where the metric is a rate; see each metric's module);
a metric without data is ``null`` in JSON and ``-`` in text. Both files are written whole to
a temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.atomic import write_text_atomic


@dataclass
class TaskSection:
    """The results of one task: how many items, metric values, extra counts, and what could not
    be computed (metric name -> reason)."""

    task: str
    count: int = 0
    metrics: dict[str, float | None] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # Figures per kind, when the references name one: kind -> {"count", "accuracy"} for QA
    # (question kinds), {"count", "R@0.3", ..., "mIoU"} for grounding (event types).
    by_kind: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (NaN becomes None; ``by_kind`` only when there is one)."""
        body = {
            "count": self.count,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "counts": dict(self.counts),
            "unavailable": dict(self.unavailable),
            "notes": list(self.notes),
        }
        if self.by_kind:
            body["by_kind"] = {kind: dict(figures) for kind, figures in self.by_kind.items()}
        return body


def _finite(value: float | None) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


@dataclass
class EvalReport:
    """Per-task sections plus free-form ``meta`` (checkpoint, data, date...)."""

    sections: dict[str, TaskSection] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def add(self, section: TaskSection) -> None:
        """Add or replace the section of ``section.task``."""
        self.sections[section.task] = section

    def metric(self, task: str, name: str) -> float | None:
        """One metric value (None when absent or NaN)."""
        section = self.sections.get(task)
        return _finite(section.metrics.get(name)) if section else None

    def to_dict(self) -> dict[str, Any]:
        """``{"meta": ..., "tasks": {task: section}}``."""
        return {"meta": dict(self.meta), "tasks": {t: s.to_dict() for t, s in self.sections.items()}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalReport:
        """Inverse of ``to_dict``."""
        report = cls(meta=dict(data.get("meta", {})))
        for task, body in data.get("tasks", {}).items():
            report.add(
                TaskSection(
                    task=task,
                    count=int(body.get("count", 0)),
                    metrics=dict(body.get("metrics", {})),
                    counts=dict(body.get("counts", {})),
                    unavailable=dict(body.get("unavailable", {})),
                    notes=list(body.get("notes", [])),
                    by_kind={kind: dict(figures) for kind, figures in body.get("by_kind", {}).items()},
                )
            )
        return report

    def to_json(self) -> str:
        """Indented, strict JSON (no NaN)."""
        return json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n"

    def to_text(self) -> str:
        """A table ``task | metric | value | n`` with aligned columns (a section's figures per
        kind as ``metric[kind]`` rows: ``accuracy[direction]``, ``R@0.5[move]``), then counts,
        unavailable metrics with their reasons, and notes."""
        rows = [("task", "metric", "value", "n")]
        for task, section in self.sections.items():
            for name, value in section.metrics.items():
                shown = _finite(value)
                rows.append((task, name, "-" if shown is None else f"{shown:.2f}", str(section.count)))
            for kind, figures in section.by_kind.items():
                rows += [(task, f"{name}[{kind}]", f"{value:.2f}", str(int(figures["count"])))
                         for name, value in figures.items() if name != "count"]
            for name in section.unavailable:
                rows.append((task, name, "n/a", str(section.count)))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = [
            "  ".join(
                cell.rjust(widths[i]) if i >= 2 else cell.ljust(widths[i]) for i, cell in enumerate(row)
            ).rstrip()
            for row in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        for task, section in self.sections.items():
            lines += [f"{task}: {name} = {count}" for name, count in section.counts.items()]
            lines += [f"{task}: {name} unavailable: {reason}" for name, reason in section.unavailable.items()]
            lines += [f"{task}: note: {note}" for note in section.notes]
        return "\n".join(lines) + "\n"

    def write(self, json_path: str | Path, text_path: str | Path | None = None) -> None:
        """Write the JSON report (and the text table when ``text_path`` is given), atomically."""
        write_text_atomic(Path(json_path), self.to_json())
        if text_path is not None:
            write_text_atomic(Path(text_path), self.to_text())

    @classmethod
    def read(cls, json_path: str | Path) -> EvalReport:
        """Load a report written by ``write``."""
        return cls.from_dict(json.loads(Path(json_path).read_text(encoding="utf-8")))
