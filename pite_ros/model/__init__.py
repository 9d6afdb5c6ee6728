"""The PiTe model: one definition used by training, evaluation, export and the node (no ROS)."""
