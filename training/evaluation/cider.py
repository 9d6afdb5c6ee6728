"""CIDEr-D (Vedantam et al., CVPR 2015) as coco-caption computes it (its ``Cider`` is CIDEr-D).

For a corpus of items, each a candidate caption with one or more references (already
tokenised: words separated by spaces, see ``training.evaluation.text.caption_text``):

- n-grams n = 1..4 of every sentence, counted.
- Document frequency ``df(g)``: the number of ITEMS whose references contain ``g`` (candidates
  do not count), computed over the corpus passed in, as the official scorer does; so a score
  depends on the corpus it is computed in. ``idf(g) = log(#items) - log(max(1, df(g)))``.
- A sentence's vector for n: ``tf(g) * idf(g)`` over its n-grams.
- Similarity of candidate c and reference r for n: ``Σ_g min(c_g, r_g) * r_g / (|c| |r|)``
  (CIDEr-D's clipping; 0 if either norm is 0), times the Gaussian length penalty
  ``exp(-δ² / (2σ²))``, σ = 6, where δ is the difference of the two sentences' BIGRAM counts
  (coco-caption counts length that way: words − 1 for a non-empty sentence).
- Item score: the mean over n of the mean over references, × 10. Corpus score: mean of items.

A corpus of ONE item scores 0 (``log(1) - log(1) = 0`` for every n-gram): a property of the
official formula that dense-captioning evaluation (per-video corpora) inherits.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

MAX_N = 4
SIGMA = 6.0


def ngram_counts(sentence: str, max_n: int = MAX_N) -> Counter:
    """Counts of the 1..``max_n``-grams of a space-separated sentence (tuples of words)."""
    words = sentence.split()
    return Counter(tuple(words[i : i + n]) for n in range(1, max_n + 1) for i in range(len(words) - n + 1))


def _vector(counts: Counter, df: Counter, log_items: float, max_n: int) -> tuple[list[dict], list[float], int]:
    vec: list[dict] = [{} for _ in range(max_n)]
    norm = [0.0] * max_n
    bigrams = 0
    for gram, tf in counts.items():
        n = len(gram) - 1
        value = tf * (log_items - math.log(max(1.0, df[gram])))
        vec[n][gram] = value
        norm[n] += value * value
        if n == 1:
            bigrams += tf
    return vec, [math.sqrt(v) for v in norm], bigrams


def cider_d(
    candidates: Sequence[str], references: Sequence[Sequence[str]], *, sigma: float = SIGMA, max_n: int = MAX_N
) -> tuple[float, list[float]]:
    """``(corpus score, per-item scores)`` of CIDEr-D (× 10, as coco-caption).

    ``candidates[i]`` is scored against ``references[i]`` (at least one sentence each).
    """
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} candidates but {len(references)} reference lists")
    if not candidates:
        return 0.0, []
    if any(len(refs) == 0 for refs in references):
        raise ValueError("every candidate needs at least one reference")
    ref_counts = [[ngram_counts(r, max_n) for r in refs] for refs in references]
    df: Counter = Counter()
    for counts in ref_counts:
        df.update(set().union(*counts))
    log_items = math.log(len(candidates))
    scores = []
    for candidate, refs in zip(candidates, ref_counts):
        c_vec, c_norm, c_len = _vector(ngram_counts(candidate, max_n), df, log_items, max_n)
        total = [0.0] * max_n
        for ref in refs:
            r_vec, r_norm, r_len = _vector(ref, df, log_items, max_n)
            penalty = math.exp(-((c_len - r_len) ** 2) / (2 * sigma**2))
            for n in range(max_n):
                dot = sum(min(value, r_vec[n].get(gram, 0.0)) * r_vec[n].get(gram, 0.0) for gram, value in c_vec[n].items())
                if c_norm[n] != 0 and r_norm[n] != 0:
                    dot /= c_norm[n] * r_norm[n]
                total[n] += dot * penalty
        scores.append(10.0 * sum(total) / max_n / len(refs))
    return sum(scores) / len(scores), scores
