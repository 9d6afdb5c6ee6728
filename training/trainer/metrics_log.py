"""Per-step metrics as JSON lines, and the loss curve drawn from them as a PNG."""

from __future__ import annotations

import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from training.atomic import write_bytes_atomic, write_text_atomic  # noqa: E402


class MetricsLog:
    """Appends one JSON object per optimiser step to ``path``.

    On resume the log is cut back to the checkpoint's step, so the file always describes
    one run without repeated steps, however often it was interrupted.
    """

    def __init__(self, path: Path, resume_step: int = 0) -> None:
        self.path = path
        kept = [row for row in self.read(path) if row["step"] <= resume_step] if resume_step else []
        write_text_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))

    @staticmethod
    def read(path: Path) -> list[dict]:
        """Rows of a metrics log; a torn last line (killed mid-write) is ignored."""
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return rows

    def append(self, row: dict) -> None:
        with self.path.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def plot_loss_curve(log_path: Path, png_path: Path, title: str) -> None:
    """Total, LM and coordinate losses against the step, with the learning rate beside."""
    rows = MetricsLog.read(log_path)
    if not rows:
        return
    steps = [row["step"] for row in rows]
    figure, (losses, rates) = plt.subplots(1, 2, figsize=(11, 4))
    for key in ("loss", "lm_loss", "coord_loss"):
        values = [row.get(key) for row in rows]
        if any(value is not None for value in values):
            losses.plot(steps, values, label=key)
    losses.set_xlabel("step")
    losses.set_ylabel("loss")
    losses.set_yscale("log")
    losses.legend()
    losses.set_title(title)
    rates.plot(steps, [row["lr"] for row in rows])
    rates.set_xlabel("step")
    rates.set_ylabel("learning rate")
    figure.tight_layout()
    image = io.BytesIO()
    figure.savefig(image, format="png", dpi=100)
    plt.close(figure)
    write_bytes_atomic(png_path, image.getvalue())
