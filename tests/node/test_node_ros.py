"""pite_node over real rclpy in a separate process: answers, stamps, robustness, queueing, cancel."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from sensor_msgs.msg import Image

sys.path.insert(0, str(Path(__file__).parent))
from node_harness import FRAME, T0, NodeHarness, frames, malformed_images  # noqa: E402

from pite_msgs.action import Query as QueryAction  # noqa: E402
from pite_msgs.srv import Query  # noqa: E402
from pite_ros.node.conversions import time_to_ns  # noqa: E402

pytestmark = pytest.mark.ros


def check_answer_stamps(answer, published_ns: set[int], frame_id: str = FRAME) -> None:
    """Every stamp in the answer is a published image's; the header is the clip's last image."""
    assert answer.header.frame_id == frame_id
    assert time_to_ns(answer.header.stamp) == time_to_ns(answer.clip_end)
    assert time_to_ns(answer.clip_start) in published_ns and time_to_ns(answer.clip_end) in published_ns
    for track in answer.tracks:
        for point in list(track.points) + list(track.centroid):
            assert time_to_ns(point.stamp) in published_ns
            assert 0 <= point.x <= answer.width and 0 <= point.y <= answer.height
        stamps = [time_to_ns(p.stamp) for p in track.points]
        assert stamps == sorted(stamps)


def test_query_answers_with_source_stamps_and_pixels(harness: NodeHarness) -> None:
    published = frames(T0, 30)
    harness.publish(published)
    assert harness.counter("image_publishers") == 1  # the test's publisher, as the node sees it
    response = harness.ask("what moves?")
    assert response.success, response.message
    answer = response.answer
    assert answer.text and answer.frame_count == 4 and (answer.width, answer.height) == (64, 48)
    check_answer_stamps(answer, {time_to_ns(m.header.stamp) for m in published})
    assert time_to_ns(answer.clip_end) == time_to_ns(published[-1].header.stamp)  # the latest clip
    harness.spin_until(lambda: any(a.query_id == answer.query_id for a in harness.answers), what="/pite/answer")
    harness.spin_until(lambda: harness.debug_images, what="/pite/debug_image")
    debug = harness.debug_images[-1]
    assert debug.header == answer.header and (debug.width, debug.height, debug.encoding) == (64, 48, "rgb8")
    assert any(t.query_id == answer.query_id and t.header == answer.header for t in harness.tracks) or not answer.tracks

    window = harness.ask("and earlier?", clip_start=published[2].header.stamp, clip_end=published[12].header.stamp)
    assert window.success
    assert time_to_ns(window.answer.clip_start) == time_to_ns(published[2].header.stamp)
    assert time_to_ns(window.answer.clip_end) == time_to_ns(published[12].header.stamp)


def test_bad_questions_are_refused_with_a_reason(harness: NodeHarness) -> None:
    empty = harness.ask("   ")
    assert not empty.success and "empty" in empty.message
    assert not harness.ask("why " * 500).success  # over max_question_chars
    nothing = harness.ask("anything there?")  # no image published yet
    assert not nothing.success and "no images" in nothing.message
    harness.publish(frames(T0, 10))
    assert harness.ask("now?").success
    harness.spin_until(lambda: harness.counter("queries_rejected") >= 2, what="rejections in diagnostics")


def test_malformed_images_and_time_going_back_never_break_the_node(harness: NodeHarness) -> None:
    harness.publish(malformed_images())
    harness.spin_until(lambda: harness.counter("frames_rejected") >= 5, what="rejected frames in diagnostics")
    later = frames(T0 + 10**10, 20)
    harness.publish(later)
    first = harness.ask("what now?")
    assert first.success
    check_answer_stamps(first.answer, {time_to_ns(m.header.stamp) for m in later})

    looped = frames(T0, 20)  # a bag loop: time jumps back 10 s
    harness.publish(looped)
    harness.spin_until(lambda: harness.counter("buffer_resets") >= 1, what="a buffer reset")
    second = harness.ask("and after the loop?")
    assert second.success
    check_answer_stamps(second.answer, {time_to_ns(m.header.stamp) for m in looped})

    other = frames(T0 + 5 * 10**9, 20, frame_id="other_camera")  # a different camera on the topic
    harness.publish(other)
    third = harness.ask("which camera?")
    assert third.success
    check_answer_stamps(third.answer, {time_to_ns(m.header.stamp) for m in other}, frame_id="other_camera")


@pytest.mark.parametrize("harness", [{"queue_size": 1, "max_new_tokens": 200}], indirect=True)
def test_a_flood_of_queries_is_bounded_and_later_queries_are_answered(harness: NodeHarness) -> None:
    harness.publish(frames(T0, 20))
    harness.spin_until(harness.query.service_is_ready, what="/pite/query")
    futures = [harness.query.call_async(Query.Request(question=f"q{i}?")) for i in range(8)]
    harness.spin_until(lambda: all(f.done() for f in futures), what="the flood to be answered or rejected")
    responses = [f.result() for f in futures]
    rejected = [r for r in responses if not r.success]
    assert rejected and all("queue is full" in r.message for r in rejected)
    assert any(r.success for r in responses)
    assert harness.ask("still there?").success


@pytest.mark.parametrize("harness", [{"max_new_tokens": 300}], indirect=True)
def test_action_streams_tokens_and_honours_cancel_between_tokens(harness: NodeHarness) -> None:
    harness.publish(frames(T0, 20))
    harness.spin_until(harness.action.server_is_ready, what="the action server")
    full = harness.ask("tell me everything")
    assert full.success and len(full.answer.text.split()) > 50  # long enough to cancel mid-answer

    partials: list[str] = []
    stages: list[str] = []

    def on_feedback(message) -> None:
        stages.append(message.feedback.stage)
        if message.feedback.partial_text:
            partials.append(message.feedback.partial_text)

    goal = harness.action.send_goal_async(QueryAction.Goal(question="tell me everything", return_tracks=True),
                                          feedback_callback=on_feedback)
    harness.spin_until(goal.done, what="goal acceptance")
    handle = goal.result()
    assert handle.accepted
    harness.spin_until(lambda: len(partials) >= 3, what="streamed tokens")
    cancel = handle.cancel_goal_async()
    harness.spin_until(cancel.done, what="the cancel response")
    result = handle.get_result_async()
    harness.spin_until(result.done, what="the cancelled result")
    outcome = result.result()
    assert outcome.status == GoalStatus.STATUS_CANCELED
    assert 0 < len(outcome.result.answer.text.split()) < len(full.answer.text.split())
    assert QueryAction.Feedback.STAGE_GENERATING in stages
    assert all(later.startswith(earlier) for earlier, later in zip(partials, partials[1:]))

    finished = harness.action.send_goal_async(QueryAction.Goal(question="short?"))
    harness.spin_until(finished.done, what="goal acceptance")
    final = finished.result().get_result_async()
    harness.spin_until(final.done, what="the next goal's result")
    assert final.result().status == GoalStatus.STATUS_SUCCEEDED


@pytest.mark.parametrize("harness", [{"continuous": True, "rate_hz": 5.0}], indirect=True)
def test_continuous_mode_publishes_answers_and_tracks_stamped_from_the_source(harness: NodeHarness) -> None:
    published = frames(T0, 40, period_ns=50_000_000)
    harness.publish(published)
    harness.spin_until(lambda: any(a.query_id == "continuous" for a in harness.answers), what="a continuous answer")
    answer = next(a for a in harness.answers if a.query_id == "continuous")
    assert answer.question == "Describe the video."
    check_answer_stamps(answer, {time_to_ns(m.header.stamp) for m in published})
    harness.spin_until(lambda: any(t.query_id == "continuous" for t in harness.tracks), what="continuous tracks")
    tracks = next(t for t in harness.tracks if t.query_id == "continuous")
    assert tracks.header.frame_id == FRAME and (tracks.width, tracks.height) == (64, 48)
    harness.spin_until(lambda: harness.counter("repeat_clips_skipped") >= 1, what="repeats of the same clip skipped")
    count, skipped = len(harness.answers), harness.counter("repeat_clips_skipped")
    harness.spin_until(lambda: harness.counter("repeat_clips_skipped") >= skipped + 2, what="more repeats skipped")
    assert len(harness.answers) == count  # no new images: the same clip is not answered again and again
    assert np.isfinite(float(harness.diagnostics["last_latency_s"]))
