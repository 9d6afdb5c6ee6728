"""player without ROS: sources (video, bag, errors), image bags written and read back, pacing and restamping."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from node_media import make_frames, make_video

from pite_ros.node.player import (
    BagSource,
    PlayOptions,
    SourceError,
    SourceFrame,
    VideoSource,
    open_source,
    play,
    write_image_bag,
)
from pite_ros.tools.play import main as play_main

S = 1_000_000_000
T0 = 1_700_000_000 * S


class ListSource:
    """A source of given frames, for play() alone."""

    live = False

    def __init__(self, times: list[float], stamps: list[int] | None = None) -> None:
        self.items = [SourceFrame(np.zeros((2, 2, 3), np.uint8), t, None if stamps is None else stamps[i])
                      for i, t in enumerate(times)]

    def describe(self) -> str:
        return "list"

    def frames(self):
        yield from self.items


@pytest.mark.parametrize("compression", [None, "png"])
def test_bags_round_trip_exactly(tmp_path: Path, compression: str | None) -> None:
    frames = make_frames(4)
    stamps = [T0 + i * S // 20 for i in range(4)]
    path = write_image_bag(tmp_path / "b.mcap", frames, stamps, topic="/cam", frame_id="cam", compression=compression)
    source = open_source(str(path))
    assert isinstance(source, BagSource) and source.topic == "/cam"
    assert source.type == ("sensor_msgs/msg/Image" if compression is None else "sensor_msgs/msg/CompressedImage")
    got = list(source.frames())
    assert [f.stamp_ns for f in got] == stamps and {f.frame_id for f in got} == {"cam"}
    assert [f.time for f in got] == pytest.approx([0.0, 0.05, 0.1, 0.15])
    for frame, expected in zip(got, frames):
        np.testing.assert_array_equal(frame.image, expected)


def test_bgr8_bags_and_rosbag2_directories_read_as_rgb(tmp_path: Path) -> None:
    frames = make_frames(2)
    (tmp_path / "bag").mkdir()
    write_image_bag(tmp_path / "bag" / "bag_0.mcap", frames, [T0, T0 + S], encoding="bgr8")
    source = open_source(str(tmp_path / "bag"))
    np.testing.assert_array_equal(np.stack([f.image for f in source.frames()]), np.stack(frames))


def test_video_source_decodes_every_frame_at_its_time(tmp_path: Path) -> None:
    source = open_source(str(make_video(tmp_path / "v.mp4", 6)))
    assert isinstance(source, VideoSource) and source.fps == 20.0
    frames = list(source.frames())
    assert [f.time for f in frames] == pytest.approx([i / 20 for i in range(6)])
    assert [f.stamp_ns for f in frames] == [None] * 6 and frames[0].image.shape == (24, 32, 3)
    levels = [int(round(f.image.mean())) for f in frames]
    assert levels == pytest.approx([20 * i for i in range(6)], abs=6)  # mp4v is lossy


def test_unreadable_sources_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or directory"):
        open_source(str(tmp_path / "missing.mp4"))
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(SourceError, match="cannot open or decode as a video"):
        open_source(str(tmp_path / "text.mp4"))
    (tmp_path / "text.mcap").write_text("not a bag")
    with pytest.raises(SourceError, match="not a readable MCAP file"):
        open_source(str(tmp_path / "text.mcap"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match="no MCAP file found"):
        open_source(str(tmp_path / "empty"))
    with pytest.raises(SourceError, match="camera 99: cannot open"):
        open_source("99")
    # Two image topics: the user must choose, and is told which exist.
    bag = tmp_path / "two.mcap"
    from mcap_ros2.writer import Writer

    from pite_ros.node.player import _MSGDEFS

    with open(bag, "wb") as stream:
        writer = Writer(stream)
        schema = writer.register_msgdef("sensor_msgs/msg/CompressedImage", _MSGDEFS["sensor_msgs/msg/CompressedImage"])
        for topic in ("/a", "/b"):
            writer.write_message(topic, schema, {"header": {"stamp": {"sec": 1, "nanosec": 0}, "frame_id": "x"},
                                                 "format": "png", "data": b"junk"}, log_time=S)
        writer.finish()
    with pytest.raises(SourceError, match=r"choose one image topic with --bag-topic \(image topics: /a, /b\)"):
        open_source(str(bag))
    with pytest.raises(SourceError, match="no sensor_msgs Image/CompressedImage topic '/c'"):
        open_source(str(bag), "/c")
    # A message that does not decode is skipped, leaving no frames: play says so.
    with pytest.raises(SourceError, match="no frames"):
        play(open_source(str(bag), "/a"), lambda image, stamp, frame_id: None)


def test_cli_exits_1_on_an_unreadable_source(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert play_main([str(tmp_path / "missing.mp4")]) == 1
    assert "pite-play: error:" in capsys.readouterr().err
    video = make_video(tmp_path / "v.mp4", 2)
    assert play_main([str(video), "--use-bag-stamps"]) == 1
    assert "--use-bag-stamps needs a bag source" in capsys.readouterr().err


def collect(source, options: PlayOptions, clock=None) -> tuple[list[int], float]:
    stamps: list[int] = []
    started = time.monotonic()
    play(source, lambda image, stamp, frame_id: stamps.append(stamp), options, **({"now_ns": clock} if clock else {}))
    return stamps, time.monotonic() - started


def test_bag_stamps_continue_or_jump_back_when_looping() -> None:
    source = ListSource([0.0, 0.01, 0.02], [T0, T0 + S // 10, T0 + 2 * S // 10])
    stamps, _ = collect(source, PlayOptions(rate=10, loop=True, max_frames=7, use_bag_stamps=True))
    # One pass spans 0.2 s of stamps plus one 0.1 s period: pass k is shifted by k * 0.3 s.
    assert [(s - T0) / S for s in stamps] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    stamps, _ = collect(source, PlayOptions(rate=10, loop=True, max_frames=7, use_bag_stamps=True, restamp_loop=False))
    assert [(s - T0) / S for s in stamps] == pytest.approx([0.0, 0.1, 0.2, 0.0, 0.1, 0.2, 0.0])


def test_clock_stamps_jump_back_by_one_pass_without_restamping() -> None:
    source = ListSource([0.0, 0.1, 0.2])
    stamps, elapsed = collect(source, PlayOptions(loop=True, max_frames=6, restamp_loop=False))
    seconds = [(s - stamps[0]) / S for s in stamps]
    # Pass 2 is due 0.3 s after pass 1, and its stamps are taken back by exactly that.
    assert seconds[3] < seconds[2] and seconds[3:] == pytest.approx(seconds[:3], abs=0.08)
    assert elapsed >= 0.5
    stamps, _ = collect(source, PlayOptions(loop=True, max_frames=6))
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    assert (stamps[-1] - stamps[0]) / S == pytest.approx(0.5, abs=0.08)


def test_playback_keeps_the_source_rate_scaled_by_rate() -> None:
    source = ListSource([0.0, 0.1, 0.2, 0.3])
    _, elapsed = collect(source, PlayOptions())
    assert 0.3 <= elapsed < 0.6
    _, elapsed = collect(source, PlayOptions(rate=3.0))
    assert 0.1 <= elapsed < 0.3


def test_a_stop_event_ends_a_pending_wait_at_once() -> None:
    stop = threading.Event()
    published: list[int] = []
    source = ListSource([0.0, 30.0])
    worker = threading.Thread(target=lambda: published.append(play(source, lambda i, s, f: None, PlayOptions(), stop)))
    worker.start()
    stop.set()
    worker.join(timeout=5)
    assert not worker.is_alive() and published[0] <= 1


def test_bag_stamps_need_a_source_with_stamps() -> None:
    with pytest.raises(SourceError, match="only bags"):
        collect(ListSource([0.0]), PlayOptions(use_bag_stamps=True))
