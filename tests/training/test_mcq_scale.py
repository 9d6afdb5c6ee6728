"""pite-mcq at scale: 2 worker processes write the one-process output byte for byte, and a run
killed mid-way then rerun with the same arguments embeds only the shards it had not finished
(kept as .npy; a kept file that does not read, a pickle put there included, is named, counted
and embedded again, never unpickled) and writes the uninterrupted run's output. 300 generated
QA pairs, shards of 8 texts."""

from __future__ import annotations

import itertools
import json
import os
import pickle
import shutil
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


@pytest.fixture(scope="module")
def killed(qa: Path, tmp_path_factory) -> Path:
    """The kept vectors of a run killed (SIGKILL) once it had kept at least 3 shards."""
    out = tmp_path_factory.mktemp("killed") / "mcq.jsonl"
    process = subprocess.Popen([sys.executable, "-m", "training.mcq.cli", *arguments(qa, out)], cwd=REPO,
                               env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    parts = out.with_name("mcq.jsonl.parts")
    deadline = time.monotonic() + 120
    while len(list(parts.glob("*/shards/*.npy"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists(), "the run ended before the kill"
    return parts


def rerun_of(killed: Path, folder: Path) -> tuple[Path, list[Path]]:
    """Where a rerun of the killed run writes (its kept vectors copied there), and the kept shard files."""
    shutil.copytree(killed, folder / "mcq.jsonl.parts")
    return folder / "mcq.jsonl", sorted((folder / "mcq.jsonl.parts").glob("*/shards/*.npy"))


def run(qa: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "training.mcq.cli", *arguments(qa, out)], cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True, check=True)


def reused(printed: str) -> int:
    return int(printed.split("texts (")[1].split(" more")[0])


def test_a_killed_run_rerun_embeds_only_what_was_left(qa: Path, one_process: Path, killed: Path,
                                                      tmp_path: Path) -> None:
    out, kept = rerun_of(killed, tmp_path)
    assert len(kept) >= 3
    done = run(qa, out)
    assert "more kept by an earlier unfinished run)" in done.stdout and "Unreadable" not in done.stderr
    assert reused(done.stdout) >= 8 * len(kept) - 8, done.stdout  # whole shards of 8 (a last one may be shorter)
    assert out.read_bytes() == one_process.read_bytes()


def test_an_unreadable_kept_shard_is_named_counted_and_embedded_again(qa: Path, one_process: Path, killed: Path,
                                                                     tmp_path: Path) -> None:
    out, kept = rerun_of(killed, tmp_path)
    truncated, dropped = kept[:2]
    truncated.write_bytes(truncated.read_bytes()[:100])
    marker = tmp_path / "code ran"
    dropped.write_bytes(pickle.dumps(RunsCode(str(marker))))  # a pickle put in the folder
    done = run(qa, out)
    assert "; 2 kept shard files unreadable)" in done.stdout, done.stdout
    assert f"{truncated}: unreadable kept shard" in done.stderr and f"{dropped}: unreadable kept shard" in done.stderr
    assert not marker.exists()  # the pickle was not loaded
    assert reused(done.stdout) >= 8 * (len(kept) - 2) - 8, done.stdout
    assert out.read_bytes() == one_process.read_bytes()


class RunsCode:
    """Unpickled, it makes the folder ``path``: the code a pickle file runs on load."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return os.mkdir, (self.path,)
