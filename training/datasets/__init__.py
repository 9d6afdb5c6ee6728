"""Readers that turn the three training stages' JSONL records into ``pite_ros.types.Example``.

Map-style torch Datasets with records validated up front (see ``base``); every bad record
is skipped and counted in the dataset's ``report`` (a ``SkipReport``).
"""

from training.datasets.base import Prepared, RecordDataset, read_jsonl
from training.datasets.layout import STAGE_READERS, merged_report, open_stage
from training.datasets.report import RecordError, SkipExample, SkipReport
from training.datasets.stage1 import LocalizedNarrativesDataset
from training.datasets.stage2 import TrajectoryCaptionDataset, resample_trajectory
from training.datasets.stage3 import (
    ConversationDataset,
    DenseCaptionDataset,
    GroundingDataset,
    MultipleChoiceDataset,
)

__all__ = [
    "ConversationDataset",
    "DenseCaptionDataset",
    "GroundingDataset",
    "LocalizedNarrativesDataset",
    "MultipleChoiceDataset",
    "Prepared",
    "RecordDataset",
    "RecordError",
    "STAGE_READERS",
    "SkipExample",
    "SkipReport",
    "TrajectoryCaptionDataset",
    "merged_report",
    "open_stage",
    "read_jsonl",
    "resample_trajectory",
]
