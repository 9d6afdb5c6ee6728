"""pite-mcq: distractor band logic with a fake embedder, bad input lines, and one run of the real
offline MiniLM embedder on a hand-made set (distractors never the answer, in the band,
deterministic)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from training.datasets.report import SkipReport
from training.evaluation.text import normalize_answer
from training.mcq.cli import main
from training.mcq.generate import TOO_FEW, MCQConfig, choose_distractors, generate_mcq, nearest_neighbours
from training.mcq.records import DUPLICATE_ID, QAPair, read_qa_pairs


class FakeEmbedder:
    """Unit vectors looked up by text; records how many texts it was asked for."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = {t: np.asarray(v, np.float32) / np.linalg.norm(v) for t, v in vectors.items()}
        self.calls: list[int] = []

    def embed(self, texts):
        self.calls.append(len(texts))
        return np.stack([self.vectors[t] for t in texts])


def _angle(cosine: float) -> list[float]:
    """A 2-D unit vector whose cosine with (1, 0) is ``cosine``."""
    return [cosine, float(np.sqrt(1 - cosine**2))]


# --- the band logic ---------------------------------------------------------------------
def test_choose_distractors_keeps_the_band_dedupes_and_never_the_answer() -> None:
    config = MCQConfig(num_distractors=3, low=0.2, high=0.9)
    candidates = ["Left.", "up", "UP!", "down", "right", "the left", "nothing", "far", ""]
    sims = [0.99, 0.5, 0.5, 0.3, 0.2, 0.5, 0.1, 0.95, 0.5]
    # "Left." and "the left" are the answer itself; "UP!" repeats "up"; "nothing" (0.1) is
    # below and "far" (0.95) above the band; "" has no text. In the band: up, down, right.
    chosen = choose_distractors("left", candidates, sims, config, random.Random(0))
    assert sorted(chosen) == ["down", "right", "up"]
    assert choose_distractors("left", candidates, sims, MCQConfig(num_distractors=4), random.Random(0)) is None


def test_choose_distractors_draws_with_the_generator() -> None:
    config = MCQConfig(num_distractors=2)
    candidates = [f"answer {i}" for i in range(10)]
    sims = [0.5] * 10
    first = choose_distractors("x", candidates, sims, config, random.Random("0:q1"))
    assert first == choose_distractors("x", candidates, sims, config, random.Random("0:q1"))
    draws = {tuple(choose_distractors("x", candidates, sims, config, random.Random(f"{s}:q1"))) for s in range(20)}
    assert len(draws) > 5  # a draw, not the first ones


def test_widen_fills_from_below_the_band_most_similar_first_never_above() -> None:
    config = MCQConfig(num_distractors=3, shortfall="widen")
    candidates = ["in band", "far below", "just below", "above", "below"]
    sims = [0.5, 0.05, 0.19, 0.95, 0.1]
    chosen = choose_distractors("answer", candidates, sims, config, random.Random(0))
    assert chosen == ["in band", "just below", "below"]
    short = choose_distractors("answer", ["above", "in band"], [0.95, 0.5], config, random.Random(0))
    assert short is None  # "above" may be a paraphrase: never used


def test_nearest_neighbours_excludes_self_orders_by_similarity_then_index() -> None:
    vectors = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [1, 0], [0, 1]], np.float32)
    neighbours = nearest_neighbours(vectors, 3)
    assert neighbours[0].tolist() == [3, 1, 2]
    assert neighbours[3].tolist() == [0, 1, 2]
    assert neighbours[4].tolist() == [2, 1, 0]  # sims 0.8, 0.6, then 0 for rows 0 and 3: index order
    assert nearest_neighbours(vectors, 50).shape == (5, 4)  # at most all the others
    assert nearest_neighbours(vectors[:1], 50).shape == (1, 0)


def test_generate_with_a_fake_embedder(tmp_path: Path) -> None:
    # All questions alike; answers at chosen similarities to "red" (the x axis).
    answers = {"red": 1.0, "blue": 0.6, "green": 0.5, "yellow": 0.4, "purple": 0.3, "black": 0.1}
    vectors = {a: _angle(c) for a, c in answers.items()}
    vectors.update({f"what colour is object {i}?": [1.0, 0.01 * i] for i in range(6)})
    pairs = [
        QAPair(
            id=f"q{i}",
            video=f"v{i}.mp4",
            question=f"what colour is object {i}?",
            answer=answer,
            duration=10.0,
            timestamps=((1.0, 2.0),),
            file="qa.jsonl",
            line=i + 1,
        )
        for i, answer in enumerate(answers)
    ]
    embedder = FakeEmbedder(vectors)
    report = SkipReport()
    records = generate_mcq(pairs, embedder, MCQConfig(num_distractors=4, low=0.2, high=0.9), report)
    assert embedder.calls == [12]  # the distinct questions and answers, in one call
    red = records[0]
    assert red["id"] == "q0" and red["options"][red["answer"]] == "red"
    assert sorted(red["options"]) == ["blue", "green", "purple", "red", "yellow"]  # black (0.1) out
    assert set(red) == {"id", "video", "duration", "question", "options", "answer", "timestamps"}
    assert red["timestamps"] == [[1.0, 2.0]]
    # "black" has cos 0.1 * ... to the others: too few in band -> skipped and counted at its line.
    kept = {r["id"] for r in records}
    assert "q5" not in kept and report.counts[TOO_FEW] == 6 - len(kept)
    assert any(str(e).startswith("qa.jsonl:6: answer:") for e in report.examples[TOO_FEW])
    assert report.loaded == len(records)
    # Same inputs, same output.
    assert generate_mcq(pairs, FakeEmbedder(vectors), MCQConfig(), SkipReport()) == generate_mcq(
        pairs, FakeEmbedder(vectors), MCQConfig(), SkipReport()
    )


# --- input lines ------------------------------------------------------------------------
def test_bad_lines_are_counted_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "qa.jsonl"
    good = {"id": "a", "video": "v.mp4", "duration": 5, "question": "q?", "answer": "x", "timestamps": [[1, 2]]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps({**good, "id": "b", "answer": None}),
        json.dumps({**good, "id": "c", "timestamps": [[3, 9]]}),  # beyond the 5 s clip
        json.dumps(good),  # duplicate id
        "",
        json.dumps({"video": "w.mp4", "question": "r?", "answer": "y", "timestamps": [0, 1]}),  # id from the line
        json.dumps({**good, "id": "d", "question": 3}),
    ]
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"id": "e", "question": "\xff"}\n')
    report = SkipReport()
    pairs = read_qa_pairs([path], report)
    assert [p.id for p in pairs] == ["a", "qa:7"]
    assert pairs[0].timestamps == ((1.0, 2.0),) and pairs[1].timestamps == ((0.0, 1.0),) and pairs[1].duration is None
    assert dict(report.counts) == {
        "invalid json": 2,
        "missing field": 1,
        "out-of-range timestamps": 1,
        DUPLICATE_ID: 1,
        "wrong field type or value": 1,
    }
    assert str(report.examples["missing field"][0]).startswith(f"{path}:3: answer")
    assert str(report.examples[DUPLICATE_ID][0]).startswith(f"{path}:5: id")


def test_cli_usage_errors(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "out.jsonl")]) == 2
    (tmp_path / "qa.jsonl").write_text("{bad\n")
    assert main([str(tmp_path / "qa.jsonl"), "-o", str(tmp_path / "out.jsonl"), "--band", "0.9", "0.2"]) == 2
    assert main([str(tmp_path / "qa.jsonl"), "-o", str(tmp_path / "out.jsonl")]) == 1  # nothing usable
    assert (tmp_path / "out.jsonl").read_text() == ""
    assert "invalid json" in capsys.readouterr().out


# --- the real offline embedder ----------------------------------------------------------
KITCHEN = [
    ("what does the man pick up from the table?", "a red cup"),
    ("what does the woman take from the shelf?", "a blue mug"),
    ("what does the boy hold in his hand?", "a glass of water"),
    ("what does the chef put on the counter?", "a white plate"),
    ("what does the girl pick up from the floor?", "a wooden spoon"),
    ("what does the cook use to cut the onion?", "a sharp knife"),
    ("what does the man put in the sink?", "a dirty bowl"),
    ("what does the woman pour the tea into?", "a small teapot"),
    ("what does the boy carry to the table?", "a tray of cookies"),
    ("what does the girl throw in the bin?", "an empty bottle"),
    ("what does the man lift from the table?", "A red cup."),  # the same answer as the first
    ("what does the woman wash after dinner?", "the frying pan"),
]


@pytest.fixture(scope="module")
def embedder():
    from training.mcq.embedder import MiniLMEmbedder

    return MiniLMEmbedder(batch_size=5)


def test_real_embedder_distractors_in_band_never_the_answer_deterministic(tmp_path: Path, embedder, capsys) -> None:
    source = tmp_path / "qa.jsonl"
    rows = [
        {"id": f"k{i}", "video": f"v{i}.mp4", "duration": 30.0, "question": q, "answer": a, "timestamps": [[i, i + 2.5]]}
        for i, (q, a) in enumerate(KITCHEN)
    ]
    source.write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    band = (0.3, 0.6)
    out = tmp_path / "out" / "mcq.jsonl"
    args = [str(source), "-o", str(out), "--band", *map(str, band), "--distractors", "3", "--seed", "7"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "12 QA pairs read" in printed and "invalid json" in printed
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert 6 <= len(written) <= 12  # the band is narrow on purpose: some questions go

    by_id = {r["id"]: r for r in rows}
    texts = sorted({t for r in written for t in r["options"]} | {r["answer"] for r in rows})
    vectors = dict(zip(texts, embedder.embed(texts)))
    for record in written:
        source_row = by_id[record["id"]]
        truth = source_row["answer"]
        assert len(record["options"]) == 4 and record["options"][record["answer"]] == truth
        assert record["timestamps"] == source_row["timestamps"] and record["question"] == source_row["question"]
        distractors = [o for i, o in enumerate(record["options"]) if i != record["answer"]]
        keys = [normalize_answer(o) for o in distractors]
        assert len(set(keys)) == 3 and normalize_answer(truth) not in keys
        for option in distractors:
            similarity = float(vectors[option] @ vectors[truth])
            assert band[0] - 1e-4 <= similarity <= band[1] + 1e-4, (record["id"], option, similarity)

    # The library with a second model instance gives the same records (the CLI's RNG and
    # neighbour ties depend only on seed, ids and data).
    again = generate_mcq(
        read_qa_pairs([source], SkipReport()), embedder, MCQConfig(num_distractors=3, low=band[0], high=band[1], seed=7), SkipReport()
    )
    assert again == written
    other_seed = generate_mcq(
        read_qa_pairs([source], SkipReport()), embedder, MCQConfig(num_distractors=3, low=band[0], high=band[1], seed=8), SkipReport()
    )
    assert [r["options"] for r in other_seed] != [r["options"] for r in written]
