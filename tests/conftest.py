"""Shared fixtures: every ROS test gets its own DDS domain so parallel tests never hear each other."""

from __future__ import annotations

import os
import random

import pytest


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A fresh ROS_DOMAIN_ID (also exported for subprocesses), discovery kept on localhost."""
    domain = random.Random(os.getpid() * 7919 + random.randrange(1 << 30)).randrange(1, 200)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain
