"""Drawing an answer's trajectories on source images: pite/debug_image and PNG strips."""

from __future__ import annotations

import cv2
import numpy as np

from pite_msgs.msg import Answer
from pite_ros.node.conversions import time_to_ns

_COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240)]


def draw_tracks(image: np.ndarray, answer: Answer, until_ns: int | None = None, caption: bool = True) -> np.ndarray:
    """A copy of ``image`` (RGB, source size) with each track's centroid path, points and phrase.

    ``until_ns``: draw the path up to that stamp and the points of that stamp (a strip
    frame); None draws the whole path and the last frame's points (the debug image).
    """
    canvas = np.ascontiguousarray(image.copy())
    scale = max(canvas.shape[1] / 640, 0.35)
    for index, track in enumerate(answer.tracks):
        colour = _COLOURS[index % len(_COLOURS)]
        stamps = [time_to_ns(p.stamp) for p in track.centroid]
        limit = until_ns if until_ns is not None else (max(stamps) if stamps else None)
        path = np.array([[p.x, p.y] for p, s in zip(track.centroid, stamps) if s <= limit], dtype=np.float32)
        if len(path) >= 2:
            cv2.polylines(canvas, [np.round(path).astype(np.int32)], False, colour, 1, cv2.LINE_AA)
        for point in track.points:
            if time_to_ns(point.stamp) == limit:
                cv2.circle(canvas, (int(round(point.x)), int(round(point.y))), 2, colour, -1, cv2.LINE_AA)
        if len(path):
            x, y = np.round(path[-1]).astype(int)
            cv2.putText(canvas, track.phrase, (int(x) + 4, int(y) - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale, colour,
                        1, cv2.LINE_AA)
    if caption:
        cv2.putText(canvas, answer.text[:80], (4, canvas.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def draw_strip(frames_by_stamp: dict[int, np.ndarray], answer: Answer) -> np.ndarray:
    """The frames the answer's tracks lie in, side by side, each with the tracks up to its stamp.

    ``frames_by_stamp`` maps source stamps (ns) to RGB images at source size; stamps the
    tracks name but the map lacks are left out.
    """
    stamps = sorted({time_to_ns(p.stamp) for track in answer.tracks for p in track.centroid} & frames_by_stamp.keys())
    if not stamps:
        stamps = sorted(frames_by_stamp)[-1:]
    tiles = [draw_tracks(frames_by_stamp[s], answer, until_ns=s, caption=False) for s in stamps]
    strip = np.concatenate(tiles, axis=1)
    banner = np.zeros((22, strip.shape[1], 3), np.uint8)
    cv2.putText(banner, f"Q: {answer.question}  A: {answer.text}"[:160], (4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                (255, 255, 255), 1, cv2.LINE_AA)
    return np.concatenate([banner, strip], axis=0)
