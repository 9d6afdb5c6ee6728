"""pite-mcq at scale: 2 worker processes write the one-process output byte for byte, and a run
killed mid-way then rerun with the same arguments embeds only the shards it had not finished
and writes the uninterrupted run's output. 300 generated QA pairs, shards of 8 texts."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.mcq.cli import main

REPO = Path(__file__).parents[2]
PEOPLE = ["man", "woman", "boy", "girl", "chef", "cook"]
VERBS = ["pick up", "put down", "carry", "wash", "hold"]
THINGS = ["a red cup", "a blue mug", "a white plate", "a wooden spoon", "a sharp knife", "a small teapot",
          "an empty bottle", "the frying pan", "a tray of cookies", "a glass of water"]


@pytest.fixture(scope="module")
def qa(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mcq_scale") / "qa.jsonl"
    combos = itertools.islice(itertools.product(PEOPLE, VERBS, THINGS), 300)
    rows = [{"id": f"q{i}", "video": f"v{i // 3}.mp4", "question": f"what does the {who} {verb} in clip {i % 7}?",
             "answer": f"{thing} by the {who}"} for i, (who, verb, thing) in enumerate(combos)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "{broken\n")
    return path


def arguments(qa: Path, out: Path, *extra: str) -> list[str]:
    return [str(qa), "-o", str(out), "--threads", "1", "--batch-size", "4", "--shard-size", "8", "--no-progress",
            "--shortfall", "widen", *extra]


@pytest.fixture(scope="module")
def one_process(qa: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("one") / "mcq.jsonl"
    assert main(arguments(qa, out)) == 0
    return out


def test_two_workers_write_the_same_bytes(qa: Path, one_process: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mcq.jsonl"
    assert main(arguments(qa, out, "--workers", "2")) == 0
    assert out.read_bytes() == one_process.read_bytes()
    assert len(one_process.read_text().splitlines()) == 300
    printed = capsys.readouterr().out
    assert "1  invalid json" in printed and "qa.jsonl:301" in printed  # the bad line counted and named
    assert not (tmp_path / "mcq.jsonl.parts").exists()  # kept vectors are gone once the output is written


def test_a_killed_run_rerun_embeds_only_what_was_left(qa: Path, one_process: Path, tmp_path: Path) -> None:
    out = tmp_path / "mcq.jsonl"
    command = [sys.executable, "-m", "training.mcq.cli", *arguments(qa, out)]
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = tmp_path / "mcq.jsonl.parts"
    deadline = time.monotonic() + 120
    while not list(parts.glob("*/shards/*.pkl")) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = len(list(parts.glob("*/shards/*.pkl")))
    assert kept >= 1 and not out.exists(), "the run ended before the kill"
    rerun = subprocess.run(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True,
                           text=True, check=True)
    assert "more kept by an earlier unfinished run" in rerun.stdout
    reused = int(rerun.stdout.split("texts (")[1].split(" more")[0])
    assert reused >= 8 * kept - 8, rerun.stdout  # whole shards of 8 (a last one may be shorter)
    assert out.read_bytes() == one_process.read_bytes()
