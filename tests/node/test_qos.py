"""qos: the profiles behind the image_qos parameter and the results (the event test is in test_play_ros.py)."""

from __future__ import annotations

import pytest
from rclpy.qos import QoSDurabilityPolicy, QoSHistoryPolicy, QoSReliabilityPolicy, qos_profile_sensor_data

from pite_ros.node.qos import image_qos, reliable_qos, result_qos, sensor_qos


def test_sensor_qos_is_rclpys_sensor_data_profile_with_a_chosen_depth() -> None:
    profile = sensor_qos(3)
    assert profile.reliability == QoSReliabilityPolicy.BEST_EFFORT
    assert profile.durability == QoSDurabilityPolicy.VOLATILE
    assert profile.history == QoSHistoryPolicy.KEEP_LAST and profile.depth == 3
    assert sensor_qos(qos_profile_sensor_data.depth) == qos_profile_sensor_data


def test_image_qos_names() -> None:
    assert image_qos("sensor_data", 4) == sensor_qos(4) == image_qos("best_effort", 4)
    reliable = image_qos("reliable", 4)
    assert reliable.reliability == QoSReliabilityPolicy.RELIABLE and reliable.depth == 4
    with pytest.raises(ValueError, match="image QoS 'fast' is not one of sensor_data, reliable, best_effort"):
        image_qos("fast")
    with pytest.raises(ValueError, match="at least 1"):
        sensor_qos(0)


def test_results_are_reliable_and_volatile() -> None:
    profile = result_qos()
    assert profile == reliable_qos(10)
    assert profile.reliability == QoSReliabilityPolicy.RELIABLE and profile.durability == QoSDurabilityPolicy.VOLATILE
