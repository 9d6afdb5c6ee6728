"""``pite-model``: describe a model, initialise one from pretrained parts, import the authors' weights.

- ``describe CONFIG_OR_DIR [--stage K]``: parameters per component, built on the meta device.
- ``init --vision CLIP --llm LLM --out DIR``: a PiTe model whose tower and LLM carry pretrained
  weights (``pite_ros.model.pretrained``); ``--dry-run`` reads only configs and the tokenizer
  and prints what ``describe`` would.
- ``import-pite --vicuna DIR --clip DIR --stage1 DIR --stage2 DIR --stage3 DIR --out DIR``: the
  PiTe authors' released weights as a folder the node loads (``pite_ros.model.pite_import``).

Exit status: 0 done; 2 an option, folder or file is unusable (the message names it; nothing
is written). The output folder is written aside and renamed into place when complete.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from functools import partial
from pathlib import Path

from pite_ros.model.config import ConfigError, load_config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pite-model", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    describe = commands.add_parser("describe", help="parameters per component and the total")
    describe.add_argument("config", help="preset name (tiny, pite-7b), config JSON or checkpoint directory")
    describe.add_argument("--stage", type=int, choices=(1, 2, 3), help="also set up this stage's LoRA and show what trains")

    init = commands.add_parser("init", help="a PiTe model from a pretrained CLIP tower and causal LM")
    init.add_argument("--vision", required=True, help="CLIP vision model: save_pretrained folder or Hub id "
                                                      "(CLIPModel, CLIPVisionModel or CLIPVisionModelWithProjection)")
    init.add_argument("--llm", required=True, help="LLaMA-family causal LM with its tokenizer: folder or Hub id")
    init.add_argument("--out", help="output folder (a checkpoint pite-train, pite-export and the node load)")
    init.add_argument("--preset", default="pite-7b", help="where N, P, adapter, projectors and LoRA come from "
                                                          "(default %(default)s)")
    _dtype_option(init)
    init.add_argument("--vision-feature", choices=("projected", "pooled"),
                      help="CLIP's projected embedding (the authors') or the pooled CLS (default: the preset's)")
    init.add_argument("--prompt-format", choices=("auto", "vicuna_v1", "chat_template"), default="auto",
                      help="auto: the LLM's chat template when its tokenizer has one, else Vicuna v1")
    init.add_argument("--system-prompt", help="system sentence (default: Vicuna v1's for vicuna_v1, none otherwise)")
    init.add_argument("--dry-run", action="store_true", help="read configs and tokenizer only; print the parameters")
    _force_option(init)

    imported = commands.add_parser("import-pite", help="the PiTe authors' released weights as a PiTe folder")
    imported.add_argument("--vicuna", required=True, help="Vicuna v1.5 folder (or Hub id) the authors trained on")
    imported.add_argument("--clip", required=True, help="clip-vit-large-patch14 folder (or Hub id)")
    for stage in (1, 2, 3):
        imported.add_argument(f"--stage{stage}", required=True, help=f"the authors' pite-vicuna-*-stage{stage} folder")
    imported.add_argument("--out", required=True, help="output folder (set the node's model_path to it)")
    _dtype_option(imported)
    _force_option(imported)
    args = parser.parse_args(argv)
    if args.command == "init" and not args.dry_run and not args.out:
        parser.error("init: --out is required (or --dry-run)")
    return args


def _dtype_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="bfloat16", help="weights' dtype: bfloat16, float16 or float32 "
                                                            "(default %(default)s)")


def _force_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="replace an existing, non-empty --out folder")


def write_folder(out: Path, force: bool, write) -> None:
    """``write(tmp)`` into a folder beside ``out``, then rename it to ``out`` (replacing it only with ``force``)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ConfigError(f"--out {out}: exists and is not empty (use --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        write(staging)
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    from pite_ros.model.checkpoint import CheckpointError
    from pite_ros.model.model_dir import save_model_and_processor

    hf_logging.set_verbosity_error()  # its per-file load reports and progress bars are not this command's output
    hf_logging.disable_progress_bar()
    from pite_ros.model.describe import describe

    try:
        if args.command == "describe":
            print(describe(load_config(args.config), args.stage))
        elif args.command == "init":
            from pite_ros.model.pretrained import init_from_pretrained, parse_dtype

            made = init_from_pretrained(args.vision, args.llm, preset=args.preset, dtype=parse_dtype(args.dtype),
                                        feature=args.vision_feature, prompt_format=args.prompt_format,
                                        system_prompt=args.system_prompt, dry_run=args.dry_run)
            if args.dry_run:
                print(describe(made))
                return 0
            model, processor = made
            write_folder(Path(args.out), args.force, partial(save_model_and_processor, model=model, processor=processor))
            print(f"pite-model: wrote {args.out}\n{describe(model.config)}")
        else:
            from pite_ros.model.pite_import import import_pite
            from pite_ros.model.pretrained import parse_dtype

            model, processor, report = import_pite(args.vicuna, args.clip, [args.stage1, args.stage2, args.stage3],
                                                   dtype=parse_dtype(args.dtype))
            write_folder(Path(args.out), args.force, partial(save_model_and_processor, model=model, processor=processor))
            print(f"pite-model: wrote {args.out}\n{report}")
    except (ConfigError, CheckpointError) as error:
        print(f"pite-model: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
