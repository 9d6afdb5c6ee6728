"""pite_msgs over real rclpy between two processes: topic, service, and action with feedback and cancel."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

rclpy = pytest.importorskip("rclpy")

from action_msgs.msg import GoalStatus  # noqa: E402
from rclpy.action import ActionClient  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402

from pite_msgs.action import Query as QueryAction  # noqa: E402
from pite_msgs.msg import TrackArray  # noqa: E402
from pite_msgs.srv import Query  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import ros_peer  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT = 30.0


@pytest.fixture
def ros_node(ros_domain: int) -> Iterator[tuple[Node, SingleThreadedExecutor]]:
    """A node in this process, in its own context and domain, spun by the test."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("pite_test_client", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def start_peer(mode: str) -> subprocess.Popen:
    """The other process, in the domain the fixture exported."""
    return subprocess.Popen([sys.executable, str(Path(__file__).with_name("ros_peer.py")), mode])


def spin_until(executor: SingleThreadedExecutor, done, timeout: float = TIMEOUT) -> None:
    """Spin until ``done()`` or fail at the deadline (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out waiting over ROS"
        executor.spin_once(timeout_sec=0.1)


def call_until_answered(executor: SingleThreadedExecutor, client, request, attempt_seconds: float = 5.0):
    """The service's response, calling again while none comes: a client is "ready" once it
    sees the server's request reader, and a request sent before the server has seen the
    client's response reader is answered into the void (a DDS discovery race of ROS 2)."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        future = client.call_async(request)
        try:
            spin_until(executor, future.done, timeout=attempt_seconds)
            return future.result()
        except AssertionError:
            client.remove_pending_request(future)
            assert time.monotonic() < deadline, "timed out waiting over ROS"


def test_track_array_arrives_intact_in_another_process(ros_node) -> None:
    node, executor = ros_node
    received: list[TrackArray] = []
    node.create_subscription(TrackArray, ros_peer.TOPIC, received.append, ros_peer.LATCHED)
    peer = start_peer("publish")
    try:
        spin_until(executor, lambda: received)
    finally:
        peer.kill()
        peer.wait()
    assert received[0] == ros_peer.expected_track_array()
    track = received[0].tracks[1]
    assert track.phrase == "a small blue square" and len(track.points) == 6
    assert track.points[2].state == track.points[2].STATE_OCCLUDED


def test_query_service_and_action_with_feedback_and_cancel(ros_node) -> None:
    node, executor = ros_node
    peer = start_peer("serve")
    try:
        client = node.create_client(Query, ros_peer.SERVICE)
        spin_until(executor, lambda: client.service_is_ready())
        response = call_until_answered(executor, client, Query.Request(question="where is the red circle?",
                                                                         return_tracks=True))
        assert response.success and response.answer.text == "you asked: where is the red circle?"
        assert response.answer.header == ros_peer.expected_track_array().header
        assert len(response.answer.tracks) == 2 and response.answer.segments[0].text == response.answer.text

        actions = ActionClient(node, QueryAction, ros_peer.ACTION)
        spin_until(executor, actions.server_is_ready)

        feedback: list[str] = []
        goal_future = actions.send_goal_async(
            QueryAction.Goal(question="describe"), feedback_callback=lambda m: feedback.append(m.feedback.partial_text)
        )
        spin_until(executor, goal_future.done)
        result_future = goal_future.result().get_result_async()
        spin_until(executor, result_future.done)
        finished = result_future.result()
        assert finished.status == GoalStatus.STATUS_SUCCEEDED
        assert finished.result.answer.text == "a red circle moves left and stops near the edge"
        assert feedback and feedback[-1] == finished.result.answer.text
        assert all(later.startswith(earlier) for earlier, later in zip(feedback, feedback[1:]))

        streamed = threading.Event()
        partials: list[str] = []

        def on_feedback(message) -> None:
            partials.append(message.feedback.partial_text)
            if len(partials) >= 3:
                streamed.set()

        goal_future = actions.send_goal_async(QueryAction.Goal(question=ros_peer.WAIT_FOR_CANCEL),
                                              feedback_callback=on_feedback)
        spin_until(executor, goal_future.done)
        handle = goal_future.result()
        spin_until(executor, streamed.is_set)
        cancel_future = handle.cancel_goal_async()
        spin_until(executor, cancel_future.done)
        result_future = handle.get_result_async()
        spin_until(executor, result_future.done)
        cancelled = result_future.result()
        assert cancelled.status == GoalStatus.STATUS_CANCELED
        assert not cancelled.result.success and cancelled.result.message == "cancelled"
        assert cancelled.result.answer.text == "a red circle"  # the peer waits there for the cancel
    finally:
        peer.kill()
        peer.wait()
