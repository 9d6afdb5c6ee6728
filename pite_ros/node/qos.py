"""QoS profiles of the node's topics, and loud warnings when QoS makes a topic silent.

Cameras publish with sensor-data QoS (best effort, volatile, small keep-last depth), and a
reliable subscription to a best-effort publisher matches nothing and receives nothing,
with no error: the most frequent "the node sees no images" report (docs/node.md). So the
camera subscription is best effort by default, configurable by a parameter, and every
incompatibility is logged naming the topic and the policy, and counted for /diagnostics.
Results are published reliable so that no answer is lost to a late or slow subscriber.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.event_handler import PublisherEventCallbacks, QoSRequestedIncompatibleQoSInfo, SubscriptionEventCallbacks
from rclpy.qos import (
    QoSDurabilityPolicy,
    QoSHistoryPolicy,
    QoSProfile,
    QoSReliabilityPolicy,
    qos_policy_name_from_kind,
)

# Names accepted by the ``image_qos`` parameter. "best_effort" is what other perception nodes
# call the same profile as "sensor_data" (yolo_ros' ``reliability`` parameter), kept as an alias.
IMAGE_QOS_CHOICES = ("sensor_data", "reliable", "best_effort")


def _keep_last(depth: int, reliability: QoSReliabilityPolicy) -> QoSProfile:
    if depth < 1:
        raise ValueError(f"QoS depth must be at least 1, got {depth}")
    return QoSProfile(
        history=QoSHistoryPolicy.KEEP_LAST, depth=depth, reliability=reliability,
        durability=QoSDurabilityPolicy.VOLATILE,
    )


def sensor_qos(depth: int = 5) -> QoSProfile:
    """Best effort, volatile, keep last ``depth``: rclpy's ``qos_profile_sensor_data`` with a chosen depth."""
    return _keep_last(depth, QoSReliabilityPolicy.BEST_EFFORT)


def reliable_qos(depth: int = 10) -> QoSProfile:
    """Reliable, volatile, keep last ``depth``."""
    return _keep_last(depth, QoSReliabilityPolicy.RELIABLE)


def image_qos(name: str, depth: int = 5) -> QoSProfile:
    """The camera subscription's QoS from the ``image_qos`` parameter (one of ``IMAGE_QOS_CHOICES``)."""
    if name not in IMAGE_QOS_CHOICES:
        raise ValueError(f"image QoS '{name}' is not one of {', '.join(IMAGE_QOS_CHOICES)}")
    return reliable_qos(depth) if name == "reliable" else sensor_qos(depth)


def result_qos(depth: int = 10) -> QoSProfile:
    """QoS of answers, tracks, debug images and diagnostics: reliable, keep last ``depth``."""
    return reliable_qos(depth)


def _incompatible_handler(
    logger, topic: str, theirs: str, on_event: Callable[[], None] | None
) -> Callable[[QoSRequestedIncompatibleQoSInfo], None]:
    def handle(info: QoSRequestedIncompatibleQoSInfo) -> None:
        policy = qos_policy_name_from_kind(info.last_policy_kind)
        logger.warning(
            f"{topic}: QoS INCOMPATIBLE with a {theirs} on policy {policy} ({info.total_count} so far): "
            f"nothing flows between them. A subscription may not request more than the publisher offers "
            f"(a reliable subscription never hears a best-effort sensor_data camera: subscribe best_effort "
            f"or publish reliable)."
        )
        if on_event is not None:
            on_event()

    return handle


def warn_on_incompatible_qos(
    logger, topic: str, on_event: Callable[[], None] | None = None
) -> SubscriptionEventCallbacks:
    """Event callbacks for ``create_subscription(..., event_callbacks=...)``.

    When a publisher on ``topic`` offers QoS this subscription cannot match, log a warning
    naming the topic and the policy with ``logger`` and call ``on_event()`` (to count it).
    """
    return SubscriptionEventCallbacks(
        incompatible_qos=_incompatible_handler(logger, topic, "publisher", on_event)
    )


def warn_on_incompatible_subscriber(
    logger, topic: str, on_event: Callable[[], None] | None = None
) -> PublisherEventCallbacks:
    """Event callbacks for ``create_publisher(..., event_callbacks=...)``: the mirror of
    ``warn_on_incompatible_qos`` for a subscriber that requests more than this publisher offers."""
    return PublisherEventCallbacks(
        incompatible_qos=_incompatible_handler(logger, topic, "subscriber", on_event)
    )
