"""Trainer building blocks: config validation, resumable batch order, atomic checkpoints, metrics log."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from training.trainer import rng
from training.trainer.checkpoint import ResumeError, latest_checkpoint, load_training_state, save_training_state
from training.trainer.config import ConfigError, config_from_dict, load_config
from training.trainer.distributed import full_optimizer_state, load_optimizer_state
from training.trainer.metrics_log import MetricsLog
from training.trainer.sampler import ResumableBatchSampler

BASE = {"stage": 2, "model": "tiny", "output_dir": "out", "data": [{"format": "pite143k", "path": "s2.jsonl"}]}


def test_config_resolves_paths_and_names_bad_fields(tmp_path: Path) -> None:
    path = tmp_path / "stage2.yaml"
    path.write_text("stage: 2\nmodel: tiny\noutput_dir: out\ndata:\n  - {format: pite143k, path: s2.jsonl}\n")
    config = load_config(path, {"max_steps": 7, "seed": None})
    assert config.max_steps == 7 and config.seed == 0
    assert config.resolve(config.data[0].path) == tmp_path / "s2.jsonl"
    cases = {
        "learnin_rate": ({**BASE, "learnin_rate": 1.0}, "unknown field"),
        "batch_size": ({**BASE, "batch_size": 0}, "'batch_size' must be at least 1"),
        "stage": ({**BASE, "stage": 4}, "'stage' must be one of [0, 1, 2, 3], got 4"),
        "format": ({**BASE, "data": [{"format": "mp4", "path": "x"}]}, "data[0].format 'mp4'"),
        "bool": ({**BASE, "max_steps": True}, "'max_steps' must be"),
        "frame_cache_mb": ({**BASE, "frame_cache_mb": -1}, "'frame_cache_mb' must be >= 0"),
        "share_clips": ({**BASE, "share_clips": "yes"}, "'share_clips' must be true or false"),
        "share_clips at stage 0": ({**BASE, "stage": 0, "data": [{"format": "localized_narratives", "path": "s1"}],
                                    "share_clips": True}, "'share_clips': stage 0"),
        "share_clips_max_examples": ({**BASE, "share_clips": True, "share_clips_max_examples": -2},
                                     "'share_clips_max_examples' must be >= 0"),
        "share_clips_max_examples alone": ({**BASE, "share_clips_max_examples": 4}, "needs 'share_clips: true'"),
    }
    for name, (raw, message) in cases.items():
        with pytest.raises(ConfigError, match=re.escape(message)):
            config_from_dict(raw, "cfg.yaml")
    path.write_text("stage: [")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_batches_are_a_function_of_seed_and_index_across_epochs() -> None:
    sampler = ResumableBatchSampler(dataset_size=5, batch_size=3, seed=11)
    stream = iter(sampler)
    first_six = [next(stream) for _ in range(6)]
    flat = [i for batch in first_six for i in batch]
    assert sorted(flat[:5]) == list(range(5)) and sorted(flat[5:10]) == list(range(5))  # whole epochs
    resumed = iter(ResumableBatchSampler(dataset_size=5, batch_size=3, seed=11, start_batch=4))
    assert [next(resumed), next(resumed)] == first_six[4:6]
    other_seed = ResumableBatchSampler(dataset_size=5, batch_size=3, seed=12)
    assert [other_seed.batch(i) for i in range(4)] != first_six[:4]


def test_grouped_batches_keep_each_group_together_and_resume() -> None:
    groups = [0, 0, 1, 2, 2, 2, 1]  # group 1's indices are not next to each other
    sampler = ResumableBatchSampler(dataset_size=7, batch_size=3, seed=5, groups=groups)
    flat = [i for k in range(7) for i in sampler.batch(k)]
    for epoch in (flat[:7], flat[7:14], flat[14:]):
        assert sorted(epoch) == list(range(7))
        runs = [groups[i] for i in epoch]
        assert [g for k, g in enumerate(runs) if k == 0 or runs[k - 1] != g] == sorted(set(runs), key=runs.index)
    assert flat[:7] != flat[7:14]  # each epoch draws its own order of the groups
    resumed = ResumableBatchSampler(dataset_size=7, batch_size=3, seed=5, start_batch=3, groups=groups)
    assert next(iter(resumed)) == flat[9:12]
    with pytest.raises(ValueError, match="one group id per index"):
        ResumableBatchSampler(dataset_size=6, batch_size=3, seed=5, groups=groups)


def _model_and_optimizer(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1))
    model[0].bias.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.1)
    return model, optimizer


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    loss = model(torch.ones(2, 3)).pow(2).sum()
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3).tolist()


def test_rng_capture_and_restore_replay_python_numpy_and_torch() -> None:
    state = json.loads(json.dumps(rng.capture()))  # as stored in a checkpoint
    expected = _draws()
    assert _draws() != expected
    rng.restore(state)
    assert _draws() == expected


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer(0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    _step(model, optimizer)
    scheduler.step()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    states = [rng.capture(), {"rank": 1}]  # two ranks' random states
    for step in (1, 2, 3):
        save_training_state(tmp_path, step, trainable, full_optimizer_state(model, optimizer), scheduler.state_dict(),
                        states, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-000002", "step-000003"]
    expected_draws = _draws()

    restored, restored_optimizer = _model_and_optimizer(0)  # same frozen weights, as a re-built run has
    restored_trainable = {n: p for n, p in restored.named_parameters() if p.requires_grad}
    with torch.no_grad():
        for parameter in restored_trainable.values():
            parameter.add_(1.0)
    torch.optim.lr_scheduler.LambdaLR(restored_optimizer, lambda step: 1.0)  # built before the load, as in train()
    state = load_training_state(latest_checkpoint(tmp_path), restored_trainable, processes=2)
    load_optimizer_state(restored, restored_optimizer, state.optimizer)
    assert state.step == 3 and state.scheduler["last_epoch"] == 1 and state.rng[1] == {"rank": 1}
    rng.restore(state.rng[0])
    assert _draws() == expected_draws
    for name, parameter in trainable.items():
        assert torch.equal(restored_trainable[name], parameter)
    _step(model, optimizer)
    _step(restored, restored_optimizer)  # the same Adam moments give the same next update
    for name, parameter in trainable.items():
        assert torch.allclose(restored_trainable[name], parameter)


def test_a_torn_or_mismatched_checkpoint_is_refused_by_name(tmp_path: Path) -> None:
    model, optimizer = _model_and_optimizer(0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    path = save_training_state(tmp_path, 5, trainable, full_optimizer_state(model, optimizer), scheduler.state_dict(),
                           [rng.capture()], keep=1)
    (tmp_path / ".step-000006.tmp-123").mkdir()  # a write killed before its rename
    assert latest_checkpoint(tmp_path) == path
    fewer = {n: p for n, p in list(trainable.items())[:1]}
    with pytest.raises(ResumeError, match="trainable parameters differ"):
        load_training_state(path, fewer, processes=1)
    with pytest.raises(ResumeError, match=re.escape("written by a run of 1 process(es), this run has 4")):
        load_training_state(path, trainable, processes=4)
    (path / "trainable.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(ResumeError, match=re.escape(str(path))):
        load_training_state(path, trainable, processes=1)


def test_metrics_log_is_cut_back_to_the_resumed_step(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    log = MetricsLog(path)
    for step in range(1, 6):
        log.append({"step": step, "loss": 1.0 / step})
    with path.open("a") as handle:
        handle.write('{"step": 6, "lo')  # killed mid-write
    MetricsLog(path, resume_step=3)
    assert [row["step"] for row in MetricsLog.read(path)] == [1, 2, 3]
    assert json.loads(path.read_text().splitlines()[-1])["loss"] == pytest.approx(1 / 3)
