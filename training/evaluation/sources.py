"""Which eval files ``pite-eval`` reads, with which reader, and what each example is scored against.

An eval set is either a folder laid out as ``pite-synth`` writes it (``stage2.jsonl``,
``stage3_{conversations,grounding,dense,mcq}.jsonl``, any subset) or explicit
``FORMAT=PATH`` pairs (``FORMAT`` one of ``FORMATS``); a bare path to a file with one of the
folder's file names is read as that format.

The readers (``training.datasets``) validate records and build the prompt; the metrics need
the reference fields themselves (options, answer index, timestamps, events), which a
``Prepared`` does not keep, so ``read_records`` re-reads the lines the reader accepted
(``dataset.items`` holds each example's line number). What each format is scored as:

- ``conversations`` -> ``open_qa``: ``answer`` is the gpt turn as the reader cleaned it
  (and ``kind``, the turn's entry of the record's ``kinds`` list, when it has one).
- ``grounding`` -> ``grounding``: the record's ``timestamps`` and the clip's ``duration``
  (and the record's ``kind``, pite-synth's event type, if any).
- ``dense`` -> ``dense_caption``: the record's ``events`` and the clip's ``duration``.
- ``mcq`` -> ``mcq`` (``options``, ``answer``, and the record's ``kind`` if any) and, when
  the record has ``timestamps``, also ``gqa`` (the same plus ``timestamps``, ``duration``):
  one answer scored both ways.
- ``stage2`` -> ``trajectory``, one per phrase: its ``trajectory`` / ``visibility`` resampled
  to the model's N frames by the reader, and its text as ``phrase`` (for matching). A folder's
  ``stage2_{N}f.jsonl`` (``pite-synth --extra-num-frames N``) is read instead of its
  ``stage2.jsonl`` for a model of N frames: resampling is linear in time, and a mover that
  stops, starts or leaves between two annotated frames is not where the line puts it.

``duration`` is the reader's (the record's field, else the video's length), so a record
without one is still scored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from training.datasets import (
    ConversationDataset,
    DenseCaptionDataset,
    GroundingDataset,
    MultipleChoiceDataset,
    Prepared,
    RecordDataset,
    TrajectoryCaptionDataset,
)
from training.datasets.base import ImageSize
from training.datasets.layout import stage2_file_name


@dataclass(frozen=True)
class Format:
    """One eval file kind: its reader, its file name in a ``pite-synth`` folder, the tasks it feeds."""

    reader: type[RecordDataset]
    file_name: str
    tasks: tuple[str, ...]


FORMATS: dict[str, Format] = {
    "conversations": Format(ConversationDataset, "stage3_conversations.jsonl", ("open_qa",)),
    "mcq": Format(MultipleChoiceDataset, "stage3_mcq.jsonl", ("mcq", "gqa")),
    "grounding": Format(GroundingDataset, "stage3_grounding.jsonl", ("grounding",)),
    "dense": Format(DenseCaptionDataset, "stage3_dense.jsonl", ("dense_caption",)),
    "stage2": Format(TrajectoryCaptionDataset, "stage2.jsonl", ("trajectory",)),
}
EVAL_TASKS = ("open_qa", "mcq", "gqa", "grounding", "dense_caption", "trajectory")


@dataclass(frozen=True)
class Source:
    """One eval file and its format name (a key of ``FORMATS``)."""

    format: str
    path: Path
    folder: Path | None = None  # the --data folder it was found in (None: a file named as such)

    def at_frame_count(self, frames: int) -> Source:
        """This source for a model of ``frames`` frames: a folder's stage-2 annotation at that N
        (``stage2_file_name``) if the folder has one, else itself."""
        if self.format != "stage2" or self.folder is None:
            return self
        exact = self.folder / stage2_file_name(frames)
        return Source(self.format, exact) if exact.is_file() else self

    def __str__(self) -> str:
        return f"{self.format}={self.path}"


class SourceError(ValueError):
    """A ``--data`` entry that names no readable eval file (the message says which and why)."""


def resolve_sources(specs: list[str]) -> list[Source]:
    """``--data`` entries -> sources, in the order given; a folder's files in ``FORMATS`` order."""
    by_name = {fmt.file_name: name for name, fmt in FORMATS.items()}
    known = ", ".join(FORMATS)
    sources: list[Source] = []
    for spec in specs:
        name, sep, rest = spec.partition("=")
        if sep and name in FORMATS:
            path = Path(rest)
            if not path.is_file():
                raise SourceError(f"{spec}: {path} is not a file")
            sources.append(Source(name, path))
            continue
        path = Path(spec)
        if path.is_dir():
            found = [Source(n, path / f.file_name, path) for n, f in FORMATS.items() if (path / f.file_name).is_file()]
            if not found:
                names = ", ".join(f.file_name for f in FORMATS.values())
                raise SourceError(f"{path}: folder holds none of {names}")
            sources.extend(found)
        elif path.is_file() and path.name in by_name:
            sources.append(Source(by_name[path.name], path))
        elif path.is_file():
            raise SourceError(f"{spec}: cannot tell the format from the name; pass FORMAT=PATH, FORMAT one of {known}")
        else:
            raise SourceError(f"{spec}: no such file or folder (or an unknown FORMAT before '=': use one of {known})")
    return sources


def open_source(source: Source, *, num_frames: int, image_size: ImageSize) -> RecordDataset:
    """The reader of ``source``, sampling ``num_frames`` frames at ``image_size`` (the model's)."""
    return FORMATS[source.format].reader(source.path, image_size=image_size, num_frames=num_frames)


def read_records(dataset: RecordDataset) -> dict[int, dict]:
    """The raw JSON record of every line the reader accepted, by 1-based line number."""
    wanted = {line for line, _ in dataset.items}
    records = {}
    with dataset.path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if number in wanted:
                records[number] = json.loads(line)
    return records


def references(fmt: str, prepared: Prepared, record: dict, turn: int = 0) -> list[tuple[str, dict]]:
    """``(task, reference)`` pairs one example is scored against (see the module table).

    ``turn``: the example's place among its record's examples (a conversation's gpt turn),
    which picks its question kind from the record's ``kinds`` list; an mcq or grounding
    record's ``kind`` is its own. The kind is passed as the record has it (None when absent);
    ``evaluate_predictions`` counts only string kinds, so records without are scored the same.
    """
    duration = prepared.duration
    if fmt == "conversations":
        kinds = record.get("kinds")
        kind = kinds[turn] if isinstance(kinds, list) and turn < len(kinds) else None
        return [("open_qa", {"answer": prepared.response, "kind": kind})]
    if fmt == "grounding":
        return [("grounding", {"timestamps": record["timestamps"], "duration": duration, "kind": record.get("kind")})]
    if fmt == "dense":
        return [("dense_caption", {"events": record["events"], "duration": duration})]
    if fmt == "mcq":
        choice = {"options": record["options"], "answer": record["answer"]}
        pairs = [("mcq", {**choice, "kind": record.get("kind")})]
        if record.get("timestamps") is not None:
            pairs.append(("gqa", {**choice, "timestamps": record["timestamps"], "duration": duration}))
        return pairs
    if fmt == "stage2":
        return [
            ("trajectory", {"trajectory": t.points, "visibility": t.visible,
                            "phrase": prepared.response[t.start : t.end]})
            for t in prepared.trajectories
        ]
    raise ValueError(f"unknown format {fmt!r}")
