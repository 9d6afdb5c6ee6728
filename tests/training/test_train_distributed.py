"""pite-train in 2 CPU processes (gloo; launched by torchrun and by accelerate launch with the
shipped one-node and multi-node configs): the one-process run's loss curve, sharded data, files
from the main process only, SIGKILL of a rank + --resume, another process count refused, and
accumulation, loader workers and bf16 under resume. Tiny model, stage 1, a few dozen steps."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import torch
import yaml
from accelerate.utils import DistributedType

from pite_ros.model import PiteForConditionalGeneration
from training.synth import generate
from training.train import main as train_main
from training.trainer import distributed
from training.trainer.config import ConfigError, TrainConfig
from training.trainer.metrics_log import MetricsLog

HERE = Path(__file__).parent
CONFIGS = HERE.parents[1] / "training" / "configs"
STEPS = 60
# The two processes' mean of per-rank losses (each a mean over its rows' tokens, with its own
# dropout masks) against one process's mean over the global batch's tokens: measured at most
# 0.49 % apart over the 60 steps here, while the curve falls 12 %. Without restoring the random
# state on resume (or restoring it before the loader's first batch) the SIGKILL test fails.
CURVE_TOLERANCE = 0.02
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def write_config(root: Path, out: str, **extra) -> Path:
    config = {"stage": 1, "model": "tiny", "vocabulary": "synth", "output_dir": out,
              "data": [{"format": "localized_narratives", "path": "data/stage1.jsonl"}],
              "max_steps": STEPS, "batch_size": 4, "save_every": 10, "learning_rate": 3e-3, "mixed_precision": "no",
              "model_overrides": {"lora_dropout": 0.1},  # draws from torch's generator: a resume must restore it
              **extra}
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch(root: Path, config: Path, launcher: str, *extra: str) -> list[subprocess.Popen]:
    """pite-train in 2 processes, every rank but 0 forbidden to write under ``root``, launched by
    ``torchrun``, by ``accelerate launch`` with the shipped one-node FSDP config (``fsdp``), or
    as two nodes of one process each on this host with the shipped multi-node config (``nodes``).
    On CPU accelerate runs the FSDP configs as DDP."""
    script = [str(HERE / "rank_write_guard.py"), str(root), "--stage", "1", "--config", str(config), "--no-progress",
              *extra]
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", "--mixed_precision=no"]
    if launcher == "torchrun":
        commands = [[sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *script]]
    elif launcher == "fsdp":
        commands = [[*accelerate, "--config_file", str(CONFIGS / "accelerate_fsdp.yaml"), "--num_processes=2",
                     "--main_process_port=0", *script]]
    else:
        port = free_port()
        commands = [[*accelerate, "--config_file", str(CONFIGS / "accelerate_fsdp_multinode.yaml"), "--num_machines=2",
                     "--num_processes=2", f"--machine_rank={node}", "--main_process_ip=127.0.0.1",
                     f"--main_process_port={port}", *script] for node in (0, 1)]
    return [subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for command in commands]


def finish(runs: list[subprocess.Popen]) -> None:
    for run in runs:
        output, _ = run.communicate(timeout=300)
        assert run.returncode == 0, output[-3000:]


def losses(root: Path, out: str) -> list[float]:
    rows = MetricsLog.read(root / out / "metrics.jsonl")
    assert [row["step"] for row in rows] == list(range(1, len(rows) + 1))
    return [row["loss"] for row in rows]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic set, and the same run in one process and in two nodes of one process."""
    root = tmp_path_factory.mktemp("distributed")
    generate(root / "data", videos=2, images=16, split="train", seed=3)
    one = subprocess.Popen([sys.executable, "-m", "training.train", "--stage", "1", "--config",
                            str(write_config(root, "one")), "--no-progress"], env=ENV,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    finish([one])
    finish(launch(root, write_config(root, "two"), "nodes"))
    return root


def test_two_processes_follow_the_one_process_curve_and_only_rank_0_writes(root: Path) -> None:
    one, two = losses(root, "one"), losses(root, "two")
    assert len(one) == len(two) == STEPS
    for step, (a, b) in enumerate(zip(one, two), start=1):
        assert b == pytest.approx(a, rel=CURVE_TOLERANCE), f"step {step}"
    assert two[-1] < two[0] * (1 - 5 * CURVE_TOLERANCE)  # the curve moves far more than the tolerance
    out = root / "two"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000050", "step-000060"]
    assert json.loads((out / "checkpoints" / "step-000060" / "state.json").read_text())["processes"] == 2
    assert len(json.loads((out / "checkpoints" / "step-000060" / "rng.json").read_text())) == 2
    assert (out / "loss_curve.png").stat().st_size > 1000
    assert PiteForConditionalGeneration.from_pretrained(out / "final").config.stage == 1


def test_the_ranks_split_each_global_batch_and_see_no_example_twice_in_an_epoch() -> None:
    size, batch, steps = 10, 4, 5  # 20 positions: two epochs, the second starting inside step 3
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(HERE / "shard_probe.py"), str(size), str(batch), str(steps)],
                         env=ENV, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    ranks = json.loads(run.stdout.strip().splitlines()[-1])
    assert len(ranks) == 2 and all(len(indices) == batch // 2 for seen in ranks for indices in seen)
    order = [i for step in range(steps) for seen in ranks for i in seen[step]]
    assert sorted(order[:size]) == list(range(size)) and sorted(order[size:]) == list(range(size))


def _rank_pid(run: subprocess.Popen, rank: int) -> int:
    for child in psutil.Process(run.pid).children(recursive=True):
        try:
            if child.environ().get("RANK") == str(rank):
                return child.pid
        except psutil.Error:
            continue
    raise AssertionError(f"no process of rank {rank} under torchrun {run.pid}")


def test_sigkill_of_one_rank_then_resume_reproduces_the_uninterrupted_run(root: Path) -> None:
    config = write_config(root, "killed")
    log = root / "killed" / "metrics.jsonl"
    [run] = launch(root, config, "torchrun")
    deadline = time.monotonic() + 240
    while len(MetricsLog.read(log)) < 25:
        assert run.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(_rank_pid(run, 1), signal.SIGKILL)
    run.communicate(timeout=120)
    assert run.returncode != 0 and not (root / "killed" / "final").exists()
    finish(launch(root, config, "torchrun", "--resume"))
    assert losses(root, "killed") == pytest.approx(losses(root, "two"), rel=1e-5, abs=1e-7)


def test_resuming_with_another_number_of_processes_stops_with_a_message(
    root: Path, capsys: pytest.CaptureFixture
) -> None:
    shutil.copytree(root / "two" / "checkpoints", root / "resized" / "checkpoints")
    config = write_config(root, "resized")
    assert train_main(["--stage", "1", "--config", str(config), "--resume", "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "written by a run of 2 process(es), this run has 1; resume with 2" in error
    assert "step-000060" in error


class TwoProcesses:
    """What make_accelerator reads of an accelerator launched in 2 processes."""

    num_processes = 2
    distributed_type = DistributedType.MULTI_CPU

    def __init__(self, **_: object) -> None:
        pass


def test_an_unsplittable_global_batch_or_deepspeed_stops_with_a_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(distributed, "Accelerator", TwoProcesses)
    config = TrainConfig(stage=1, model="tiny", output_dir="-", data=[], batch_size=3, source="s.yaml")
    message = "s.yaml: field 'batch_size' (3) is the global batch and must be a multiple of the number of processes (2)"
    with pytest.raises(ConfigError, match=re.escape(message)):
        distributed.make_accelerator(config)
    config.batch_size = 4
    assert distributed.make_accelerator(config).num_processes == 2
    monkeypatch.setattr(TwoProcesses, "distributed_type", DistributedType.DEEPSPEED)
    with pytest.raises(ConfigError, match="DeepSpeed is not supported"):
        distributed.make_accelerator(config)


def test_accumulation_workers_and_bf16_in_two_processes_resume_to_the_same_curve(root: Path) -> None:
    precision = "bf16" if torch.cpu._is_avx512_bf16_supported() else "no"  # else emulated: slow, and no test of it
    config = write_config(root, "accumulated", max_steps=6, save_every=3, batch_size=2, grad_accum=2, num_workers=1,
                          mixed_precision=precision)
    finish(launch(root, config, "fsdp"))
    whole = losses(root, "accumulated")
    checkpoints = root / "accumulated" / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir()) == ["step-000003", "step-000006"]
    shutil.rmtree(checkpoints / "step-000006")  # as if killed between the checkpoints of steps 3 and 6
    shutil.rmtree(root / "accumulated" / "final")
    finish(launch(root, config, "fsdp", "--resume"))
    assert losses(root, "accumulated") == pytest.approx(whole, rel=1e-5, abs=1e-7)
    assert (root / "accumulated" / "final" / "model.safetensors").is_file()
