"""A PNG strip of a record's trajectories drawn over its N sampled frames, to check by eye.

Each phrase has one colour; each point is drawn at every frame (filled when visible,
hollow when not) with its recent path (lines over the last ``TRAIL`` frames, between
consecutive frames where it is visible at both), and the phrases are listed in their colours on the first tile.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pite_ros.video import read_frames, uniform_frame_times

TRAIL = 3  # frames of path drawn behind each point
# BGR colours, far apart (Tableau 10).
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148),
           (75, 86, 140), (194, 119, 227), (127, 127, 127), (34, 189, 188), (207, 190, 23)]


def draw_strip(record: dict, path: str | Path, columns: int = 4, tile_width: int = 384) -> Path:
    """Draw ``record`` (stage-2 schema) over its frames, each scaled to ``tile_width``, into the PNG ``path``."""
    count = int(record["num_frames"])
    times = uniform_frame_times(record["clip"][0], record["clip"][1], count)
    frames = read_frames(record["video"], times)
    height, width = frames.shape[1:3]
    scale = tile_width / width if tile_width else 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    tiles = [cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), size, interpolation=cv2.INTER_AREA) for frame in frames]
    radius = max(2, round(min(size) / 90))
    for number, phrase in enumerate(record["phrases"]):
        colour = PALETTE[number % len(PALETTE)]
        points = np.asarray(phrase["trajectory"], dtype=np.float64) * np.array(size) - 0.5  # (N, P, 2)
        visible = np.asarray(phrase["visibility"], dtype=bool)  # (N, P)
        for k, tile in enumerate(tiles):
            for j in range(points.shape[1]):
                for step in range(max(1, k - TRAIL + 1), k + 1):
                    if visible[step - 1, j] and visible[step, j]:
                        a, b = points[step - 1, j], points[step, j]
                        cv2.line(tile, _pixel(a), _pixel(b), colour, 1, cv2.LINE_AA)
                cv2.circle(tile, _pixel(points[k, j]), radius, colour, -1 if visible[k, j] else 1, cv2.LINE_AA)
        instance = phrase.get("instance", 0)
        _label(tiles[0], phrase["text"] + (f" #{instance}" if instance else ""), colour, number)
    for k, tile in enumerate(tiles):
        text = f"{times[k]:.2f} s"
        cv2.putText(tile, text, (4, size[1] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    rows = -(-len(tiles) // columns)
    blank = np.zeros_like(tiles[0])
    grid = [np.hstack([tiles[r * columns + c] if r * columns + c < len(tiles) else blank for c in range(columns)])
            for r in range(rows)]
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(target), np.vstack(grid)):
        raise OSError(f"cannot write {target}")
    return target


def _pixel(point: np.ndarray) -> tuple[int, int]:
    return int(round(float(point[0]))), int(round(float(point[1])))


def _label(tile: np.ndarray, text: str, colour: tuple[int, int, int], row: int) -> None:
    origin = (4, 14 + 14 * row)
    cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(tile, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
