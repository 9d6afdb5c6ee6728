"""The training loop of one stage, on accelerate: the same code runs single-process on CPU
and multi-process under ``accelerate launch`` or ``torchrun`` (DDP, FSDP; configs in
training/configs/), the same run on any number of processes (distributed.py).

AdamW with warm-up + cosine decay, gradient clipping and accumulation, bf16 where the
device supports it; stage-specific trainable parameters come from the model's one table.
Checkpoints every ``save_every`` steps; ``resume=True`` continues from the newest one and
reproduces the uninterrupted run's batches (see sampler.py) and every rank's random state
(rng.py). Only the main process writes files; the logged losses are the mean over ranks.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch
from accelerate.logging import get_logger
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_cosine_schedule_with_warmup

from pite_ros.model.stages import stage_loss_terms
from training.trainer.build import build_model_for_stage, build_training_set
from training.trainer.checkpoint import latest_checkpoint, load_training_state
from training.trainer import rng
from training.trainer.config import TrainConfig
from training.trainer.data import clip_groups
from training.trainer.distributed import load_optimizer_state, make_accelerator, save_final_model, save_full_checkpoint
from training.trainer.metrics_log import MetricsLog, plot_loss_curve
from training.trainer.sampler import ResumableBatchSampler

log = get_logger(__name__)  # logs from the main process only
LOGGED = ("loss", "lm_loss", "coord_loss", "word_accuracy")  # per step, mean over ranks (the last: stage 0)


def _param_groups(parameters: dict[str, torch.nn.Parameter], weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms and embeddings' 1-D tensors (the usual AdamW practice)."""
    decay = [p for n, p in parameters.items() if p.ndim >= 2]
    no_decay = [p for n, p in parameters.items() if p.ndim < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run stage ``config.stage``; return the directory of the final model (HF layout)."""
    output = config.resolve(config.output_dir)
    checkpoints = output / "checkpoints"
    set_seed(config.seed)  # the same on every rank: ranks build identical models (FSDP shards each one's own)
    accelerator = make_accelerator(config)
    model, processor = build_model_for_stage(config)
    parameters = {name: p for name, p in model.named_parameters() if p.requires_grad}
    dataset, report = build_training_set(config, processor.config)
    log.info("stage %d: %d examples, %d trainable tensors, %d process(es); %s", config.stage, len(dataset),
             len(parameters), accelerator.num_processes, report.summary())

    optimizer = torch.optim.AdamW(_param_groups(parameters, config.weight_decay), lr=config.learning_rate)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.warmup_steps, config.max_steps)
    start = 0
    checkpoint = latest_checkpoint(checkpoints) if resume else None
    state = None
    if checkpoint is not None:
        state = load_training_state(checkpoint, parameters, accelerator.num_processes)
        scheduler.load_state_dict(state.scheduler)
        start = state.step
        log.info("resumed from %s at step %d", checkpoint, start)
    elif resume:
        log.info("no checkpoint under %s: starting from step 0", checkpoints)

    groups = clip_groups(dataset, config.share_clips_max_examples) if config.share_clips else None
    sampler = ResumableBatchSampler(len(dataset), config.batch_size, config.seed, start_batch=start * config.grad_accum,
                                    groups=groups)
    collate = processor.shared_clip_batch if config.share_clips else processor
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=config.num_workers)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    metrics = MetricsLog(output / "metrics.jsonl", resume_step=start) if accelerator.is_main_process else None
    loss_kwargs = stage_loss_terms(processor.config, config.stage)  # the stage's loss terms: chosen here, not by the model
    # The loader's first batch draws its workers' base seed from torch's generator; the whole
    # run drew it before step 1, so the random state is restored after it.
    batches = iter(loader)
    batches = itertools.chain([next(batches)], batches)
    if state is not None:
        load_optimizer_state(model, optimizer, state.optimizer)
        rng.restore(state.rng[accelerator.process_index])
    clipped = [p for p in model.parameters() if p.requires_grad]  # the prepared ones (FSDP replaces them)
    model.train()
    bar = tqdm(total=config.max_steps, initial=start, desc=f"stage {config.stage}", disable=not progress or not accelerator.is_main_process)
    for step in range(start + 1, config.max_steps + 1):
        began = time.perf_counter()
        sums: dict[str, float] = {}
        grad_norm = torch.tensor(0.0)
        for _ in range(config.grad_accum):
            batch = next(batches)
            with accelerator.accumulate(model):
                outputs = model(**batch, **loss_kwargs)
                accelerator.backward(outputs.loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(clipped, config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad()
            logged = {key: value.detach().float() for key in LOGGED if (value := getattr(outputs, key, None)) is not None}
            means = accelerator.reduce(torch.stack(list(logged.values())), reduction="mean")  # one collective
            for key, mean in zip(logged, means.tolist()):
                sums[key] = sums.get(key, 0.0) + mean / config.grad_accum
        scheduler.step()
        row = {"step": step, **sums, "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
               "seconds": time.perf_counter() - began}
        if metrics is not None:
            metrics.append(row)
            bar.update(1)
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        if step % config.save_every == 0 or step == config.max_steps:
            save_full_checkpoint(accelerator, model, optimizer, scheduler, list(parameters), checkpoints, step,
                                 config.keep_checkpoints)
    bar.close()
    final = output / "final"
    save_final_model(accelerator, model, config, final)
    if accelerator.is_main_process:
        (output / "data_report.txt").write_text(report.summary() + "\n")
        plot_loss_curve(output / "metrics.jsonl", output / "loss_curve.png", f"stage {config.stage}")
    accelerator.wait_for_everyone()
    return final
