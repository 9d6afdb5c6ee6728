"""The node's inference worker: one thread, a bounded queue of questions, latest-only ticks.

Operators' questions wait in a FIFO bounded at ``max_queue``; a full queue rejects at once
(callers get a clear message, never a blocked callback). Continuous-mode ticks are not
queued behind each other: at most one waits, and a newer tick replaces it, so the model
always sees the freshest clip (latency over completeness, DESIGN.md). No rclpy here: the
node passes in what to run, so this is tested without ROS.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Job:
    """One request to the model. ``result`` is set (or ``error``) before ``done`` is set."""

    question: str
    continuous: bool = False
    payload: dict[str, Any] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str = ""
    submitted: float = field(default_factory=time.monotonic)
    id: int = field(default_factory=itertools.count().__next__)

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)


class InferenceWorker:
    """Runs ``run(job)`` for each job on its own thread, questions first-come first-served."""

    def __init__(self, run: Callable[[Job], Any], max_queue: int) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be at least 1")
        self._run = run
        self.max_queue = max_queue
        self._queries: deque[Job] = deque()
        self._tick: Job | None = None
        self._running: Job | None = None
        self._lock = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.rejected = 0
        self.replaced_ticks = 0
        self.completed = 0

    def start(self) -> None:
        with self._lock:
            self._stop = False
        self._thread = threading.Thread(target=self._loop, name="pite-inference", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the running job; pending jobs finish with an error saying so."""
        with self._lock:
            self._stop = True
            pending = list(self._queries) + ([self._tick] if self._tick else [])
            self._queries.clear()
            self._tick = None
            if self._running is not None:
                self._running.cancelled.set()
            self._lock.notify_all()
        for job in pending:
            self._finish(job, error="the node stopped before this query ran")
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def submit(self, job: Job) -> bool:
        """Queue ``job``; False (and counted) when the question queue is full or stopped."""
        with self._lock:
            if self._stop or self._thread is None:
                self.rejected += 1
                return False
            if job.continuous:
                if self._tick is not None:
                    self.replaced_ticks += 1
                    self._finish(self._tick, error="replaced by a newer clip")
                self._tick = job
            elif len(self._queries) >= self.max_queue:
                self.rejected += 1
                return False
            else:
                self._queries.append(job)
            self._lock.notify_all()
            return True

    def position(self, job: Job) -> int:
        """Jobs ahead of ``job`` (0 = running or next); -1 once it is no longer waiting."""
        with self._lock:
            if job is self._running:
                return 0
            if job in self._queries:
                return self._queries.index(job) + (self._running is not None)
            return 0 if job is self._tick else -1

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queries) + (self._tick is not None)

    def _next(self) -> Job | None:
        with self._lock:
            while not self._stop and not self._queries and self._tick is None:
                self._lock.wait()
            if self._stop:
                return None
            if self._queries:
                job = self._queries.popleft()
            else:
                job, self._tick = self._tick, None
            self._running = job
            return job

    @staticmethod
    def _finish(job: Job, result: Any = None, error: str = "") -> None:
        job.result, job.error = result, error
        job.done.set()

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            try:
                if job.cancelled.is_set():
                    self._finish(job, error="cancelled before it ran")
                else:
                    self._finish(job, result=self._run(job))
            except Exception as error:  # a failed answer must not kill the worker
                log.exception("inference failed for %r", job.question)
                self._finish(job, error=f"inference failed: {error}")
            finally:
                with self._lock:
                    self._running = None
                    self.completed += 1
