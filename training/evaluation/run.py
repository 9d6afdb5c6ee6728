"""Running a model over eval sets: ``run_evaluation(engine, sources, options) -> EvalReport``.

What ``pite-eval`` does, as a library call:

1. Open every source with its reader (``training.evaluation.sources``) at the engine's frame
   count and image size; bad records are skipped and counted by the readers. ``limit`` keeps
   the first examples of each file.
2. In batches of ``batch_size`` examples (file order, record order: deterministic), decode the
   frames (a video that fails to decode now is counted as the readers count it), ask each
   example's prompt (``pite_ros.engine.base.answers_from_engine``: the engine's own batched loop when
   it has one), and turn (answer, reference) into ``EvalItem``s. A batch that raises is
   retried one example at a time; an example that still raises is counted as ``failed`` in
   its task sections and listed with its id in ``meta["failed"]``, and the run goes on
   (failed examples are left out of the metrics).
3. Trajectories are scored twice, as two sections:
   - ``trajectory_generated``: from the model's answer to the caption prompt; each
     ground-truth phrase takes the trajectory of the answer's phrase with the same normalised
     text (``normalize_answer``; each answer phrase used once, in order); a phrase the model
     did not name is ``unparseable``: all misses for PCK, left out of L1.
   - ``trajectory_teacher_forced``: the model reads the ground-truth caption and each
     ground-truth phrase gets the trajectory predicted at its own tokens
     (``teacher_forced``): trajectory quality independent of wording. It needs the torch
     model (the engine's ``model``); other engines report it unavailable.
4. Score with ``evaluate_predictions`` and add ``meta``: engine, data, counts, seconds,
   skipped records, failures.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from tqdm import tqdm

from pite_ros.engine.base import Engine, answers_from_engine
from pite_ros.types import AnswerResult, Example, PhraseTrack
from pite_ros.video import VideoReadError
from training.datasets import Prepared, RecordDataset, merged_report
from training.datasets.report import UNREADABLE_VIDEO, RecordError
from training.datasets.stage2 import spread_point_indices
from training.evaluation.evaluate import EvalItem, evaluate_predictions
from training.evaluation.report import EvalReport, TaskSection
from training.evaluation.sources import EVAL_TASKS, FORMATS, Source, open_source, read_records, references
from training.evaluation.teacher_forced import teacher_forced_trajectories
from training.evaluation.text import normalize_answer
from training.evaluation.trajectory import DEFAULT_PCK_THRESHOLD

if TYPE_CHECKING:
    from pite_ros.model.modeling import PiteForConditionalGeneration

GENERATED = "trajectory_generated"
TEACHER_FORCED = "trajectory_teacher_forced"
FAILED = "failed"
POINTS_DIFFER = "points per trajectory differ from the model's"
_KEEP_FAILURES = 20
GENERATED_NOTE = (
    "each ground-truth phrase is matched to the phrase of the model's caption with the same normalised "
    "text; a phrase the model did not name is unparseable (all misses for PCK, left out of L1)"
)
TEACHER_FORCED_NOTE = (
    "the model reads the ground-truth caption; each phrase's trajectory is predicted at its own tokens "
    "(mean hidden state, as in generation): trajectory quality independent of wording"
)


@dataclass(frozen=True)
class EvalOptions:
    """What to evaluate and how (the ``pite-eval`` flags)."""

    tasks: tuple[str, ...] = EVAL_TASKS
    limit: int | None = None  # first examples of each file
    batch_size: int = 8
    max_new_tokens: int | None = None  # None: the model's own default
    meteor: bool = True
    teacher_forced: bool = True
    pck_threshold: float = DEFAULT_PCK_THRESHOLD
    progress: bool = True

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(EVAL_TASKS))
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {', '.join(EVAL_TASKS)}, got unknown {unknown}")
        if self.batch_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("batch_size and limit must be positive")



@dataclass
class _Job:
    """One example to ask: where it comes from and what its answer is scored against."""

    source: Source
    dataset: RecordDataset
    line: int
    prepared: Prepared
    targets: list[tuple[str, dict]]


def engine_setting(engine: Engine, name: str) -> object | None:
    """A setting of the engine's model: its ``model.config`` (torch), its ``backend.config``
    (ONNX), else the engine's own attribute; None when none of them says."""
    for holder in (getattr(engine, "model", None), getattr(engine, "backend", None)):
        value = getattr(getattr(holder, "config", None), name, None)
        if value:
            return value
    return getattr(engine, name, None) or None


def model_setting(engine: Engine, name: str) -> int | None:
    """``image_size`` or ``num_points`` of the engine's model, None when the engine does not say."""
    value = engine_setting(engine, name)
    return int(value) if value else None


def time_token_decoding(engine: Engine) -> str | None:
    """How the engine's model picks temporal tokens (``PiteConfig.time_token_decoding``)."""
    value = engine_setting(engine, "time_token_decoding")
    return str(value) if value else None


def _chunks(jobs: list[_Job], size: int) -> Iterator[list[_Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _decode(job: _Job) -> Example | None:
    """The example's frames, or None (counted in its reader's report) when the video no longer decodes."""
    try:
        return job.dataset.load(job.prepared)
    except (VideoReadError, cv2.error) as error:
        job.dataset.report.skip(str(job.dataset.path), job.line, RecordError(UNREADABLE_VIDEO, "video", str(error)))
        return None


def _answer(engine: Engine, examples: list[Example], max_new_tokens: int | None) -> list[AnswerResult | Exception]:
    """One answer (or the exception it raised) per example; a failing batch is retried one by one."""

    def ask(batch: list[Example]) -> list[AnswerResult]:
        return answers_from_engine(engine, [e.frames for e in batch], [e.prompt for e in batch],
                            [e.duration for e in batch], max_new_tokens=max_new_tokens)

    try:
        return list(ask(examples))
    except Exception as error:  # noqa: BLE001 - one bad example must not stop the run; retried singly below
        if len(examples) == 1:
            return [error]
    results: list[AnswerResult | Exception] = []
    for example in examples:
        try:
            results.append(ask([example])[0])
        except Exception as error:  # noqa: BLE001 - counted with the example's id
            results.append(error)
    return results


def match_phrases(targets: Sequence[dict], phrases: Sequence[PhraseTrack]) -> list[Any]:
    """For each ground-truth phrase (``target["phrase"]``), the trajectory of the first unused
    predicted phrase with the same ``normalize_answer`` text (with its visibility, as a pair,
    when the model has a visibility head), else None."""
    unused = list(phrases)
    matched: list[Any] = []
    for target in targets:
        key = normalize_answer(target["phrase"])
        hit = next((p for p in unused if key and normalize_answer(p.text) == key), None)
        if hit is not None:
            unused.remove(hit)
        matched.append(None if hit is None else hit.trajectory if hit.visibility is None
                       else (hit.trajectory, hit.visibility))
    return matched


def fit_points(reference: dict, points: int | None) -> dict | None:
    """A trajectory reference with the model's ``points`` (an evenly spread subset), or None
    when it has fewer."""
    have = reference["trajectory"].shape[1]
    if points is None or have == points:
        return reference
    if have < points:
        return None
    keep = spread_point_indices(have, points)
    return {**reference, "trajectory": reference["trajectory"][:, keep],
            "visibility": None if reference.get("visibility") is None else reference["visibility"][:, keep]}


def _items(job: _Job, result: AnswerResult) -> list[EvalItem]:
    """The job's targets with the answer's predictions."""
    trajectories = iter(match_phrases([r for t, r in job.targets if t == "trajectory"], result.phrases))
    return [
        EvalItem(task, next(trajectories) if task == "trajectory" else result.text, reference)
        for task, reference in job.targets
    ]


def _section_of(task: str) -> str:
    return GENERATED if task == "trajectory" else task


def _phrases(job: _Job) -> list[dict]:
    return [reference for task, reference in job.targets if task == "trajectory"]


class _Run:
    """One evaluation: the readers opened, items, failures and extra per-section counts."""

    def __init__(self, engine: Engine, options: EvalOptions) -> None:
        self.engine = engine
        self.options = options
        self.opened: list[tuple[Source, RecordDataset]] = []
        self.items: list[EvalItem] = []
        self.forced: list[EvalItem] = []
        self.extra: dict[str, Counter] = {}
        self.failures: list[dict] = []
        self.failed = 0
        self.teacher_model, self.forced_reason = _teacher_model(engine, options)

    def count(self, section: str, reason: str, number: int = 1) -> None:
        """Add ``number`` items of ``section`` left out for ``reason`` (shown in the section's counts)."""
        if number:
            self.extra.setdefault(section, Counter())[reason] += number

    def fail(self, job: _Job, sections: list[str], step: str, error: Exception) -> None:
        """Count one example that raised in ``step``; ``sections``: one entry per item it would have given."""
        self.failed += 1
        for section in sections:
            self.count(section, FAILED)
        if len(self.failures) < _KEEP_FAILURES:
            error_text = f"{type(error).__name__}: {error}"[:300]
            self.failures.append({"id": job.prepared.id, "file": f"{job.source.path}:{job.line}", "step": step,
                                  "error": error_text})

    def plan(self, sources: Sequence[Source]) -> list[_Job]:
        """Open the sources the requested tasks need and list their examples with references.

        Frames are decoded at the model's image size and count; a folder's stage-2 annotation
        at the model's count is read when it has one (``Source.at_frame_count``). A stage-2 phrase with more
        points than the model predicts is scored on an evenly spread subset of them, as the
        trainer fits it (``spread_point_indices``); one with fewer cannot be compared: it is
        left out and counted as ``POINTS_DIFFER`` in both trajectory sections.
        """
        jobs, tasks = [], self.options.tasks
        points = model_setting(self.engine, "num_points")
        size = model_setting(self.engine, "image_size")
        frames = int(self.engine.num_frames)
        for source in sources:
            if not set(FORMATS[source.format].tasks) & set(tasks):
                continue
            source = source.at_frame_count(frames)
            dataset = open_source(source, num_frames=frames, image_size=size)
            self.opened.append((source, dataset))
            records = read_records(dataset)
            chosen = dataset.items if self.options.limit is None else dataset.items[: self.options.limit]
            turns: Counter = Counter()  # examples of each line so far: a conversation's gpt turn
            for line, prepared in chosen:
                turn = turns[line]
                turns[line] += 1
                targets = [(t, fit_points(r, points) if t == "trajectory" else r)
                           for t, r in references(source.format, prepared, records[line], turn) if t in tasks]
                kept = [(t, r) for t, r in targets if r is not None]
                for section in (GENERATED, TEACHER_FORCED):
                    self.count(section, POINTS_DIFFER, len(targets) - len(kept))
                if kept:
                    jobs.append(_Job(source, dataset, line, prepared, kept))
        return jobs

    def batch(self, jobs: list[_Job]) -> None:
        """Decode, answer and (for stage-2 examples) teacher-force one batch of jobs."""
        ready = [(job, example) for job in jobs if (example := _decode(job)) is not None]
        if not ready:
            return
        answers = _answer(self.engine, [example for _, example in ready], self.options.max_new_tokens)
        for (job, _), result in zip(ready, answers, strict=True):
            if isinstance(result, Exception):
                self.fail(job, [_section_of(task) for task, _ in job.targets], "answer", result)
            else:
                self.items.extend(_items(job, result))
        if self.teacher_model is not None:
            self.teacher_force([(job, example) for job, example in ready if _phrases(job)])

    def teacher_force(self, ready: list[tuple[_Job, Example]]) -> None:
        """Teacher-forced trajectories of a batch; a failing batch is retried one by one."""
        if not ready:
            return
        try:
            tracks = teacher_forced_trajectories(self.teacher_model, [example for _, example in ready])
        except Exception:  # noqa: BLE001 - retried one by one to find the example that fails
            tracks = []
            for job, example in ready:
                try:
                    tracks.append(teacher_forced_trajectories(self.teacher_model, [example])[0])
                except Exception as error:  # noqa: BLE001 - counted with the example's id
                    self.fail(job, [TEACHER_FORCED] * len(_phrases(job)), "teacher forcing", error)
                    tracks.append(None)
        for (job, _), predicted in zip(ready, tracks, strict=True):
            if predicted is not None:
                self.forced.extend(EvalItem("trajectory", p, r) for p, r in zip(predicted, _phrases(job), strict=True))

    def report(self) -> EvalReport:
        """Sections in ``EVAL_TASKS`` order, for tasks with items or extra counts; trajectory as
        its two named sections (teacher-forced whenever the generated one is there)."""
        options = self.options
        scored = evaluate_predictions(self.items, meteor=options.meteor, pck_threshold=options.pck_threshold,
                                      num_frames=int(self.engine.num_frames))
        forced = evaluate_predictions(self.forced, meteor=False, pck_threshold=options.pck_threshold)
        report = EvalReport()
        for task in EVAL_TASKS:
            name = _section_of(task)
            if task in scored.sections or name in self.extra:
                report.add(self._section(scored, task, name))
            if name == GENERATED and name in report.sections and options.teacher_forced:
                report.add(self._section(forced, task, TEACHER_FORCED))
        return report

    def _section(self, origin: EvalReport, task: str, name: str) -> TaskSection:
        section = origin.sections.get(task) or TaskSection(name)
        section.task = name
        section.counts.update(self.extra.get(name, {}))
        if name == GENERATED:
            section.notes.append(GENERATED_NOTE)
        elif name == TEACHER_FORCED and self.forced_reason is not None:
            section.unavailable.update({m: self.forced_reason for m in ("L1", f"PCK@{self.options.pck_threshold:g}")})
        elif name == TEACHER_FORCED:
            section.notes.append(TEACHER_FORCED_NOTE)
        return section


def _teacher_model(engine: Engine, options: EvalOptions) -> tuple[PiteForConditionalGeneration | None, str | None]:
    """The torch model for teacher forcing, or None and the reason it is not run."""
    if not options.teacher_forced:
        return None, None
    model = getattr(engine, "model", None)
    if model is None or not hasattr(model, "project"):
        return None, f"needs the torch model; the {type(engine).__name__} runs no model forward on a given caption"
    return model, None


def run_evaluation(
    engine: Engine, sources: Sequence[Source], options: EvalOptions = EvalOptions(), *, meta: dict | None = None
) -> EvalReport:
    """Evaluate ``engine`` on ``sources`` (see the module docstring); ``meta`` is added to the report's."""
    began = time.perf_counter()
    run = _Run(engine, options)
    jobs = run.plan(sources)
    answering = time.perf_counter()
    with tqdm(total=len(jobs), desc="pite-eval", unit="example", disable=not options.progress) as bar:
        for chunk in _chunks(jobs, options.batch_size):
            run.batch(chunk)
            bar.update(len(chunk))
    answered = time.perf_counter() - answering
    report = run.report()
    skipped = merged_report([dataset for _, dataset in run.opened])
    per_file = Counter(str(job.source) for job in jobs)
    report.meta = {
        **(meta or {}),
        "engine_name": engine.name,
        "num_frames": int(engine.num_frames),
        "image_size": model_setting(engine, "image_size"),
        "num_points": model_setting(engine, "num_points"),
        "time_token_decoding": time_token_decoding(engine),
        "tasks": list(options.tasks),
        "tasks_without_data": [t for t in options.tasks if _section_of(t) not in report.sections],
        "limit": options.limit,
        "batch_size": options.batch_size,
        "max_new_tokens": options.max_new_tokens,
        "data": [
            {"source": str(s), "examples_read": d.report.loaded, "records_skipped": d.report.skipped,
             "examples": per_file.get(str(s), 0)}
            for s, d in run.opened
        ],
        "examples": len(jobs),
        "skipped_records": {
            "count": skipped.skipped,
            "by_reason": dict(skipped.counts),
            "first": [str(e) for examples in skipped.examples.values() for e in examples],
        },
        "failed": {"count": run.failed, "first": run.failures},
        "seconds": {"total": round(time.perf_counter() - began, 3), "answering": round(answered, 3),
                    "per_example": round(answered / len(jobs), 4) if jobs else None},
    }
    return report
