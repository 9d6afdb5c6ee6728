"""``pite_node``: camera clips in; answers, trajectories and time segments out (a LifecycleNode).

Lifecycle: the engine is loaded and warmed up in ``on_configure`` and freed in
``on_cleanup``, ``on_shutdown`` and ``on_error``; the camera subscription, the continuous
timer and the inference worker start in ``on_activate`` and stop in ``on_deactivate``,
``on_shutdown`` and ``on_error``. Every transition works from every state it is allowed
from (also after a failed configure). Services and the action exist from start-up and
answer "not active" until the node is active, so a client never hangs.

Names are relative to the node's namespace (``pite/answer``, ``pite/query``, ...), so two
nodes run side by side under two namespaces; ``/diagnostics`` stays global.

Threads: the image callback (its own mutually exclusive group) only converts and buffers;
the worker thread alone runs the model. Questions are checked (question, clip window,
queue room) and refused at once, or queued; the service and the action's execute callback
are coroutines that await the worker's completion, so no executor thread is parked on
the model. Every output carries the frame_id and stamps of its source images, never now().
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.task import Future
from sensor_msgs.msg import CompressedImage, Image

from pite_msgs.action import Query as QueryAction
from pite_msgs.msg import Answer, TrackArray
from pite_msgs.srv import Query, SetPrompt
from pite_ros.engine.base import Engine, EngineError
from pite_ros.engine.loader import load_engine
from pite_ros.node import parameters
from pite_ros.node.clip_buffer import ClipBuffer
from pite_ros.node.conversions import to_messages
from pite_ros.node.debug_image import draw_tracks
from pite_ros.node.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb, rgb_to_image
from pite_ros.node.names import (
    ANSWER_TOPIC, DEBUG_TOPIC, DIAGNOSTICS_TOPIC, NODE_NAME, QUERY_NAME, SET_PROMPT_NAME, TRACKS_TOPIC,
    diagnostics_name,
)
from pite_ros.node.qos import image_qos, result_qos, warn_on_incompatible_qos
from pite_ros.node.throttle import Throttle
from pite_ros.node.worker import InferenceWorker, Job, JobError, TickFilter

Feedback = QueryAction.Feedback
CONTINUOUS_ID = "continuous"
# Seconds between two log lines of one kind (refused images, rejected queries, failed clips).
LOG_PERIOD = {"image": 5.0, "query": 2.0, "clip": 2.0}


@dataclass
class Counters:
    """What /diagnostics reports; updated from several threads under one lock."""

    frames_received: int = 0
    frames_rejected: int = 0
    stale_dropped: int = 0
    repeats_skipped: int = 0
    captions_preempted: int = 0
    queries_rejected: int = 0
    queries_answered: int = 0
    failures: int = 0
    incompatible_qos: int = 0
    last_latency: float = 0.0
    last_error: str = ""
    last_error_time: float = float("-inf")  # time.monotonic() of last_error


def _to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class PiteNode(LifecycleNode):
    """The PiTe perception node; see the module docstring and README for topics and parameters."""

    def __init__(self, name: str = NODE_NAME, **kwargs) -> None:
        super().__init__(name, **kwargs)
        parameters.declare_parameters(self)
        self.engine: Engine | None = None
        self.buffer: ClipBuffer | None = None
        self.worker: InferenceWorker | None = None
        self.counters = Counters()
        self._lock = threading.Lock()
        self._query_ids = itertools.count(1)
        self._ticks = TickFilter()
        self._subscription = None
        self._tick_timer = None
        self._tick_rate = 0.0  # Hz of the continuous timer, for /diagnostics
        self._goal_jobs: dict[bytes, Job] = {}
        self._warn = Throttle(self.get_logger().warning)
        self._questions = ReentrantCallbackGroup()
        self._images = MutuallyExclusiveCallbackGroup()
        self._periodic = MutuallyExclusiveCallbackGroup()
        self._answers = self.create_lifecycle_publisher(Answer, ANSWER_TOPIC, result_qos())
        self._tracks = self.create_lifecycle_publisher(TrackArray, TRACKS_TOPIC, result_qos())
        self._debug = self.create_lifecycle_publisher(Image, DEBUG_TOPIC, result_qos())
        self._diagnostics = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, result_qos())
        self.create_service(Query, QUERY_NAME, self._on_query_service, callback_group=self._questions)
        self.create_service(SetPrompt, SET_PROMPT_NAME, self._on_set_prompt, callback_group=self._questions)
        self._action = ActionServer(
            self, QueryAction, QUERY_NAME, self._execute_goal,
            goal_callback=self._on_goal, cancel_callback=self._on_cancel, callback_group=self._questions,
        )
        # After a change is accepted by every validator: a refused change leaves the timer alone.
        self.add_post_set_parameters_callback(self._on_parameters_set)
        period = float(self.get_parameter("diagnostics_period").value)
        self.create_timer(period, self._publish_diagnostics, callback_group=self._periodic)

    def param(self, name: str):
        return self.get_parameter(name).value

    # -- lifecycle -----------------------------------------------------------------------
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        model_path, engine = self.param("model_path"), self.param("engine")
        self.get_logger().info(f"loading the {engine} engine from {model_path or 'the shipped default model'} ...")
        started = time.perf_counter()
        try:
            self.engine = load_engine(engine, model_path or None, providers=self.param("onnx_providers"),
                                      num_threads=self.param("num_threads"), device=self.param("device"),
                                      dtype=self.param("dtype"))
            self.get_logger().info(f"warming up {self.engine.name} ({self.engine.num_frames} frames a clip) ...")
            self.engine.answer(np.zeros((self.engine.num_frames, 32, 32, 3), np.uint8), "warm up", 1.0,
                               max_new_tokens=2)
        except (EngineError, OSError, ValueError, RuntimeError) as error:
            self.get_logger().error(f"cannot load the model: {error}")
            self._release()  # a model that loaded but failed its warm-up is freed too
            return TransitionCallbackReturn.FAILURE
        self.buffer = ClipBuffer(max_seconds=self.param("buffer_seconds"), max_frames=self.param("max_buffer_frames"),
                                 max_side=self.param("max_image_side"), model_size=self.engine.image_size)
        self.get_logger().info(f"model ready in {time.perf_counter() - started:.1f} s")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        topic = self.param("image_topic")
        if self.param("compressed"):
            topic = topic.rstrip("/") + "/compressed"
            kind, callback = CompressedImage, self._on_compressed
        else:
            kind, callback = Image, self._on_image
        try:
            self._subscription = self.create_subscription(
                kind, topic, callback, image_qos(self.param("image_qos"), self.param("qos_depth")),
                callback_group=self._images,
                event_callbacks=warn_on_incompatible_qos(self.get_logger(), topic, self._count_incompatible_qos),
            )
        except (ValueError, TypeError) as error:  # rclpy's invalid-name errors are ValueErrors
            self.get_logger().error(f"cannot subscribe to image_topic {topic!r}: {error}")
            return TransitionCallbackReturn.FAILURE
        self.worker = InferenceWorker(self._run_job, max_queue=self.param("queue_size"))
        self.worker.start()
        self._tick_rate = float(self.param("rate_hz"))
        self._tick_timer = self.create_timer(1.0 / self._tick_rate, self._continuous_tick,
                                             callback_group=self._periodic)
        self.get_logger().info(f"active: listening on {self._subscription.topic_name}, answering on "
                               f"{self._answers.topic_name} and {self._tracks.topic_name}")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.close()
        return super().on_shutdown(state)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        """A transition raised: free everything and go back to unconfigured (configure may retry)."""
        self.get_logger().error(f"error while leaving {state.label}: inputs stopped and the model freed")
        self.close()
        return TransitionCallbackReturn.SUCCESS

    def close(self) -> None:
        """Stop the inputs and free the model, from whatever state (shutdown, errors, exiting the process)."""
        self._stop_inputs()
        self._release()

    def _stop_inputs(self) -> None:
        """Undo ``on_activate``; does nothing for what was never started (idempotent)."""
        if self._tick_timer is not None:
            self.destroy_timer(self._tick_timer)
            self._tick_timer, self._tick_rate = None, 0.0
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _release(self) -> None:
        """Undo ``on_configure``; idempotent."""
        engine, self.engine, self.buffer = self.engine, None, None
        if engine is not None:
            engine.close()
            self.get_logger().info("model released")

    def _on_parameters_set(self, params: list[Parameter]) -> None:
        """After an accepted change: a new ``rate_hz`` retimes the running continuous timer."""
        timer = self._tick_timer
        for param in params:
            if param.name == "rate_hz" and timer is not None:
                timer.timer_period_ns = int(1e9 / float(param.value))
                self._tick_rate = float(param.value)

    @property
    def active(self) -> bool:
        return self.worker is not None and self.buffer is not None and self.engine is not None

    def _note_error(self, message: str) -> None:
        """Remember an error for /diagnostics (WARN for ``diagnostics_error_window`` seconds)."""
        with self._lock:
            self.counters.last_error = message
            self.counters.last_error_time = time.monotonic()

    # -- input -----------------------------------------------------------------------------
    def _on_image(self, msg: Image) -> None:
        self._ingest(msg, lambda: image_to_rgb(msg, max_pixels=self.param("max_image_pixels")))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._ingest(msg, lambda: compressed_to_rgb(msg, max_pixels=self.param("max_image_pixels")))

    def _ingest(self, msg, convert) -> None:
        """Convert and buffer; a malformed image is counted and logged (throttled), never raised."""
        buffer = self.buffer
        if buffer is None:
            return
        try:
            rgb = convert()
        except ImageConversionError as error:
            with self._lock:
                self.counters.frames_rejected += 1
            message = f"{self.param('image_topic')}: image refused: {error}"
            self._note_error(message)
            self._warn("image", LOG_PERIOD["image"], message)
            return
        buffer.add(_to_ns(msg.header.stamp), msg.header.frame_id, rgb)
        with self._lock:
            self.counters.frames_received += 1

    def _count_incompatible_qos(self) -> None:
        with self._lock:
            self.counters.incompatible_qos += 1
        self._note_error("incompatible QoS on the camera topic")

    # -- questions ---------------------------------------------------------------------------
    def _question_problem(self, question: str, start: Time, end: Time) -> str:
        """Why this question cannot be queued now, or "" when it can (the queue's room aside)."""
        buffer = self.buffer
        if not self.active or buffer is None:
            return "the node is not active (configure and activate it first)"
        if not self.param("enabled"):
            return "inference is disabled (parameter 'enabled' is false)"
        if not question.strip():
            return "the question is empty"
        if len(question) > self.param("max_question_chars"):
            return f"the question is longer than max_question_chars={self.param('max_question_chars')}"
        if buffer.latest_stamp is None:
            return f"no images yet (is anything publishing on {self.param('image_topic')}?)"
        problem = buffer.window_problem(_to_ns(start) or None, _to_ns(end) or None, self.param("clip_seconds"))
        return f"bad clip window: {problem}" if problem else ""

    def _new_job(self, question: str, start: Time, end: Time, return_tracks: bool, **hooks) -> Job:
        return Job(question=question.strip(), payload={
            "query_id": f"q{next(self._query_ids)}", "start": _to_ns(start) or None, "end": _to_ns(end) or None,
            "return_tracks": return_tracks,
        }, **hooks)

    def _reject(self, message: str) -> None:
        with self._lock:
            self.counters.queries_rejected += 1
        self._warn("query", LOG_PERIOD["query"], f"query rejected: {message}")

    def _completion(self, job: Job) -> Future:
        """An rclpy Future done when the worker finishes ``job`` (it wakes the executor to resume the awaiter)."""
        future = Future()
        executor = self.executor

        def on_done(finished: Job) -> None:
            future.set_result(finished)
            try:
                if executor is not None:
                    executor.wake()
            except InvalidHandle:  # the executor is shutting down: nobody awaits any more
                pass

        job.on_done = on_done
        return future

    async def _on_query_service(self, request: Query.Request, response: Query.Response) -> Query.Response:
        """Refuse at once, or queue and await the worker (the executor thread is free meanwhile)."""
        problem = self._question_problem(request.question, request.clip_start, request.clip_end)
        worker = self.worker
        if not problem:
            job = self._new_job(request.question, request.clip_start, request.clip_end, request.return_tracks)
            done = self._completion(job)
            if worker is None or not worker.submit(job):
                problem = f"the query queue is full ({self.param('queue_size')} waiting); try again later"
        if problem:
            self._reject(problem)
            response.success, response.message = False, problem
            return response
        await done
        complete = job.result is not None and not job.cancelled.is_set()
        response.success = complete
        response.message = "ok" if complete else job.error or "the node stopped before the answer was complete"
        if job.result is not None:
            response.answer = job.result
        return response

    def _on_set_prompt(self, request: SetPrompt.Request, response: SetPrompt.Response) -> SetPrompt.Response:
        result = self.set_parameters([Parameter("prompt", value=request.prompt)])[0]
        response.success = result.successful
        response.message = request.prompt if result.successful else result.reason
        return response

    def _on_goal(self, goal: QueryAction.Goal) -> GoalResponse:
        """Decide at once (never blocks): reject what cannot run, and hold a queue place for what is accepted."""
        problem = self._question_problem(goal.question, goal.clip_start, goal.clip_end)
        worker = self.worker
        if not problem and (worker is None or not worker.reserve()):
            problem = f"the query queue is full ({self.param('queue_size')} waiting); try again later"
        if problem:
            self._reject(problem)
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _on_cancel(self, goal_handle) -> CancelResponse:
        job = self._goal_jobs.get(bytes(goal_handle.goal_id.uuid))
        if job is not None:
            job.cancelled.set()  # the worker stops at the next token, or skips the job if not started
        return CancelResponse.ACCEPT

    async def _execute_goal(self, goal_handle) -> QueryAction.Result:
        """Queue the accepted goal and await the worker; feedback comes from the worker thread."""
        goal = goal_handle.request
        result = QueryAction.Result()

        def on_stage(name: str) -> None:
            goal_handle.publish_feedback(Feedback(stage=name, queue_position=0))

        def on_token(_token: int, text: str) -> bool:
            goal_handle.publish_feedback(Feedback(stage=Feedback.STAGE_GENERATING, partial_text=text, queue_position=0))
            return not job.cancelled.is_set()

        def on_position(position: int) -> None:
            if position > 0:
                goal_handle.publish_feedback(Feedback(stage=Feedback.STAGE_QUEUED, queue_position=position))

        job = self._new_job(goal.question, goal.clip_start, goal.clip_end, goal.return_tracks, on_position=on_position)
        job.payload.update(on_stage=on_stage, on_token=on_token)
        done = self._completion(job)
        key = bytes(goal_handle.goal_id.uuid)
        self._goal_jobs[key] = job
        if goal_handle.is_cancel_requested:  # cancelled before it was registered here
            job.cancelled.set()
        worker = self.worker
        try:
            if worker is None or not worker.submit(job, reserved=True):
                self._reject("the node stopped before the goal could be queued")
                goal_handle.abort()
                result.message = "the node is not active"
                return result
            await done
        finally:
            self._goal_jobs.pop(key, None)
        if job.result is not None:
            result.answer = job.result
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
            result.message = "cancelled: the answer holds the text generated until then (not published)"
            return result
        if job.result is None or job.cancelled.is_set():
            goal_handle.abort()
            result.message = job.error or "the node stopped before the answer was complete"
            return result
        goal_handle.succeed()
        result.success, result.message = True, "ok"
        return result

    # -- inference -------------------------------------------------------------------------------
    def _continuous_tick(self) -> None:
        worker = self.worker
        if worker is None or not self.param("continuous") or not self.param("enabled"):
            return
        if self.buffer is None or self.buffer.latest_stamp is None:
            return
        job = Job(question=self.param("prompt"), continuous=True,
                  payload={"query_id": CONTINUOUS_ID, "start": None, "end": None, "return_tracks": True})
        worker.submit(job)

    def _run_job(self, job: Job) -> Answer | None:
        """On the worker thread: take the clip, run the engine, publish, return the Answer.

        An answer stopped early (a cancelled goal, a caption preempted by a question, the
        node stopping) is returned to its asker but not published on pite/answer and
        pite/tracks: those carry complete answers only.
        """
        engine, buffer = self.engine, self.buffer
        if engine is None or buffer is None:
            raise JobError("the node stopped before this query ran")
        payload = job.payload
        clip = buffer.clip(payload["start"], payload["end"], seconds=self.param("clip_seconds"))
        if clip is None or len(clip.stamps) == 0:  # the buffer changed (a reset) since the window was checked
            problem = buffer.window_problem(payload["start"], payload["end"], self.param("clip_seconds"))
            message = f"query {payload['query_id']}: bad clip window: {problem or 'no images in the window'}"
            self._warn("clip", LOG_PERIOD["clip"], message)
            raise JobError(message)
        if job.continuous and self._skip_tick(job, clip.stamps[-1]):
            return None
        frames = clip.sample(engine.num_frames)
        if "on_stage" in payload:
            payload["on_stage"](Feedback.STAGE_ENCODING)
        duration = max((clip.stamps[-1] - clip.stamps[0]) / 1e9, 1e-3)
        on_token = payload.get("on_token")

        def keep_going(token: int, text: str) -> bool:
            if job.cancelled.is_set():
                return False
            return on_token(token, text) if on_token else True

        started = time.perf_counter()
        try:
            result = engine.answer(frames.model_images, job.question, duration,
                                   max_new_tokens=self.param("max_new_tokens"), on_token=keep_going)
        except Exception as error:  # the worker logs it; /diagnostics says it (WARN) and counts it
            with self._lock:
                self.counters.failures += 1
            self._note_error(f"inference failed: {error}")
            raise
        elapsed = time.perf_counter() - started
        if job.preempted:
            with self._lock:
                self.counters.captions_preempted += 1
            return None
        answer, tracks = to_messages(
            result, frames, question=job.question, query_id=payload["query_id"], model_name=engine.name,
            inference_seconds=elapsed, score_threshold=self.param("score_threshold"),
            clip_start_ns=clip.stamps[0], clip_end_ns=clip.stamps[-1],
        )
        if not payload["return_tracks"]:
            answer.tracks = []
        if job.cancelled.is_set():
            return answer
        self._answers.publish(answer)
        self._tracks.publish(tracks)
        self._publish_debug(answer, clip)
        with self._lock:
            self.counters.queries_answered += 0 if job.continuous else 1
            self.counters.last_latency = elapsed
        return answer

    def _skip_tick(self, job: Job, newest_stamp: int) -> bool:
        """Whether a continuous tick is left unanswered (``TickFilter``), counted by why."""
        verdict = self._ticks.skip(job, newest_stamp, self.param("stale_seconds"))
        if verdict:
            with self._lock:
                if verdict == "repeat":
                    self.counters.repeats_skipped += 1
                else:
                    self.counters.stale_dropped += 1
        return bool(verdict)

    def _publish_debug(self, answer: Answer, clip) -> None:
        if not self.param("debug_image") or self._debug.get_subscription_count() == 0:
            return
        canvas = draw_tracks(clip.last_image_at_source_size(), answer)
        self._debug.publish(rgb_to_image(canvas, answer.header))

    # -- diagnostics ------------------------------------------------------------------------------
    def _image_publisher_count(self) -> int:
        """Publishers matched on the camera topic; 0 while inactive (or while deactivation destroys it)."""
        subscription = self._subscription
        try:
            return subscription.get_publisher_count() if subscription is not None else 0
        except InvalidHandle:
            return 0

    def _publish_diagnostics(self) -> None:
        """One status, ``<namespace>/pite_node: inference``: WARN while inactive or within
        ``diagnostics_error_window`` seconds of the last error, OK otherwise."""
        with self._lock:
            counters = Counters(**vars(self.counters))
        buffer, worker = self.buffer, self.worker
        values = {
            "active": str(self.active), "enabled": str(self.param("enabled")),
            "model_loaded": str(self.engine is not None),
            # Publishers matched on the camera topic: 0 while a camera runs means a QoS or
            # discovery problem, not a silent camera (and a client waits for it before a burst).
            "image_publishers": str(self._image_publisher_count()),
            "last_latency_s": f"{counters.last_latency:.3f}",
            "frames_received": str(counters.frames_received), "frames_rejected": str(counters.frames_rejected),
            "queries_answered": str(counters.queries_answered),
            "queries_rejected": str(counters.queries_rejected), "inference_failures": str(counters.failures),
            "stale_clips_dropped": str(counters.stale_dropped), "repeat_clips_skipped": str(counters.repeats_skipped),
            "captions_preempted": str(counters.captions_preempted),
            "incompatible_qos_events": str(counters.incompatible_qos),
            "queue_pending": str(worker.pending if worker else 0),
            "continuous_rate_hz": f"{self._tick_rate:g}",  # the timer's, 0 while inactive
            "last_error": counters.last_error,
        }
        if buffer is not None:
            values.update({f"buffer_{key}": str(value) for key, value in buffer.stats().items()})
        level = DiagnosticStatus.OK
        message = "ok"
        if not self.active:
            level, message = DiagnosticStatus.WARN, "not active"
        elif time.monotonic() - counters.last_error_time < self.param("diagnostics_error_window"):
            level, message = DiagnosticStatus.WARN, counters.last_error
        status = DiagnosticStatus(level=level, name=diagnostics_name(self.get_fully_qualified_name()),
                                  message=message, hardware_id=self.param("image_topic"),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

