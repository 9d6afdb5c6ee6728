"""Runs pite_node in its own process and talks to it from the test over real rclpy.

The node gets a tiny random-weight model saved by the test: the answers are not meant to
be right, but every plumbing property (stamps, frame ids, pixels, queueing, cancel,
robustness) is exactly what the product has with the shipped model.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
import yaml
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from pite_msgs.action import Query as QueryAction
from pite_msgs.msg import Answer, TrackArray
from pite_msgs.srv import Query, SetPrompt
from pite_ros.node.qos import result_qos, sensor_qos

TIMEOUT = 60.0
TOPIC = "/pite_test/image"


def save_tiny_model(path: Path, seed: int = 0) -> Path:
    """A tiny PiTe model with random weights and the synthetic world's tokenizer."""
    import torch

    from pite_ros.model import build_model, build_tokenizer, load_config
    from training.synth import vocabulary

    torch.manual_seed(seed)
    build_model(load_config("tiny"), build_tokenizer(vocabulary(), 300)).save_pretrained(path)
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


class NodeHarness:
    """The node process plus a client node (its own context) with a publisher and clients."""

    def __init__(self, workdir: Path, model_dir: Path, **params) -> None:
        values = {"model_path": str(model_dir), "image_topic": TOPIC, "continuous": False, "rate_hz": 5.0,
                  "diagnostics_period": 0.2, "max_new_tokens": 8, **params}
        params_file = workdir / "params.yaml"
        params_file.write_text(yaml.safe_dump({"pite_node": {"ros__parameters": values}}))
        self.log = (workdir / "node.log").open("w")
        self.process = subprocess.Popen([sys.executable, "-m", "pite_ros.tools.node", "--params", str(params_file)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node("pite_test_harness", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.images = self.node.create_publisher(Image, TOPIC, sensor_qos(10))
        self.query = self.node.create_client(Query, "/pite/query")
        self.set_prompt = self.node.create_client(SetPrompt, "/pite/set_prompt")
        self.action = ActionClient(self.node, QueryAction, "/pite/query")
        self.answers: list[Answer] = []
        self.tracks: list[TrackArray] = []
        self.diagnostics: dict[str, str] = {}
        self.debug_images: list[Image] = []
        self.node.create_subscription(Image, "/pite/debug_image", self.debug_images.append, result_qos())
        self.node.create_subscription(Answer, "/pite/answer", self.answers.append, result_qos())
        self.node.create_subscription(TrackArray, "/pite/tracks", self.tracks.append, result_qos())
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, result_qos())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith("pite_node"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def spin_until(self, done, timeout: float = TIMEOUT, what: str = "the node") -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.process.poll() is None, f"the node process died:\n{self.node_log()}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}\n{self.node_log()[-3000:]}"
            self.executor.spin_once(timeout_sec=0.05)

    def node_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def wait_active(self) -> None:
        self.spin_until(lambda: self.diagnostics.get("active") == "True", what="the node to become active")

    def counter(self, key: str) -> int:
        return int(self.diagnostics.get(key, "0"))

    def publish(self, messages, wait_received: bool = True) -> None:
        """Publish ``messages``; until the node has counted them (best effort: resend on discovery loss)."""
        self.spin_until(lambda: self.images.get_subscription_count() > 0, what="the node's image subscription")
        before = self.counter("frames_received") + self.counter("frames_rejected")
        for msg in messages:
            self.images.publish(msg)
            self.executor.spin_once(timeout_sec=0.01)
        if wait_received:
            expected = before + len(messages)
            self.spin_until(lambda: self.counter("frames_received") + self.counter("frames_rejected") >= expected,
                            timeout=20.0, what="the node to count the published images")

    def ask(self, question: str, timeout: float = TIMEOUT, **fields) -> Query.Response:
        self.spin_until(self.query.service_is_ready, what="/pite/query")
        future = self.query.call_async(Query.Request(question=question, return_tracks=True, **fields))
        self.spin_until(future.done, timeout=timeout, what=f"the answer to {question!r}")
        return future.result()

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        self.action.destroy()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
