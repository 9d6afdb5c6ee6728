"""Referring-segmentation back-ends of stage 2, by name: ``classical``, ``gt``, ``clipseg``,
``owlv2-sam``, ``grounding-dino-sam`` (see each module)."""

from training.annotate.segmenters import classical, groundtruth, hf  # noqa: F401  (register the back-ends)
from training.annotate.segmenters.base import ClipContext, Segmenter, available, build_segmenter, register

__all__ = ["ClipContext", "Segmenter", "available", "build_segmenter", "register"]
