"""A thread-safe buffer of recent camera frames keyed by ``header.stamp``, and the clips cut from it.

The image callback adds frames; the inference worker cuts clips (a time window) and samples
the N frames the model sees. Frames are kept sorted by stamp (nanoseconds), bounded both in
seconds and in frames (the oldest go first). Real streams misbehave, and each case is
decided here once and counted:

- out-of-order stamps (DDS reordering, several drivers on one topic): inserted in order;
- a duplicate stamp: the frame already kept stays, the new one is dropped;
- time jumping back by more than ``jump_back_seconds`` (a bag loop, a simulator reset): the
  buffer is reset and the new frame starts it, because older frames are from another run;
- a new ``frame_id`` or source size: the buffer is reset likewise, so a clip never mixes
  frames (outputs carry one frame_id, and pixel coordinates are in one source size).

The buffer holds ONE frame_id and ONE source size at a time (the reset rule makes that an
invariant), so both are kept per buffer and every ``Clip`` carries them. Images are
downscaled on entry to ``max_side`` (the model's inputs are small), while the source width
and height are remembered for mapping outputs back to source pixels. With ``model_size``
each frame is also resized to the model's square input as it arrives (the step an answer
would otherwise take for all its frames at once; the same pixels, ``resize_for_model``).
No rclpy here.
"""

from __future__ import annotations

import bisect
import enum
import threading
from dataclasses import asdict, dataclass
from functools import cached_property

import cv2
import numpy as np

from pite_ros.model.preprocess import resize_for_model
from pite_ros.video import uniform_frame_times

NS_PER_S = 1_000_000_000


class AddResult(enum.Enum):
    """What ``ClipBuffer.add`` did with a frame."""

    ADDED = "added"  # newest frame, appended
    OUT_OF_ORDER = "out_of_order"  # older than the newest, inserted in order
    DUPLICATE = "duplicate"  # a frame with this stamp is already kept; dropped
    TOO_OLD = "too_old"  # older than the buffer's window; dropped
    RESET_TIME_JUMP = "reset_time_jump"  # time jumped back: buffer cleared, frame kept
    RESET_FRAME_ID = "reset_frame_id"  # frame_id changed: buffer cleared, frame kept
    RESET_SIZE = "reset_size"  # source width/height changed: buffer cleared, frame kept


@dataclass
class BufferCounters:
    """Totals since construction (``clear`` keeps them)."""

    added: int = 0  # frames stored (ADDED, OUT_OF_ORDER and every RESET_*)
    duplicates: int = 0
    out_of_order: int = 0
    resets: int = 0
    dropped_old: int = 0  # frames evicted by the bounds, and TOO_OLD arrivals


@dataclass(frozen=True, eq=False)
class Clip:
    """Frames of one window, oldest first, all of one ``frame_id`` and one source size.

    ``stamps`` is ``(frames,)`` int64 nanoseconds; ``frames`` the (possibly downscaled)
    ``(h, w, 3)`` uint8 RGB images, all the same size; ``model_frames`` the same frames at the
    model's square input size when the buffer made them (else None); ``width``/``height`` the
    SOURCE size.
    ``start_ns``/``end_ns`` are the stamps of the first and last frame of the window the clip
    spans; a sampled clip keeps its parent's, since the model's clip time runs from there.
    """

    stamps: np.ndarray
    frames: tuple[np.ndarray, ...]
    frame_id: str
    width: int
    height: int
    start_ns: int
    end_ns: int
    model_frames: tuple[np.ndarray, ...] | None = None

    @cached_property
    def images(self) -> np.ndarray:
        """``(frames, h, w, 3)`` uint8 RGB, stacked once on first use."""
        return np.stack(self.frames)

    @cached_property
    def model_images(self) -> np.ndarray:
        """What an engine answers from: ``model_frames`` stacked when there are any, else ``images``."""
        return self.images if self.model_frames is None else np.stack(self.model_frames)

    @property
    def duration(self) -> float:
        """Seconds from ``start_ns`` to ``end_ns``."""
        return (self.end_ns - self.start_ns) / NS_PER_S

    def __len__(self) -> int:
        return len(self.frames)

    def sample_indices(self, count: int) -> np.ndarray:
        """``(count,)`` indices of the frames nearest ``uniform_frame_times`` over the window.

        The same slice centres as ``pite_ros.video.uniform_frame_times(start, end, count)``;
        each picks the frame whose stamp is nearest (the earlier on a tie). A clip with fewer
        frames than ``count``, or a zero-length window, repeats frames.
        """
        if count <= 0:
            raise ValueError(f"frame count must be positive, got {count}")
        if self.end_ns <= self.start_ns or len(self) == 1:
            return np.zeros(count, dtype=int)
        # Relative nanoseconds as float64: exact for clips shorter than ~100 days.
        offsets = (self.stamps - self.start_ns).astype(np.float64)
        times = uniform_frame_times(0.0, float(self.end_ns - self.start_ns), count)
        right = np.clip(np.searchsorted(offsets, times), 1, len(self) - 1)
        left = right - 1
        nearer_right = offsets[right] - times < times - offsets[left]
        return np.where(nearer_right, right, left)

    def sample(self, count: int) -> Clip:
        """The ``count`` frames the model sees (``sample_indices``), as a clip of the same window."""
        indices = self.sample_indices(count)
        model_frames = None if self.model_frames is None else tuple(self.model_frames[i] for i in indices)
        return Clip(
            stamps=self.stamps[indices], frames=tuple(self.frames[i] for i in indices), frame_id=self.frame_id,
            width=self.width, height=self.height, start_ns=self.start_ns, end_ns=self.end_ns,
            model_frames=model_frames,
        )

    def last_image_at_source_size(self) -> np.ndarray:
        """The newest frame resized back to ``(height, width, 3)`` (for drawing in source pixels)."""
        image = self.frames[-1]
        if image.shape[:2] == (self.height, self.width):
            return image
        return cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_LINEAR)


def format_stamp(ns: int) -> str:
    """``ns`` as seconds with all nine decimals (``1700000000.500000000 s``), as a stamp is read."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return f"{sec}.{nanosec:09d} s"


def downscaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is at most ``max_side`` (aspect kept)."""
    if max_side is None or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


class ClipBuffer:
    """Recent frames of one camera, bounded by ``max_seconds`` and ``max_frames``; thread-safe.

    ``max_side`` downscales stored images (None keeps the source size); ``model_size`` keeps a
    copy of each at the model's square input (None: no copy); ``jump_back_seconds`` is how far
    time may go back before it counts as a new run rather than reordering.
    """

    def __init__(
        self,
        max_seconds: float = 30.0,
        max_frames: int = 300,
        max_side: int | None = None,
        jump_back_seconds: float = 1.0,
        model_size: int | None = None,
    ) -> None:
        if max_seconds <= 0 or max_frames < 1:
            raise ValueError(f"need max_seconds > 0 and max_frames >= 1, got {max_seconds}, {max_frames}")
        self.max_ns = int(max_seconds * NS_PER_S)
        self.max_frames = int(max_frames)
        self.max_side = max_side
        self.model_size = model_size
        self.jump_back_ns = int(jump_back_seconds * NS_PER_S)
        self._lock = threading.Lock()
        self._stamps: list[int] = []
        self._frames: list[np.ndarray] = []
        self._model_frames: list[np.ndarray] = []  # parallel to _frames when model_size is set
        self._frame_id = ""
        self._size = (0, 0)
        self._counters = BufferCounters()
        self.last_reset: AddResult | None = None

    def add(
        self, stamp_ns: int, frame_id: str, image: np.ndarray, width: int | None = None, height: int | None = None
    ) -> AddResult:
        """Store ``image`` ``(h, w, 3)`` uint8 RGB taken at ``stamp_ns``; see the module docstring.

        ``width``/``height`` give the source size when ``image`` is already smaller; by default
        the image's own size.
        """
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"image must be (h, w, 3) uint8 RGB, got {image.shape} {image.dtype}")
        size = (int(width or image.shape[1]), int(height or image.shape[0]))
        target = downscaled_size(*size, self.max_side)
        if (image.shape[1], image.shape[0]) != target:
            image = cv2.resize(image, target, interpolation=cv2.INTER_AREA)
        model_image = None if self.model_size is None else resize_for_model(image, self.model_size)
        stamp_ns = int(stamp_ns)
        with self._lock:
            result = self._admit(stamp_ns, frame_id, size)
            if result is AddResult.DUPLICATE:
                self._counters.duplicates += 1
                return result
            index = bisect.bisect_right(self._stamps, stamp_ns)
            self._stamps.insert(index, stamp_ns)
            self._frames.insert(index, image)
            if model_image is not None:
                self._model_frames.insert(index, model_image)
            if self._trim(stamp_ns):
                self._counters.dropped_old += 1
                return AddResult.TOO_OLD
            self._counters.added += 1
            self._counters.out_of_order += result is AddResult.OUT_OF_ORDER
            return result

    def _admit(self, stamp_ns: int, frame_id: str, size: tuple[int, int]) -> AddResult:
        """Classify a frame (under the lock), resetting the buffer when the frame starts a new run."""
        reason = None
        if self._stamps:
            if frame_id != self._frame_id:
                reason = AddResult.RESET_FRAME_ID
            elif size != self._size:
                reason = AddResult.RESET_SIZE
            elif stamp_ns < self._stamps[-1] - self.jump_back_ns:
                reason = AddResult.RESET_TIME_JUMP
        if reason is not None:
            self._empty()
            self._counters.resets += 1
            self.last_reset = reason
        if not self._stamps:
            self._frame_id, self._size = frame_id, size
            return reason or AddResult.ADDED
        position = bisect.bisect_left(self._stamps, stamp_ns)
        if position < len(self._stamps) and self._stamps[position] == stamp_ns:
            return AddResult.DUPLICATE
        return AddResult.ADDED if position == len(self._stamps) else AddResult.OUT_OF_ORDER

    def _trim(self, new_stamp: int) -> bool:
        """Evict frames beyond the bounds (under the lock); True when ``new_stamp`` itself went."""
        oldest_kept = self._stamps[-1] - self.max_ns
        cut = max(bisect.bisect_left(self._stamps, oldest_kept), len(self._stamps) - self.max_frames)
        if cut <= 0:
            return False
        new_evicted = new_stamp < self._stamps[cut]
        del self._stamps[:cut], self._frames[:cut], self._model_frames[:cut]
        self._counters.dropped_old += cut - new_evicted
        return new_evicted

    def clip(
        self,
        start_ns: int | None = None,
        end_ns: int | None = None,
        max_frames: int | None = None,
        seconds: float | None = None,
    ) -> Clip | None:
        """The frames with ``start_ns <= stamp <= end_ns``, or None when there are none.

        ``end_ns`` None means up to the newest frame; ``start_ns`` None means ``seconds``
        before the end, or the oldest frame when ``seconds`` is None too. ``max_frames``
        keeps the newest frames of the window (latency over completeness).
        """
        with self._lock:
            first, last = self._window(start_ns, end_ns, seconds)
            if max_frames is not None:
                first = max(first, last - max_frames)
            if first >= last:
                return None
            stamps = np.array(self._stamps[first:last], dtype=np.int64)
            frames = tuple(self._frames[first:last])
            model_frames = tuple(self._model_frames[first:last]) if self.model_size is not None else None
            frame_id, (width, height) = self._frame_id, self._size
        return Clip(stamps=stamps, frames=frames, frame_id=frame_id, width=width, height=height,
                    start_ns=int(stamps[0]), end_ns=int(stamps[-1]), model_frames=model_frames)

    def _window(self, start_ns: int | None, end_ns: int | None, seconds: float | None) -> tuple[int, int]:
        """Indices ``[first, last)`` of the frames in a window (``clip``'s rules); under the lock."""
        if not self._stamps:
            return 0, 0
        end = self._stamps[-1] if end_ns is None else int(end_ns)
        if start_ns is not None:
            start = int(start_ns)
        elif seconds is not None:
            start = end - int(seconds * NS_PER_S)
        else:
            start = self._stamps[0]
        return bisect.bisect_left(self._stamps, start), bisect.bisect_right(self._stamps, end)

    def window_problem(self, start_ns: int | None = None, end_ns: int | None = None,
                       seconds: float | None = None) -> str:
        """Why ``clip(start_ns, end_ns, seconds=seconds)`` would hold no frame, naming the bound; "" if it would not.

        So a query about a reversed window, or one outside what the buffer holds, is refused
        before it waits for the model, with a message its asker can act on.
        """
        if start_ns is not None and end_ns is not None and end_ns < start_ns:
            return f"clip_end {format_stamp(end_ns)} is before clip_start {format_stamp(start_ns)}"
        with self._lock:
            if not self._stamps:
                return "no images buffered yet"
            oldest, newest = self._stamps[0], self._stamps[-1]
            first, last = self._window(start_ns, end_ns, seconds)
        if start_ns is not None and start_ns > newest:
            return f"clip_start {format_stamp(start_ns)} is after the newest buffered image ({format_stamp(newest)})"
        if end_ns is not None and end_ns < oldest:
            return (f"clip_end {format_stamp(end_ns)} is before the oldest buffered image ({format_stamp(oldest)}; "
                    f"the buffer keeps {self.max_ns / NS_PER_S:g} s)")
        if first >= last:
            return "no buffered image lies between clip_start and clip_end"
        return ""

    @property
    def latest_stamp(self) -> int | None:
        """Stamp (ns) of the newest frame, or None when empty."""
        with self._lock:
            return self._stamps[-1] if self._stamps else None

    @property
    def fill(self) -> tuple[int, float]:
        """``(frames, seconds)`` held: the count and the span from oldest to newest stamp."""
        with self._lock:
            if not self._stamps:
                return 0, 0.0
            return len(self._stamps), (self._stamps[-1] - self._stamps[0]) / NS_PER_S

    @property
    def counters(self) -> BufferCounters:
        """A copy of the totals."""
        with self._lock:
            return BufferCounters(**asdict(self._counters))

    def stats(self) -> dict[str, int | float]:
        """Fill and counters as one flat dict (for /diagnostics)."""
        frames, seconds = self.fill
        return {"frames": frames, "seconds": round(seconds, 3), **asdict(self.counters)}

    def clear(self) -> None:
        """Drop every frame (the counters stay)."""
        with self._lock:
            self._empty()

    def _empty(self) -> None:
        """Drop every frame (under the lock)."""
        self._stamps.clear()
        self._frames.clear()
        self._model_frames.clear()

