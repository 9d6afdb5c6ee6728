"""Bring up the PiTe node (a LifecycleNode) with a parameter file, for a full ROS 2 install.

The console-entry-point twin is ``pite-node --params config/pite.yaml``; both read the
same parameter file, and the arguments below come after it, so they override it. With
``autostart:=true`` (default) the node configures and activates itself, so no lifecycle
manager is needed. ``namespace:=cam1`` puts its names under ``/cam1`` (``/cam1/pite/answer``).

    ros2 launch pite_ros pite.launch.py image_topic:=/camera/image_raw engine:=onnx
    ros2 launch pite_ros pite.launch.py namespace:=cam1 image_topic:=/cam1/image_raw
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode


def generate_launch_description() -> LaunchDescription:
    default_params = Path(get_package_share_directory("pite_ros")) / "config" / "pite.yaml"
    arguments = [
        DeclareLaunchArgument("params_file", default_value=str(default_params), description="node parameter file"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw", description="camera topic"),
        DeclareLaunchArgument("engine", default_value="torch", description="torch | onnx"),
        DeclareLaunchArgument("autostart", default_value="true", description="configure and activate at start"),
    ]
    node = LifecycleNode(
        package="pite_ros",
        executable="pite_node",
        name="pite_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        parameters=[
            LaunchConfiguration("params_file"),
            {
                "image_topic": LaunchConfiguration("image_topic"),
                "engine": LaunchConfiguration("engine"),
                "autostart": LaunchConfiguration("autostart"),
            },
        ],
    )
    return LaunchDescription([*arguments, node])
