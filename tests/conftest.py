"""Shared fixtures: every ROS test gets its own DDS domain so parallel tests never hear each other."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

# Fast DDS's own tool (installed with the ROS wheels); needs psutil.
FASTDDS_TOOL = Path(sys.prefix) / "tools" / "fastdds" / "fastdds.py"


def clean_fastdds_shm() -> None:
    """Remove the shared-memory ports and segments of Fast DDS participants whose process died.

    A node killed by a test (or a killed earlier run) leaves them in /dev/shm; once a hundred or
    so pile up, local delivery stalls and the ROS tests time out waiting for images. Segments of
    live processes are locked and kept (``fastdds shm clean``).
    """
    if FASTDDS_TOOL.is_file():
        subprocess.run([sys.executable, str(FASTDDS_TOOL), "shm", "clean"], capture_output=True, timeout=60, check=False)


def pytest_sessionstart(session: pytest.Session) -> None:
    clean_fastdds_shm()


@pytest.fixture
def ros_domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A fresh ROS_DOMAIN_ID (also exported for subprocesses), discovery kept on localhost, and
    no dead participants' shared memory left from earlier tests."""
    clean_fastdds_shm()
    # 1..101: higher domains put Fast DDS's ports in Linux's ephemeral range (ROS 2 domain ID docs).
    domain = random.Random(os.getpid() * 7919 + random.randrange(1 << 30)).randrange(1, 102)
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    return domain
