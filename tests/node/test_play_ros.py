"""pite-play over real rclpy: a video and a looping bag published by another process, received here.

Also checks the loud warning on incompatible QoS from both ends (a reliable subscriber and a
best-effort player), the clean exit at end of file and on Ctrl-C, and that the clip buffer
resets when a bag loop makes time jump back.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")

from node_media import make_frames, make_video  # noqa: E402  (tests/node is on sys.path under pytest)
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.node import Node  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from pite_ros.node.clip_buffer import AddResult, ClipBuffer  # noqa: E402
from pite_ros.node.conversions import time_to_ns  # noqa: E402
from pite_ros.node.image_conversion import image_to_rgb  # noqa: E402
from pite_ros.node.player import write_image_bag  # noqa: E402
from pite_ros.node.qos import reliable_qos, sensor_qos, warn_on_incompatible_qos  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT = 30.0
EXIT_TIMEOUT = 90.0  # a player's exit after Ctrl-C (participant teardown is slow on a loaded machine)
S = 1_000_000_000


@pytest.fixture
def ros_node(ros_domain: int) -> Iterator[tuple[Node, SingleThreadedExecutor]]:
    """A node in this process, in its own context and domain, spun by the test."""
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Node("pite_play_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    yield node, executor
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(executor: SingleThreadedExecutor, done, timeout: float = TIMEOUT) -> None:
    """Spin until ``done()`` or fail at the deadline (no sleeps as synchronisation)."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "timed out waiting over ROS"
        executor.spin_once(timeout_sec=0.05)


def start_player(*args: str) -> subprocess.Popen:
    """``pite-play`` in another process, in the domain the fixture exported."""
    return subprocess.Popen([sys.executable, "-m", "pite_ros.tools.play", *args], stderr=subprocess.PIPE, text=True)


def finish(player: subprocess.Popen, interrupt: bool = False) -> tuple[int, str]:
    """The player's exit code and its stderr, after Ctrl-C when ``interrupt``."""
    if interrupt:
        player.send_signal(signal.SIGINT)
    try:
        _, err = player.communicate(timeout=EXIT_TIMEOUT)
    finally:
        player.kill()
    return player.returncode, err


def test_a_video_file_arrives_whole_at_its_rate_and_the_player_exits_0(ros_node, tmp_path: Path) -> None:
    node, executor = ros_node
    video = make_video(tmp_path / "v.mp4", 12, fps=20.0, size=(32, 24))
    received: list[Image] = []
    node.create_subscription(Image, "/test/video", received.append, reliable_qos(50))
    player = start_player(str(video), "--topic", "/test/video", "--frame-id", "cam_video", "--encoding", "bgr8",
                          "--qos", "reliable", "--depth", "50", "--wait-subscribers", "1")
    try:
        spin_until(executor, lambda: len(received) >= 12)
        rc, err = finish(player)
    finally:
        player.kill()
    assert rc == 0, err
    assert len(received) == 12
    assert {(m.header.frame_id, m.width, m.height, m.encoding) for m in received} == {("cam_video", 32, 24, "bgr8")}
    levels = [image_to_rgb(m).mean() for m in received]
    assert levels == pytest.approx([20 * i for i in range(12)], abs=8)  # frame order kept (mp4v is lossy)
    stamps = [time_to_ns(m.header.stamp) for m in received]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert abs(stamps[-1] - time.time_ns()) < 20 * S  # clock time at publish
    assert (stamps[-1] - stamps[0]) / S >= 0.8 * 11 / 20  # real rate: 11 frame periods of 50 ms
    assert "published 12 frames" in err


def test_a_looping_bag_jumps_back_resets_the_buffer_and_qos_mismatch_is_loud(ros_node, tmp_path: Path) -> None:
    node, executor = ros_node
    frames = make_frames(5)
    stamps = [1_700_000_000 * S + i * S // 20 for i in range(5)]
    bag = write_image_bag(tmp_path / "loop.mcap", frames, stamps, topic="/cam", frame_id="bag_cam")
    by_stamp = dict(zip(stamps, frames))
    received: list[Image] = []
    incompatible = threading.Event()
    node.create_subscription(Image, "/test/bag", received.append, sensor_qos(20))
    # A reliable subscription cannot hear the best-effort player: the event must fire, loudly.
    node.create_subscription(Image, "/test/bag", lambda msg: pytest.fail("reliable subscriber got data"),
                             reliable_qos(5), event_callbacks=warn_on_incompatible_qos(
                                 node.get_logger(), "/test/bag", incompatible.set))
    player = start_player(str(bag), "--topic", "/test/bag", "--qos", "sensor_data", "--loop", "--use-bag-stamps",
                          "--restamp-loop=false", "--wait-subscribers", "1")

    def jumps() -> int:
        got = [time_to_ns(m.header.stamp) for m in received]
        return sum(b < a for a, b in zip(got, got[1:]))

    try:
        spin_until(executor, lambda: incompatible.is_set() and jumps() >= 2)
        rc, err = finish(player, interrupt=True)
    finally:
        player.kill()
    assert rc == 0, err
    assert "QoS INCOMPATIBLE" in err and "RELIABILITY" in err  # the player's side warns too
    buffer = ClipBuffer(jump_back_seconds=0.1)
    got, results = [], []
    for msg in received:
        stamp = time_to_ns(msg.header.stamp)
        image = image_to_rgb(msg)
        assert msg.header.frame_id == "bag_cam" and stamp in by_stamp
        np.testing.assert_array_equal(image, by_stamp[stamp])  # the bag's pixels and stamps, exactly
        got.append(stamp)
        results.append(buffer.add(stamp, msg.header.frame_id, image))
    # Each loop restart (0.2 s back) resets the buffer; a frame lost to best effort may make one
    # restart a smaller step back, which the buffer then takes as reordering, never as a reset.
    resets = [i for i, result in enumerate(results) if result is AddResult.RESET_TIME_JUMP]
    assert resets and len(resets) == buffer.counters.resets and all(got[i] < got[i - 1] for i in resets)
    assert not {AddResult.RESET_FRAME_ID, AddResult.RESET_SIZE} & set(results)
    clip = buffer.clip()
    assert clip.frame_id == "bag_cam" and set(clip.stamps.tolist()) <= set(stamps)
    assert len(clip.stamps) <= 5  # never frames of two passes in one clip
