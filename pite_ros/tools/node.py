"""``pite-node --params FILE.yaml [--namespace NS] [--ros-args ...]``: run the PiTe node without launch
(twin of launch/pite.launch.py).

The parameter file is a standard ROS 2 one (``/**/pite_node: ros__parameters: ...``, which
matches the node in any namespace). Further ``--ros-args`` are passed through AFTER the
file, so ``-p name:=value`` overrides the file, as with ``ros2 run``. ``--namespace cam1``
puts the node's names under ``/cam1`` (``/cam1/pite/answer``). With ``autostart`` true (the
default) the node configures and activates itself. Ctrl-C (or SIGTERM) stops its inputs
and frees the model from whatever lifecycle state it is in.
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
    finally:  # rclpy runs no lifecycle transition at exit: stop the worker and free the model here
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def ros_arguments(argv: list[str] | None) -> list[str]:
    """The ``--ros-args`` of a ``pite-node`` command line: the parameter file first, then the
    namespace, then the user's own ROS arguments (so their ``-p`` and ``-r`` win)."""
    parser = argparse.ArgumentParser(prog="pite-node", description=__doc__.splitlines()[0])
    parser.add_argument("--params", help="ROS 2 parameter file (YAML)")
    parser.add_argument("--namespace", default="", help="namespace of the node (its names go under /NAMESPACE)")
    argv = list(sys.argv[1:] if argv is None else argv)
    split = argv.index("--ros-args") if "--ros-args" in argv else len(argv)
    args = parser.parse_args(argv[:split])  # everything after --ros-args is ROS's, verbatim
    ros_args = ["--params-file", args.params] if args.params else []
    if args.namespace.strip("/"):
        ros_args += ["-r", f"__ns:=/{args.namespace.strip('/')}"]
    return ros_args + [a for a in argv[split:] if a != "--ros-args"]


def main(argv: list[str] | None = None) -> int:
    return run_node(ros_arguments(argv))


if __name__ == "__main__":
    sys.exit(main())
