"""Every lifecycle transition of pite_node, from every state it is allowed from, over real rclpy.

Each node runs in its own process with ``autostart: false`` and is driven through its
``change_state`` service, as a lifecycle manager (or ``ros2 lifecycle set``) does. After each
transition: the state it reports, whether the model is loaded (``model_loaded`` in
/diagnostics), whether it answers; at the end a signal stops it with exit code 0, and its
log holds no traceback.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState

sys.path.insert(0, str(Path(__file__).parent))
from node_harness import T0, TIMEOUT, NodeHarness, frames  # noqa: E402

pytestmark = pytest.mark.ros

RESPONSE_WAIT = 30.0  # seconds for a transition's response before the state is read instead
TRANSITIONAL = {"configuring", "activating", "deactivating", "cleaningup", "shuttingdown", "errorprocessing"}
GOAL_STATE = {Transition.TRANSITION_CONFIGURE: "inactive", Transition.TRANSITION_ACTIVATE: "active",
              Transition.TRANSITION_DEACTIVATE: "inactive", Transition.TRANSITION_CLEANUP: "unconfigured",
              Transition.TRANSITION_UNCONFIGURED_SHUTDOWN: "finalized",
              Transition.TRANSITION_INACTIVE_SHUTDOWN: "finalized", Transition.TRANSITION_ACTIVE_SHUTDOWN: "finalized"}


class Managed(NodeHarness):
    """A harness whose node waits in ``unconfigured`` for transitions requested here."""

    def __init__(self, workdir: Path, model_dir: Path, **params) -> None:
        super().__init__(workdir, model_dir, autostart=False, **params)
        self.change_client = self.node.create_client(ChangeState, "/pite_node/change_state")
        self.state_client = self.node.create_client(GetState, "/pite_node/get_state")

    def change(self, transition: int) -> bool:
        """Whether ``transition`` succeeded: its response, or, when Fast DDS lost the response, the
        state it left. (A server that has not yet matched the client's response reader drops the
        reply: "failed to send response (timeout): client will not receive response"; the
        transition itself ran. A lifecycle manager then reads the state, and so does this.)"""
        self.spin_until(self.change_client.service_is_ready, what="/pite_node/change_state")
        future = self.change_client.call_async(ChangeState.Request(transition=Transition(id=transition)))
        try:
            self.spin_until(future.done, RESPONSE_WAIT, f"transition {transition}")
        except TimeoutError:
            self.change_client.remove_pending_request(future)
            deadline, state = time.monotonic() + TIMEOUT, self.state()
            while state in TRANSITIONAL and time.monotonic() < deadline:
                time.sleep(0.2)
                state = self.state()
            return state == GOAL_STATE[transition]
        return future.result().success

    def state(self) -> str:
        self.spin_until(self.state_client.service_is_ready, what="/pite_node/get_state")
        future = self.state_client.call_async(GetState.Request())
        self.spin_until(future.done, what="the lifecycle state")
        return future.result().current_state.label

    def step(self, transition: int, state: str, loaded: bool, succeeds: bool = True) -> None:
        """Request ``transition``; expect its success, then ``state`` and the model (un)loaded in /diagnostics."""
        assert self.change(transition) is succeeds
        assert self.state() == state
        self.diagnostics = {}
        self.spin_until(lambda: self.diagnostics.get("model_loaded") == str(loaded), what=f"model_loaded={loaded}")
        assert self.diagnostics["active"] == str(state == "active")

    def stop_by_signal(self) -> str:
        """SIGINT (Ctrl-C); the exit code must be 0. Returns the whole log."""
        self.process.process.send_signal(signal.SIGINT)
        assert self.process.process.wait(timeout=30) == 0
        log = self.process.log()
        self.close()
        assert "Traceback" not in log and "ValueError" not in log
        return log


@pytest.fixture
def managed(ros_domain: int, tmp_path: Path, request: pytest.FixtureRequest):
    nodes: list[Managed] = []

    def start(model_dir: Path, **params) -> Managed:
        nodes.append(Managed(tmp_path / f"node{len(nodes)}", model_dir, **params))
        return nodes[-1]

    yield start
    for node in nodes:
        if node.process.alive():
            node.close()


def test_every_transition_from_inactive_and_active_leaves_the_node_clean(managed, model_dir: Path) -> None:
    node = managed(model_dir)
    assert node.state() == "unconfigured"
    node.step(Transition.TRANSITION_CONFIGURE, "inactive", loaded=True)
    node.step(Transition.TRANSITION_ACTIVATE, "active", loaded=True)
    node.publish(frames(T0, 10))
    assert node.ask("what moves?").success
    node.step(Transition.TRANSITION_DEACTIVATE, "inactive", loaded=True)
    refused = node.ask("and now?")
    assert not refused.success and "not active" in refused.message
    node.step(Transition.TRANSITION_ACTIVATE, "active", loaded=True)
    node.publish(frames(T0 + 10**9, 10))
    assert node.ask("again?").success
    node.step(Transition.TRANSITION_DEACTIVATE, "inactive", loaded=True)
    node.step(Transition.TRANSITION_CLEANUP, "unconfigured", loaded=False)
    node.step(Transition.TRANSITION_CONFIGURE, "inactive", loaded=True)
    node.step(Transition.TRANSITION_INACTIVE_SHUTDOWN, "finalized", loaded=False)
    log = node.stop_by_signal()
    assert log.count("model released") == 2 and "[ERROR]" not in log

    second = managed(model_dir)
    second.step(Transition.TRANSITION_CONFIGURE, "inactive", loaded=True)
    second.step(Transition.TRANSITION_ACTIVATE, "active", loaded=True)
    second.step(Transition.TRANSITION_ACTIVE_SHUTDOWN, "finalized", loaded=False)
    log = second.stop_by_signal()
    assert log.count("model released") == 1 and "[ERROR]" not in log


def test_a_failed_configure_leaves_the_node_unconfigured_and_every_exit_clean(managed, model_dir: Path,
                                                                              tmp_path: Path) -> None:
    broken = managed(tmp_path / "no_such_model")
    broken.step(Transition.TRANSITION_CONFIGURE, "unconfigured", loaded=False, succeeds=False)
    broken.step(Transition.TRANSITION_CONFIGURE, "unconfigured", loaded=False, succeeds=False)  # and again
    broken.step(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN, "finalized", loaded=False)
    log = broken.stop_by_signal()
    assert log.count("cannot load the model") == 2

    interrupted = managed(tmp_path / "no_such_model")  # Ctrl-C right after a failed configure
    interrupted.step(Transition.TRANSITION_CONFIGURE, "unconfigured", loaded=False, succeeds=False)
    interrupted.stop_by_signal()

    running = managed(model_dir)  # Ctrl-C while active: inputs stopped and the model freed on the way out
    running.step(Transition.TRANSITION_CONFIGURE, "inactive", loaded=True)
    running.step(Transition.TRANSITION_ACTIVATE, "active", loaded=True)
    assert "model released" in running.stop_by_signal()
