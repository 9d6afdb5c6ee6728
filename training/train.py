"""``pite-train --stage {0,1,2,3} --config FILE``: run one PiTe training stage.

Stage 0 (optional) pre-trains the vision tower where no pretrained one can be had
(``training.trainer.tower_pretraining``).

The same command runs single-process on a CPU and multi-process under ``accelerate launch``
or ``torchrun`` (docs/training.md); only the main process writes files and prints.
Command-line values override the config file's; ``--resume`` continues from the newest
checkpoint in the output directory (or starts fresh when there is none).
"""

from __future__ import annotations

import argparse
import logging
import sys

import torch.distributed
from accelerate import PartialState

from pite_ros.model.stages import STAGE_TRAINABLE
from training.trainer.checkpoint import ResumeError
from training.trainer.config import ConfigError, load_config
from training.trainer.loop import train


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pite-train", description=__doc__.splitlines()[0])
    parser.add_argument("--stage", type=int, choices=sorted(STAGE_TRAINABLE), required=True, help="PiTe training stage")
    parser.add_argument("--config", required=True, help="YAML or JSON config (see docs/training.md)")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    parser.add_argument("--model", help="preset, config JSON or checkpoint dir (overrides the config)")
    parser.add_argument("--output-dir", help="where checkpoints, logs and the final model go")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {"stage": args.stage, "model": args.model, "output_dir": args.output_dir,
                 "max_steps": args.max_steps, "seed": args.seed}
    try:
        config = load_config(args.config, overrides)
        final = train(config, resume=args.resume, progress=not args.no_progress)
    except (ConfigError, ResumeError) as error:
        print(f"pite-train: {error}", file=sys.stderr)
        return 2
    finally:  # leave the process group before exit: gloo's threads abort a process that exits inside it
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if PartialState().is_main_process:
        print(f"stage {config.stage} done: {final}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
