"""pite_node refusing what it cannot do, over real rclpy in a separate process (issue 35).

Refused images, questions, clip windows and goals in every order leave the node up; a bad
clip window is refused before it is queued, naming the bound; /diagnostics returns to OK
once errors stop. (The question queue's bound: test_node_endless_ros.py, deterministic.)
"""

from __future__ import annotations

import itertools
import sys
import time
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus

sys.path.insert(0, str(Path(__file__).parent))
from node_harness import T0, NodeHarness, frames, malformed_images, stamp  # noqa: E402

from pite_msgs.action import Query as QueryAction  # noqa: E402
from pite_msgs.srv import Query  # noqa: E402

pytestmark = pytest.mark.ros
S = 1_000_000_000


def call(harness: NodeHarness, request: Query.Request) -> Query.Response:
    future = harness.query.call_async(request)
    harness.spin_until(future.done, what=f"the response to {request.question!r}")
    return future.result()


def goal_accepted(harness: NodeHarness, goal: QueryAction.Goal) -> bool:
    future = harness.action.send_goal_async(goal)
    harness.spin_until(future.done, what="the goal response")
    return future.result().accepted


def refuse_in_every_order(harness: NodeHarness, seconds: float) -> None:
    """Refused images, empty questions, reversed windows and empty goals, in all 24 orders (96
    refusals a round), round after round for ``seconds`` (one round at least); then the node
    answers, and /diagnostics goes back to OK."""
    published = frames(T0, 20)
    harness.publish(published)
    harness.spin_until(lambda: harness.query.service_is_ready() and harness.action.server_is_ready(),
                       what="the query service and action")
    first, last = published[0].header.stamp, published[-1].header.stamp
    bad_image = malformed_images()[0]

    def refuse_image() -> None:
        harness.images.publish(bad_image)

    def empty_question() -> None:
        response = call(harness, Query.Request(question="  "))
        assert not response.success and response.message == "the question is empty"

    def reversed_window() -> None:
        response = call(harness, Query.Request(question="when?", clip_start=last, clip_end=first))
        assert not response.success and response.message.startswith("bad clip window: clip_end ")

    def empty_goal() -> None:
        assert not goal_accepted(harness, QueryAction.Goal(question=""))

    orders = list(itertools.permutations([refuse_image, empty_question, reversed_window, empty_goal]))
    rounds, started = 0, time.monotonic()
    while rounds == 0 or time.monotonic() - started < seconds:
        for order in orders:
            for step in order:
                step()
        rounds += 1
    images, queries = rounds * len(orders), 3 * rounds * len(orders)
    harness.spin_until(lambda: harness.counter("frames_rejected") >= images
                       and harness.counter("queries_rejected") >= queries, what="every refusal counted")
    assert harness.counter("frames_rejected") == images and harness.counter("queries_rejected") == queries
    assert harness.diagnostics_level == DiagnosticStatus.WARN and "yuv422" in harness.diagnostics_message
    answer = harness.ask("still there?")
    assert answer.success, answer.message
    # The last error ages out: OK again one diagnostics_error_window after the last refusal.
    harness.spin_until(lambda: harness.diagnostics_level == DiagnosticStatus.OK, timeout=10.0,
                       what="/diagnostics back to OK")
    log = harness.process.log()
    assert harness.process.alive() and "Traceback" not in log
    assert 0 < log.count("query rejected: ") < queries  # throttled, one line each
    assert "query rejected: the question is empty" in log or "query rejected: bad clip window" in log


@pytest.mark.parametrize("harness", [{"diagnostics_error_window": 1.0}], indirect=True)
def test_refusals_in_every_order_leave_the_node_up_and_diagnostics_recover(harness: NodeHarness) -> None:
    refuse_in_every_order(harness, seconds=0.0)


@pytest.mark.slow
@pytest.mark.parametrize("harness", [{"diagnostics_error_window": 1.0}], indirect=True)
def test_refusals_for_three_minutes(harness: NodeHarness) -> None:
    refuse_in_every_order(harness, seconds=180.0)


def test_clip_windows_are_refused_before_queueing_naming_the_bound(harness: NodeHarness) -> None:
    nothing = harness.ask("anything?")
    assert not nothing.success and nothing.message.startswith("no images yet")
    harness.publish(frames(T0 + 10 * S, 20))  # images at 10.0, 10.1, ..., 11.9 s
    cases = {
        (T0 + 11 * S, T0 + 10 * S): "clip_end 1700000010.000000000 s is before clip_start 1700000011.000000000 s",
        (T0, T0 + 5 * S): "clip_end 1700000005.000000000 s is before the oldest buffered image "
                          "(1700000010.000000000 s; the buffer keeps 30 s)",
        (T0 + 20 * S, 0): "clip_start 1700000020.000000000 s is after the newest buffered image "
                          "(1700000011.900000000 s)",
        (T0 + 10 * S + 10**7, T0 + 10 * S + 5 * 10**7): "no buffered image lies between clip_start and clip_end",
    }
    for (start, end), reason in cases.items():
        response = harness.ask("when?", clip_start=stamp(start), clip_end=stamp(end))
        assert not response.success and response.message == f"bad clip window: {reason}"
    assert not goal_accepted(harness, QueryAction.Goal(question="when?", clip_start=stamp(T0 + 11 * S),
                                                       clip_end=stamp(T0 + 10 * S)))
    assert harness.ask("and now?", clip_start=stamp(T0 + 10 * S), clip_end=stamp(T0 + 11 * S)).success
    harness.spin_until(lambda: harness.counter("queries_rejected") >= 1 + len(cases) + 1, what="the refusals counted")
    assert harness.counter("queries_rejected") == 1 + len(cases) + 1
    log = harness.process.log()
    assert "query rejected: no images yet" in log and "Traceback" not in log  # one line each (throttled)
