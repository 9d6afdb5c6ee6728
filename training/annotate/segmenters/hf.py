"""Referring segmenters from ``transformers``.

PiTe uses GLaMM (docs/papers.md, PiTe-143k step 1), which ``transformers`` does not ship;
these are the open-vocabulary models it does:

- ``clipseg``: CLIPSeg scores every pixel for the phrase (one call per frame batch); a
  pixel belongs to the object when its probability exceeds ``threshold`` (default 0.4).
- ``owlv2-sam``: OWLv2 finds the phrase's best box (score >= ``threshold``, default 0.1),
  SAM cuts the object out of the box (the mask of the highest predicted IoU).
- ``grounding-dino-sam``: the same with Grounding DINO boxes (``threshold`` default 0.3;
  the phrase is lower-cased and ends with "." as the model expects).

Weights come from a local folder as ``save_pretrained`` writes it (model + processor; read
with ``local_files_only``), or from a Hub id (``owner/name``: the Hub cache, or a download
where there is a network; ``HF_HUB_OFFLINE=1`` keeps it to the cache; ``pite_ros.hub``). These back-ends
segment only the N sampled frames (``all_frames = False``); the tracker carries the points
between. The video back-ends (``sam3-video``, ``sam2-video``) are in ``segmenters.video``.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from pite_ros.hub import weights_source, where
from training.annotate.segmenters.base import ClipContext, register


def pretrained(class_name: str, source: str, **options: Any) -> Any:
    """``transformers.<class_name>.from_pretrained(source)`` from a folder or Hub id, with a one-line error."""
    import transformers

    path, local = weights_source(source)
    try:
        return getattr(transformers, class_name).from_pretrained(path, local_files_only=local, **options)
    except OSError as error:
        raise FileNotFoundError(f"{class_name} cannot be loaded from {where(source, local)}: "
                                f"{str(error).splitlines()[0]}") from None


def _load(model_class: str, processor_class: str, source: str, device: str) -> tuple[Any, Any]:
    """Model (on ``device``, eval mode) and processor from a ``save_pretrained`` folder or Hub id."""
    processor = pretrained(processor_class, source)
    model = pretrained(model_class, source)
    return model.to(device).eval(), processor


class ClipSegSegmenter:
    """CLIPSeg: per-pixel probabilities for the phrase, thresholded."""

    name = "clipseg"
    all_frames = False

    def __init__(self, model_dir: str, device: str = "cpu", threshold: float = 0.4, batch_size: int = 8) -> None:
        self.model, self.processor = _load("CLIPSegForImageSegmentation", "CLIPSegProcessor", model_dir, device)
        self.device, self.threshold, self.batch_size = device, threshold, batch_size

    def segment(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> np.ndarray | None:
        import torch

        height, width = frames.shape[1:3]
        masks = []
        for start in range(0, len(frames), self.batch_size):
            batch = list(frames[start : start + self.batch_size])
            inputs = self.processor(text=[phrase] * len(batch), images=batch, padding=True, return_tensors="pt")
            with torch.inference_mode():
                logits = self.model(**inputs.to(self.device)).logits
            probabilities = torch.sigmoid(logits.reshape(len(batch), *logits.shape[-2:])).float().cpu().numpy()
            masks += [cv2.resize(p, (width, height), interpolation=cv2.INTER_LINEAR) > self.threshold
                      for p in probabilities]
        result = np.stack(masks)
        return result if result.any() else None


class BoxDetector:
    """A text-conditioned box detector (subclasses: the model and its post-processing)."""

    classes: tuple[str, str] = ("", "")
    default_threshold = 0.3

    def __init__(self, model_dir: str, device: str = "cpu", threshold: float | None = None) -> None:
        self.model, self.processor = _load(*self.classes, model_dir, device)
        self.device = device
        self.threshold = self.default_threshold if threshold is None else threshold

    def best_box(self, frame: np.ndarray, phrase: str) -> list[float] | None:
        """``[x0, y0, x1, y1]`` pixels of the phrase's highest-scoring box in ``frame``, or None."""
        raise NotImplementedError

    @staticmethod
    def _top(result: dict, frame: np.ndarray) -> list[float] | None:
        """The highest-scoring box, clipped to the frame, among those at least a pixel wide and high."""
        height, width = frame.shape[:2]
        boxes = np.clip(result["boxes"].float().cpu().numpy().reshape(-1, 4), 0, [width - 1, height - 1] * 2)
        scores = result["scores"].float().cpu().numpy().reshape(-1)
        valid = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        if not valid.any():
            return None
        return boxes[valid][int(scores[valid].argmax())].tolist()


class Owlv2Boxes(BoxDetector):
    """OWLv2 boxes (the image is padded to a square before resizing, so boxes are in that square)."""

    classes = ("Owlv2ForObjectDetection", "Owlv2Processor")
    default_threshold = 0.1

    def best_box(self, frame: np.ndarray, phrase: str) -> list[float] | None:
        import torch

        inputs = self.processor(text=[[phrase]], images=[frame], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        side = max(frame.shape[:2])
        result = self.processor.post_process_grounded_object_detection(
            outputs, threshold=self.threshold, target_sizes=[(side, side)]
        )[0]
        return self._top(result, frame)


class GroundingDinoBoxes(BoxDetector):
    """Grounding DINO boxes."""

    classes = ("GroundingDinoForObjectDetection", "GroundingDinoProcessor")
    default_threshold = 0.3

    def best_box(self, frame: np.ndarray, phrase: str) -> list[float] | None:
        import torch

        text = phrase.lower().strip().rstrip(".") + "."
        inputs = self.processor(images=frame, text=text, return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.model(**inputs)
        result = self.processor.post_process_grounded_object_detection(
            outputs, inputs["input_ids"], threshold=self.threshold, text_threshold=self.threshold,
            target_sizes=[frame.shape[:2]],
        )[0]
        return self._top(result, frame)


# Detectors by the ``model_type`` of their config (how ``sam2-video`` picks one for a folder).
DETECTORS: dict[str, type[BoxDetector]] = {"owlv2": Owlv2Boxes, "grounding-dino": GroundingDinoBoxes}


def build_detector(model_dir: str, device: str = "cpu", threshold: float | None = None) -> BoxDetector:
    """The box detector that ``model_dir``'s config names (OWLv2 or Grounding DINO)."""
    model_type = pretrained("AutoConfig", model_dir).model_type
    if model_type not in DETECTORS:
        raise ValueError(f"{model_dir}: model_type {model_type!r} is not a box detector "
                         f"({', '.join(sorted(DETECTORS))})")
    return DETECTORS[model_type](model_dir, device, threshold)


class BoxThenSam:
    """A box detector, then SAM inside the best box of each frame."""

    all_frames = False

    def __init__(self, name: str, detector: BoxDetector, sam_dir: str, device: str = "cpu") -> None:
        self.name, self.detector = name, detector
        self.sam, self.sam_processor = _load("SamModel", "SamProcessor", sam_dir, device)
        self.device = device

    def segment(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> np.ndarray | None:
        masks = np.zeros(frames.shape[:3], dtype=bool)
        for index, frame in enumerate(frames):
            box = self.detector.best_box(frame, phrase)
            if box is not None:
                masks[index] = self._sam(frame, box)
        return masks if masks.any() else None

    def _sam(self, frame: np.ndarray, box: list[float]) -> np.ndarray:
        import torch

        inputs = self.sam_processor(images=frame, input_boxes=[[box]], return_tensors="pt").to(self.device)
        with torch.inference_mode():
            outputs = self.sam(**inputs, multimask_output=True)
        masks = self.sam_processor.post_process_masks(
            outputs.pred_masks.cpu(), inputs["original_sizes"].cpu(), inputs["reshaped_input_sizes"].cpu()
        )[0][0]  # (3, H, W) for the one box
        best = int(outputs.iou_scores[0, 0].argmax())
        return masks[best].numpy().astype(bool)


@register("clipseg")
def build_clipseg(**options: Any) -> ClipSegSegmenter:
    """Options: ``model_dir`` (required), ``device``, ``threshold``, ``batch_size``."""
    return ClipSegSegmenter(**options)


@register("owlv2-sam")
def build_owlv2_sam(model_dir: str, sam_dir: str, device: str = "cpu", threshold: float | None = None) -> BoxThenSam:
    """``model_dir``: OWLv2; ``sam_dir``: SAM (folders or Hub ids)."""
    return BoxThenSam("owlv2-sam", Owlv2Boxes(model_dir, device, threshold), sam_dir, device)


@register("grounding-dino-sam")
def build_grounding_dino_sam(
    model_dir: str, sam_dir: str, device: str = "cpu", threshold: float | None = None
) -> BoxThenSam:
    """``model_dir``: Grounding DINO; ``sam_dir``: SAM (folders or Hub ids)."""
    return BoxThenSam("grounding-dino-sam", GroundingDinoBoxes(model_dir, device, threshold), sam_dir, device)
