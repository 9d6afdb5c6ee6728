"""pite_node in its own process and a client in the test's, over real rclpy.

The node gets a tiny random-weight model saved by the test: the answers are not meant to
be right, but every plumbing property (stamps, frame ids, pixels, queueing, cancel,
robustness) is exactly what the product has with the shipped model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

from pite_ros.node.client import NodeProcess, PiteClient
from pite_ros.node.qos import reliable_qos

TIMEOUT = 120.0
TOPIC = "/pite_test/image"
T0 = 1_700_000_000_000_000_000
FRAME = "cam_optical"


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """A tiny PiTe model with random weights and the synthetic world's tokenizer."""
    import torch

    from pite_ros.model import PiteProcessor, build_model, build_tokenizer, load_config, save_model_and_processor
    from training.synth import vocabulary

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(vocabulary(), 300)
    model = build_model(load_config("tiny"), tokenizer)
    save_model_and_processor(path, model, PiteProcessor(tokenizer, model.config))
    return path


def stamp(ns: int) -> Time:
    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def rgb_image(ns: int, frame_id: str, width: int = 64, height: int = 48, value: int = 0) -> Image:
    """A valid rgb8 image whose pixels move with time (so clips differ)."""
    pixels = np.full((height, width, 3), value, np.uint8)
    x = (ns // 50_000_000) % width
    pixels[height // 3: height // 2, x: x + 6] = (220, 30, 30)
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3, data=pixels.tobytes())
    msg.header.stamp, msg.header.frame_id = stamp(ns), frame_id
    return msg


def frames(start_ns: int, count: int, period_ns: int = 100_000_000, frame_id: str = FRAME) -> list[Image]:
    """``count`` valid images from ``start_ns``, ``period_ns`` apart."""
    return [rgb_image(start_ns + i * period_ns, frame_id) for i in range(count)]


def malformed_images() -> list[Image]:
    """Five images the node must refuse: unknown encoding, short step, truncated data, empty, enormous."""
    good = rgb_image(T0, FRAME)
    cases = []
    for change in ({"encoding": "yuv422"}, {"step": 10}, {"data": bytes(good.data)[:100]},
                   {"width": 0, "height": 0, "step": 0, "data": b""}, {"width": 100_000, "height": 100_000,
                                                                        "step": 300_000}):
        msg = rgb_image(T0, FRAME)
        for key, value in change.items():
            setattr(msg, key, value)
        cases.append(msg)
    return cases


class NodeHarness(PiteClient):
    """The node process plus the test's client, with an image publisher on TOPIC."""

    def __init__(self, workdir: Path, model_dir: Path, namespace: str = "", args: tuple[str, ...] = (),
                 camera_topic: str = TOPIC, camera_type: type = Image, **params) -> None:
        """``params`` go to the node's parameter file, ``args`` after it on its command line; the
        test's images (``camera_type``) go to ``camera_topic``."""
        # Reliable images with a history deep enough for a test's burst: a best-effort stream may lose
        # the first frames after discovery, and a keep-last-5 reader drops the oldest of a burst while a
        # busy node (continuous mode, a long answer) has not taken them yet (seen: 38 of 40 counted),
        # either would make "every published frame is counted" a race (sensor_data is tested in test_qos).
        values = {"model_path": str(model_dir), "image_topic": TOPIC, "image_qos": "reliable", "qos_depth": 100,
                  "continuous": False,
                  "rate_hz": 5.0,
                  "diagnostics_period": 0.2, "max_new_tokens": 8, **params}
        self.process = NodeProcess(workdir, values, namespace=namespace, args=args)
        super().__init__("pite_test_harness", watch=self.process, namespace=namespace)
        self.images = self.publisher(camera_type, camera_topic, reliable_qos(50))

    def spin_until(self, done, timeout: float = TIMEOUT, what: str = "the node") -> None:
        super().spin_until(done, timeout, what)

    def frames_counted(self) -> int:
        """Images the node has received or rejected, as /diagnostics last said."""
        return self.counter("frames_received") + self.counter("frames_rejected")

    def publish(self, messages) -> None:
        """Publish ``messages`` and wait until the node has counted them all."""
        self.wait_matched(self.images, TIMEOUT)
        before = self.frames_counted()
        for msg in messages:
            self.images.publish(msg)
            self.executor.spin_once(timeout_sec=0.01)
        expected = before + len(messages)
        try:
            self.spin_until(lambda: self.frames_counted() >= expected, timeout=45.0,
                            what="the node to count the published images")
        except TimeoutError as error:
            raise TimeoutError(f"counted {self.frames_counted() - before} of {len(messages)} images; diagnostics "
                               f"{self.diagnostics}\n{error}") from None

    def ask(self, question: str, **fields):
        return self.request(question, timeout=TIMEOUT, **fields)

    def close(self) -> None:
        super().close()
        self.process.stop()
