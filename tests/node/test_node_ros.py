"""pite_node over real rclpy in a separate process: answers, stamps, robustness, queueing, cancel."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from action_msgs.msg import GoalStatus
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CompressedImage

sys.path.insert(0, str(Path(__file__).parent))
from node_harness import FRAME, T0, TOPIC, NodeHarness, frames, malformed_images  # noqa: E402

from pite_msgs.srv import Query, SetPrompt  # noqa: E402
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


@pytest.mark.parametrize("harness", [{"max_new_tokens": 48}], indirect=True)  # long enough to name an object
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

    assert answer.tracks, answer.text  # the tiny model names objects in this answer ...
    bare = harness.ask("what moves?", return_tracks=False)  # ... and the same answer without them
    assert bare.success and bare.answer.text == answer.text and list(bare.answer.tracks) == []

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
def test_action_streams_the_answer_token_by_token(harness: NodeHarness) -> None:
    """Streaming with the real model (cancel and preemption: test_node_cancel_ros.py)."""
    harness.publish(frames(T0, 20))
    full = harness.ask("tell me everything")
    assert full.success and len(full.answer.text.split()) > 50
    streamed: list = []
    outcome = harness.ask_streaming("tell me everything", streamed.append)
    assert outcome.status == GoalStatus.STATUS_SUCCEEDED and outcome.result.answer.text == full.answer.text
    partials = [text for text in streamed if text]
    assert len(partials) > 50 and all(later.startswith(earlier) for earlier, later in zip(partials, partials[1:]))


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


def set_parameters(harness: NodeHarness, atomically: bool, **values) -> list:
    """Set the node's parameters through its parameter services; the results (one per call)."""
    client = AsyncParameterClient(harness.node, "/pite_node")
    harness.spin_until(lambda: client.services_are_ready(), what="the parameter services")
    params = [Parameter(name, value=value) for name, value in values.items()]
    future = client.set_parameters_atomically(params) if atomically else client.set_parameters(params)
    harness.spin_until(future.done, what="the parameter change")
    results = future.result()
    return [results.result] if atomically else list(results.results)


def fresh_diagnostics(harness: NodeHarness) -> dict[str, str]:
    """/diagnostics published after this call (twice, so it reflects anything done before)."""
    for _ in range(2):
        harness.diagnostics = {}
        harness.spin_until(lambda: harness.diagnostics, what="/diagnostics")
    return harness.diagnostics


@pytest.mark.parametrize("harness", [{"continuous": True, "rate_hz": 5.0}], indirect=True)
def test_parameters_prompt_and_the_enable_switch_while_running(harness: NodeHarness) -> None:
    harness.publish(frames(T0, 10))
    assert fresh_diagnostics(harness)["continuous_rate_hz"] == "5"
    refused = set_parameters(harness, atomically=True, rate_hz=0.5, prompt="")  # one bad value refuses both
    assert not refused[0].successful and "prompt must not be empty" in refused[0].reason
    assert fresh_diagnostics(harness)["continuous_rate_hz"] == "5"  # the timer was left alone
    assert set_parameters(harness, atomically=False, rate_hz=2.0)[0].successful
    assert fresh_diagnostics(harness)["continuous_rate_hz"] == "2"

    harness.spin_until(harness.set_prompt.service_is_ready, what="pite/set_prompt")
    for prompt, accepted, message in (("", False, "prompt must not be empty"),
                                      ("Count the objects.", True, "Count the objects.")):
        future = harness.set_prompt.call_async(SetPrompt.Request(prompt=prompt))
        harness.spin_until(future.done, what="set_prompt")
        assert future.result().success is accepted and message in future.result().message
    harness.publish(frames(T0 + 10**9, 10))  # new images, so the next caption is not a repeat
    harness.spin_until(lambda: any(a.question == "Count the objects." for a in harness.answers),
                       what="a caption with the new prompt")

    assert set_parameters(harness, atomically=False, enabled=False)[0].successful
    refused = harness.ask("anything?")
    assert not refused.success and refused.message == "inference is disabled (parameter 'enabled' is false)"
    fresh_diagnostics(harness)  # a caption that was running when disabled has been published by now
    captions = len(harness.answers)
    harness.publish(frames(T0 + 2 * 10**9, 10))
    for _ in range(5):  # a second of ticks at 2 Hz with new images: none answered while disabled
        fresh_diagnostics(harness)
    assert len(harness.answers) == captions
    assert set_parameters(harness, atomically=False, enabled=True)[0].successful
    harness.spin_until(lambda: len(harness.answers) > captions, what="captions again once enabled")


def jpeg(ns: int) -> CompressedImage:
    """A JPEG of the harness's moving-square image at ``ns``."""
    raw = frames(ns, 1)[0]
    pixels = np.frombuffer(bytes(raw.data), np.uint8).reshape(raw.height, raw.width, 3)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    assert ok
    return CompressedImage(header=raw.header, format="jpeg", data=data.tobytes())


@pytest.fixture
def compressed(ros_domain: int, tmp_path: Path, model_dir: Path):
    node = NodeHarness(tmp_path, model_dir, camera_topic=TOPIC + "/compressed", camera_type=CompressedImage,
                       compressed=True)
    try:
        node.wait_active()
        yield node
    finally:
        node.close()


def test_compressed_images_are_answered_about_in_source_pixels(compressed: NodeHarness) -> None:
    published = [jpeg(T0 + index * 100_000_000) for index in range(10)]
    compressed.publish(published)
    assert "listening on /pite_test/image/compressed" in compressed.process.log()
    response = compressed.ask("what moves?")
    assert response.success, response.message
    assert (response.answer.width, response.answer.height) == (64, 48)
    check_answer_stamps(response.answer, {time_to_ns(m.header.stamp) for m in published})
