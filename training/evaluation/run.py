"""Running a model over eval sets: ``run_evaluation(engine, sources, options) -> EvalReport``.

What ``pite-eval`` does, as a library call:

1. Open every source with its reader (``training.evaluation.sources``) at the engine's frame
   count and image size; bad records are skipped and counted by the readers. ``limit`` keeps
   the first examples of each file.
2. In shards of ``shard_size`` examples (a multiple of ``batch_size``; file order, record
   order: deterministic), in this process or spread over worker processes or Ray
   (``training.workpool``; each worker loads its own engine with ``load``) and, with a
   ``work_dir``, each shard's result kept there so that a killed run rerun with the same
   settings answers only the shards it had not finished; then, in batches of ``batch_size``
   examples, decode the frames (a video that fails to decode now is counted as the readers count it), ask each
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
4. Score with ``evaluate_predictions`` over the shards' items in shard order (the same items
   in the same order however many workers answered them: the figures are those of one
   process) and add ``meta``: engine, data, counts, seconds, skipped records, failures, scale.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from tqdm import tqdm

from pite_ros.engine.base import Engine, answers_from_engine
from pite_ros.types import AnswerResult, Example, PhraseTrack
from pite_ros.video import VideoReadError
from training import plainjson
from training.datasets import Prepared, RecordDataset, merged_report
from training.datasets.report import UNREADABLE_VIDEO, RecordError
from training.datasets.stage2 import spread_point_indices
from training.evaluation.evaluate import EvalItem, evaluate_predictions
from training.evaluation.report import EvalReport, TaskSection
from training.evaluation.sources import EVAL_TASKS, FORMATS, Source, open_source, read_records, references
from training.evaluation.teacher_forced import teacher_forced_trajectories
from training.evaluation.text import normalize_answer
from training.evaluation.trajectory import DEFAULT_PCK_THRESHOLD
from training.workpool import Scale, ShardCodec, ShardStore, run_tasks

if TYPE_CHECKING:
    from pite_ros.model.modeling import PiteForConditionalGeneration
    from pite_ros.model.processor import PiteProcessor

GENERATED = "trajectory_generated"
TEACHER_FORCED = "trajectory_teacher_forced"
FAILED = "failed"
WORKER_CRASHED = "worker crashed"
SHARD_SIZE = 64  # examples per shard (rounded up to a multiple of the batch size)
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
    shard_size: int = SHARD_SIZE  # examples per unit of work (of a worker; kept in ``work_dir``)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tasks) - set(EVAL_TASKS))
        if unknown or not self.tasks:
            raise ValueError(f"tasks must be a non-empty subset of {', '.join(EVAL_TASKS)}, got unknown {unknown}")
        if self.batch_size < 1 or self.shard_size < 1 or (self.limit is not None and self.limit < 1):
            raise ValueError("batch_size, shard_size and limit must be positive")

    @property
    def examples_per_shard(self) -> int:
        """``shard_size`` rounded up to whole batches, so that the batches are those of one run."""
        return -(-self.shard_size // self.batch_size) * self.batch_size

    def settings(self) -> dict:
        """What the results depend on (not ``progress``): a shard folder's settings."""
        return {k: v for k, v in asdict(self).items() if k != "progress"}


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


def _decode(job: _Job) -> Example | Exception:
    """The example's frames, or the error when the video no longer decodes."""
    try:
        return job.dataset.load(job.prepared)
    except (VideoReadError, cv2.error) as error:
        return error


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


@dataclass
class Answers:
    """What answering some examples gave: items, extra counts, failures, and the videos that no
    longer decode (``(source, file, line, message)``, counted in their readers' reports when
    the shards are put together). A worker returns it (pickled between processes); a kept shard
    is its JSON (``to_json``), which a rerun reads back exactly (``from_json``)."""

    items: list[EvalItem] = field(default_factory=list)
    forced: list[EvalItem] = field(default_factory=list)
    extra: dict[str, Counter] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)
    failed: int = 0
    unreadable: list[tuple[str, str, int, str]] = field(default_factory=list)

    def count(self, section: str, reason: str, number: int = 1) -> None:
        """Add ``number`` items of ``section`` left out for ``reason`` (shown in the section's counts)."""
        if number:
            self.extra.setdefault(section, Counter())[reason] += number

    def fail(self, job: _Job, sections: list[str], step: str, error: Exception | str) -> None:
        """Count one example that raised in ``step``; ``sections``: one entry per item it would have given."""
        self.failed += 1
        for section in sections:
            self.count(section, FAILED)
        error_text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"[:300]
        self.failures.append({"id": job.prepared.id, "file": f"{job.source.path}:{job.line}", "step": step,
                              "error": error_text})

    def to_json(self) -> bytes:
        """These answers as JSON (``training.plainjson``: arrays and tuples come back exactly)."""
        return plainjson.dumps({
            "items": [[item.task, item.prediction, item.reference] for item in self.items],
            "forced": [[item.task, item.prediction, item.reference] for item in self.forced],
            "extra": self.extra, "failures": self.failures, "failed": self.failed, "unreadable": self.unreadable,
        })

    @classmethod
    def from_json(cls, data: bytes) -> Answers:
        """The answers ``to_json`` wrote; ValueError, KeyError or TypeError on other bytes."""
        fields = plainjson.loads(data)
        return cls(items=[EvalItem(*item) for item in fields["items"]],
                   forced=[EvalItem(*item) for item in fields["forced"]],
                   extra={section: Counter(counts) for section, counts in fields["extra"].items()},
                   failures=[dict(failure) for failure in fields["failures"]], failed=int(fields["failed"]),
                   unreadable=[tuple(entry) for entry in fields["unreadable"]])

    def add(self, other: Answers) -> None:
        """Append ``other`` (the next shard) to these."""
        self.items += other.items
        self.forced += other.forced
        for section, counts in other.extra.items():
            self.extra.setdefault(section, Counter()).update(counts)
        self.failures += other.failures
        self.failed += other.failed
        self.unreadable += other.unreadable


ANSWERS_JSON = ShardCodec(".json", Answers.to_json, Answers.from_json)  # a kept shard of pite-eval


class _Run:
    """One evaluation: the readers opened, the jobs, and what answering them gave so far (``total``)."""

    def __init__(self, engine: Engine, options: EvalOptions) -> None:
        self.engine = engine
        self.options = options
        self.opened: list[tuple[Source, RecordDataset]] = []
        self.jobs: list[_Job] = []
        self.total = Answers()  # the plan's counts, then every shard's answers in shard order
        self.teacher_model, self.forced_reason = _teacher_model(engine, options)

    def shards(self) -> list[tuple[int, int, int]]:
        """``(index, start, end)`` of each shard of ``jobs``."""
        size = self.options.examples_per_shard
        return [(i, start, min(start + size, len(self.jobs))) for i, start in enumerate(range(0, len(self.jobs), size))]

    def answer(self, start: int, end: int) -> Answers:
        """Answer ``jobs[start:end]`` in batches: the shard's own answers (``total`` is not touched)."""
        answers = Answers()
        for chunk in _chunks(self.jobs[start:end], self.options.batch_size):
            self.batch(chunk, answers)
        return answers

    def crashed(self, start: int, end: int) -> Answers:
        """A shard whose worker kept dying: each of its examples failed, named."""
        answers = Answers()
        for job in self.jobs[start:end]:
            answers.fail(job, [_section_of(task) for task, _ in job.targets], "answer",
                         f"{WORKER_CRASHED}: the worker process died while answering its shard")
        return answers

    def replay_unreadable(self) -> None:
        """Count the videos that no longer decoded in their readers' reports."""
        datasets = {str(source): dataset for source, dataset in self.opened}
        for source, path, line, message in self.total.unreadable:
            datasets[source].report.skip(path, line, RecordError(UNREADABLE_VIDEO, "video", message))

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
                    self.total.count(section, POINTS_DIFFER, len(targets) - len(kept))
                if kept:
                    jobs.append(_Job(source, dataset, line, prepared, kept))
        self.jobs = jobs
        return jobs

    def batch(self, jobs: list[_Job], answers: Answers) -> None:
        """Decode, answer and (for stage-2 examples) teacher-force one batch of jobs into ``answers``."""
        ready = []
        for job in jobs:
            example = _decode(job)
            if isinstance(example, Exception):
                answers.unreadable.append((str(job.source), str(job.dataset.path), job.line, str(example)))
            else:
                ready.append((job, example))
        if not ready:
            return
        results = _answer(self.engine, [example for _, example in ready], self.options.max_new_tokens)
        for (job, _), result in zip(ready, results, strict=True):
            if isinstance(result, Exception):
                answers.fail(job, [_section_of(task) for task, _ in job.targets], "answer", result)
            else:
                answers.items.extend(_items(job, result))
        if self.teacher_model is not None:
            self.teacher_force([(job, example) for job, example in ready if _phrases(job)], answers)

    def teacher_force(self, ready: list[tuple[_Job, Example]], answers: Answers) -> None:
        """Teacher-forced trajectories of a batch into ``answers``; a failing batch is retried one by one."""
        if not ready:
            return
        try:
            tracks = teacher_forced_trajectories(*self.teacher_model, [example for _, example in ready])
        except Exception:  # noqa: BLE001 - retried one by one to find the example that fails
            tracks = []
            for job, example in ready:
                try:
                    tracks.append(teacher_forced_trajectories(*self.teacher_model, [example])[0])
                except Exception as error:  # noqa: BLE001 - counted with the example's id
                    answers.fail(job, [TEACHER_FORCED] * len(_phrases(job)), "teacher forcing", error)
                    tracks.append(None)
        for (job, _), predicted in zip(ready, tracks, strict=True):
            if predicted is not None:
                answers.forced.extend(EvalItem("trajectory", p, r) for p, r in zip(predicted, _phrases(job), strict=True))

    def report(self) -> EvalReport:
        """Sections in ``EVAL_TASKS`` order, for tasks with items or extra counts; trajectory as
        its two named sections (teacher-forced whenever the generated one is there)."""
        options = self.options
        scored = evaluate_predictions(self.total.items, meteor=options.meteor, pck_threshold=options.pck_threshold,
                                      num_frames=int(self.engine.num_frames))
        forced = evaluate_predictions(self.total.forced, meteor=False, pck_threshold=options.pck_threshold)
        report = EvalReport()
        for task in EVAL_TASKS:
            name = _section_of(task)
            if task in scored.sections or name in self.total.extra:
                report.add(self._section(scored, task, name))
            if name == GENERATED and name in report.sections and options.teacher_forced:
                report.add(self._section(forced, task, TEACHER_FORCED))
        return report

    def _section(self, origin: EvalReport, task: str, name: str) -> TaskSection:
        section = origin.sections.get(task) or TaskSection(name)
        section.task = name
        section.counts.update(self.total.extra.get(name, {}))
        if name == GENERATED:
            section.notes.append(GENERATED_NOTE)
        elif name == TEACHER_FORCED and self.forced_reason is not None:
            section.unavailable.update({m: self.forced_reason for m in ("L1", f"PCK@{self.options.pck_threshold:g}")})
        elif name == TEACHER_FORCED:
            section.notes.append(TEACHER_FORCED_NOTE)
        return section


def _teacher_model(
    engine: Engine, options: EvalOptions
) -> tuple[tuple[PiteForConditionalGeneration, PiteProcessor] | None, str | None]:
    """The torch model and its processor for teacher forcing, or None and the reason it is not run."""
    if not options.teacher_forced:
        return None, None
    model, processor = getattr(engine, "model", None), getattr(engine, "processor", None)
    if model is None or processor is None or not hasattr(model, "project"):
        return None, f"needs the torch model; the {type(engine).__name__} runs no model forward on a given caption"
    return (model, processor), None


def _given(run: _Run) -> _Run:
    """The in-process "worker": the run itself, with the engine it was given."""
    return run


def _worker_run(load: Callable[[], Engine], sources: Sequence[Source], options: EvalOptions) -> _Run:
    """A worker's own engine (``load``) and plan (the same jobs: planning is deterministic)."""
    run = _Run(load(), options)
    run.plan(sources)
    return run


def _answer_shard(run: _Run, shard: tuple[int, int, int]) -> Answers:
    """Answer one shard (a worker's unit of work)."""
    return run.answer(shard[1], shard[2])


def run_evaluation(
    engine: Engine,
    sources: Sequence[Source],
    options: EvalOptions = EvalOptions(),
    *,
    meta: dict | None = None,
    scale: Scale = Scale(),
    load: Callable[[], Engine] | None = None,
    work_dir: str | Path | None = None,
) -> EvalReport:
    """Evaluate ``engine`` on ``sources`` (see the module docstring); ``meta`` is added to the report's.

    ``scale``: where the shards are answered; more than one worker (or Ray) needs ``load``, a
    picklable function that loads the same engine in a worker. ``work_dir``: the shards' results
    are kept there (``ShardStore``; its settings are the options, the data, the engine and
    ``meta``'s weights_sha256) and reused by a rerun (``pite-eval`` deletes it once the report
    is written).
    """
    began = time.perf_counter()
    run = _Run(engine, options)
    jobs = run.plan(sources)
    shards = run.shards()
    store = None
    if work_dir is not None:
        store = ShardStore(work_dir, {**options.settings(), "sources": [str(s) for s in sources],
                                      "examples": len(jobs), "engine": engine.name,
                                      "weights_sha256": (meta or {}).get("weights_sha256")}, ANSWERS_JSON)
    done = {} if store is None else store.kept(index for index, _, _ in shards)
    pending = [shard for shard in shards if shard[0] not in done]
    parallel = scale.use_ray or scale.workers > 1
    if parallel and load is None:
        raise ValueError("more than one worker (or Ray) needs load: a function that loads the engine in a worker")
    setup, setup_args = (_worker_run, (load, sources, options)) if parallel else (_given, (run,))
    crashed: set[int] = set()

    def on_crash(shard: tuple[int, int, int]) -> Answers:
        crashed.add(shard[0])  # not kept: a rerun tries it again
        return run.crashed(shard[1], shard[2])

    answering = time.perf_counter()
    reused = sum(end - start for index, start, end in shards if index in done)
    with tqdm(total=len(jobs), initial=reused, desc="pite-eval", unit="example", disable=not options.progress) as bar:
        for (index, start, end), answers in run_tasks(_answer_shard, pending, setup, setup_args, scale, on_crash):
            done[index] = answers
            if store is not None and index not in crashed:
                store.save(index, answers)
            bar.update(end - start)
    answered = time.perf_counter() - answering
    for index, _, _ in shards:
        run.total.add(done[index])
    run.replay_unreadable()
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
        "failed": {"count": run.total.failed, "first": run.total.failures[:_KEEP_FAILURES]},
        "scale": {"workers": scale.workers, "ray": scale.use_ray, "shards": len(shards),
                  "shards_reused": len(shards) - len(pending),
                  "shards_unreadable": 0 if store is None else store.unreadable},
        "seconds": {"total": round(time.perf_counter() - began, 3), "answering": round(answered, 3),
                    "per_example": round(answered / len(jobs), 4) if jobs else None},
    }
    return report
