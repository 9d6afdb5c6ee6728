"""pite-node's command line and names: ``-p`` after ``--params`` wins, and two nodes in two
namespaces run side by side, each answering only about its own camera (real rclpy)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from node_harness import T0, NodeHarness, frames  # noqa: E402

from pite_ros.node.conversions import time_to_ns  # noqa: E402
from pite_ros.node.names import diagnostics_name, qualified  # noqa: E402
from pite_ros.tools.node import ros_arguments  # noqa: E402


def test_the_command_line_puts_the_parameter_file_before_the_users_ros_arguments() -> None:
    assert ros_arguments(["--params", "c.yaml", "--ros-args", "-p", "engine:=onnx", "-p", "image_topic:=/x"]) == [
        "--params-file", "c.yaml", "-p", "engine:=onnx", "-p", "image_topic:=/x"]
    assert ros_arguments(["--namespace", "/cam1/", "--params", "c.yaml"]) == [
        "--params-file", "c.yaml", "-r", "__ns:=/cam1"]
    assert ros_arguments(["--ros-args", "-r", "__ns:=/left"]) == ["-r", "__ns:=/left"]
    assert ros_arguments([]) == []


def test_a_clients_names_for_a_namespaced_node() -> None:
    assert qualified("", "pite/query") == "/pite/query" and qualified("/cam1/", "pite/answer") == "/cam1/pite/answer"
    assert qualified("robot/left", "pite/tracks") == "/robot/left/pite/tracks"
    assert diagnostics_name("/pite_node") == "pite_node: inference"
    assert diagnostics_name("/cam1/pite_node") == "cam1/pite_node: inference"


@pytest.mark.ros
def test_two_namespaced_nodes_side_by_side_and_p_overrides_the_file(ros_domain: int, tmp_path: Path,
                                                                     model_dir: Path) -> None:
    # cam1's parameter file says image_topic /pite_test/image; its -p says /cam1/image_raw, and wins.
    left = NodeHarness(tmp_path / "cam1", model_dir, namespace="cam1", camera_topic="/cam1/image_raw",
                       args=("--ros-args", "-p", "image_topic:=/cam1/image_raw"))
    right = None
    try:
        right = NodeHarness(tmp_path / "cam2", model_dir, namespace="cam2")
        left.wait_active()
        right.wait_active()
        left_frames, right_frames = frames(T0, 10, frame_id="left_camera"), frames(T0, 10, frame_id="right_camera")
        left.publish(left_frames)
        right.publish(right_frames)
        assert "listening on /cam1/image_raw, answering on /cam1/pite/answer" in left.process.log()
        assert "listening on /pite_test/image, answering on /cam2/pite/answer" in right.process.log()
        for harness, camera in ((left, "left_camera"), (right, "right_camera")):
            response = harness.ask("which camera?")
            assert response.success and response.answer.header.frame_id == camera
            harness.spin_until(lambda h=harness, r=response: any(a.query_id == r.answer.query_id for a in h.answers),
                               what="the answer on its namespace's pite/answer")
            assert {a.header.frame_id for a in harness.answers} == {camera}  # nothing from the other node
        assert time_to_ns(left.answers[-1].clip_end) == time_to_ns(left_frames[-1].header.stamp)
        assert left.counter("frames_received") == 10 and right.counter("frames_received") == 10
    finally:
        left.close()
        if right is not None:
            right.close()
