"""Which reader reads which file of a data folder laid out as pite-synth writes it.

A folder holds ``stage1.jsonl``, ``stage2.jsonl`` and ``stage3_{conversations,grounding,
dense,mcq}.jsonl`` (any subset); ``open_stage`` returns a reader for each file of a stage
that is present, in that fixed order, so a ``ConcatDataset`` over them is deterministic.
Beside ``stage2.jsonl`` a folder may hold the same records annotated at another frame count
N, named by ``stage2_file_name`` (``pite-synth --extra-num-frames``); ``open_stage`` reads
that file for ``num_frames=N``, since resampling N' rows to N misses what moves between them.
"""

from __future__ import annotations

from pathlib import Path

from training.datasets.base import ImageSize, RecordDataset
from training.datasets.report import SkipReport
from training.datasets.stage1 import LocalizedNarrativesDataset
from training.datasets.stage2 import TrajectoryCaptionDataset
from training.datasets.stage3 import (
    ConversationDataset,
    DenseCaptionDataset,
    GroundingDataset,
    MultipleChoiceDataset,
)

STAGE_READERS: dict[int, tuple[tuple[str, type[RecordDataset]], ...]] = {
    1: (("stage1.jsonl", LocalizedNarrativesDataset),),
    2: (("stage2.jsonl", TrajectoryCaptionDataset),),
    3: (
        ("stage3_conversations.jsonl", ConversationDataset),
        ("stage3_grounding.jsonl", GroundingDataset),
        ("stage3_dense.jsonl", DenseCaptionDataset),
        ("stage3_mcq.jsonl", MultipleChoiceDataset),
    ),
}


def stage2_file_name(frames: int) -> str:
    """``stage2_{N}f.jsonl``: a folder's stage-2 records with trajectories annotated at N frames."""
    return f"stage2_{frames}f.jsonl"


def open_stage(
    folder: str | Path, stage: int, *, image_size: ImageSize = None, num_frames: int | None = None
) -> list[RecordDataset]:
    """Readers for the stage's files present in ``folder``.

    ``num_frames``: stage 2 reads the folder's records annotated at that many frames when
    it has them (``stage2_file_name``), else resamples ``stage2.jsonl`` to it (None: each
    record's N); stage 3 samples it (None: 8). Stage 1 always has one frame.
    """
    if stage not in STAGE_READERS:
        raise ValueError(f"stage must be 1, 2 or 3, got {stage}")
    readers = []
    for name, reader in STAGE_READERS[stage]:
        path = Path(folder) / name
        if stage == 2 and num_frames is not None:
            exact = path.with_name(stage2_file_name(num_frames))
            path = exact if exact.is_file() else path
        if not path.is_file():
            continue
        if stage == 1:
            readers.append(reader(path, image_size=image_size))
        elif stage == 2:
            readers.append(reader(path, image_size=image_size, num_frames=num_frames))
        else:
            readers.append(reader(path, image_size=image_size, num_frames=num_frames or 8))
    return readers


def merged_report(datasets: list[RecordDataset]) -> SkipReport:
    """One report over several readers (counts add up; examples keep their file names)."""
    report = SkipReport()
    for data in datasets:
        report.merge(data.report)
    return report
