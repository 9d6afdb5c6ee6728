"""pite-eval at scale: 2 worker processes and Ray give the one-process report, a video that no
longer decodes is counted and named while the rest is scored, and a run killed mid-way then
rerun with the same arguments answers only the shards it had not finished (kept as JSON;
a kept file that does not read is named, counted and answered again) and gives the
uninterrupted run's report. The tiny model of test_eval_run, 8 clips, shards of 4 examples."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.training.test_eval_run import FRAMES, model_dir  # noqa: F401 - the tiny model fixture
from pite_ros.engine.loader import load_engine
from training.evaluation.cli import main
from training.evaluation.run import EvalOptions, run_evaluation
from training.evaluation.sources import resolve_sources
from training.synth import WorldConfig, generate
from training.workpool import UnreadableShard

REPO = Path(__file__).parents[2]
BROKEN = "eval_v000001"  # the synthetic clip whose video is overwritten with garbage


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """8 synthetic clips (about 45 examples); one video's frames zeroed: its header still reads
    (the readers keep its records) but its frames no longer decode (when answering)."""
    folder = tmp_path_factory.mktemp("eval_scale")
    config = WorldConfig(width=64, height=64, num_frames=FRAMES, extra_num_frames=(2 * FRAMES,), num_points=4,
                         max_seconds=5)
    generate(folder, videos=8, images=0, split="eval", seed=2, config=config)
    video = folder / "videos" / f"{BROKEN}.mp4"
    payload = bytearray(video.read_bytes())
    end = payload.find(b"moov") - 8  # the frames (mdat) come first, the index (moov) last
    payload[48:end] = bytes(end - 48)
    video.write_bytes(bytes(payload))
    return folder


def arguments(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["--model", str(model), "--data", str(data), "--out", str(out), "--no-meteor", "--no-progress",
            "--threads", "1", "--batch-size", "2", "--shard-size", "4", *extra]


def comparable(path: Path) -> dict:
    """The report without what depends on the run (timings, worker count)."""
    report = json.loads(path.read_text())
    for key in ("seconds", "scale"):
        report["meta"].pop(key)
    return report


@pytest.fixture(scope="module")
def one_process(model_dir: Path, data: Path, tmp_path_factory) -> Path:  # noqa: F811
    out = tmp_path_factory.mktemp("one") / "eval.json"
    assert main(arguments(model_dir, data, out)) == 0
    return out


def test_the_unreadable_video_is_counted_and_named_and_the_rest_scored(one_process: Path) -> None:
    report = json.loads(one_process.read_text())
    skipped = report["meta"]["skipped_records"]
    assert skipped["by_reason"] == {"unreadable video": skipped["count"]} and skipped["count"] >= 1
    assert all(BROKEN in line and "could not decode" in line for line in skipped["first"]), skipped["first"]
    assert report["meta"]["examples"] > 30 and report["tasks"]["mcq"]["count"] > 0
    assert not one_process.with_suffix(".parts").exists()  # the shards are gone once the report is written


@pytest.mark.parametrize("extra", [("--workers", "2"), ("--workers", "2", "--ray")], ids=["processes", "ray"])
def test_two_workers_give_the_one_process_report(model_dir: Path, data: Path, one_process: Path,  # noqa: F811
                                                 tmp_path: Path, extra: tuple[str, ...]) -> None:
    out = tmp_path / "eval.json"
    assert main(arguments(model_dir, data, out, *extra)) == 0
    assert comparable(out) == comparable(one_process)
    assert json.loads(out.read_text())["meta"]["scale"]["workers"] == 2


@pytest.fixture(scope="module")
def killed(model_dir: Path, data: Path, tmp_path_factory) -> Path:  # noqa: F811
    """The shard folder of a run killed (SIGKILL) once it had kept at least 3 shards."""
    out = tmp_path_factory.mktemp("killed") / "eval.json"
    command = [sys.executable, "-m", "training.evaluation.cli", *arguments(model_dir, data, out)]
    process = subprocess.Popen(command, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out.with_suffix(".parts") / "shards"
    deadline = time.monotonic() + 120
    while len(list(shards.glob("*.json"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    return out.with_suffix(".parts")


def rerun_of(killed: Path, folder: Path) -> tuple[Path, list[Path]]:
    """Where a rerun of the killed run writes (its kept shards copied there), and the kept shard
    files (not a temporary file the kill left half written)."""
    shutil.copytree(killed, folder / "eval.parts")
    return folder / "eval.json", sorted(p for p in (folder / "eval.parts" / "shards").iterdir() if p.suffix != ".tmp")


def test_a_killed_run_rerun_answers_only_what_was_left(model_dir: Path, data: Path, one_process: Path,  # noqa: F811
                                                       killed: Path, tmp_path: Path) -> None:
    out, finished = rerun_of(killed, tmp_path)
    total = json.loads(one_process.read_text())["meta"]["scale"]["shards"]
    assert 3 <= len(finished) < total, "the run ended before the kill"
    assert all(path.suffix == ".json" for path in finished), finished  # JSON, no pickle
    assert main(arguments(model_dir, data, out)) == 0
    report = json.loads(out.read_text())
    assert report["meta"]["scale"]["shards_reused"] == len(finished)
    assert report["meta"]["scale"]["shards_unreadable"] == 0
    assert comparable(out) == comparable(one_process)


def test_an_unreadable_kept_shard_is_named_counted_and_answered_again(
        model_dir: Path, data: Path, one_process: Path, killed: Path, tmp_path: Path) -> None:  # noqa: F811
    out, finished = rerun_of(killed, tmp_path)
    truncated, edited = finished[:2]
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    edited.write_text('{"items": []}')  # JSON, but not a shard's answers
    with pytest.warns(UnreadableShard) as warned:
        assert main(arguments(model_dir, data, out)) == 0
    named = sorted(str(w.message).split(":")[0] for w in warned)
    assert named == [str(truncated), str(edited)]
    report = json.loads(out.read_text())
    assert report["meta"]["scale"]["shards_unreadable"] == 2
    assert report["meta"]["scale"]["shards_reused"] == len(finished) - 2
    assert comparable(out) == comparable(one_process)


def test_every_kept_shard_reads_back_into_the_same_report(model_dir: Path, data: Path, tmp_path: Path) -> None:  # noqa: F811
    """All shards kept (trajectories, teacher-forced ones, unreadable videos: arrays and tuples),
    then a rerun that answers nothing: the same report."""
    engine = load_engine("torch", model_dir, num_threads=1)
    sources = resolve_sources([str(data)])
    options = EvalOptions(meteor=False, progress=False, batch_size=2, shard_size=4)
    first = run_evaluation(engine, sources, options, work_dir=tmp_path)
    kept = b"".join(path.read_bytes() for path in (tmp_path / "shards").glob("*.json"))
    assert kept.count(b'"__ndarray__"') > 100 and b'"__tuple__"' in kept
    assert first.sections["trajectory_teacher_forced"].count > 0
    again = run_evaluation(engine, sources, options, work_dir=tmp_path)
    assert again.meta["scale"]["shards_reused"] == again.meta["scale"]["shards"] == first.meta["scale"]["shards"]
    for report in (first, again):
        report.meta.pop("seconds"), report.meta.pop("scale")
    assert again.to_dict() == first.to_dict()


def test_shards_of_other_settings_are_refused(model_dir: Path, data: Path, tmp_path: Path, capsys) -> None:  # noqa: F811
    out = tmp_path / "eval.json"
    parts = out.with_suffix(".parts")
    parts.mkdir()
    (parts / "settings.json").write_text(json.dumps({"batch_size": 99}))
    assert main(arguments(model_dir, data, out)) == 2
    assert "other settings (batch_size" in capsys.readouterr().err
