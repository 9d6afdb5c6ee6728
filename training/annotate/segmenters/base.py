"""The referring-segmentation interface of stage 2 and its registry of back-ends.

PiTe segments each noun phrase with a grounding model (GLaMM; REFERENCE.md, PiTe-143k step
1). Here any back-end with ``segment(frames, phrase) -> masks`` can do it; back-ends register
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
