"""The other process of the interface tests: a TrackArray publisher or a Query server.

Run as ``python tests/ros_peer.py publish|serve``; it runs until killed. The expected
TrackArray is built by ``expected_track_array`` so both sides agree on every field.
"""

from __future__ import annotations

import sys
import time

import rclpy
from builtin_interfaces.msg import Duration, Time
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy

from pite_msgs.action import Query as QueryAction
from pite_msgs.msg import Answer, ObjectTrack, TimeSegment, TrackArray, TrackPoint
from pite_msgs.srv import Query

TOPIC = "/pite_test/tracks"
SERVICE = "/pite_test/query"
ACTION = "/pite_test/query"
WAIT_FOR_CANCEL = "describe until cancelled"
# Reliable + transient local: a late-joining subscriber still gets the last message.
LATCHED = QoSProfile(
    depth=1,
    reliability=QoSReliabilityPolicy.RELIABLE,
    durability=QoSDurabilityPolicy.TRANSIENT_LOCAL,
)


def expected_track_array() -> TrackArray:
    """A TrackArray that exercises every field type of the interfaces."""
    msg = TrackArray()
    msg.header.frame_id = "camera_optical"
    msg.header.stamp = Time(sec=1_700_000_000, nanosec=123_456_789)
    msg.clip_start = Time(sec=1_699_999_996, nanosec=500)
    msg.clip_end = msg.header.stamp
    msg.width, msg.height = 640, 480
    msg.query_id = "q-42"
    for index, phrase in enumerate(["the red circle", "a small blue square"]):
        track = ObjectTrack(id=f"track-{index}", phrase=phrase, span_start=4 * index, span_end=4 * index + 3)
        track.score = 0.5 + 0.25 * index
        for frame in range(3):
            stamp = Time(sec=1_699_999_997 + frame, nanosec=0)
            for point_id in range(2):
                track.points.append(
                    TrackPoint(stamp=stamp, point_id=point_id, x=10.5 * frame + point_id, y=20.25 + index,
                               score=0.75, state=TrackPoint.STATE_OCCLUDED if frame == 1 else TrackPoint.STATE_OBSERVED)
                )
            track.centroid.append(TrackPoint(stamp=stamp, x=10.5 * frame + 0.5, y=20.25 + index, score=0.75))
        msg.tracks.append(track)
    return msg


def answer_for(question: str, text: str) -> Answer:
    """The Answer the test server returns: its text and one segment, stamped like the tracks."""
    tracks = expected_track_array()
    answer = Answer(header=tracks.header, query_id="q-42", question=question, text=text)
    answer.tracks = list(tracks.tracks)
    answer.segments = [TimeSegment(start=tracks.clip_start, end=tracks.clip_end, text=text)]
    answer.clip_start, answer.clip_end = tracks.clip_start, tracks.clip_end
    answer.frame_count, answer.width, answer.height = 3, 640, 480
    answer.model_name = "ros-peer"
    answer.inference_time = Duration(sec=0, nanosec=1_000_000)
    return answer


class QueryServer(Node):
    """Answers /pite_test/query by service and action; the action streams one word per step."""

    def __init__(self) -> None:
        super().__init__("pite_test_query_server")
        group = ReentrantCallbackGroup()
        self.create_service(Query, SERVICE, self.on_query, callback_group=group)
        ActionServer(
            self, QueryAction, ACTION, self.execute,
            goal_callback=lambda _goal: GoalResponse.ACCEPT,
            cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=group,
        )

    def on_query(self, request: Query.Request, response: Query.Response) -> Query.Response:
        response.success = bool(request.question)
        response.message = "ok" if response.success else "empty question"
        response.answer = answer_for(request.question, f"you asked: {request.question}")
        return response

    def execute(self, goal_handle) -> QueryAction.Result:
        """One word per step; for the question WAIT_FOR_CANCEL it stops after three words until a
        cancel comes (up to 30 s), so a test's cancel always lands mid-answer."""
        words = ["a", "red", "circle", "moves", "left", "and", "stops", "near", "the", "edge"]
        result = QueryAction.Result()
        partial: list[str] = []
        for word in words:
            if len(partial) == 3 and goal_handle.request.question == WAIT_FOR_CANCEL:
                deadline = time.monotonic() + 30.0
                while not goal_handle.is_cancel_requested and time.monotonic() < deadline:
                    time.sleep(0.01)
            if goal_handle.is_cancel_requested:
                goal_handle.canceled()
                result.message = "cancelled"
                result.answer = answer_for(goal_handle.request.question, " ".join(partial))
                return result
            partial.append(word)
            feedback = QueryAction.Feedback(
                stage=QueryAction.Feedback.STAGE_GENERATING, partial_text=" ".join(partial), queue_position=0
            )
            goal_handle.publish_feedback(feedback)
            time.sleep(0.1)
        goal_handle.succeed()
        result.success, result.message = True, "ok"
        result.answer = answer_for(goal_handle.request.question, " ".join(partial))
        return result


def main() -> None:
    rclpy.init()
    if sys.argv[1] == "publish":
        node = Node("pite_test_publisher")
        publisher = node.create_publisher(TrackArray, TOPIC, LATCHED)
        node.create_timer(0.2, lambda: publisher.publish(expected_track_array()))
    else:
        node = QueryServer()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
