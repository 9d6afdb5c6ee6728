"""The inference worker: FIFO questions, bounded queue, latest-only ticks, cancel, failures."""

from __future__ import annotations

import threading

import pytest

from pite_ros.node.worker import InferenceWorker, Job, TickFilter

TIMEOUT = 10.0


class Gate:
    """A run function that blocks until released, recording the order jobs ran in."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()
        self.ran: list[str] = []

    def __call__(self, job: Job) -> str:
        self.started.set()
        assert self.release.wait(TIMEOUT)
        if job.question == "explode":
            raise ValueError("bad clip")
        self.ran.append(job.question)
        return job.question.upper()


@pytest.fixture
def gated():
    gate = Gate()
    worker = InferenceWorker(gate, max_queue=2)
    worker.start()
    yield gate, worker
    gate.release.set()
    worker.stop()


def test_questions_run_in_order_and_a_full_queue_rejects(gated) -> None:
    gate, worker = gated
    first = Job("first")
    assert worker.submit(first)
    assert gate.started.wait(TIMEOUT)
    second, third, fourth = Job("second"), Job("third"), Job("fourth")
    assert worker.submit(second) and worker.submit(third)
    assert not worker.submit(fourth)
    assert worker.rejected == 1
    assert [worker.position(j) for j in (first, second, third)] == [0, 1, 2]
    gate.release.set()
    for job in (first, second, third):
        assert job.wait(TIMEOUT)
    assert gate.ran == ["first", "second", "third"]
    assert third.result == "THIRD" and worker.position(third) == -1


def test_a_newer_tick_replaces_the_waiting_one(gated) -> None:
    gate, worker = gated
    busy = Job("busy")
    worker.submit(busy)
    assert gate.started.wait(TIMEOUT)
    old, new = Job("old tick", continuous=True), Job("new tick", continuous=True)
    assert worker.submit(old) and worker.submit(new)
    assert old.wait(TIMEOUT) and old.error == "replaced by a newer clip"
    gate.release.set()
    assert new.wait(TIMEOUT)
    assert gate.ran == ["busy", "new tick"] and worker.replaced_ticks == 1


def test_failures_and_cancel_do_not_stop_the_worker(gated) -> None:
    gate, worker = gated
    boom, cancelled, after = Job("explode"), Job("never"), Job("after")
    worker.submit(boom)
    assert gate.started.wait(TIMEOUT)
    worker.submit(cancelled)
    worker.submit(after)
    cancelled.cancelled.set()
    gate.release.set()
    for job in (boom, cancelled, after):
        assert job.wait(TIMEOUT)
    assert boom.result is None and boom.error == "inference failed: bad clip"
    assert cancelled.error == "cancelled before it ran"
    assert after.result == "AFTER" and gate.ran == ["after"]


def test_stop_fails_waiting_jobs_with_a_reason() -> None:
    gate = Gate()
    worker = InferenceWorker(gate, max_queue=3)
    worker.start()
    running, waiting = Job("running"), Job("waiting")
    worker.submit(running)
    assert gate.started.wait(TIMEOUT)
    worker.submit(waiting)
    threading.Timer(0.05, gate.release.set).start()
    worker.stop()
    assert waiting.done.is_set() and waiting.error == "the node stopped before this query ran"
    assert not worker.submit(Job("late"))


def test_reserved_places_count_against_the_queue() -> None:
    gate = Gate()
    worker = InferenceWorker(gate, max_queue=2)
    worker.start()
    try:
        assert worker.reserve() and worker.reserve()
        assert not worker.reserve() and not worker.submit(Job("unreserved"))  # both places are held
        assert worker.rejected == 2
        held = Job("held")
        assert worker.submit(held, reserved=True)  # a held place is never refused
        worker.release()
        assert worker.submit(Job("in the freed place"))
        gate.release.set()
        assert held.wait(TIMEOUT) and held.result == "HELD"
    finally:
        gate.release.set()
        worker.stop()


def test_a_question_stops_a_running_caption_and_hooks_report_progress(gated) -> None:
    gate, worker = gated
    finished: list[str] = []
    caption = Job("caption", continuous=True, on_done=lambda job: finished.append(job.question))
    worker.submit(caption)
    assert gate.started.wait(TIMEOUT)
    positions: list[int] = []
    question = Job("question", on_done=lambda job: finished.append(job.question), on_position=positions.append)
    assert worker.submit(question)
    assert caption.preempted and caption.cancelled.is_set()  # the node's run stops at the next token
    later = Job("later", on_position=positions.append)
    worker.submit(later)
    gate.release.set()
    assert later.wait(TIMEOUT)
    assert finished == ["caption", "question"] and gate.ran == ["caption", "question", "later"]
    assert positions == [1, 2, 1]  # question behind the caption; later behind both, then behind question only
    assert not question.preempted and not question.cancelled.is_set()


def test_tick_filter_skips_repeats_and_ticks_that_waited_too_long() -> None:
    now = [50.0]
    ticks = TickFilter(clock=lambda: now[0])
    fresh = Job("caption", continuous=True, submitted=49.5)
    assert ticks.skip(fresh, newest_stamp=1, stale_seconds=2.0) == ""
    assert ticks.skip(fresh, newest_stamp=1, stale_seconds=2.0) == "repeat"  # no image newer than the last answer's
    old = Job("caption", continuous=True, submitted=47.5)
    assert ticks.skip(old, newest_stamp=2, stale_seconds=2.0) == "stale"  # waited 2.5 s
    assert ticks.skip(old, newest_stamp=3, stale_seconds=0.0) == ""  # 0: never stale
    now[0] = 49.9
    assert ticks.skip(Job("caption", continuous=True, submitted=47.95), newest_stamp=4, stale_seconds=2.0) == ""
