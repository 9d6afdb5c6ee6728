"""The node's inference worker: one thread, a bounded queue of questions, latest-only ticks.

Operators' questions wait in a FIFO bounded at ``max_queue``; a full queue rejects at once
(callers get a clear message, never a blocked callback). Questions go ahead of continuous
captions: a waiting tick runs only when no question waits, and a question that arrives
while a tick runs stops that tick at its next token (``Job.preempted``; the node drops its
partial caption), so a question waits for a caption's next token at most (or for its
encoding, which is not interrupted). Continuous-mode
ticks are not queued behind each other: at most one waits, and a newer tick replaces it, so
the model always sees the freshest clip (latency over completeness). Each job says when it
is done through ``Job.on_done`` (from the worker thread), so nobody has to park a thread on
it. No rclpy here: the node passes in what to run, so this is tested without ROS.
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


class JobError(Exception):
    """A job that cannot run for a reason its asker can fix (e.g. no images in its window).

    The worker finishes the job with the message as its error and logs nothing: whoever raises
    it logs it (one line, no traceback)."""


@dataclass
class Job:
    """One request to the model. ``result`` is set (or ``error``) before ``done`` is set.

    ``on_done(job)`` runs on the worker thread once ``done`` is set; ``on_position(n)`` each
    time the number of jobs ahead of a waiting question changes. ``preempted`` is set on a
    running continuous job that a question stopped (``cancelled`` is set with it).
    """

    question: str
    continuous: bool = False
    payload: dict[str, Any] = field(default_factory=dict)
    cancelled: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str = ""
    submitted: float = field(default_factory=time.monotonic)
    id: int = field(default_factory=itertools.count().__next__)
    on_done: Callable[[Job], None] | None = None
    on_position: Callable[[int], None] | None = None
    preempted: bool = False

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
        self._reserved = 0
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
            self._reserved = 0
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

    def reserve(self) -> bool:
        """Hold a place in the question queue for a later ``submit(job, reserved=True)``.

        False (and counted) when the queue, with the places already held, is full: an action
        server decides at once whether a goal can be queued, and submits it once accepted.
        """
        with self._lock:
            if self._stop or self._thread is None or len(self._queries) + self._reserved >= self.max_queue:
                self.rejected += 1
                return False
            self._reserved += 1
            return True

    def release(self) -> None:
        """Give back a place held by ``reserve`` that will not be used."""
        with self._lock:
            self._reserved = max(0, self._reserved - 1)

    def submit(self, job: Job, reserved: bool = False) -> bool:
        """Queue ``job``; False (and counted) when the question queue is full or stopped.

        ``reserved``: the place was held by ``reserve`` (so a full queue does not refuse it).
        A question stops a running continuous job (see the module docstring).
        """
        replaced = None
        with self._lock:
            if reserved:
                self._reserved = max(0, self._reserved - 1)
            if self._stop or self._thread is None:
                self.rejected += 1
                return False
            if job.continuous:
                replaced, self._tick = self._tick, job
                self.replaced_ticks += replaced is not None
            elif not reserved and len(self._queries) + self._reserved >= self.max_queue:
                self.rejected += 1
                return False
            else:
                self._queries.append(job)
                running = self._running
                if running is not None and running.continuous and not running.cancelled.is_set():
                    running.preempted = True
                    running.cancelled.set()
            position = self._position(job)
            self._lock.notify_all()
        if replaced is not None:
            self._finish(replaced, error="replaced by a newer clip")
        if job.on_position is not None and not job.continuous:
            job.on_position(position)
        return True

    def position(self, job: Job) -> int:
        """Jobs ahead of ``job`` (0 = running or next); -1 once it is no longer waiting."""
        with self._lock:
            return self._position(job)

    def _position(self, job: Job) -> int:
        if job is self._running:
            return 0
        if job in self._queries:
            return self._queries.index(job) + (self._running is not None)
        return 0 if job is self._tick else -1

    @property
    def running(self) -> Job | None:
        """The job the model is running now, if any."""
        with self._lock:
            return self._running

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
                moved = [(waiting, index + 1) for index, waiting in enumerate(self._queries)]
            else:
                job, self._tick = self._tick, None
                moved = []
            self._running = job
        for waiting, position in moved:  # outside the lock: the hooks publish feedback
            if waiting.on_position is not None:
                waiting.on_position(position)
        return job

    @staticmethod
    def _finish(job: Job, result: Any = None, error: str = "") -> None:
        job.result, job.error = result, error
        job.done.set()
        if job.on_done is not None:
            try:
                job.on_done(job)
            except Exception:  # a caller's hook must not kill the worker
                log.exception("the completion hook of %r failed", job.question)

    def _loop(self) -> None:
        while (job := self._next()) is not None:
            try:
                if job.cancelled.is_set():
                    self._finish(job, error="cancelled before it ran")
                else:
                    self._finish(job, result=self._run(job))
            except JobError as error:  # the asker's problem, logged (one line) by whoever raised it
                self._finish(job, error=str(error))
            except Exception as error:  # a failed answer must not kill the worker
                log.exception("inference failed for %r", job.question)
                self._finish(job, error=f"inference failed: {error}")
            finally:
                with self._lock:
                    self._running = None
                    self.completed += 1


class TickFilter:
    """Which continuous ticks are not answered: a repeat (its newest image is the one the last
    answered tick had: no new image came) or a stale one (it waited longer than ``stale_seconds``
    for the model; latency over completeness). Called from the worker thread only."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last_stamp: int | None = None

    def skip(self, job: Job, newest_stamp: int, stale_seconds: float) -> str:
        """"repeat", "stale", or "" when ``job`` should be answered (``stale_seconds`` 0 = never stale)."""
        repeat = newest_stamp == self._last_stamp
        self._last_stamp = newest_stamp
        if repeat:
            return "repeat"
        if stale_seconds > 0 and self._clock() - job.submitted > stale_seconds:
            return "stale"
        return ""
