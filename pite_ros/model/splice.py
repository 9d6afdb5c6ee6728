"""The one place where visual tokens are spliced into text and training targets are laid out.

Every path (training collate, evaluation, generation prompts) goes through ``splice_batch``:
the single ``<video>`` id of each prompt becomes ``num_visual`` consecutive ``<video>``
positions (the model writes the visual tokens' embeddings there, in order), the answer
follows, and labels, attention mask, position ids and per-token coordinate targets are
built for the whole padded batch. Padding is on the right for training and on the left for
generation (so every row's last position is its newest token).

Layout of one row (right padding)::

    prompt[:v]  <video> × num_visual  prompt[v+1:]  answer  pad…
    labels:  -100 …                                 answer  -100…
    position ids: 0, 1, 2, … over the real tokens; 0 on padding
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from pite_ros.model.losses import IGNORE_INDEX


@dataclass
class SpliceItem:
    """One sequence before splicing.

    ``prompt_ids`` hold exactly one ``video_token_id``; ``answer_ids`` (labels) follow the
    prompt. Coordinate targets are per answer token: ``loc`` ``(A, 2)`` with ``loc_mask``
    ``(A,)`` bool; ``traj`` ``(A, N, P, 2)`` with ``traj_mask`` ``(A, N, P)`` bool (visible
    points of phrase tokens). ``A = len(answer_ids)``.
    """

    prompt_ids: list[int]
    num_visual: int
    answer_ids: list[int]
    loc: np.ndarray | None = None
    loc_mask: np.ndarray | None = None
    traj: np.ndarray | None = None
    traj_mask: np.ndarray | None = None


def splice_batch(
    items: list[SpliceItem],
    *,
    video_token_id: int,
    pad_token_id: int,
    padding_side: Literal["left", "right"] = "right",
    max_length: int | None = None,
) -> dict[str, torch.Tensor]:
    """Spliced, padded batch tensors.

    Returns ``input_ids``, ``attention_mask``, ``position_ids``, ``labels`` ``(B, L)``; plus
    ``loc_targets`` ``(B, L, 2)`` and ``loc_mask`` ``(B, L)`` when any item has ``loc``, and
    ``traj_targets`` ``(B, L, N, P, 2)`` and ``traj_mask`` ``(B, L, N, P)`` when any has
    ``traj``. Rows longer than ``max_length`` lose their last tokens (answer first).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    rows = [_splice_one(item, video_token_id) for item in items]
    if max_length is not None:
        rows = [{key: value[:max_length] for key, value in row.items()} for row in rows]
    length = max(len(row["ids"]) for row in rows)
    shape_of = {key: next(row[key].shape[1:] for row in rows if key in row) for key in ("loc", "traj") if any(key in row for row in rows)}
    if "traj" in shape_of and any("traj" in row and row["traj"].shape[1:] != shape_of["traj"] for row in rows):
        raise ValueError("trajectory targets of one batch must share (frames, points)")

    batch = {
        "input_ids": torch.full((len(rows), length), pad_token_id, dtype=torch.long),
        "attention_mask": torch.zeros((len(rows), length), dtype=torch.long),
        "position_ids": torch.zeros((len(rows), length), dtype=torch.long),
        "labels": torch.full((len(rows), length), IGNORE_INDEX, dtype=torch.long),
    }
    if "loc" in shape_of:
        batch["loc_targets"] = torch.zeros((len(rows), length, 2), dtype=torch.float32)
        batch["loc_mask"] = torch.zeros((len(rows), length), dtype=torch.bool)
    if "traj" in shape_of:
        batch["traj_targets"] = torch.zeros((len(rows), length, *shape_of["traj"]), dtype=torch.float32)
        batch["traj_mask"] = torch.zeros((len(rows), length, *shape_of["traj"][:-1]), dtype=torch.bool)
    for index, row in enumerate(rows):
        size = len(row["ids"])
        where = slice(length - size, length) if padding_side == "left" else slice(0, size)
        batch["input_ids"][index, where] = torch.as_tensor(row["ids"])
        batch["attention_mask"][index, where] = 1
        batch["position_ids"][index, where] = torch.arange(size)
        batch["labels"][index, where] = torch.as_tensor(row["labels"])
        for target, mask in (("loc", "loc_mask"), ("traj", "traj_mask")):
            if target in row:
                batch[f"{target}_targets"][index, where] = torch.as_tensor(row[target])
                batch[mask][index, where] = torch.as_tensor(row[mask])
    return batch


def _splice_one(item: SpliceItem, video_token_id: int) -> dict[str, np.ndarray]:
    """One row's ids, labels and targets, unpadded (targets zero outside the answer)."""
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
    for target, mask, tail in (("loc", "loc_mask", (2,)), ("traj", "traj_mask", None)):
        values, valid = getattr(item, target), getattr(item, mask)
        if values is None:
            continue
        tail = tail or values.shape[1:]
        if values.shape != (answers, *tail) or valid.shape != values.shape[:-1]:
            raise ValueError(f"{target} targets of shape {values.shape} / mask {valid.shape} do not fit {answers} answer tokens")
        row[target] = np.concatenate([np.zeros((len(prompt), *tail), np.float32), values.astype(np.float32)])
        row[mask] = np.concatenate([np.zeros((len(prompt), *tail[:-1]), bool), valid.astype(bool)])
    return row
