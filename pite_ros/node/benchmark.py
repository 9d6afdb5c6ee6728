"""``pite-bench node``: what the node costs and how it keeps up, measured the way it runs.

- ingest: the image callback's whole job (convert with cv_bridge semantics, downscale, the
  copy at the model's input size, buffer) per frame at 640x480 and 1920x1080, in-process;
- live: pite_node in its own process with a model; a 30 Hz 640x480 camera (best effort,
  sensor-data QoS as a driver publishes) streams from this process while questions are
  asked back to back through the service: frames dropped (published minus counted by the
  node), query latency p50/p95 from call to response;
- live while captioning: the same, with continuous mode on (1 Hz): a question stops the
  running caption instead of waiting behind it;
- continuous: the same node in continuous mode at a high requested rate: answers per
  second actually published on pite/answer.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from sensor_msgs.msg import Image

from pite_ros.node.client import NodeProcess, PiteClient
from pite_ros.node.clip_buffer import ClipBuffer
from pite_ros.node.conversions import ns_to_time
from pite_ros.node.image_conversion import image_to_rgb
from pite_ros.node.qos import sensor_qos

TOPIC = "/pite_bench/image"
QUESTIONS = ("Describe the video.", "what colour is the object that moves?", "how many objects are there?")


def _image(width: int, height: int, stamp_ns: int, rng: np.random.Generator) -> Image:
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    msg.data = rng.integers(0, 256, (height, width * 3), dtype=np.uint8).tobytes()
    msg.header.stamp, msg.header.frame_id = ns_to_time(stamp_ns), "bench_camera"
    return msg


def ingest_costs(sizes=((640, 480), (1920, 1080)), frames: int = 200, max_side: int = 320,
                 model_size: int | None = None) -> dict[str, dict]:
    """Milliseconds per frame of convert + buffer (the node's defaults; ``model_size`` the
    model's input side, as the node's buffer resizes to it), median and p95."""
    rng = np.random.default_rng(0)
    figures = {}
    for width, height in sizes:
        buffer = ClipBuffer(max_seconds=30.0, max_frames=300, max_side=max_side, model_size=model_size)
        messages = [_image(width, height, 10**18 + i * 33_000_000, rng) for i in range(8)]
        times = []
        for index in range(frames):
            msg = messages[index % len(messages)]
            stamp = 10**18 + index * 33_000_000
            started = time.perf_counter()
            buffer.add(stamp, msg.header.frame_id, image_to_rgb(msg))
            times.append((time.perf_counter() - started) * 1e3)
        figures[f"{width}x{height}"] = {"median_ms": float(np.median(times)), "p95_ms": float(np.percentile(times, 95))}
    return figures


class Camera(threading.Thread):
    """Publishes random 640x480 rgb8 frames at ``fps`` until stopped; counts what it sent."""

    def __init__(self, client: PiteClient, fps: float, size: tuple[int, int]) -> None:
        super().__init__(daemon=True, name="bench-camera")
        self.publisher = client.publisher(Image, TOPIC, sensor_qos(5))
        self.period = 1.0 / fps
        self.size = size
        self.sent = 0
        self.stop_event = threading.Event()
        rng = np.random.default_rng(1)
        self.pool = [_image(*size, 0, rng) for _ in range(4)]

    def run(self) -> None:
        start = time.monotonic()
        while not self.stop_event.is_set():
            msg = self.pool[self.sent % len(self.pool)]
            msg.header.stamp = ns_to_time(time.time_ns())
            self.publisher.publish(msg)
            self.sent += 1
            self.stop_event.wait(max(0.0, start + self.sent * self.period - time.monotonic()))


def live_run(model_dir: Path, engine: str, workdir: Path, *, seconds: float = 15.0, fps: float = 30.0,
             size: tuple[int, int] = (640, 480), threads: int = 0, continuous_hz: float = 0.0) -> dict:
    """Frames dropped and query latency with a 30 Hz camera streaming while questions are answered;
    with ``continuous_hz`` > 0, while continuous mode captions at that rate too."""
    params = {"model_path": str(model_dir), "engine": engine, "image_topic": TOPIC, "continuous": continuous_hz > 0,
              "diagnostics_period": 0.2, "num_threads": threads}
    if continuous_hz > 0:
        params["rate_hz"] = continuous_hz
    node = NodeProcess(workdir / f"{engine}-live-{continuous_hz:g}hz", params)
    client = PiteClient("pite_bench_client", watch=node)
    try:
        client.wait_active()
        camera = Camera(client, fps, size)
        client.wait_matched(camera.publisher, 30)
        before_received = client.counter("frames_received")
        camera.start()
        client.spin_until(lambda: client.counter("frames_received") > before_received, 10, "the first frame")
        latencies, started = [], time.monotonic()
        while time.monotonic() - started < seconds:
            asked = time.perf_counter()
            response = client.request(QUESTIONS[len(latencies) % len(QUESTIONS)], timeout=60.0)
            if not response.success:
                raise RuntimeError(f"the node refused a benchmark question: {response.message}")
            latencies.append((time.perf_counter() - asked) * 1e3)
        camera.stop_event.set()
        camera.join()
        settle = time.monotonic() + 2.0
        client.spin_until(lambda: time.monotonic() > settle, 5, "the last frames")
        received = client.counter("frames_received") - before_received
        return {"engine": engine, "continuous_hz": continuous_hz, "camera_fps": fps, "frames_published": camera.sent,
                "frames_received": received, "captions_preempted": client.counter("captions_preempted"),
                "frames_dropped": max(camera.sent - received, 0), "queries": len(latencies),
                "query_p50_ms": float(np.percentile(latencies, 50)),
                "query_p95_ms": float(np.percentile(latencies, 95)),
                "inference_last_s": float(client.diagnostics.get("last_latency_s", "nan"))}
    finally:
        client.close()
        node.stop()


def continuous_rate(model_dir: Path, engine: str, workdir: Path, *, seconds: float = 10.0, rate_hz: float = 10.0,
                    fps: float = 30.0, threads: int = 0) -> dict:
    """Answers per second that continuous mode publishes when asked for ``rate_hz``."""
    node = NodeProcess(workdir / f"{engine}-continuous",
                       {"model_path": str(model_dir), "engine": engine, "image_topic": TOPIC, "continuous": True,
                        "rate_hz": rate_hz, "diagnostics_period": 0.5, "num_threads": threads})
    client = PiteClient("pite_bench_continuous", watch=node)
    try:
        client.wait_active()
        camera = Camera(client, fps, (640, 480))
        client.wait_matched(camera.publisher, 30)
        camera.start()
        client.spin_until(lambda: any(a.query_id == "continuous" for a in client.answers), 60, "a first answer")
        first = len(client.answers)
        started = time.monotonic()
        client.spin_until(lambda: time.monotonic() - started > seconds, seconds + 5, "the measuring window")
        camera.stop_event.set()
        camera.join()
        published = len(client.answers) - first
        return {"engine": engine, "requested_hz": rate_hz, "published_hz": published / seconds}
    finally:
        client.close()
        node.stop()


def format_node_report(report: dict) -> str:
    """The figures as the README table shows them."""
    lines = ["ingest (convert + downscale + resize to the model's input + buffer), ms per frame:"]
    for size, figures in report["ingest"].items():
        lines.append(f"  {size:>10}: median {figures['median_ms']:.3f}, p95 {figures['p95_ms']:.3f}")
    lines.append("live, 30 Hz 640x480 camera while answering questions back to back:")
    lines.append(f"  {'engine':8} {'queries':>7} {'p50 ms':>8} {'p95 ms':>8} {'published':>9} {'dropped':>7}")
    for run in report["live"]:
        lines.append(f"  {run['engine']:8} {run['queries']:7d} {run['query_p50_ms']:8.1f} {run['query_p95_ms']:8.1f} "
                     f"{run['frames_published']:9d} {run['frames_dropped']:7d}")
    for run in report.get("live_continuous", []):
        lines.append(f"  {run['engine']:8} {run['queries']:7d} {run['query_p50_ms']:8.1f} {run['query_p95_ms']:8.1f} "
                     f"{run['frames_published']:9d} {run['frames_dropped']:7d}  while captioning at "
                     f"{run['continuous_hz']:g} Hz ({run['captions_preempted']} captions preempted)")
    for run in report["continuous"]:
        lines.append(f"continuous mode ({run['engine']}): asked {run['requested_hz']:.0f} Hz, "
                     f"published {run['published_hz']:.2f} Hz")
    return "\n".join(lines)
