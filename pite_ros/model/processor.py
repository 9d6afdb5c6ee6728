"""``PiteProcessor``: examples, clips and questions to model-ready batches (the collate function).

Text goes through ``pite_ros.model.prompt`` and ``pite_ros.model.splice`` (the one splice),
frames through ``pite_ros.model.preprocess``. Generation's batches come as NumPy arrays
(``return_tensors="np"``), so the ONNX runtime uses this processor without torch. With
two-stream encoding a still image (one frame, stage 1) is repeated to the K·frames_per_segment
frames the encoder needs: a clip in which nothing moves. Span targets become per-token
targets: an answer token carries a span's target when its character offsets overlap the span;
when a token overlaps several spans the first (in the example's order) wins.

The processor owns the tokenizer, as Hugging Face's Llava processor does: ``from_pretrained``
reads it from a model directory and checks it against the config (the PiTe token ids the
model was bound to), ``save_pretrained`` writes its files beside the model's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from pite_ros.model.config import PiteConfig
from pite_ros.model.files import CONFIG_NAME, TOKENIZER_NAME, CheckpointError, read_config, require_files
from pite_ros.model.preprocess import preprocess_frames
from pite_ros.model.prompt import encode_answer, encode_prompt
from pite_ros.model.splice import SpliceItem, as_tensors, splice_batch, splice_shared
from pite_ros.model.tokenizer import check_tokenizer
from pite_ros.types import Example

if TYPE_CHECKING:
    import torch


class PiteProcessor:
    """Callable as a DataLoader ``collate_fn``: ``processor(list[Example]) -> batch dict``.

    The batch holds ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` ``(B, L)``,
    ``pixel_values`` ``(B, T, 3, S, S)``, ``frame_mask`` ``(B, T)`` (clips shorter than the
    longest are padded with zero frames), and the coordinate targets of ``splice_batch``.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: PiteConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.two_stream = config.two_stream_config() if config.visual_encoding == "two_stream" else None

    @classmethod
    def from_pretrained(cls, directory: str | Path, config: PiteConfig | None = None) -> PiteProcessor:
        """The processor of a model directory: its tokenizer (local files, no remote code) with
        ``config`` (default: the directory's ``config.json``), refused unless the tokenizer has
        the ids bound in the config (``check_tokenizer``). Problems are ``CheckpointError``s
        naming the file."""
        directory = Path(directory)
        require_files(directory, (TOKENIZER_NAME,) if config is not None else (CONFIG_NAME, TOKENIZER_NAME))
        config = read_config(directory) if config is None else config
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True, trust_remote_code=False)
            check_tokenizer(config, tokenizer)
        except Exception as error:  # tokenizers raises plain Exceptions on corrupt JSON
            raise CheckpointError(f"{directory / TOKENIZER_NAME}: cannot use the tokenizer: {error}") from error
        return cls(tokenizer, config)

    def save_pretrained(self, save_directory: str | Path) -> list[Path]:
        """Write the tokenizer's files (``tokenizer.json``, ``tokenizer_config.json``) into
        ``save_directory``, beside the model's ``config.json``; the paths written."""
        return [Path(name) for name in self.tokenizer.save_pretrained(save_directory)]

    def num_visual_tokens(self, num_frames: int) -> int:
        """Visual tokens a clip of ``num_frames`` frames becomes: ``tokens_per_frame`` per frame
        (PiTe), or K · tokens_per_segment (two-stream; a still image counts as a full clip)."""
        if self.two_stream is None:
            return num_frames * self.config.tokens_per_frame
        frames = self.two_stream.num_segments * self.two_stream.frames_per_segment
        if num_frames not in (1, frames):
            raise ValueError(f"two-stream encoding needs {frames} frames per clip (or 1 for an image), got {num_frames}")
        return self.two_stream.num_segments * self.two_stream.tokens_per_segment

    def __call__(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        items = [self.splice_item(example) for example in examples]
        batch = self._splice(items, "right")
        batch.update(self.pixel_batch([example.frames for example in examples]))
        return batch

    def shared_clip_batch(self, examples: Sequence[Example]) -> dict[str, torch.Tensor]:
        """The collate for training rows shared by a clip's examples (``splice_shared``): the
        examples whose frames are the same (by content) and whose prompts agree up to the clip
        share one row, so the vision tower and the clip's tokens run once for them. The loss of
        the batch is the loss of ``__call__``'s batch of the same examples."""
        groups: dict[tuple, list[int]] = {}
        items = [self.splice_item(example) for example in examples]
        for index, (example, item) in enumerate(zip(examples, items, strict=True)):
            at = item.prompt_ids.index(self.config.video_token_id)
            key = (example.frames.shape, hashlib.blake2b(np.ascontiguousarray(example.frames).data).digest(),
                   tuple(item.prompt_ids[: at + 1]))
            groups.setdefault(key, []).append(index)
        batch = splice_shared(
            [[items[i] for i in group] for group in groups.values()],
            video_token_id=self.config.video_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            max_length=self.config.text_config.max_position_embeddings,
        )
        batch.update(self.pixel_batch([examples[group[0]].frames for group in groups.values()]))
        return batch

    def splice_item(self, example: Example) -> SpliceItem:
        """One example's prompt, answer and per-answer-token coordinate targets."""
        prompt = encode_prompt(self.tokenizer, example.prompt, self.config)
        answer, offsets = encode_answer(self.tokenizer, example.response)
        item = SpliceItem(prompt, self.num_visual_tokens(len(example.frames)), answer)
        if example.points:
            item.loc = np.zeros((len(answer), 2), np.float32)
            item.loc_mask = np.zeros(len(answer), bool)
            for span in example.points:
                for token in _overlapping(offsets, span.start, span.end, item.loc_mask):
                    item.loc[token] = span.xy
                    item.loc_mask[token] = True
        if example.trajectories:
            shape = (self.config.num_frames, self.config.num_points)
            item.traj = np.zeros((len(answer), *shape, 2), np.float32)
            item.traj_mask = np.zeros((len(answer), *shape), bool)
            taken = np.zeros(len(answer), bool)
            scored_visible_only = self.config.trajectory_loss_points == "visible"
            if self.config.visibility_head:
                item.vis = np.zeros((len(answer), *shape, 1), np.float32)
                item.vis_mask = np.zeros((len(answer), *shape), bool)
            for span in example.trajectories:
                if span.points.shape != (*shape, 2) or span.visible.shape != shape:
                    raise ValueError(
                        f"example {example.id}: trajectory of span [{span.start}, {span.end}) has shape "
                        f"{span.points.shape}, the model needs {(*shape, 2)} (num_frames, num_points, 2)"
                    )
                for token in _overlapping(offsets, span.start, span.end, taken):
                    item.traj[token] = span.points
                    item.traj_mask[token] = span.visible if scored_visible_only else True
                    if item.vis is not None:
                        item.vis[token, ..., 0] = span.visible
                        item.vis_mask[token] = True
                    taken[token] = True
        return item

    def prompt_batch(
        self, questions: Sequence[str], frame_counts: Sequence[int], return_tensors: Literal["pt", "np"] = "pt"
    ) -> dict[str, Any]:
        """Left-padded prompts for generation (no answer): ``input_ids``, ``attention_mask``, ``position_ids``."""
        items = [
            SpliceItem(encode_prompt(self.tokenizer, question, self.config), self.num_visual_tokens(count), [])
            for question, count in zip(questions, frame_counts, strict=True)
        ]
        batch = self._splice(items, "left", return_tensors)
        del batch["labels"]
        return batch

    def pixel_batch(self, clips: Sequence[np.ndarray], return_tensors: Literal["pt", "np"] = "pt") -> dict[str, Any]:
        """``pixel_values`` ``(B, T, 3, S, S)`` float32 and ``frame_mask`` ``(B, T)`` bool."""
        config = self.config
        if self.two_stream is not None:
            frames = self.two_stream.num_segments * self.two_stream.frames_per_segment
            clips = [np.repeat(clip, frames, axis=0) if len(clip) == 1 else clip for clip in clips]
        pixels = [preprocess_frames(clip, config.image_size, config.image_mean, config.image_std) for clip in clips]
        longest = max(len(clip) for clip in pixels)
        values = np.zeros((len(pixels), longest, *pixels[0].shape[1:]), np.float32)
        mask = np.zeros((len(pixels), longest), bool)
        for index, clip in enumerate(pixels):
            values[index, : len(clip)] = clip
            mask[index, : len(clip)] = True
        return as_tensors({"pixel_values": values, "frame_mask": mask}, return_tensors)

    def _splice(self, items: list[SpliceItem], padding_side: str, return_tensors: Literal["pt", "np"] = "pt") -> dict[str, Any]:
        return splice_batch(
            items,
            video_token_id=self.config.video_token_id,
            pad_token_id=self.tokenizer.pad_token_id,
            padding_side=padding_side,
            max_length=self.config.text_config.max_position_embeddings,
            return_tensors=return_tensors,
        )


def _overlapping(offsets: list[tuple[int, int]], start: int, end: int, taken: np.ndarray) -> list[int]:
    """Indices of tokens whose non-empty character span overlaps ``[start, end)``, not yet taken."""
    return [i for i, (a, b) in enumerate(offsets) if a < b and a < end and b > start and not taken[i]]
