"""The referring-segmentation interface of stage 2 and its registry of back-ends.

PiTe segments each noun phrase with a grounding model (GLaMM; docs/papers.md, PiTe-143k step
1). Here any back-end with ``segment(frames, phrase) -> masks`` can do it. A back-end that tells
the objects a phrase names apart (a video segmenter: every person of "people", each with its
own identity through the clip) also has ``instances(frames, phrase) -> [masks, ...]``, and
``segment_instances`` gives every back-end's answer in that form. Back-ends register
a factory under a name (``@register("clipseg")``) and are built by ``build_segmenter(name,
**options)``, importing heavy dependencies only when built.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class ClipContext:
    """Where the frames handed to a segmenter come from.

    ``frame_indices`` ``(T,)``: index in the video of each frame; ``source_size``: the video's
    ``(width, height)`` (frames may have been downscaled from it).
    """

    video: str
    video_id: str
    frame_indices: np.ndarray
    source_size: tuple[int, int]


@runtime_checkable
class Segmenter(Protocol):
    """Masks of the object(s) a phrase names.

    ``all_frames``: True if the back-end wants every decoded frame of the clip (cheap or
    temporal methods), False for only the N sampled frames (one model call each).
    """

    name: str
    all_frames: bool

    def segment(
        self, frames: np.ndarray, phrase: str, context: ClipContext | None = None
    ) -> np.ndarray | None:
        """``frames`` ``(T, H, W, 3)`` uint8 RGB -> masks ``(T, H, W)`` bool, or None if nothing is found."""
        ...


@runtime_checkable
class InstanceSegmenter(Segmenter, Protocol):
    """A segmenter that separates the objects (instances) a phrase names."""

    def instances(
        self, frames: np.ndarray, phrase: str, context: ClipContext | None = None
    ) -> list[np.ndarray]:
        """One ``(T, H, W)`` bool mask array per instance, each following one object over the frames."""
        ...


def segment_instances(
    segmenter: Segmenter, frames: np.ndarray, phrase: str, context: ClipContext | None = None,
    limit: int | None = None,
) -> list[np.ndarray]:
    """The phrase's instances, most visible first (largest mask area summed over the frames; a tie
    keeps the back-end's order), at most ``limit``; a single-mask back-end's mask is one instance."""
    if isinstance(segmenter, InstanceSegmenter):
        found = segmenter.instances(frames, phrase, context)
    else:
        masks = segmenter.segment(frames, phrase, context)
        found = [] if masks is None else [masks]
    found = [masks for masks in found if masks.any()]
    found.sort(key=lambda masks: -int(masks.sum()))
    return found[:limit]


Factory = Callable[..., Segmenter]
_REGISTRY: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Decorator: make ``factory(**options)`` available as ``build_segmenter(name, **options)``."""

    def decorate(factory: Factory) -> Factory:
        _REGISTRY[name] = factory
        return factory

    return decorate


def available() -> list[str]:
    """Registered back-end names."""
    return sorted(_REGISTRY)


def build_segmenter(name: str, **options: object) -> Segmenter:
    """A back-end by name; options go to its factory (unknown options raise ``TypeError``)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown segmenter {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name](**options)
