"""``pite-node --params FILE.yaml``: run the PiTe node without launch (twin of launch/pite.launch.py).

The parameter file is a standard ROS 2 one (``pite_node: ros__parameters: ...``); any
further ``--ros-args`` are passed through. With ``autostart`` true (the default) the node
configures and activates itself.
"""

from __future__ import annotations

import argparse
import sys

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor

from pite_ros.node.pite_node import PiteNode


def run_node(ros_args: list[str]) -> int:
    """Create, autostart and spin the node until Ctrl-C or shutdown."""
    rclpy.init(args=["pite-node", "--ros-args", *ros_args] if ros_args else None)
    node = PiteNode()
    executor = MultiThreadedExecutor(num_threads=4)
    executor.add_node(node)
    if node.get_parameter("autostart").value:
        node.trigger_configure()
        if node.engine is None:
            node.get_logger().error("configure failed: the node stays unconfigured (see the error above)")
        else:
            node.trigger_activate()
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:  # the lifecycle's on_shutdown (run by rclpy at context shutdown) stops the worker
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pite-node", description=__doc__.splitlines()[0])
    parser.add_argument("--params", help="ROS 2 parameter file (YAML)")
    args, rest = parser.parse_known_args(argv)
    ros_args = [a for a in rest if a != "--ros-args"]
    if args.params:
        ros_args += ["--params-file", args.params]
    return run_node(ros_args)


if __name__ == "__main__":
    sys.exit(main())
