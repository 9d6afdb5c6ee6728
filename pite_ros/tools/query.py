"""``pite-query "question"``: ask the PiTe node a question and print the answer.

By default it calls the ``pite/query`` service of the node (``/pite/query``, or
``/NS/pite/query`` with ``--namespace NS``); ``--stream`` uses the ``pite/query`` action
instead and prints the answer token by token as it is generated (Ctrl-C cancels
the goal). Prints the answer, the time segments and the tracks it names.
"""

from __future__ import annotations

import argparse
import sys
import time

import rclpy
from action_msgs.msg import GoalStatus
from builtin_interfaces.msg import Time
from rclpy.action import ActionClient
from rclpy.node import Node

from pite_msgs.action import Query as QueryAction
from pite_msgs.msg import Answer
from pite_msgs.srv import Query
from pite_ros.node.names import QUERY_NAME, qualified


def _seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _stamp(seconds: float) -> Time:
    whole = int(seconds)
    return Time(sec=whole, nanosec=int(round((seconds - whole) * 1e9)))


def format_answer(answer: Answer) -> str:
    """The answer, its segments (seconds from the clip start) and tracks, as an operator reads them."""
    start = _seconds(answer.clip_start)
    lines = [
        f"answer: {answer.text}",
        f"clip:   {answer.frame_count} frames, {_seconds(answer.clip_end) - start:.2f} s, "
        f"frame '{answer.header.frame_id}', {answer.width}x{answer.height}, "
        f"model {answer.model_name}, {answer.inference_time.sec + answer.inference_time.nanosec * 1e-9:.3f} s",
    ]
    for segment in answer.segments:
        lines.append(f"segment: {_seconds(segment.start) - start:6.2f} s .. {_seconds(segment.end) - start:6.2f} s"
                     f"  {segment.text}")
    for track in answer.tracks:
        path = track.centroid
        where = (f"({path[0].x:.0f}, {path[0].y:.0f}) -> ({path[-1].x:.0f}, {path[-1].y:.0f}) px"
                 if path else "no points")
        points = len(track.points) // max(len(path), 1)
        lines.append(f"track {track.id}: '{track.phrase}' score {track.score:.2f}, {len(path)} frames x "
                     f"{points} points, {where}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pite-query", description=__doc__.splitlines()[0])
    parser.add_argument("question")
    parser.add_argument("--stream", action="store_true", help="use the action and print tokens as they come")
    parser.add_argument("--namespace", default="", help="namespace of the node (default: none)")
    parser.add_argument("--name", help="service/action name (default: /NAMESPACE/pite/query)")
    parser.add_argument("--start", type=float, default=0.0, help="clip start (seconds, source clock; 0 = latest clip)")
    parser.add_argument("--end", type=float, default=0.0, help="clip end (seconds, source clock; 0 = newest image)")
    parser.add_argument("--no-tracks", action="store_true", help="do not return trajectories")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the node and the answer")
    args = parser.parse_args(argv)
    args.name = args.name or qualified(args.namespace, QUERY_NAME)
    return args


def _wait(node: Node, future, deadline: float) -> bool:
    while not future.done():
        if time.monotonic() > deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.05)
    return True


def ask_service(node: Node, args: argparse.Namespace, deadline: float) -> int:
    client = node.create_client(Query, args.name)
    if not client.wait_for_service(timeout_sec=max(deadline - time.monotonic(), 0.1)):
        print(f"pite-query: no service {args.name} (is pite_node running and active?)", file=sys.stderr)
        return 2
    request = Query.Request(question=args.question, clip_start=_stamp(args.start), clip_end=_stamp(args.end),
                            return_tracks=not args.no_tracks)
    future = client.call_async(request)
    if not _wait(node, future, deadline):
        print("pite-query: timed out waiting for the answer", file=sys.stderr)
        return 3
    response = future.result()
    if not response.success:
        print(f"pite-query: {response.message}", file=sys.stderr)
        return 1
    print(format_answer(response.answer))
    return 0


def ask_action(node: Node, args: argparse.Namespace, deadline: float) -> int:
    client = ActionClient(node, QueryAction, args.name)
    if not client.wait_for_server(timeout_sec=max(deadline - time.monotonic(), 0.1)):
        print(f"pite-query: no action server {args.name} (is pite_node running and active?)", file=sys.stderr)
        return 2
    printed = {"text": "", "stage": ""}

    def on_feedback(message) -> None:
        feedback = message.feedback
        if feedback.stage != printed["stage"] and feedback.stage != QueryAction.Feedback.STAGE_GENERATING:
            print(f"[{feedback.stage}{f', position {feedback.queue_position}' if feedback.queue_position else ''}]",
                  file=sys.stderr)
        printed["stage"] = feedback.stage
        if feedback.partial_text.startswith(printed["text"]):
            print(feedback.partial_text[len(printed["text"]):], end="", flush=True)
            printed["text"] = feedback.partial_text

    goal = QueryAction.Goal(question=args.question, clip_start=_stamp(args.start), clip_end=_stamp(args.end),
                            return_tracks=not args.no_tracks)
    goal_future = client.send_goal_async(goal, feedback_callback=on_feedback)
    if not _wait(node, goal_future, deadline) or not goal_future.result().accepted:
        print("pite-query: the node rejected the question (inactive, disabled, bad question or queue full)",
              file=sys.stderr)
        return 1
    handle = goal_future.result()
    result_future = handle.get_result_async()
    try:
        if not _wait(node, result_future, deadline):
            print("\npite-query: timed out; cancelling", file=sys.stderr)
            handle.cancel_goal_async()
            return 3
    except KeyboardInterrupt:
        cancel = handle.cancel_goal_async()
        _wait(node, cancel, time.monotonic() + 5.0)
        _wait(node, result_future, time.monotonic() + 5.0)
        print("\npite-query: cancelled", file=sys.stderr)
        return 130
    print()
    outcome = result_future.result()
    if outcome.status != GoalStatus.STATUS_SUCCEEDED:
        print(f"pite-query: {outcome.result.message}", file=sys.stderr)
        return 1
    print(format_answer(outcome.result.answer))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    rclpy.init()
    node = Node("pite_query_client")
    deadline = time.monotonic() + args.timeout
    try:
        return (ask_action if args.stream else ask_service)(node, args, deadline)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    sys.exit(main())
