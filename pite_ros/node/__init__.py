"""The ROS 2 node and everything that imports rclpy."""
