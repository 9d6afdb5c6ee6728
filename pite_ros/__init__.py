"""PiTe-ROS: a video-language model with object trajectories and temporal tokens, and its ROS 2 node.

The model, data and training code import no rclpy; ROS code lives in ``pite_ros.node`` only.
"""

__version__ = "0.1.0"
