"""Referring-segmentation back-ends of stage 2, by name: ``classical``, ``gt``, ``clipseg``,
``owlv2-sam``, ``grounding-dino-sam``, ``sam3-video``, ``sam2-video`` (see each module)."""

from training.annotate.segmenters import classical, groundtruth, hf, video  # noqa: F401  (register the back-ends)
from training.annotate.segmenters.base import (
    ClipContext,
    InstanceSegmenter,
    Segmenter,
    available,
    build_segmenter,
    register,
    segment_instances,
)

__all__ = ["ClipContext", "InstanceSegmenter", "Segmenter", "available", "build_segmenter", "register",
           "segment_instances"]
