"""Open QA pairs -> multiple-choice questions, Grounded-VideoLLM's recipe (docs/papers.md,
"Grounded VideoQA data"): for each question, the ``neighbours`` (50) most similar OTHER
questions by cosine similarity of sentence embeddings; their answers whose similarity to the
true answer lies in ``[low, high]`` (0.2-0.9) are the candidates; ``num_distractors`` (4) of
them are drawn as distractors.

Choices the paper leaves open, made here:
- Candidates are the neighbours' answers in order of question similarity, deduplicated by
  ``normalize_answer`` (case, punctuation, articles), and never one whose normal form equals
  the true answer's ("The left." is not a distractor for "left"), nor an empty normal form.
- The draw is ``random.Random(f"{seed}:{id}").sample`` of the in-band candidates and the
  options are shuffled with the same generator: a question's options depend only on the
  seed, its id and the data, never on the order of processing.
- Fewer in-band candidates than wanted (``shortfall``): ``"skip"`` (default) drops the
  question, counted as ``too few distractors in band``; ``"widen"`` fills up with the
  neighbours' answers BELOW the band, most similar first (never above ``high``: those may
  be paraphrases of the true answer, which would make the question ambiguous), and skips
  only if still short.
- Neighbour ties are broken by input order, so results are deterministic.

Output records are the stage-3 multiple-choice format (docs/data-formats.md):
``{"id", "video", "duration"?, "question", "options", "answer": index, "timestamps"?}``.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from training.datasets.report import RecordError, SkipReport
from training.evaluation.text import normalize_answer
from training.mcq.embedder import Embedder
from training.mcq.records import QAPair

TOO_FEW = "too few distractors in band"
SHORTFALL_POLICIES = ("skip", "widen")
_BLOCK_ELEMENTS = 1 << 24  # similarity-matrix entries computed at once (64 MiB of float32)


@dataclass(frozen=True)
class MCQConfig:
    """Parameters of the recipe (paper values by default)."""

    neighbours: int = 50
    num_distractors: int = 4
    low: float = 0.2
    high: float = 0.9
    shortfall: str = "skip"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.neighbours < 1 or self.num_distractors < 1:
            raise ValueError("neighbours and num_distractors must be at least 1")
        if not -1.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"the band must satisfy -1 <= low <= high <= 1, got [{self.low}, {self.high}]")
        if self.shortfall not in SHORTFALL_POLICIES:
            raise ValueError(f"shortfall must be one of {SHORTFALL_POLICIES}, got {self.shortfall!r}")


def embed_unique(texts: Sequence[str], embedder: Embedder) -> tuple[np.ndarray, np.ndarray]:
    """``(vectors of the distinct texts (U, dim), index of each text's row (len(texts),))``."""
    distinct = list(dict.fromkeys(texts))
    row = {t: i for i, t in enumerate(distinct)}
    return np.asarray(embedder.embed(distinct), dtype=np.float32), np.array([row[t] for t in texts], dtype=np.int64)


def nearest_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """For every row of ``vectors`` (N, dim) the ``min(k, N-1)`` most similar OTHER rows by dot
    product, most similar first, ties by row index: ``(N, min(k, N-1))`` int64.

    Computed in blocks of rows so memory stays ``O(block * N)``.
    """
    n = len(vectors)
    k = min(k, n - 1)
    out = np.zeros((n, max(k, 0)), dtype=np.int64)
    if k <= 0:
        return out
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, n, block):
        rows = np.arange(start, min(start + block, n))
        sims = vectors[rows] @ vectors.T  # (block, N)
        sims[np.arange(len(rows)), rows] = -np.inf
        # The k-th largest value of each row; everything at least as large (ties included) is
        # then ordered exactly: by similarity descending, then by index ascending.
        kth = np.take_along_axis(sims, np.argpartition(-sims, k - 1, axis=1)[:, k - 1 : k], axis=1)[:, 0]
        for r, row_sims in enumerate(sims):
            candidates = np.flatnonzero(row_sims >= kth[r])
            out[start + r] = candidates[np.lexsort((candidates, -row_sims[candidates]))][:k]
    return out


def choose_distractors(
    answer: str,
    candidates: Sequence[str],
    similarities: Sequence[float],
    config: MCQConfig,
    rng: random.Random,
) -> list[str] | None:
    """Distractors for the true ``answer`` from the neighbours' answers ``candidates`` (most
    similar question first) with their answers' similarities to ``answer``; None when too
    few can be found (see the module docstring for the rules)."""
    keys: set[str] = {normalize_answer(answer)}
    in_band: list[tuple[str, float]] = []
    below: list[tuple[str, float]] = []
    for text, similarity in zip(candidates, similarities):
        key = normalize_answer(text)
        if not key or key in keys:
            continue
        keys.add(key)
        if config.low <= similarity <= config.high:
            in_band.append((text.strip(), similarity))
        elif similarity < config.low:
            below.append((text.strip(), similarity))
    want = config.num_distractors
    if len(in_band) >= want:
        return [text for text, _ in rng.sample(in_band, want)]
    if config.shortfall == "widen" and len(in_band) + len(below) >= want:
        below.sort(key=lambda item: -item[1])  # stable: ties keep neighbour order
        return [text for text, _ in in_band + below[: want - len(in_band)]]
    return None


def to_record(pair: QAPair, distractors: list[str], rng: random.Random) -> dict:
    """The stage-3 multiple-choice record: options shuffled, ``answer`` the true one's index."""
    options = [pair.answer, *distractors]
    order = list(range(len(options)))
    rng.shuffle(order)
    record: dict = {"id": pair.id, "video": pair.video}
    if pair.duration is not None:
        record["duration"] = pair.duration
    record.update(question=pair.question, options=[options[i] for i in order], answer=order.index(0))
    if pair.timestamps is not None:
        record["timestamps"] = [list(s) for s in pair.timestamps]
    return record


def generate_mcq(pairs: Sequence[QAPair], embedder: Embedder, config: MCQConfig, report: SkipReport) -> list[dict]:
    """Multiple-choice records for ``pairs`` (input order). A question that gets too few
    distractors is counted in ``report`` as ``too few distractors in band`` at its file:line;
    ``report.loaded`` becomes the number of records made."""
    if not pairs:
        return []
    # Questions and answers in one call: one pass of the (possibly sharded) embedder.
    vectors, rows = embed_unique([p.question for p in pairs] + [p.answer for p in pairs], embedder)
    question_rows, answer_rows = rows[: len(pairs)], rows[len(pairs) :]
    neighbours = nearest_neighbours(vectors[question_rows], config.neighbours)
    records = []
    for i, pair in enumerate(pairs):
        similar = neighbours[i]
        similarities = vectors[answer_rows[similar]] @ vectors[answer_rows[i]]  # (k,)
        rng = random.Random(f"{config.seed}:{pair.id}")
        distractors = choose_distractors(
            pair.answer, [pairs[j].answer for j in similar], similarities.tolist(), config, rng
        )
        if distractors is None:
            detail = f"id '{pair.id}': fewer than {config.num_distractors} usable answers in [{config.low}, {config.high}]"
            report.skip(pair.file, pair.line, RecordError(TOO_FEW, "answer", detail))
            continue
        records.append(to_record(pair, distractors, rng))
    report.loaded = len(records)
    return records
