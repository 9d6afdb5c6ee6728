"""The training set of a run: the config's data files, read by the real-format readers."""

from __future__ import annotations

from dataclasses import replace

from torch.utils.data import ConcatDataset, Dataset, Subset

from pite_ros.types import Example

from training.datasets import (
    ConversationDataset,
    DenseCaptionDataset,
    GroundingDataset,
    LocalizedNarrativesDataset,
    MultipleChoiceDataset,
    RecordDataset,
    SkipReport,
    TrajectoryCaptionDataset,
    merged_report,
)
from training.datasets.frame_cache import FrameCache
from training.datasets.stage2 import spread_point_indices
from training.trainer.config import ConfigError, TrainConfig

READERS: dict[str, type[RecordDataset]] = {
    "localized_narratives": LocalizedNarrativesDataset,
    "pite143k": TrajectoryCaptionDataset,
    "conversations": ConversationDataset,
    "grounding": GroundingDataset,
    "dense_captions": DenseCaptionDataset,
    "mcq": MultipleChoiceDataset,
}


class PointSubset(Dataset):
    """Trajectories with ``num_points`` of each phrase's P points, evenly spread over the P.

    Annotation may track more points per object than a model predicts; taking every k-th of
    a spread set keeps the subset spread. Fewer points than the model needs is an error.
    """

    def __init__(self, data: Dataset, num_points: int) -> None:
        self.data = data
        self.num_points = num_points

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Example:
        example = self.data[index]
        subsets = []
        for target in example.trajectories:
            try:
                keep = spread_point_indices(target.points.shape[1], self.num_points)
            except ValueError as error:
                raise ValueError(f"example {example.id}: {error}") from None
            subsets.append(replace(target, points=target.points[:, keep], visible=target.visible[:, keep]))
        example.trajectories = subsets
        return example


def build_training_set(
    config: TrainConfig, image_size: int, num_frames: int, num_points: int
) -> tuple[Dataset, SkipReport]:
    """All of the config's files as one map-style dataset, and what their readers skipped.

    Stage 1 data has one frame per example (PiTe: ``z = {z_1}``); video readers sample
    ``num_frames``. With ``frame_cache_mb`` every reader shares one ``FrameCache``. A file that cannot be opened stops the run with its name: a missing
    training file is a config error, unlike a bad record, which is skipped and counted.
    """
    readers: list[RecordDataset] = []
    for index, spec in enumerate(config.data):
        path = config.resolve(spec.path)
        if not path.is_file():
            raise ConfigError(f"{config.source}: data[{index}].path {path} does not exist")
        reader_class = READERS[spec.format]
        options = {"image_size": image_size}
        if reader_class is not LocalizedNarrativesDataset:
            options["num_frames"] = num_frames
        readers.append(reader_class(path, **options))
    if config.frame_cache_mb:
        cache = FrameCache(config.frame_cache_mb * 2**20)
        for reader in readers:
            reader.frame_cache = cache
    report = merged_report(readers)
    parts: list[Dataset] = [
        Subset(reader, range(min(len(reader), config.max_examples))) if config.max_examples else reader
        for reader in readers
        if len(reader)
    ]
    if not parts:
        raise ConfigError(f"{config.source}: no usable examples in the data files ({report.summary()})")
    return PointSubset(ConcatDataset(parts), num_points), report


def clip_groups(dataset: Dataset, max_examples: int = 0) -> list[int]:
    """A group id per index of ``build_training_set``'s dataset: the same id for the examples
    that read the same frames (media, window and frame count), whichever file they come from.
    The grouped sampler keeps them together so that ``share_clips`` rows can share them.
    ``max_examples`` > 0 splits a clip's examples, in index order, into groups of at most that
    many: more clips meet in a batch (a less correlated gradient), each shared by fewer rows."""
    ids: dict[tuple, int] = {}
    seen: dict[tuple, int] = {}
    groups = []
    parts = dataset.data.datasets if isinstance(dataset, PointSubset) else [dataset]
    for part in parts:
        reader, indices = (part.dataset, part.indices) if isinstance(part, Subset) else (part, range(len(part)))
        for index in indices:
            item = reader.items[index][1]
            clip = (str(item.media), item.window, item.frames)
            rank = seen[clip] = seen.get(clip, -1) + 1
            groups.append(ids.setdefault((clip, rank // max_examples if max_examples else 0), len(ids)))
    return groups
