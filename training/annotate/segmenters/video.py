"""Video segmenters from ``transformers``: each object a phrase names, tracked through the clip.

- ``sam3-video``: SAM 3 (``Sam3VideoModel``) takes the phrase as a text prompt, detects every
  object it names on every frame, matches the detections to its tracks and keeps an object id
  per object through the clip; each object id is one instance. Its score thresholds are the
  checkpoint config's (``score_threshold_detection``, ``new_det_thresh``) unless ``threshold``
  sets both.
- ``sam2-video``: a box detector (``model_dir``: OWLv2 or Grounding DINO, told apart by its
  config) looks for the phrase on up to ``scan_frames`` frames spread over the clip, in order;
  the first box found prompts SAM 2 (``Sam2VideoModel``, ``sam_dir``) on that frame, and SAM 2
  propagates that object's mask forward and backward through the clip: one instance.

Both see every decoded frame (``all_frames``), so the point tracker has a mask at every frame:
it samples the points inside the masks, drops a point that leaves them and re-seeds from them.
Weights: a ``save_pretrained`` folder or a Hub id (``pite_ros.hub.weights_source``).

``Sam3VideoProcessor`` and ``Sam2VideoProcessor`` need torchvision, which does not import
beside the pinned torch, so their steps are done here with the numbers of the processor
config saved with the weights: frames resized to the model's square (bilinear, antialiased,
on uint8 as torchvision does), rescaled and normalised; the phrase tokenised to 32 tokens;
mask logits upsampled bilinearly to the frame and thresholded at 0; where SAM 3's objects
overlap, the pixel goes to the object of the highest tracker score (as
``Sam3VideoProcessor.postprocess_outputs``). Where torchvision imports, a test checks these
steps against the processors themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pite_ros.hub import weights_source
from training.annotate.segmenters.base import ClipContext, register
from training.annotate.segmenters.hf import build_detector, pretrained

TEXT_LENGTH = 32  # Sam3VideoProcessor pads every prompt to 32 tokens
FRAME_CHUNK = 16  # frames resized at once (bounds the memory of the intermediate copies)
# Where a processor's frame settings lie, in the order looked for: the processor file of
# transformers 5 (its "video_processor" part), then the separate files of older layouts.
CONFIG_FILES = (("processor_config.json", "video_processor"), ("video_preprocessor_config.json", None),
                ("preprocessor_config.json", None))


@dataclass(frozen=True)
class FramePreprocessing:
    """How a video processor turns RGB frames into the model's pixel values."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...]
    std: tuple[float, ...]
    rescale: float = 1 / 255

    @classmethod
    def from_pretrained(cls, source: str) -> FramePreprocessing:
        """The settings saved with the weights (folder or Hub id); a clear error if none are there."""
        from transformers.utils import cached_file

        path, local = weights_source(source)
        for name, part in CONFIG_FILES:
            try:
                found = cached_file(path, name, local_files_only=local, _raise_exceptions_for_missing_entries=False)
            except OSError as error:
                raise FileNotFoundError(f"{source}: {name} cannot be had: {str(error).splitlines()[0]}") from None
            config = json.loads(Path(found).read_text(encoding="utf-8")) if found else {}
            config = (config.get(part) or {}) if part else config
            size = config.get("size") or {}
            if {"height", "width"} <= set(size) and {"image_mean", "image_std"} <= set(config):
                return cls((int(size["height"]), int(size["width"])), tuple(config["image_mean"]),
                           tuple(config["image_std"]), float(config.get("rescale_factor", 1 / 255)))
        names = ", ".join(name for name, _ in CONFIG_FILES)
        raise FileNotFoundError(f"{source}: no processor config with a frame size, mean and std ({names})")

    def pixels(self, frames: np.ndarray) -> Any:
        """``frames`` ``(T, H, W, 3)`` uint8 RGB -> ``(T, 3, height, width)`` float32 tensor."""
        import torch
        import torch.nn.functional as F

        mean = torch.tensor(self.mean, dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(1, 3, 1, 1)
        chunks = []
        for start in range(0, len(frames), FRAME_CHUNK):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + FRAME_CHUNK])).permute(0, 3, 1, 2)
            # On uint8, as torchvision resizes the processors' frames (rounded to uint8: the same values).
            resized = F.interpolate(batch, size=self.size, mode="bilinear", antialias=True, align_corners=False)
            chunks.append((resized.float() * self.rescale - mean) / std)
        return torch.cat(chunks)


def upsample(logits: Any, size: tuple[int, int]) -> np.ndarray:
    """Mask logits ``(K, h, w)`` -> ``(K, *size)`` bool (logit > 0), bilinear, as both processors do."""
    import torch.nn.functional as F

    scaled = F.interpolate(logits.float().unsqueeze(1), size=size, mode="bilinear", align_corners=False)
    return (scaled.squeeze(1) > 0).cpu().numpy()


def exclusive(masks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Each pixel claimed by several masks ``(K, H, W)`` kept only by the highest score ``(K,)``."""
    if len(masks) < 2:
        return masks
    claims = np.where(masks, scores[:, None, None], 0.0)
    owner = claims.argmax(axis=0)
    return masks & (owner[None] == np.arange(len(masks))[:, None, None])


class VideoInstances:
    """Shared by the video back-ends: all frames in, ``segment`` is the union of the instances."""

    name = "video"
    all_frames = True

    def instances(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> list[np.ndarray]:
        raise NotImplementedError

    def segment(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> np.ndarray | None:
        found = self.instances(frames, phrase, context)
        return np.logical_or.reduce(found) if found else None


class Sam3Video(VideoInstances):
    """SAM 3: a text prompt, every matching object with its own id through the clip."""

    name = "sam3-video"

    def __init__(self, model_dir: str, device: str = "cpu", threshold: float | None = None) -> None:
        self.model = pretrained("Sam3VideoModel", model_dir).to(device).eval()
        self.tokenizer = pretrained("AutoTokenizer", model_dir)
        self.preprocessing = FramePreprocessing.from_pretrained(model_dir)
        if threshold is not None:
            self.model.score_threshold_detection = self.model.new_det_thresh = threshold
        self.device = device

    def instances(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> list[np.ndarray]:
        """One ``(T, H, W)`` mask array per object id, in the order the ids were given (first seen first)."""
        import torch
        from transformers.models.sam3_video.modeling_sam3_video import Sam3VideoInferenceSession

        height, width = frames.shape[1:3]
        session = Sam3VideoInferenceSession(
            video=self.preprocessing.pixels(frames), video_height=height, video_width=width,
            inference_device=self.device, inference_state_device=self.device, video_storage_device="cpu",
            dtype=torch.float32,
        )
        prompt = session.add_prompt(phrase)
        text = self.tokenizer(phrase, padding="max_length", max_length=TEXT_LENGTH, truncation=True,
                              return_tensors="pt").to(self.device)
        session.prompt_input_ids[prompt], session.prompt_attention_masks[prompt] = text.input_ids, text.attention_mask
        masks: dict[int, np.ndarray] = {}
        with torch.inference_mode():
            for output in self.model.propagate_in_video_iterator(inference_session=session):
                hidden = set(output.suppressed_obj_ids or ()) | set(session.hotstart_removed_obj_ids)
                ids = [i for i in sorted(output.obj_id_to_mask) if i not in hidden]
                if not ids:
                    continue
                found = upsample(torch.cat([output.obj_id_to_mask[i] for i in ids]), (height, width))
                scores = np.array([float(output.obj_id_to_tracker_score.get(i, 0.0)) for i in ids])
                for object_id, mask in zip(ids, exclusive(found, scores)):
                    masks.setdefault(object_id, np.zeros(frames.shape[:3], dtype=bool))[output.frame_idx] = mask
        return [masks[i] for i in sorted(masks) if masks[i].any()]


class Sam2Video(VideoInstances):
    """The first box a detector finds for the phrase, propagated through the clip by SAM 2."""

    name = "sam2-video"

    def __init__(self, model_dir: str, sam_dir: str, device: str = "cpu", threshold: float | None = None,
                 scan_frames: int = 8) -> None:
        self.detector = build_detector(model_dir, device, threshold)
        self.model = pretrained("Sam2VideoModel", sam_dir).to(device).eval()
        self.preprocessing = FramePreprocessing.from_pretrained(sam_dir)
        self.device, self.scan_frames = device, scan_frames

    def first_box(self, frames: np.ndarray, phrase: str) -> tuple[int, list[float]] | None:
        """``(frame index, box)`` of the first of ``scan_frames`` evenly spread frames where the phrase is found."""
        for index in np.unique(np.round(np.linspace(0, len(frames) - 1, min(len(frames), self.scan_frames)))):
            box = self.detector.best_box(frames[int(index)], phrase)
            if box is not None:
                return int(index), box
        return None

    def instances(self, frames: np.ndarray, phrase: str, context: ClipContext | None = None) -> list[np.ndarray]:
        first = self.first_box(frames, phrase)
        if first is None:
            return []
        masks = self.propagate(frames, *first)
        return [masks] if masks.any() else []

    def propagate(self, frames: np.ndarray, start: int, box: list[float]) -> np.ndarray:
        """``(T, H, W)`` masks of the object in ``box`` (pixels ``[x0, y0, x1, y1]``) at frame ``start``."""
        import torch
        from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

        height, width = frames.shape[1:3]
        session = Sam2VideoInferenceSession(
            video=self.preprocessing.pixels(frames), video_height=height, video_width=width,
            inference_device=self.device, inference_state_device=self.device, video_storage_device="cpu",
            dtype=torch.float32,
        )
        # The box as SAM 2's two corner points (labels 2 and 3), in the model's input square.
        side_y, side_x = self.preprocessing.size
        scale = torch.tensor([side_x / width, side_y / height])
        corners = torch.tensor(box, dtype=torch.float32).view(1, 1, 2, 2) * scale
        session.add_point_inputs(session.obj_id_to_idx(1), start,
                                 {"point_coords": corners, "point_labels": torch.tensor([[[2, 3]]], dtype=torch.int32)})
        session.obj_with_new_inputs = [1]
        masks = np.zeros(frames.shape[:3], dtype=bool)
        with torch.inference_mode():
            for reverse in (False, True):
                for output in self.model.propagate_in_video_iterator(session, start_frame_idx=start, reverse=reverse):
                    masks[output.frame_idx] = upsample(output.pred_masks[:, 0], (height, width))[0]
        return masks


@register("sam3-video")
def build_sam3_video(model_dir: str, device: str = "cpu", threshold: float | None = None) -> Sam3Video:
    """``model_dir``: a SAM 3 video checkpoint (folder or Hub id, e.g. facebook/sam3)."""
    return Sam3Video(model_dir, device, threshold)


@register("sam2-video")
def build_sam2_video(model_dir: str, sam_dir: str, device: str = "cpu", threshold: float | None = None,
                     scan_frames: int = 8) -> Sam2Video:
    """``model_dir``: OWLv2 or Grounding DINO; ``sam_dir``: a SAM 2 video checkpoint (folders or Hub ids)."""
    return Sam2Video(model_dir, sam_dir, device, threshold, scan_frames)
