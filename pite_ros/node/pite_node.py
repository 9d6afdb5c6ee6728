"""``pite_node``: camera clips in; answers, trajectories and time segments out (a LifecycleNode).

Lifecycle (DESIGN.md): the engine is loaded and warmed up in ``on_configure`` and freed in
``on_cleanup``; the camera subscription, timers and the inference worker start in
``on_activate`` and stop in ``on_deactivate``. Services and the action exist from start-up
and answer "not active" until the node is active, so a client never hangs.

Threads: the image callback (its own mutually exclusive group) only converts and buffers;
questions arrive on a reentrant group and wait on the worker; the worker thread alone runs
the model. Every output carries the frame_id and stamps of its source images, never now().
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.exceptions import InvalidHandle
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
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
from pite_ros.node.qos import image_qos, result_qos, warn_on_incompatible_qos
from pite_ros.node.worker import InferenceWorker, Job

Feedback = QueryAction.Feedback
CONTINUOUS_ID = "continuous"


@dataclass
class Counters:
    """What /diagnostics reports; updated from several threads under one lock."""

    frames_received: int = 0
    frames_rejected: int = 0
    stale_dropped: int = 0
    queries_rejected: int = 0
    queries_answered: int = 0
    failures: int = 0
    incompatible_qos: int = 0
    last_latency: float = 0.0
    last_error: str = ""


def _to_ns(stamp: Time) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


class PiteNode(LifecycleNode):
    """The PiTe perception node; see the module docstring and README for topics and parameters."""

    def __init__(self, name: str = "pite_node", **kwargs) -> None:
        super().__init__(name, **kwargs)
        parameters.declare_parameters(self)
        self.engine: Engine | None = None
        self.buffer: ClipBuffer | None = None
        self.worker: InferenceWorker | None = None
        self.counters = Counters()
        self._lock = threading.Lock()
        self._query_ids = itertools.count(1)
        self._last_continuous_stamp: int | None = None
        self._subscription = None
        self._tick_timers: list = []
        self._questions = ReentrantCallbackGroup()
        self._images = MutuallyExclusiveCallbackGroup()
        self._periodic = MutuallyExclusiveCallbackGroup()
        self._answers = self.create_lifecycle_publisher(Answer, "/pite/answer", result_qos())
        self._tracks = self.create_lifecycle_publisher(TrackArray, "/pite/tracks", result_qos())
        self._debug = self.create_lifecycle_publisher(Image, "/pite/debug_image", result_qos())
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", result_qos())
        self.create_service(Query, "/pite/query", self._on_query_service, callback_group=self._questions)
        self.create_service(SetPrompt, "/pite/set_prompt", self._on_set_prompt, callback_group=self._questions)
        self._action = ActionServer(
            self, QueryAction, "/pite/query", self._execute_goal,
            goal_callback=self._on_goal, cancel_callback=lambda _goal: CancelResponse.ACCEPT,
            callback_group=self._questions,
        )
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
        except (EngineError, OSError, ValueError) as error:
            self.get_logger().error(f"cannot load the model: {error}")
            self.engine = None
            return TransitionCallbackReturn.FAILURE
        self.buffer = ClipBuffer(max_seconds=self.param("buffer_seconds"), max_frames=self.param("max_buffer_frames"),
                                 max_side=self.param("max_image_side"))
        self.get_logger().info(f"model ready in {time.perf_counter() - started:.1f} s")
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        topic = self.param("image_topic")
        if self.param("compressed"):
            topic = topic.rstrip("/") + "/compressed"
            kind, callback = CompressedImage, self._on_compressed
        else:
            kind, callback = Image, self._on_image
        self._subscription = self.create_subscription(
            kind, topic, callback, image_qos(self.param("image_qos"), self.param("qos_depth")),
            callback_group=self._images,
            event_callbacks=warn_on_incompatible_qos(self.get_logger(), topic, self._count_incompatible_qos),
        )
        self.worker = InferenceWorker(self._run_job, max_queue=self.param("queue_size"))
        self.worker.start()
        self._tick_timers = [self.create_timer(1.0 / self.param("rate_hz"), self._continuous_tick,
                                          callback_group=self._periodic)]
        self.add_on_set_parameters_callback(self._on_rate_change)
        self.get_logger().info(f"active: listening on {topic}, answering on /pite/answer and /pite/tracks")
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_inputs()
        self._release()
        return super().on_shutdown(state)

    def _stop_inputs(self) -> None:
        for timer in self._tick_timers:
            self.destroy_timer(timer)
        self._tick_timers = []
        self.remove_on_set_parameters_callback(self._on_rate_change)
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        if self.worker is not None:
            self.worker.stop()
            self.worker = None

    def _release(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
        self.buffer = None

    def _on_rate_change(self, params):
        from rcl_interfaces.msg import SetParametersResult

        for param in params:
            if param.name == "rate_hz" and self._tick_timers:
                self.destroy_timer(self._tick_timers.pop())
                self._tick_timers.append(self.create_timer(1.0 / float(param.value), self._continuous_tick,
                                                      callback_group=self._periodic))
        return SetParametersResult(successful=True)

    @property
    def active(self) -> bool:
        return self.worker is not None and self.buffer is not None and self.engine is not None

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
                self.counters.last_error = str(error)
            self.get_logger().warn(f"{self.param('image_topic')}: image refused: {error}", throttle_duration_sec=5.0)
            return
        buffer.add(_to_ns(msg.header.stamp), msg.header.frame_id, rgb)
        with self._lock:
            self.counters.frames_received += 1

    def _count_incompatible_qos(self) -> None:
        with self._lock:
            self.counters.incompatible_qos += 1

    # -- questions ---------------------------------------------------------------------------
    def _check_question(self, question: str) -> str:
        """Why ``question`` cannot be asked now, or "" when it can."""
        if not self.active:
            return "the node is not active (configure and activate it first)"
        if not self.param("enabled"):
            return "inference is disabled (parameter 'enabled' is false)"
        if not question.strip():
            return "the question is empty"
        if len(question) > self.param("max_question_chars"):
            return f"the question is longer than max_question_chars={self.param('max_question_chars')}"
        return ""

    def _new_job(self, question: str, start: Time, end: Time, return_tracks: bool) -> Job:
        return Job(question=question.strip(), payload={
            "query_id": f"q{next(self._query_ids)}", "start": _to_ns(start) or None, "end": _to_ns(end) or None,
            "return_tracks": return_tracks,
        })

    def _reject(self, message: str) -> None:
        with self._lock:
            self.counters.queries_rejected += 1
        self.get_logger().warn(f"query rejected: {message}", throttle_duration_sec=2.0)

    def _on_query_service(self, request: Query.Request, response: Query.Response) -> Query.Response:
        problem = self._check_question(request.question)
        job = None if problem else self._new_job(request.question, request.clip_start, request.clip_end,
                                                  request.return_tracks)
        worker = self.worker
        if job is not None and (worker is None or not worker.submit(job)):
            problem = f"the query queue is full ({self.param('queue_size')} waiting); try again later"
        if problem:
            self._reject(problem)
            response.success, response.message = False, problem
            return response
        job.wait()
        response.success = job.result is not None
        response.message = job.error or "ok"
        if job.result is not None:
            response.answer = job.result
        return response

    def _on_set_prompt(self, request: SetPrompt.Request, response: SetPrompt.Response) -> SetPrompt.Response:
        result = self.set_parameters([rclpy.parameter.Parameter("prompt", value=request.prompt)])[0]
        response.success = result.successful
        response.message = request.prompt if result.successful else result.reason
        return response

    def _on_goal(self, goal: QueryAction.Goal) -> GoalResponse:
        """Decide at once (never blocks): reject what cannot run or cannot be queued."""
        problem = self._check_question(goal.question)
        worker = self.worker
        if not problem and worker is not None and worker.pending >= worker.max_queue:
            problem = "the query queue is full"
        if problem:
            self._reject(problem)
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def _execute_goal(self, goal_handle) -> QueryAction.Result:
        goal = goal_handle.request
        result = QueryAction.Result()
        job = self._new_job(goal.question, goal.clip_start, goal.clip_end, goal.return_tracks)
        stage = {"name": Feedback.STAGE_QUEUED}

        def on_stage(name: str) -> None:
            stage["name"] = name
            goal_handle.publish_feedback(Feedback(stage=name, queue_position=0))

        def on_token(_token: int, text: str) -> bool:
            goal_handle.publish_feedback(Feedback(stage=Feedback.STAGE_GENERATING, partial_text=text, queue_position=0))
            return not goal_handle.is_cancel_requested

        job.payload.update(on_stage=on_stage, on_token=on_token)
        worker = self.worker
        if worker is None or not worker.submit(job):
            self._reject("the query queue is full")
            goal_handle.abort()
            result.message = "the query queue is full; try again later"
            return result
        last_position = None
        while not job.wait(0.1):
            if goal_handle.is_cancel_requested:
                job.cancelled.set()
            position = worker.position(job)
            if stage["name"] == Feedback.STAGE_QUEUED and position != last_position and position >= 0:
                goal_handle.publish_feedback(Feedback(stage=Feedback.STAGE_QUEUED, queue_position=position))
                last_position = position
        if job.result is not None:
            result.answer = job.result
        if goal_handle.is_cancel_requested:
            goal_handle.canceled()
            result.message = "cancelled"
            return result
        if job.result is None:
            goal_handle.abort()
            result.message = job.error
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
        """On the worker thread: take the clip, run the engine, publish, return the Answer."""
        engine, buffer = self.engine, self.buffer
        if engine is None or buffer is None:
            raise RuntimeError("the model was released")
        payload = job.payload
        clip = buffer.clip(payload["start"], payload["end"], seconds=self.param("clip_seconds"))
        if clip is None or len(clip.stamps) == 0:
            raise RuntimeError(f"no images in the clip window (is anything publishing on {self.param('image_topic')}?)")
        if job.continuous and self._is_stale(job, clip.stamps[-1]):
            with self._lock:
                self.counters.stale_dropped += 1
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
        result = engine.answer(frames.images, job.question, duration, max_new_tokens=self.param("max_new_tokens"),
                               on_token=keep_going)
        elapsed = time.perf_counter() - started
        answer, tracks = to_messages(
            result, frames, question=job.question, query_id=payload["query_id"], model_name=engine.name,
            inference_seconds=elapsed, score_threshold=self.param("score_threshold"),
            clip_start_ns=clip.stamps[0], clip_end_ns=clip.stamps[-1],
        )
        if not payload["return_tracks"]:
            answer.tracks = []
        self._answers.publish(answer)
        self._tracks.publish(tracks)
        self._publish_debug(answer, clip)
        with self._lock:
            self.counters.queries_answered += 0 if job.continuous else 1
            self.counters.last_latency = elapsed
        return answer

    def _is_stale(self, job: Job, newest_stamp: int) -> bool:
        """A continuous tick that waited longer than stale_seconds, or has no image newer than the last answer's."""
        waited = time.monotonic() - job.submitted
        limit = self.param("stale_seconds")
        repeat = newest_stamp == self._last_continuous_stamp
        self._last_continuous_stamp = newest_stamp
        return repeat or (limit > 0 and waited > limit)

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
        with self._lock:
            counters = Counters(**vars(self.counters))
        buffer, worker = self.buffer, self.worker
        values = {
            "active": str(self.active), "enabled": str(self.param("enabled")),
            # Publishers matched on the camera topic: 0 while a camera runs means a QoS or
            # discovery problem, not a silent camera (and a client waits for it before a burst).
            "image_publishers": str(self._image_publisher_count()),
            "last_latency_s": f"{counters.last_latency:.3f}",
            "frames_received": str(counters.frames_received), "frames_rejected": str(counters.frames_rejected),
            "queries_answered": str(counters.queries_answered),
            "queries_rejected": str(counters.queries_rejected),
            "stale_clips_dropped": str(counters.stale_dropped), "incompatible_qos_events": str(counters.incompatible_qos),
            "queue_pending": str(worker.pending if worker else 0),
        }
        if buffer is not None:
            values.update({f"buffer_{key}": str(value) for key, value in buffer.stats().items()})
        level = DiagnosticStatus.OK
        message = "ok"
        if not self.active:
            level, message = DiagnosticStatus.WARN, "not active"
        elif counters.frames_rejected or counters.incompatible_qos:
            level, message = DiagnosticStatus.WARN, counters.last_error or "incompatible QoS on the camera topic"
        status = DiagnosticStatus(level=level, name=f"{self.get_name()}: inference", message=message,
                                  hardware_id=self.param("image_topic"),
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(array)

