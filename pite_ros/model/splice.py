"""The one place where visual tokens are spliced into text and training targets are laid out.

Every path (training collate, evaluation, generation prompts) goes through ``splice_batch``:
the single ``<video>`` id of each prompt becomes ``num_visual`` consecutive ``<video>``
positions (the model writes the visual tokens' embeddings there, in order), the answer
follows, and labels, attention mask, position ids and per-token coordinate targets are
built for the whole padded batch. Padding is on the right for training and on the left for
generation (so every row's last position is its newest token). Batches are built in NumPy and
returned as torch tensors (``return_tensors="pt"``, the default) or NumPy arrays (``"np"``: the
ONNX runtime, which must run without torch).

Layout of one row (right padding)::

    prompt[:v]  <video> × num_visual  prompt[v+1:]  answer  pad…
    labels:  -100 …                                 answer  -100…
    position ids: 0, 1, 2, … over the real tokens; 0 on padding

``splice_shared`` lays several examples of one clip out in one row instead (training only):
the clip's prefix ``prompt[:v] <video> × num_visual`` once, then each example's
``prompt[v+1:] answer`` with the position ids it has alone, under a 4-D attention mask by
which each example sees the prefix and itself only. Every example's logits are those of its
own row, while the vision tower and the prefix are computed once for the clip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

IGNORE_INDEX = -100  # the label of positions no loss reads (prompt, visual tokens, padding)


@dataclass
class SpliceItem:
    """One sequence before splicing.

    ``prompt_ids`` hold exactly one ``video_token_id``; ``answer_ids`` (labels) follow the
    prompt. Coordinate targets are per answer token: ``loc`` ``(A, 2)`` with ``loc_mask``
    ``(A,)`` bool; ``traj`` ``(A, N, P, 2)`` with ``traj_mask`` ``(A, N, P)`` bool (visible
    points of phrase tokens); ``vis`` ``(A, N, P, 1)`` (1.0 where the point is visible) with
    ``vis_mask`` ``(A, N, P)`` (every point of a phrase token), for a visibility head.
    ``A = len(answer_ids)``.
    """

    prompt_ids: list[int]
    num_visual: int
    answer_ids: list[int]
    loc: np.ndarray | None = None
    loc_mask: np.ndarray | None = None
    traj: np.ndarray | None = None
    traj_mask: np.ndarray | None = None
    vis: np.ndarray | None = None
    vis_mask: np.ndarray | None = None


# Per-answer-token targets, each with its mask (``{name}_mask``): the mask's shape is the target's
# without its last axis. In a batch they become ``{name}_targets`` and ``{name}_mask``.
TARGETS = ("loc", "traj", "vis")


def splice_batch(
    items: list[SpliceItem],
    *,
    video_token_id: int,
    pad_token_id: int,
    padding_side: Literal["left", "right"] = "right",
    max_length: int | None = None,
    return_tensors: Literal["pt", "np"] = "pt",
) -> dict[str, Any]:
    """Spliced, padded batch tensors.

    Returns ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` ``(B, L)``; plus
    ``loc_targets`` ``(B, L, 2)`` and ``loc_mask`` ``(B, L)`` when any item has ``loc``, and
    ``traj_targets`` ``(B, L, N, P, 2)`` and ``traj_mask`` ``(B, L, N, P)`` when any has
    ``traj``, and ``vis_targets`` ``(B, L, N, P, 1)``, ``vis_mask`` ``(B, L, N, P)`` when any has
    ``vis``. Rows longer than ``max_length`` lose their last tokens (answer first).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    rows = [_splice_one(item, video_token_id, max_length) for item in items]
    return as_tensors(_pad_rows(rows, pad_token_id, padding_side), return_tensors)


def as_tensors(batch: dict[str, np.ndarray], return_tensors: Literal["pt", "np"]) -> dict[str, Any]:
    """``batch`` as torch tensors sharing the arrays' memory (``"pt"``), or as it is (``"np"``)."""
    if return_tensors == "np":
        return batch
    if return_tensors != "pt":
        raise ValueError(f"return_tensors must be 'pt' or 'np', got {return_tensors!r}")
    import torch  # only when tensors are asked for: the NumPy path runs where torch is absent

    return {key: torch.from_numpy(value) for key, value in batch.items()}


def splice_shared(
    groups: list[list[SpliceItem]],
    *,
    video_token_id: int,
    pad_token_id: int,
    max_length: int | None = None,
    return_tensors: Literal["pt", "np"] = "pt",
) -> dict[str, Any]:
    """One right-padded row per group of items that share a clip, with ``splice_batch``'s keys.

    The items of a group must have the same prompt up to and including ``<video>`` and the
    same ``num_visual``. ``attention_mask`` is ``(B, 1, L, L)`` bool (True: the query may
    attend the key): causal, and a token after the prefix sees the prefix and its own
    example's tokens only; a padding position sees itself (no empty softmax row).
    ``max_length`` cuts each example as ``splice_batch`` would cut it alone.
    """
    rows = [_shared_row(group, video_token_id, max_length) for group in groups]
    batch = _pad_rows(rows, pad_token_id, "right")
    length = batch["input_ids"].shape[1]
    causal = np.tril(np.ones((length, length), bool))
    mask = np.tile(np.eye(length, dtype=bool), (len(rows), 1, 1, 1))
    for index, row in enumerate(rows):
        size = len(row["ids"])
        example = row["example"]
        sees = (example[None, :] == -1) | (example[None, :] == example[:, None])
        mask[index, 0, :size, :size] = sees & causal[:size, :size]
        batch["position_ids"][index, :size] = row["positions"]
    batch["attention_mask"] = mask
    return as_tensors(batch, return_tensors)


def _shared_row(group: list[SpliceItem], video_token_id: int, max_length: int | None) -> dict[str, np.ndarray]:
    """A group's items as one unpadded row: the first item whole, the others after the shared
    prefix; ``positions`` are each item's own, ``example`` is -1 on the prefix, else the item."""
    if not group:
        raise ValueError("a group of items that share a clip must not be empty")
    parts = [_splice_one(item, video_token_id, max_length) for item in group]
    at = group[0].prompt_ids.index(video_token_id)
    prefix = at + group[0].num_visual
    shared = (group[0].prompt_ids[: at + 1], group[0].num_visual)
    for item in group[1:]:
        if (item.prompt_ids[: at + 1], item.num_visual) != shared:
            raise ValueError("items that share a row must have the same prompt up to <video> and the same num_visual")
    for target in TARGETS:
        mask = f"{target}_mask"
        having = next((part for part in parts if target in part), None)
        for part in parts:
            if having is not None and target not in part:
                part[target] = np.zeros((len(part["ids"]), *having[target].shape[1:]), np.float32)
                part[mask] = np.zeros((len(part["ids"]), *having[mask].shape[1:]), bool)
    starts = [0] + [min(prefix, len(part["ids"])) for part in parts[1:]]
    row = {key: np.concatenate([part[key][start:] for part, start in zip(parts, starts)]) for key in parts[0]}
    row["positions"] = np.concatenate([np.arange(start, len(part["ids"])) for part, start in zip(parts, starts)])
    row["example"] = np.concatenate([np.full(len(part["ids"]) - start, index) for index, (part, start) in enumerate(zip(parts, starts))])
    row["example"][: min(prefix, len(parts[0]["ids"]))] = -1
    return row


def _pad_rows(rows: list[dict[str, np.ndarray]], pad_token_id: int, padding_side: str) -> dict[str, np.ndarray]:
    """Rows of ``_splice_one`` as padded batch arrays (2-D attention mask, position ids 0, 1, …)."""
    length = max(len(row["ids"]) for row in rows)
    shape_of = {key: next(row[key].shape[1:] for row in rows if key in row) for key in TARGETS if any(key in row for row in rows)}
    for key in ("traj", "vis"):
        if key in shape_of and any(key in row and row[key].shape[1:] != shape_of[key] for row in rows):
            raise ValueError("trajectory and visibility targets of one batch must share (frames, points)")

    batch = {
        "input_ids": np.full((len(rows), length), pad_token_id, dtype=np.int64),
        "attention_mask": np.zeros((len(rows), length), dtype=np.int64),
        "position_ids": np.zeros((len(rows), length), dtype=np.int64),
        "labels": np.full((len(rows), length), IGNORE_INDEX, dtype=np.int64),
    }
    for key, shape in shape_of.items():
        batch[f"{key}_targets"] = np.zeros((len(rows), length, *shape), dtype=np.float32)
        batch[f"{key}_mask"] = np.zeros((len(rows), length, *shape[:-1]), dtype=bool)
    for index, row in enumerate(rows):
        size = len(row["ids"])
        where = slice(length - size, length) if padding_side == "left" else slice(0, size)
        batch["input_ids"][index, where] = row["ids"]
        batch["attention_mask"][index, where] = 1
        batch["position_ids"][index, where] = np.arange(size)
        batch["labels"][index, where] = row["labels"]
        for target in TARGETS:
            if target in row:
                batch[f"{target}_targets"][index, where] = row[target]
                batch[f"{target}_mask"][index, where] = row[f"{target}_mask"]
    return batch


def _splice_one(item: SpliceItem, video_token_id: int, max_length: int | None = None) -> dict[str, np.ndarray]:
    """One row's ids, labels and targets, unpadded (targets zero outside the answer), cut to
    ``max_length`` tokens when given."""
    if item.prompt_ids.count(video_token_id) != 1:
        raise ValueError(f"a prompt must hold exactly one video token (id {video_token_id}), got {item.prompt_ids.count(video_token_id)}")
    if item.num_visual < 1:
        raise ValueError(f"num_visual must be positive, got {item.num_visual}")
    at = item.prompt_ids.index(video_token_id)
    prompt = [*item.prompt_ids[:at], *([video_token_id] * item.num_visual), *item.prompt_ids[at + 1 :]]
    answers = len(item.answer_ids)
    row = {
        "ids": np.asarray(prompt + list(item.answer_ids), dtype=np.int64),
        "labels": np.asarray([IGNORE_INDEX] * len(prompt) + list(item.answer_ids), dtype=np.int64),
    }
    for target in TARGETS:
        mask = f"{target}_mask"
        values, valid = getattr(item, target), getattr(item, mask)
        if values is None:
            continue
        tail = (2,) if target == "loc" else values.shape[1:]
        if values.shape != (answers, *tail) or valid.shape != values.shape[:-1]:
            raise ValueError(f"{target} targets of shape {values.shape} / mask {valid.shape} do not fit {answers} answer tokens")
        row[target] = np.concatenate([np.zeros((len(prompt), *tail), np.float32), values.astype(np.float32)])
        row[mask] = np.concatenate([np.zeros((len(prompt), *tail[:-1]), bool), valid.astype(bool)])
    if max_length is not None:
        row = {key: value[:max_length] for key, value in row.items()}
    return row
