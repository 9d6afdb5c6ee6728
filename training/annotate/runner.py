"""Annotating a whole input JSONL: resumable, in worker processes or on Ray.

Output folder ``out``: ``records/<id>.json`` (one stage-2 record per finished video),
``failures/<id>.json`` (``{id, video, line, reason, message}``), ``stats/<id>.json``
(counts and stage timings of one video), and, when a run ends or on ``merge``,
``annotations.jsonl`` (all records, input order), ``failures.jsonl`` and ``summary.json``.

Every file is written whole to a temporary name and renamed (``os.replace``), and a
worker writes its video's files itself, so a killed run loses at most the videos in flight;
a re-run skips every video with a record (and, unless ``retry_failed``, with a failure).
A crashed worker process (killed, out of memory) breaks the pool: the pool is rebuilt and
the videos that were in flight are tried again; one in flight during ``MAX_CRASHES``
crashes is recorded as ``worker crashed``. With Ray, ``workers`` is the CPU count of the
local cluster started when no address is given; Ray retries the tasks of dead workers.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
from tqdm import tqdm

from training.annotate.pipeline import STAGES, AnnotateConfig, VideoResult, annotate_video
from training.annotate.records import (
    DUPLICATE_ID,
    INTERNAL_ERROR,
    WORKER_CRASHED,
    Failure,
    VideoTask,
    read_tasks,
    safe_name,
)
from training.atomic import write_json_atomic, write_text_atomic
from training.workpool import MAX_CRASHES, Scale, run_tasks, start_ray


@dataclass
class Summary:
    """Totals over the output folder (``records``/``failures``) and this run's work and timings."""

    videos: int = 0  # non-blank input lines
    records: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    done_now: int = 0  # videos processed by this run
    skipped: int = 0  # already finished before this run
    phrases: int = 0
    phrases_without_mask: int = 0
    tracks: int = 0
    frames: int = 0
    stage_seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    wall_seconds: float = 0.0
    workers: int = 1

    def lines(self) -> list[str]:
        """Human-readable summary."""
        minutes = self.wall_seconds / 60
        rate = self.done_now / minutes if minutes > 0 else 0.0
        out = [
            f"videos {self.videos}: {self.records} annotated, {sum(self.failures.values())} failed, "
            f"{self.skipped} already done before this run",
            f"phrases {self.phrases}: {self.tracks} tracked, {self.phrases_without_mask} without a mask",
            f"time {self.wall_seconds:.1f} s for {self.done_now} videos ({rate:.1f} videos/minute, "
            f"{self.workers} workers)",
        ]
        out.append(f"stage time summed over workers, and decoded video frames per second of it ({self.frames} frames):")
        for stage, seconds in self.stage_seconds.items():
            if seconds > 0:
                out.append(f"  {stage:8s} {seconds:7.2f} s  {self.frames / seconds:7.0f} frames/s")
        out += [f"  failure '{reason}': {count}" for reason, count in sorted(self.failures.items())]
        return out


def process_task(task: VideoTask, config: AnnotateConfig, out: str) -> dict:
    """Annotate one video and write its files (the unit of work of a worker or a Ray task).

    Returns its stats. Any exception is recorded as an ``internal error`` failure.
    """
    folder = Path(out)
    name = safe_name(task.id)
    try:
        result = annotate_video(task, config)
    except Exception as error:  # noqa: BLE001 - one video must never stop the run
        detail = "".join(traceback.format_exception_only(type(error), error)).strip()
        result = VideoResult(task.id, failure=Failure(task.id, INTERNAL_ERROR, detail, task.video, task.line))
    stats = {
        "id": task.id, "phrases": result.phrases, "phrases_without_mask": result.phrases_without_mask,
        "tracks": result.tracks, "frames": result.frames, "seconds": result.seconds,
    }
    write_json_atomic(folder / "stats" / f"{name}.json", stats)
    if result.record is not None:
        (folder / "failures" / f"{name}.json").unlink(missing_ok=True)
        write_json_atomic(folder / "records" / f"{name}.json", result.record)
    else:
        assert result.failure is not None
        write_json_atomic(folder / "failures" / f"{name}.json", result.failure.to_json())
    return stats


def run(
    input_path: str | Path,
    out: str | Path,
    config: AnnotateConfig = AnnotateConfig(),
    *,
    workers: int = 1,
    ray_address: str | None = None,
    use_ray: bool = False,
    retry_failed: bool = False,
    media_root: str | Path | None = None,
    progress: bool = True,
) -> Summary:
    """Annotate every video of ``input_path`` into ``out`` (module docstring); returns the summary."""
    began = time.perf_counter()
    folder = Path(out)
    for sub in ("records", "failures", "stats"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    order: list[str] = []
    pending: list[VideoTask] = []
    summary = Summary(workers=workers)
    for item in read_tasks(input_path, media_root):
        summary.videos += 1
        name = safe_name(item.id)
        if isinstance(item, Failure):
            if item.reason == DUPLICATE_ID:  # the id's own files belong to its first line
                write_json_atomic(folder / "failures" / f"{name}.line{item.line}.json", item.to_json())
            else:
                order.append(name)
                write_json_atomic(folder / "failures" / f"{name}.json", item.to_json())
            continue
        order.append(name)
        finished = (folder / "records" / f"{name}.json").is_file() or (
            not retry_failed and (folder / "failures" / f"{name}.json").is_file()
        )
        if finished:
            summary.skipped += 1
        else:
            pending.append(item)
    if use_ray:
        summary.workers = start_ray(ray_address, workers)
    execute = _run_ray if use_ray else _run_local
    for stats in execute(pending, config, str(folder), summary.workers, ray_address, progress):
        _add(summary, stats)
        summary.done_now += 1
    merge(folder, order)
    _count_outputs(summary, folder, order)
    summary.wall_seconds = time.perf_counter() - began
    write_json_atomic(folder / "summary.json", asdict(summary))
    return summary


def _add(summary: Summary, stats: dict) -> None:
    summary.phrases += stats["phrases"]
    summary.phrases_without_mask += stats["phrases_without_mask"]
    summary.tracks += stats["tracks"]
    summary.frames += stats["frames"]
    for stage, seconds in stats["seconds"].items():
        summary.stage_seconds[stage] = summary.stage_seconds.get(stage, 0.0) + seconds


def _count_outputs(summary: Summary, folder: Path, order: list[str]) -> None:
    """Records and failures by reason over the whole folder (earlier runs included)."""
    reasons: Counter = Counter()
    records = 0
    for name in order:
        if (folder / "records" / f"{name}.json").is_file():
            records += 1
        elif (folder / "failures" / f"{name}.json").is_file():
            reasons[json.loads((folder / "failures" / f"{name}.json").read_text(encoding="utf-8"))["reason"]] += 1
    reasons.update(
        json.loads(path.read_text(encoding="utf-8"))["reason"] for path in (folder / "failures").glob("*.line*.json")
    )
    summary.records = records
    summary.failures = dict(reasons)


def merge(out: str | Path, order: Iterable[str] | None = None) -> tuple[int, int]:
    """Write ``annotations.jsonl`` and ``failures.jsonl`` from the per-video files; ``(records, failures)``.

    ``order``: file names (``safe_name(id)``) in input order; None sorts by name.
    """
    folder = Path(out)
    names = list(order) if order is not None else sorted(p.stem for p in (folder / "records").glob("*.json"))
    records = [folder / "records" / f"{name}.json" for name in names]
    lines = [path.read_text(encoding="utf-8").strip() for path in records if path.is_file()]
    write_text_atomic(folder / "annotations.jsonl", "".join(line + "\n" for line in lines))
    annotated = {path.stem for path in records if path.is_file()}
    failed = sorted(path for path in (folder / "failures").glob("*.json") if path.stem not in annotated)
    failures = [path.read_text(encoding="utf-8").strip() for path in failed]
    write_text_atomic(folder / "failures.jsonl", "".join(line + "\n" for line in failures))
    return len(lines), len(failures)


def _run_local(
    tasks: list[VideoTask], config: AnnotateConfig, out: str, workers: int, _address: str | None, progress: bool
) -> Iterable[dict]:
    """Yield each task's stats as it finishes: in-process for one worker, else a spawn process
    pool that survives a crashed worker (``training.workpool.run_tasks``)."""
    with tqdm(total=len(tasks), desc="annotate", unit="video", disable=not progress) as bar:
        for _, stats in run_tasks(_annotate, tasks, _worker_setup, (config, out, workers), Scale(workers=workers),
                                  functools.partial(_crashed, out=out)):
            bar.update()
            yield stats


def _worker_setup(config: AnnotateConfig, out: str, workers: int) -> tuple[AnnotateConfig, str]:
    """A worker's state; one OpenCV thread per worker process when there are several (they
    already use every core)."""
    if workers > 1:
        cv2.setNumThreads(1)
    return config, out


def _annotate(state: tuple[AnnotateConfig, str], task: VideoTask) -> dict:
    return process_task(task, *state)


def _crashed(task: VideoTask, out: str) -> dict:
    message = f"the worker process died {MAX_CRASHES} times while this video was in flight"
    failure = Failure(task.id, WORKER_CRASHED, message, task.video, task.line)
    write_json_atomic(Path(out) / "failures" / f"{safe_name(task.id)}.json", failure.to_json())
    return {"id": task.id, "phrases": 0, "phrases_without_mask": 0, "tracks": 0, "frames": 0,
            "seconds": dict.fromkeys(STAGES, 0.0)}


def _run_ray(
    tasks: list[VideoTask], config: AnnotateConfig, out: str, workers: int, _address: str | None, progress: bool
) -> Iterable[dict]:
    """The same ``process_task`` as Ray tasks on the cluster ``start_ray`` joined, ``workers`` CPUs;
    Ray retries the task of a dead worker. Leaves the cluster (a local one stops) when done."""
    import ray

    remote = ray.remote(max_retries=MAX_CRASHES)(process_task)
    in_flight_limit = 2 * workers
    queue = list(reversed(tasks))
    running: dict = {}
    bar = tqdm(total=len(tasks), desc="annotate (ray)", unit="video", disable=not progress)
    try:
        while queue or running:
            while queue and len(running) < in_flight_limit:
                task = queue.pop()
                running[remote.remote(task, config, out)] = task
            done, _ = ray.wait(list(running), num_returns=1)
            for reference in done:
                task = running.pop(reference)
                try:
                    yield ray.get(reference)
                except ray.exceptions.RayError:
                    yield _crashed(task, out)
                bar.update()
    finally:
        bar.close()
        ray.shutdown()
