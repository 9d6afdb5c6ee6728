"""Rate-limited warnings, one limit per kind of message, safe from any thread.

rclpy's ``throttle_duration_sec`` keys its state by the caller's code location and raises
``ValueError`` out of the callback when one location is reached with other filter values
(the deprecated ``warn`` made every caller the same location, and the node died: issue 35).
This keeps the state here, by a kind the caller names, and says how many were held back.
No rclpy here: ``log`` is any callable taking the line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class Throttle:
    """Pass at most one message of each kind per ``period`` seconds to ``log``."""

    def __init__(self, log: Callable[[str], object], clock: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def __call__(self, kind: str, period: float, message: str) -> bool:
        """Log ``message`` unless a ``kind`` message went out less than ``period`` s ago; True when logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(kind)
            if last is not None and now - last < period:
                self._held[kind] = self._held.get(kind, 0) + 1
                return False
            self._last[kind] = now
            held = self._held.pop(kind, 0)
        self._log(message + (f" ({held} more held back since the last one)" if held else ""))
        return True
