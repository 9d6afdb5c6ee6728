"""Play a video file, a camera or an MCAP bag as a ROS 2 image topic (``pite-play``), and write image bags.

A stand-in camera for demos and tests of the node, where no ``ros2 bag play`` exists (the
PyPI ROS wheels have no rosbag2_py; docs/environment.md). Frames are published at the source's
own rate (the file's fps, the bag's log times; ``rate`` scales it); a live camera publishes
as fast as it delivers. Stamps are the clock at publish, or the bag's header stamps.

Looping (``loop``) replays the source. By default stamps keep increasing across passes
(``restamp_loop``); without it they jump back at each pass the way a real bag loop or a
simulator reset does, which is what the node's clip buffer must detect. With clock stamps,
pass k is stamped ``first pass start + time into pass k``; with bag stamps, pass k is shifted
by ``k * (bag span + one frame period)`` or, without restamping, keeps the bag's stamps.

The frame_id is the one asked for, else a bag's own, else ``camera``.

Sources are plain iterators of ``SourceFrame`` with no rclpy; ``play`` paces and restamps
them for any ``publish(image, stamp_ns, frame_id)``; ``ImagePlayer`` is the ROS publisher around it.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from mcap.exceptions import McapError
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from mcap_ros2.writer import Writer as McapWriter
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from pite_ros.node.conversions import ns_to_time
from pite_ros.node.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb, rgb_to_image
from pite_ros.node.qos import image_qos, warn_on_incompatible_subscriber

log = logging.getLogger(__name__)
NS_PER_S = 1_000_000_000
IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
# Frame period assumed for a source of a single frame (a still looped as a 30 fps camera).
SINGLE_FRAME_PERIOD = 1 / 30
DEFAULT_FRAME_ID = "camera"

# ROS 2 message definitions as MCAP's ros2msg schema encoding stores them (dependencies after
# the ``=`` separator lines), so bags written here open in Foxglove and rosbag2 alike.
_HEADER_DEFS = """================================================================================
MSG: std_msgs/Header
builtin_interfaces/Time stamp
string frame_id
================================================================================
MSG: builtin_interfaces/Time
int32 sec
uint32 nanosec
"""
_MSGDEFS = {
    IMAGE_TYPE: "std_msgs/Header header\nuint32 height\nuint32 width\nstring encoding\nuint8 is_bigendian\n"
    "uint32 step\nuint8[] data\n" + _HEADER_DEFS,
    COMPRESSED_TYPE: "std_msgs/Header header\nstring format\nuint8[] data\n" + _HEADER_DEFS,
}
# What the mcap readers raise on a damaged or foreign file.
_BAG_ERRORS = (McapError, OSError, ValueError, EOFError, struct.error)


class SourceError(RuntimeError):
    """A source cannot be opened or read; the message names it and says why."""


@dataclass(frozen=True)
class SourceFrame:
    """One frame of a source: ``(H, W, 3)`` uint8 RGB, its time from the start of the pass
    (seconds, for pacing), and the bag's stamp (ns) and frame_id when the source has them."""

    image: np.ndarray
    time: float
    stamp_ns: int | None = None
    frame_id: str | None = None


class VideoSource:
    """A video file decoded with OpenCV, frame ``i`` at ``i / fps``."""

    live = False

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        capture = cv2.VideoCapture(self.path)
        try:
            ok, _ = capture.read() if capture.isOpened() else (False, None)
            self.fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
        finally:
            capture.release()
        if not ok:
            raise SourceError(f"{self.path}: cannot open or decode as a video")
        if self.fps <= 0:
            raise SourceError(f"{self.path}: the video has no frame rate")

    def describe(self) -> str:
        return f"video {self.path} ({self.fps:g} fps)"

    def frames(self) -> Iterator[SourceFrame]:
        capture = cv2.VideoCapture(self.path)
        try:
            index = 0
            while True:
                ok, bgr = capture.read()
                if not ok:
                    return
                yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), index / self.fps)
                index += 1
        finally:
            capture.release()


class CameraSource:
    """A live camera (``cv2.VideoCapture(index)``): frames as they come, no pacing, no loop."""

    live = True

    def __init__(self, index: int) -> None:
        self.index = index
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise SourceError(f"camera {index}: cannot open (is a camera at /dev/video{index}?)")

    def describe(self) -> str:
        return f"camera {self.index}"

    def frames(self) -> Iterator[SourceFrame]:
        started = time.monotonic()
        try:
            while True:
                ok, bgr = self._capture.read()
                if not ok:
                    log.warning("camera %d: no more frames", self.index)
                    return
                yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.monotonic() - started)
        finally:
            self._capture.release()


def _bag_files(path: Path) -> list[Path]:
    """The .mcap files of a bag: the file itself, or a rosbag2 directory's files in name order."""
    files = sorted(path.glob("*.mcap")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise SourceError(f"{path}: no MCAP file found")
    return files


class BagSource:
    """sensor_msgs Image or CompressedImage messages of one topic of an MCAP bag (or rosbag2 dir).

    ``topic`` None picks the bag's only image topic (several are an error that lists them).
    Frames are paced by log time; ``stamp_ns`` is the header stamp (the log time when zero),
    ``frame_id`` the header's.
    A message that does not convert is logged and skipped.
    """

    live = False

    def __init__(self, path: str | Path, topic: str | None = None, max_pixels: int | None = None) -> None:
        self.path = Path(path)
        self.files = _bag_files(self.path)
        self.max_pixels = max_pixels
        topics: dict[str, str] = {}
        for file in self.files:
            try:
                with open(file, "rb") as stream:
                    summary = make_reader(stream).get_summary()
            except _BAG_ERRORS as error:
                raise SourceError(f"{file}: not a readable MCAP file ({error or type(error).__name__})") from error
            if summary is None:
                raise SourceError(f"{file}: MCAP file has no summary (unfinished recording?)")
            for channel in summary.channels.values():
                schema = summary.schemas.get(channel.schema_id)
                if schema is not None and schema.name in _MSGDEFS:
                    topics[channel.topic] = schema.name
        if topic is None:
            if len(topics) != 1:
                listed = ", ".join(sorted(topics)) or "none"
                raise SourceError(f"{self.path}: choose one image topic with --bag-topic (image topics: {listed})")
            topic = next(iter(topics))
        if topic not in topics:
            raise SourceError(f"{self.path}: no sensor_msgs Image/CompressedImage topic '{topic}' "
                              f"(image topics: {', '.join(sorted(topics)) or 'none'})")
        self.topic = topic
        self.type = topics[topic]

    def describe(self) -> str:
        return f"bag {self.path} topic {self.topic} ({self.type})"

    def _convert(self, msg) -> np.ndarray:
        limits = {} if self.max_pixels is None else {"max_pixels": self.max_pixels}
        return compressed_to_rgb(msg, **limits) if self.type == COMPRESSED_TYPE else image_to_rgb(msg, **limits)

    def frames(self) -> Iterator[SourceFrame]:
        first_log = None
        for file in self.files:
            with open(file, "rb") as stream:
                reader = make_reader(stream, decoder_factories=[DecoderFactory()])
                messages = reader.iter_decoded_messages(topics=[self.topic])
                while True:
                    try:
                        _, _, message, msg = next(messages)
                    except StopIteration:
                        break
                    except _BAG_ERRORS as error:
                        raise SourceError(f"{file}: damaged MCAP data ({error or type(error).__name__})") from error
                    first_log = message.log_time if first_log is None else first_log
                    try:
                        image = self._convert(msg)
                    except ImageConversionError as error:
                        log.warning("%s: message at log time %d skipped: %s", self.topic, message.log_time, error)
                        continue
                    stamp = msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec
                    yield SourceFrame(image, (message.log_time - first_log) / NS_PER_S, stamp or message.log_time,
                                      msg.header.frame_id)


def open_source(spec: str, bag_topic: str | None = None) -> VideoSource | CameraSource | BagSource:
    """A source from the command line: a camera index (``"0"``), an MCAP bag (``.mcap`` file or
    rosbag2 directory), or a video file. Raises ``SourceError`` when it cannot be read."""
    if spec.isdigit():
        return CameraSource(int(spec))
    path = Path(spec)
    if not path.exists():
        raise SourceError(f"{spec}: no such file or directory")
    if path.suffix == ".mcap" or path.is_dir():
        return BagSource(path, bag_topic)
    return VideoSource(path)


@dataclass(frozen=True)
class PlayOptions:
    """How ``play`` paces and stamps frames (see the module docstring)."""

    rate: float = 1.0  # playback speed factor (2 = twice as fast)
    loop: bool = False
    restamp_loop: bool = True
    use_bag_stamps: bool = False
    max_frames: int = 0  # stop after this many frames (0 = no limit)


class Restamper:
    """The stamp of each published frame (see the module docstring for the rules)."""

    def __init__(self, options: PlayOptions, now_ns: Callable[[], int]) -> None:
        self.options = options
        self.now_ns = now_ns
        self.pass_index = -1
        self._offset = 0
        self._bag_first: int | None = None
        self._bag_last = 0
        self._bag_count = 0

    def begin_pass(self, scheduled_s: float) -> None:
        """Start the next pass, due ``scheduled_s`` seconds (of the clock) after the first one."""
        self.pass_index += 1
        if self.options.restamp_loop:
            self._offset = self.pass_index * self._bag_span() if self.options.use_bag_stamps else 0
        else:
            self._offset = 0 if self.options.use_bag_stamps else round(scheduled_s * NS_PER_S)

    def _bag_span(self) -> int:
        """Nanoseconds from the first pass's first stamp to where a second pass continues."""
        if self._bag_first is None:
            return 0
        spread = self._bag_last - self._bag_first
        period = spread / (self._bag_count - 1) if self._bag_count > 1 else SINGLE_FRAME_PERIOD * NS_PER_S
        return round(spread + period)

    def stamp(self, frame: SourceFrame) -> int:
        if not self.options.use_bag_stamps:
            return self.now_ns() - self._offset
        if frame.stamp_ns is None:
            raise SourceError("bag stamps were asked for, but this source has none (only bags do)")
        if self.pass_index == 0:
            self._bag_first = frame.stamp_ns if self._bag_first is None else min(self._bag_first, frame.stamp_ns)
            self._bag_last = max(self._bag_last, frame.stamp_ns)
            self._bag_count += 1
        return frame.stamp_ns + self._offset


def play(
    source: VideoSource | CameraSource | BagSource,
    publish: Callable[[np.ndarray, int, str | None], None],
    options: PlayOptions = PlayOptions(),
    stop: threading.Event | None = None,
    now_ns: Callable[[], int] = time.time_ns,
) -> int:
    """Publish ``source``'s frames with ``publish(image, stamp_ns, frame_id)`` at its own rate; return the count.

    ``frame_id`` is the source's (a bag's header frame_id) or None.

    Ends at the end of the source (unless ``options.loop``), after ``options.max_frames``,
    or when ``stop`` is set (a pending wait ends at once). ``now_ns`` is the stamping clock.
    """
    if options.rate <= 0:
        raise ValueError(f"rate must be positive, got {options.rate}")
    stop = stop or threading.Event()
    restamper = Restamper(options, now_ns)
    first_start = pass_start = time.monotonic()
    count = 0
    while not stop.is_set():
        restamper.begin_pass(pass_start - first_start)
        first = last = None
        seen = 0
        for frame in source.frames():
            if not source.live:
                delay = pass_start + frame.time / options.rate - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    return count
            if stop.is_set():
                return count
            publish(frame.image, restamper.stamp(frame), frame.frame_id)
            count += 1
            seen += 1
            first = frame.time if first is None else first
            last = frame.time
            if options.max_frames and count >= options.max_frames:
                return count
        if seen == 0:
            raise SourceError(f"{source.describe()}: no frames")
        if not options.loop or source.live:
            return count
        period = (last - first) / (seen - 1) if seen > 1 else SINGLE_FRAME_PERIOD
        pass_start += (last + period) / options.rate
    return count


def write_image_bag(
    path: str | Path,
    frames: Sequence[np.ndarray],
    stamps_ns: Sequence[int],
    topic: str = "/camera/image_raw",
    frame_id: str = "camera",
    encoding: str = "rgb8",
    compression: str | None = None,
) -> Path:
    """Write ``frames`` ``(H, W, 3)`` uint8 RGB as a ROS 2 MCAP bag, one message per stamp (ns).

    ``encoding`` (``rgb8``/``bgr8``) for sensor_msgs/Image, or ``compression`` ``"png"``/``"jpeg"``
    for sensor_msgs/CompressedImage. Log times equal the stamps. Returns ``path``.
    """
    if len(frames) != len(stamps_ns):
        raise ValueError(f"{len(frames)} frames but {len(stamps_ns)} stamps")
    if encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"encoding must be rgb8 or bgr8, got '{encoding}'")
    if compression not in (None, "png", "jpeg"):
        raise ValueError(f"compression must be None, 'png' or 'jpeg', got '{compression}'")
    path = Path(path)
    with open(path, "wb") as stream:
        writer = McapWriter(stream)
        kind = IMAGE_TYPE if compression is None else COMPRESSED_TYPE
        schema = writer.register_msgdef(kind, _MSGDEFS[kind])
        for sequence, (image, stamp) in enumerate(zip(frames, stamps_ns)):
            sec, nanosec = divmod(int(stamp), NS_PER_S)
            header = {"stamp": {"sec": sec, "nanosec": nanosec}, "frame_id": frame_id}
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            if compression is None:
                height, width = image.shape[:2]
                pixels = image if encoding == "rgb8" else bgr
                message = {"header": header, "height": height, "width": width, "encoding": encoding,
                           "is_bigendian": 0, "step": width * 3, "data": np.ascontiguousarray(pixels).tobytes()}
            else:
                ok, encoded = cv2.imencode(f".{'jpg' if compression == 'jpeg' else 'png'}", bgr)
                if not ok:
                    raise ValueError(f"frame {sequence}: cv2 cannot encode it as {compression}")
                message = {"header": header, "format": f"rgb8; {compression} compressed bgr8",
                           "data": encoded.tobytes()}
            writer.write_message(topic, schema, message, log_time=int(stamp), publish_time=int(stamp),
                                 sequence=sequence)
        writer.finish()
    return path


class ImagePlayer:
    """A node of its own that publishes RGB frames as ``sensor_msgs/Image`` on ``topic``.

    ``qos`` is a name of ``qos.IMAGE_QOS_CHOICES``; a subscriber asking for more (a reliable
    one against ``sensor_data``) is warned about loudly and counted in ``incompatible``. A
    background executor serves those QoS events; publishing happens on the caller's thread.
    """

    def __init__(
        self,
        topic: str = "/camera/image_raw",
        frame_id: str | None = None,
        encoding: str = "rgb8",
        qos: str = "reliable",
        depth: int = 10,
        context: Context | None = None,
    ) -> None:
        self.topic, self.frame_id, self.encoding = topic, frame_id, encoding
        self.incompatible = 0
        self.published = 0
        self.node = Node("pite_play", context=context)
        self.profile = image_qos(qos, depth)
        self.publisher = self.node.create_publisher(
            Image, topic, self.profile,
            event_callbacks=warn_on_incompatible_subscriber(self.node.get_logger(), topic, self._count_incompatible),
        )
        self._executor = SingleThreadedExecutor(context=context)
        self._executor.add_node(self.node)
        self._spinner = threading.Thread(target=self._executor.spin, name="pite_play_events", daemon=True)
        self._spinner.start()

    def _count_incompatible(self) -> None:
        self.incompatible += 1

    def now_ns(self) -> int:
        """The node's clock (ROS time: sim time when ``use_sim_time`` is set)."""
        return self.node.get_clock().now().nanoseconds

    def publish(self, image: np.ndarray, stamp_ns: int, source_frame_id: str | None = None) -> None:
        """Publish ``image`` ``(H, W, 3)`` uint8 RGB stamped ``stamp_ns``, in the player's ``frame_id``
        when one was given, else in ``source_frame_id`` (a bag's), else in ``"camera"``."""
        frame_id = self.frame_id or source_frame_id or DEFAULT_FRAME_ID
        header = Header(stamp=ns_to_time(stamp_ns), frame_id=frame_id)
        self.publisher.publish(rgb_to_image(image, header, self.encoding))
        self.published += 1

    def wait_for_subscribers(self, count: int, timeout: float, stop: threading.Event | None = None) -> bool:
        """Wait until ``count`` compatible subscribers are matched (or ``timeout`` s); True if they are."""
        stop = stop or threading.Event()
        deadline = time.monotonic() + timeout
        while self.publisher.get_subscription_count() < count:
            if time.monotonic() >= deadline or stop.wait(0.02):
                return False
        return True

    def close(self, flush_seconds: float = 1.0) -> None:
        """Let reliable subscribers acknowledge the last frames (up to ``flush_seconds``), then stop.

        Fast DDS acknowledges on its heartbeat period, so the wait often runs out although
        the frames arrived; it only guards the tail for a subscriber that is catching up.
        """
        if self.profile.reliability == QoSReliabilityPolicy.RELIABLE:
            self.publisher.wait_for_all_acked(Duration(seconds=flush_seconds))
        self._executor.shutdown()
        self._spinner.join(timeout=2.0)
        self.node.destroy_node()
