"""The operator's side of pite_node, for the demo, the benchmarks and the tests.

``NodeProcess`` runs ``pite-node`` with a parameter dict in its own process (as an operator
does); ``PiteClient`` is a node in its own rclpy context that asks questions (service or
streamed action), hears answers, tracks, debug images and diagnostics, and publishes
images, waiting on futures with deadlines rather than sleeping.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.action import ActionClient
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image

from pite_msgs.action import Query as QueryAction
from pite_msgs.msg import Answer, TrackArray
from pite_msgs.srv import Query, SetPrompt
from pite_ros.node.names import (
    ANSWER_TOPIC, DEBUG_TOPIC, DIAGNOSTICS_TOPIC, NODE_NAME, QUERY_NAME, SET_PROMPT_NAME, TRACKS_TOPIC,
    diagnostics_name, qualified,
)
from pite_ros.node.qos import result_qos

LARGE_IMAGE_PROFILE = Path(__file__).resolve().parents[1] / "configs" / "fastdds_large_images.xml"


def use_large_image_transport() -> None:
    """Let camera-size images cross processes under best-effort QoS (see the profile's comment).

    Sets FASTDDS_DEFAULT_PROFILES_FILE for this process and the ones it starts, unless the
    user has chosen a profile; call before rclpy is initialised.
    """
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(LARGE_IMAGE_PROFILE))


class NodeProcess:
    """``pite-node --params <dir>/params.yaml [--namespace NS] [ARGS]`` with ``params``, logging to ``<dir>/node.log``.

    ``args`` are appended to the command line (e.g. ``["--ros-args", "-p", "rate_hz:=2.0"]``).
    """

    def __init__(self, workdir: Path, params: dict, namespace: str = "", args: tuple[str, ...] = ()) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        params_file = workdir / "params.yaml"
        # "/**/pite_node" matches the node under any namespace, as config/pite.yaml does.
        params_file.write_text(yaml.safe_dump({"/**/pite_node": {"ros__parameters": params}}))
        self.log_path = workdir / "node.log"
        self._log = self.log_path.open("w")
        command = [sys.executable, "-m", "pite_ros.tools.node", "--params", str(params_file)]
        if namespace:
            command += ["--namespace", namespace]
        self.process = subprocess.Popen([*command, *args], stdout=self._log, stderr=subprocess.STDOUT)

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class PiteClient:
    """A client node in its own context for the pite_node under ``namespace``; ``watch`` is a
    NodeProcess whose death ends every wait."""

    def __init__(self, name: str = "pite_client", watch: NodeProcess | None = None, namespace: str = "") -> None:
        self.watch = watch
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node(name, context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.namespace = namespace
        self.query = self.node.create_client(Query, qualified(namespace, QUERY_NAME))
        self.set_prompt = self.node.create_client(SetPrompt, qualified(namespace, SET_PROMPT_NAME))
        self.action = ActionClient(self.node, QueryAction, qualified(namespace, QUERY_NAME))
        self.answers: list[Answer] = []
        self.tracks: list[TrackArray] = []
        self.debug_images: list[Image] = []
        self.diagnostics: dict[str, str] = {}
        self.diagnostics_level = DiagnosticStatus.OK
        self.diagnostics_message = ""
        self._status_name = diagnostics_name(qualified(namespace, NODE_NAME))
        self.node.create_subscription(Answer, qualified(namespace, ANSWER_TOPIC), self.answers.append, result_qos())
        self.node.create_subscription(TrackArray, qualified(namespace, TRACKS_TOPIC), self.tracks.append, result_qos())
        self.node.create_subscription(Image, qualified(namespace, DEBUG_TOPIC), self.debug_images.append, result_qos())
        self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diagnostics, result_qos())

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == self._status_name:
                self.diagnostics = {kv.key: kv.value for kv in status.values}
                self.diagnostics_level, self.diagnostics_message = status.level, status.message

    def subscribe(self, kind: type, topic: str, callback: Callable, qos: QoSProfile) -> None:
        self.node.create_subscription(kind, topic, callback, qos)

    def publisher(self, kind: type, topic: str, qos: QoSProfile):
        return self.node.create_publisher(kind, topic, qos)

    def spin_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        """Spin until ``done()``; TimeoutError naming ``what`` (and the node's log tail) otherwise."""
        deadline = time.monotonic() + timeout
        while not done():
            if self.watch is not None and not self.watch.alive():
                raise RuntimeError(f"pite_node died while waiting for {what}:\n{self.watch.log()[-3000:]}")
            if time.monotonic() > deadline:
                tail = self.watch.log()[-3000:] if self.watch is not None else ""
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}\n{tail}")
            self.executor.spin_once(timeout_sec=0.05)

    def wait_matched(self, publisher, timeout: float = 60.0) -> None:
        """Until ``publisher`` and the node's image subscription have matched each other.

        The writer seeing the reader is not enough: a reader that has not yet matched the
        writer drops its first samples, even under reliable QoS (seen: 8 of 10 counted), so
        the node's own count (``image_publishers`` in /diagnostics) is awaited too.
        """
        self.spin_until(lambda: publisher.get_subscription_count() > 0 and self.counter("image_publishers") > 0,
                        timeout, "the node's image subscription to match this publisher")

    def counter(self, key: str) -> int:
        return int(self.diagnostics.get(key, "0"))

    def wait_active(self, timeout: float = 120.0) -> None:
        self.spin_until(lambda: self.diagnostics.get("active") == "True", timeout, "pite_node to become active")

    def request(self, question: str, timeout: float = 120.0, **fields) -> Query.Response:
        """Call pite/query and return the whole response (success, message, answer)."""
        self.spin_until(self.query.service_is_ready, 60.0, f"the {self.query.srv_name} service")
        future = self.query.call_async(Query.Request(question=question, **{"return_tracks": True, **fields}))
        self.spin_until(future.done, timeout, f"the answer to {question!r}")
        return future.result()

    def ask_streaming(self, question: str, on_text: Callable[[str], None], timeout: float = 120.0):
        """Ask through the action; ``on_text(partial)`` per feedback; returns the result message."""
        self.spin_until(self.action.server_is_ready, 60.0, "the pite/query action")
        goal = self.action.send_goal_async(QueryAction.Goal(question=question, return_tracks=True),
                                           feedback_callback=lambda m: on_text(m.feedback.partial_text))
        self.spin_until(goal.done, timeout, "the goal to be accepted")
        if not goal.result().accepted:
            raise RuntimeError(f"the node rejected {question!r}")
        result = goal.result().get_result_async()
        self.spin_until(result.done, timeout, "the streamed answer")
        return result.result()

    def close(self) -> None:
        self.action.destroy()
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
