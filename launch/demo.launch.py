"""A camera stand-in and the PiTe node, for a full ROS 2 install (twin: ``pite-demo``).

``pite-play`` publishes a video file (or a camera index, or an MCAP bag) on the node's
camera topic at its real rate; the node reads the same parameter file as pite.launch.py.
Ask questions from another terminal with ``pite-query "..."``.

    ros2 launch pite_ros demo.launch.py source:=clip.mp4
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import LifecycleNode


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("pite_ros"))
    import pite_ros

    profile = Path(pite_ros.__file__).parent / "configs" / "fastdds_large_images.xml"
    arguments = [
        DeclareLaunchArgument("source", description="video file, camera index or MCAP bag to play"),
        DeclareLaunchArgument("params_file", default_value=str(share / "config" / "pite.yaml")),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw"),
        DeclareLaunchArgument("engine", default_value="torch", description="torch | onnx"),
    ]
    player = ExecuteProcess(
        cmd=["pite-play", LaunchConfiguration("source"), "--topic", LaunchConfiguration("image_topic"),
             "--qos", "sensor_data", "--loop"],
        output="screen",
    )
    node = LifecycleNode(
        package="pite_ros", executable="pite_node", name="pite_node", namespace="", output="screen",
        parameters=[LaunchConfiguration("params_file"),
                    {"image_topic": LaunchConfiguration("image_topic"), "engine": LaunchConfiguration("engine")}],
    )
    return LaunchDescription([
        *arguments,
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", str(profile)),
        player,
        node,
    ])
