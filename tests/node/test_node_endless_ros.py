"""Cancel, preemption and the question queue, made deterministic: pite_node with an engine that
never finishes an answer by itself.

The node runs in this process (its own rclpy context and a 4-thread executor, as
``pite-node`` runs it) with an engine that streams words until ``on_token`` tells it to
stop (questions starting with "short" get three words), so a cancelled goal or a preempted
caption can only end by being stopped, and a queue stays full as long as the test wants: no
race with a quick model. The client is a separate rclpy context, over DDS.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from action_msgs.msg import GoalStatus
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import MultiThreadedExecutor
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

sys.path.insert(0, str(Path(__file__).parent))
from node_harness import T0, TOPIC, frames  # noqa: E402

from pite_msgs.action import Query as QueryAction  # noqa: E402
from pite_msgs.srv import Query  # noqa: E402
from pite_ros.node import pite_node  # noqa: E402
from pite_ros.node.client import PiteClient  # noqa: E402
from pite_ros.node.qos import reliable_qos, result_qos  # noqa: E402
from pite_ros.types import AnswerResult  # noqa: E402

pytestmark = pytest.mark.ros
TIMEOUT = 60.0


class EndlessEngine:
    """Streams "word word ..." until ``on_token`` returns False; "short..." questions and the warm-up end
    at once; "explode" raises."""

    name = "endless"
    num_frames = 4
    image_size = 32

    def __init__(self) -> None:
        self.stopped: list[str] = []  # questions whose answer was stopped by on_token

    def answer(self, frames, question, duration, *, max_new_tokens=None, on_token=None) -> AnswerResult:
        if question == "explode":
            raise RuntimeError("the engine broke")
        words: list[str] = []
        deadline = time.monotonic() + TIMEOUT  # never hang a broken test forever
        while on_token is not None and time.monotonic() < deadline:
            words.append("word")
            if not on_token(len(words), " ".join(words)):
                self.stopped.append(question)
                break
            if question.startswith("short") and len(words) == 3:
                break
            time.sleep(0.002)
        return AnswerResult(text=" ".join(words), phrases=[], segments=[], token_ids=list(range(len(words))),
                            frame_times=np.zeros(self.num_frames))

    def close(self) -> None:
        pass


@pytest.fixture
def endless(ros_domain: int, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest):
    """(node, engine, client): an active node in this process with the EndlessEngine, and a client."""
    engine = EndlessEngine()
    monkeypatch.setattr(pite_node, "load_engine", lambda *args, **kwargs: engine)
    params = {"image_topic": TOPIC, "image_qos": "reliable", "qos_depth": 100, "continuous": False,
              "diagnostics_period": 0.2, "diagnostics_error_window": 0.5, **getattr(request, "param", {})}
    context = rclpy.Context()
    rclpy.init(context=context)
    node = pite_node.PiteNode(context=context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    executor = MultiThreadedExecutor(num_threads=4, context=context)
    executor.add_node(node)
    node.trigger_configure()
    node.trigger_activate()
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    client = PiteClient("pite_cancel_test")
    try:
        client.wait_active(TIMEOUT)
        images = client.publisher(Image, TOPIC, reliable_qos(50))
        client.wait_matched(images, TIMEOUT)
        for message in frames(T0, 10):
            images.publish(message)
        client.spin_until(lambda: client.counter("frames_received") >= 10, TIMEOUT, "the images counted")
        yield node, engine, client
    finally:
        client.close()
        node.close()
        executor.shutdown()
        spinner.join(10)
        node.destroy_node()
        rclpy.shutdown(context=context)


def test_cancel_stops_a_streaming_answer_and_a_waiting_goal_and_neither_is_published(endless) -> None:
    node, engine, client = endless
    client.spin_until(client.action.server_is_ready, TIMEOUT, "the action server")
    streamed: list = []
    running = client.action.send_goal_async(QueryAction.Goal(question="tell me everything"),
                                            feedback_callback=lambda m: streamed.append(m.feedback))
    client.spin_until(running.done, TIMEOUT, "the first goal accepted")
    client.spin_until(lambda: sum(bool(f.partial_text) for f in streamed) >= 3, TIMEOUT, "streamed tokens")
    queued: list = []
    waiting = client.action.send_goal_async(QueryAction.Goal(question="and then?"),
                                            feedback_callback=lambda m: queued.append(m.feedback))
    client.spin_until(lambda: any(f.stage == QueryAction.Feedback.STAGE_QUEUED and f.queue_position == 1
                                  for f in queued), TIMEOUT, "the second goal queued behind the first")
    results = []
    for handle in (waiting.result(), running.result()):
        cancel = handle.cancel_goal_async()
        client.spin_until(cancel.done, TIMEOUT, "the cancel response")
        results.append(handle.get_result_async())
    client.spin_until(lambda: all(r.done() for r in results), TIMEOUT, "the cancelled results")
    never_ran, stopped = (r.result() for r in results)
    assert never_ran.status == GoalStatus.STATUS_CANCELED and never_ran.result.answer.text == ""
    assert stopped.status == GoalStatus.STATUS_CANCELED and stopped.result.message.startswith("cancelled")
    partial = stopped.result.answer
    assert partial.text.startswith("word word word") and engine.stopped == ["tell me everything"]
    partials = [f.partial_text for f in streamed if f.partial_text]
    assert all(later.startswith(earlier) for earlier, later in zip(partials, partials[1:]))

    after = client.request("short answer?", TIMEOUT)
    assert after.success and after.answer.text == "word word word"
    client.spin_until(lambda: any(a.query_id == after.answer.query_id for a in client.answers), TIMEOUT,
                      "the next answer on pite/answer")
    published = {a.query_id for a in client.answers} | {t.query_id for t in client.tracks}
    assert partial.query_id and partial.query_id not in published  # a cancelled answer is not published


@pytest.mark.parametrize("endless", [{"continuous": True, "rate_hz": 5.0}], indirect=True)
def test_a_question_stops_the_running_caption_instead_of_waiting_behind_it(endless) -> None:
    node, engine, client = endless
    client.spin_until(lambda: node.worker is not None and node.worker.running is not None
                      and node.worker.running.continuous, TIMEOUT, "a caption running")
    answer = client.request("short question?", TIMEOUT)  # the caption would never end by itself
    assert answer.success and answer.answer.text == "word word word"
    client.spin_until(lambda: client.counter("captions_preempted") >= 1, TIMEOUT, "the preempted caption counted")
    assert "Describe the video." in engine.stopped
    assert not any(a.query_id == "continuous" for a in client.answers)  # a stopped caption is not published



def test_questions_waiting_when_the_node_deactivates_are_answered_and_a_failure_ages_out(endless) -> None:
    node, engine, client = endless
    client.spin_until(client.query.service_is_ready, TIMEOUT, "the query service")
    endless_call = client.query.call_async(Query.Request(question="tell me everything"))
    client.spin_until(lambda: node.worker is not None and node.worker.running is not None, TIMEOUT, "it running")
    waiting_call = client.query.call_async(Query.Request(question="short and waiting?"))
    client.spin_until(lambda: node.worker.pending == 1, TIMEOUT, "the second question queued")
    node.trigger_deactivate()  # a lifecycle manager's deactivate, from another thread
    client.spin_until(lambda: endless_call.done() and waiting_call.done(), TIMEOUT, "both questions answered")
    assert not endless_call.result().success and "stopped" in endless_call.result().message
    assert waiting_call.result().message == "the node stopped before this query ran"
    node.trigger_activate()
    client.wait_active(TIMEOUT)

    failed = client.request("explode", TIMEOUT)
    assert not failed.success and failed.message == "inference failed: the engine broke"
    client.spin_until(lambda: client.diagnostics_level == DiagnosticStatus.WARN, TIMEOUT, "WARN after the failure")
    assert client.diagnostics_message == "inference failed: the engine broke"
    assert client.counter("inference_failures") == 1
    client.spin_until(lambda: client.diagnostics_level == DiagnosticStatus.OK, TIMEOUT, "OK 0.5 s later")
    assert client.request("short again?", TIMEOUT).success


@pytest.mark.parametrize("endless", [{"queue_size": 6}], indirect=True)
def test_more_waiting_questions_than_executor_threads_and_the_rest_refused_at_once(endless) -> None:
    """1 running + 6 queued questions (service calls and goals) are more than the executor's 4
    threads: none is parked on one, so /diagnostics keeps coming and more are refused at once."""
    node, engine, client = endless
    client.spin_until(lambda: client.query.service_is_ready() and client.action.server_is_ready(), TIMEOUT,
                      "the query service and action")
    heard: list[float] = []
    client.subscribe(DiagnosticArray, "/diagnostics", lambda _msg: heard.append(time.monotonic()), result_qos())
    calls = [client.query.call_async(Query.Request(question=f"tell me everything {i}")) for i in range(4)]
    goals = [client.action.send_goal_async(QueryAction.Goal(question=f"and everything {i}")) for i in range(3)]
    client.spin_until(lambda: all(g.done() for g in goals), TIMEOUT, "the goals decided")
    assert all(g.result().accepted for g in goals)
    client.spin_until(lambda: node.worker.pending == 6, TIMEOUT, "six questions queued behind the running one")
    flood = time.monotonic()
    refused = [client.query.call_async(Query.Request(question=f"one more {i}")) for i in range(4)]
    refused_goal = client.action.send_goal_async(QueryAction.Goal(question="a goal more"))
    client.spin_until(lambda: all(f.done() for f in refused) and refused_goal.done(), TIMEOUT, "the refusals")
    assert time.monotonic() - flood < 10.0
    assert all(not f.result().success and f.result().message.startswith("the query queue is full") for f in refused)
    assert not refused_goal.result().accepted and not any(f.done() for f in calls)
    heard.clear()
    client.spin_until(lambda: len(heard) >= 5, TIMEOUT, "/diagnostics while seven questions wait")
    assert client.counter("queue_pending") == 6 and client.counter("queries_rejected") == 5
    node.trigger_deactivate()  # every waiting question is answered, none hangs
    client.spin_until(lambda: all(f.done() for f in calls), TIMEOUT, "the waiting calls answered")
    assert all(not f.result().success for f in calls)
