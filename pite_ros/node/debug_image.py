"""Drawing an answer's trajectories on its last source image, for /pite/debug_image."""

from __future__ import annotations

import cv2
import numpy as np

from pite_msgs.msg import Answer

_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def draw_tracks(image: np.ndarray, answer: Answer) -> np.ndarray:
    """A copy of ``image`` (RGB, source size) with each track's centroid path, points and phrase."""
    canvas = np.ascontiguousarray(image.copy())
    for index, track in enumerate(answer.tracks):
        colour = _COLOURS[index % len(_COLOURS)]
        path = np.array([[p.x, p.y] for p in track.centroid], dtype=np.float32)
        if len(path) >= 2:
            cv2.polylines(canvas, [np.round(path).astype(np.int32)], False, colour, 2, cv2.LINE_AA)
        last_stamp = track.points[-1].stamp if track.points else None
        for point in track.points:
            if point.stamp == last_stamp:
                cv2.circle(canvas, (int(round(point.x)), int(round(point.y))), 3, colour, -1, cv2.LINE_AA)
        if len(path):
            x, y = np.round(path[-1]).astype(int)
            cv2.putText(canvas, track.phrase, (int(x) + 6, int(y) - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1,
                        cv2.LINE_AA)
    cv2.putText(canvas, answer.text[:80], (6, canvas.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    return canvas
