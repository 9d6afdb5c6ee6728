"""Fixtures of the node tests: a tiny model saved once per session, and a node process with a client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from node_harness import NodeHarness, save_tiny_model  # noqa: E402


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("model") / "tiny")


@pytest.fixture
def harness(ros_domain: int, tmp_path: Path, model_dir: Path, request: pytest.FixtureRequest):
    """An active node (harness defaults, overridden by the test's ``indirect`` parameters) and its client."""
    params = getattr(request, "param", {})
    node = NodeHarness(tmp_path, model_dir, **params)
    try:
        node.wait_active()
    except BaseException:
        node.close()  # never leave a node process behind
        raise
    yield node
    node.close()
