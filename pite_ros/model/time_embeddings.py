"""The LM's embedding and head rows of PiTe's added tokens: fitted to a grown tokenizer, and the
temporal tokens' ordinal start.

``add_pite_tokens`` gives a pretrained tokenizer PiTe's tokens (``tokenizer.extend_tokenizer``)
and fits the LM's embeddings and head to it (``fit_embeddings``): new rows set to the mean of
the old ones (as Grounded-VideoLLM's ``reset_embeddings``).

Ordinal initialisation of the temporal tokens' rows (``time_token_init: ordinal``):

docs/papers.md ("Unified temporal tokens") adds ``<0>..<M>`` to the vocabulary and does not say
how their new rows start. Started at random, row ``<47>`` knows nothing of ``<46>`` or
``<48>``: the model has to learn the order of 301 tokens from the grounding examples one bin
at a time. The shipped default model, trained so, still had input rows of neighbouring bins
at cosine 0.05 after 3500 stage-3 steps (its LM-head rows at 0.22).

Here row ``k`` of the input embeddings and of the LM head is a sinusoidal code of ``k / M``
(as the Transformer's position encodings: angular frequencies in a geometric series from a
half turn over the whole clip to a period of four bins) mapped into the model's width by a
random orthonormal basis, scaled to the mean norm of the other rows. Neighbouring bins then
start similar and far ones dissimilar, so a gradient on ``<47>`` also moves ``<46>``, and the
head's logits over time are a smooth function of the bin that the hidden state can peak
anywhere. The rows still train freely afterwards.
"""

from __future__ import annotations

import math

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from pite_ros.model.tokenizer import extend_tokenizer

SHORTEST_PERIOD_BINS = 4.0


def sinusoidal_codes(num_rows: int, frequencies: int) -> torch.Tensor:
    """``(num_rows, 2 * frequencies)``: ``cos``/``sin`` of ``k * w_j`` for rows ``k = 0..num_rows-1``,
    ``w_j`` geometric from ``pi / (num_rows - 1)`` (half a turn over all rows) to a period of
    ``SHORTEST_PERIOD_BINS`` rows. Every row has norm ``sqrt(frequencies)``."""
    if num_rows < 2 or frequencies < 1:
        raise ValueError(f"need at least 2 rows and 1 frequency, got {num_rows} and {frequencies}")
    slowest = math.pi / (num_rows - 1)
    fastest = max(2 * math.pi / SHORTEST_PERIOD_BINS, slowest)
    omegas = torch.logspace(math.log10(slowest), math.log10(fastest), frequencies, dtype=torch.float64)
    angles = torch.arange(num_rows, dtype=torch.float64)[:, None] * omegas[None, :]
    return torch.cat([angles.cos(), angles.sin()], dim=1)


def ordinal_rows(num_rows: int, width: int, norm: float) -> torch.Tensor:
    """``(num_rows, width)`` float64 rows of norm ``norm``: ``sinusoidal_codes`` through a random
    orthonormal map (from torch's global generator, so a seeded build is reproducible)."""
    frequencies = max(1, min(32, width // 2))
    codes = sinusoidal_codes(num_rows, frequencies)
    basis, _ = torch.linalg.qr(torch.randn(width, codes.shape[1], dtype=torch.float64))
    return codes @ basis.T * (norm / math.sqrt(frequencies))


@torch.no_grad()
def init_time_token_rows(causal_lm: PreTrainedModel, time_token_ids: list[int]) -> None:
    """Overwrite the temporal tokens' rows of ``causal_lm``'s input embeddings and LM head with
    ``ordinal_rows`` (an independent basis each), at the mean norm of that matrix's other rows."""
    ids = torch.tensor(time_token_ids)
    for matrix in (causal_lm.get_input_embeddings().weight, causal_lm.get_output_embeddings().weight):
        others = torch.ones(matrix.shape[0], dtype=torch.bool)
        others[ids] = False
        norm = matrix[others].double().norm(dim=1).mean().item()
        matrix[ids] = ordinal_rows(len(time_token_ids), matrix.shape[1], norm).to(matrix.dtype)


def add_pite_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, num_time_bins: int) -> int:
    """Add ``<video> <grounded> <sep>`` and ``<0>..<M>`` to a pretrained ``tokenizer`` and fit the
    causal LM ``model``'s input embeddings and LM head to it (``fit_embeddings``); returns how
    many tokens were new."""
    new_ids = extend_tokenizer(tokenizer, num_time_bins)
    fit_embeddings(model, new_ids, max(len(tokenizer), model.get_input_embeddings().weight.shape[0]))
    return len(new_ids)


@torch.no_grad()
def fit_embeddings(model: PreTrainedModel, new_ids: list[int], vocabulary: int) -> None:
    """Untie the LM head from the input embeddings (their temporal rows train apart), grow both
    to ``vocabulary`` rows, and set the rows of ``new_ids`` to the mean of the rows before them,
    each matrix its own mean (Grounded-VideoLLM's ``reset_embeddings``). A tokenizer smaller
    than a padded embedding matrix puts its new ids on unused rows, which get the mean too."""
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    if head.weight is embeddings.weight or getattr(model.config, "tie_word_embeddings", False):
        head.weight = torch.nn.Parameter(embeddings.weight.detach().clone())
        model.config.tie_word_embeddings = False
    first_new = min(new_ids) if new_ids else embeddings.weight.shape[0]
    means = (embeddings.weight[:first_new].float().mean(0), head.weight[:first_new].float().mean(0))
    if vocabulary > embeddings.weight.shape[0]:
        model.resize_token_embeddings(vocabulary, mean_resizing=False)
    for matrix, mean in zip((model.get_input_embeddings(), model.get_output_embeddings()), means, strict=True):
        matrix.weight[new_ids] = mean.to(matrix.weight.dtype)
