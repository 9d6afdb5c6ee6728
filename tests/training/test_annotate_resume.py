"""Killed runs: a SIGKILLed worker (of the process pool or of a local Ray cluster) or a SIGKILLed
run loses at most the videos in flight."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from training.synth import WorldConfig, generate

VIDEOS = 8
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume")
    generate(root, videos=VIDEOS, images=0, split="eval", seed=5, config=WorldConfig(min_seconds=5, max_seconds=6))
    return root / "stage2.jsonl"


def start(data: Path, out: Path, *extra: str) -> subprocess.Popen:
    """The CLI in its own session. Farneback flow makes each video take about half a second;
    rule-based phrases save loading spaCy in every worker."""
    command = [sys.executable, "-m", "training.annotate.cli", "run", str(data), "--out", str(out), "--workers", "2",
               "--segmenter", "gt", "--tracker", "farneback", "--phrases", "rules", "--no-progress", *extra]
    environment = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)


def wait_for_records(out: Path, count: int, process: subprocess.Popen, timeout: float = 120.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        records = sorted((out / "records").glob("*.json"))
        if len(records) >= count:
            return records
        assert process.poll() is None, process.stdout.read().decode()
        time.sleep(0.02)
    raise TimeoutError(f"no {count} records in {timeout} s")


def workers_of(pid: int) -> list[int]:
    """Process ids of the pool workers (spawned children running multiprocessing's spawn_main)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue
        if parent == pid and "spawn_main" in command:
            found.append(int(entry.name))
    return found


def modification_times(out: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in (out / "records").glob("*.json")}


def test_a_killed_worker_is_replaced_and_nothing_is_lost(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start(data, out)
    wait_for_records(out, 1, process)
    finished = modification_times(out)
    workers = workers_of(process.pid)
    assert workers, "no pool worker found"
    os.kill(workers[0], signal.SIGKILL)
    assert len(finished) < VIDEOS, "the run ended before the kill: make the videos slower"
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output.decode()
    assert len(list((out / "records").glob("*.json"))) == VIDEOS
    times = modification_times(out)
    assert {name: times[name] for name in finished} == finished  # finished videos were not recomputed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == VIDEOS and summary["failures"] == {}
    # And a re-run has nothing left to do.
    again = start(data, out)
    again.communicate(timeout=120)
    assert json.loads((out / "summary.json").read_text())["done_now"] == 0
    assert modification_times(out) == times


def test_a_killed_run_resumes_where_it_stopped(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start(data, out)
    wait_for_records(out, 2, process)
    os.killpg(process.pid, signal.SIGKILL)  # the whole run, workers included
    process.wait(timeout=30)
    finished = modification_times(out)
    assert 2 <= len(finished) < VIDEOS
    again = start(data, out)
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output.decode()
    times = modification_times(out)
    assert len(times) == VIDEOS
    assert {name: times[name] for name in finished} == finished
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done_now"] <= VIDEOS - len(finished) and summary["records"] == VIDEOS
    lines = (out / "annotations.jsonl").read_text().splitlines()
    assert len(lines) == VIDEOS and all(json.loads(line)["phrases"] for line in lines)


def ray_task_process(pid: int, timeout: float = 60.0) -> int:
    """A Ray worker under the run ``pid`` while it runs a video (Ray titles it ``ray::process_task``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in psutil.Process(pid).children(recursive=True):
            try:
                if child.cmdline()[:1] == ["ray::process_task"]:
                    return child.pid
            except psutil.Error:
                continue
        time.sleep(0.01)
    raise TimeoutError(f"no Ray worker running a video under {pid} in {timeout} s")


def test_ray_a_killed_worker_is_retried_and_a_rerun_has_nothing_left(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = start(data, out, "--ray")  # a local Ray cluster of 2 CPUs: 2 workers
    wait_for_records(out, 1, process, timeout=180)
    finished = modification_times(out)
    os.kill(ray_task_process(process.pid), signal.SIGKILL)
    assert len(finished) < VIDEOS, "the run ended before the kill: make the videos slower"
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output.decode()
    assert "2 workers" in output.decode()
    times = modification_times(out)
    assert len(times) == VIDEOS and {name: times[name] for name in finished} == finished
    summary = json.loads((out / "summary.json").read_text())
    assert summary["records"] == VIDEOS and summary["failures"] == {} and summary["workers"] == 2
    ids = [json.loads(line)["id"] for line in (out / "annotations.jsonl").read_text().splitlines()]
    assert len(ids) == len(set(ids)) == VIDEOS
    again = start(data, out, "--ray")  # nothing lost, so nothing left to do and nothing written again
    output, _ = again.communicate(timeout=180)
    assert again.returncode == 0, output.decode()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["done_now"] == 0 and summary["skipped"] == VIDEOS and summary["workers"] == 2
    assert modification_times(out) == times
