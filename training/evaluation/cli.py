"""``pite-eval``: run a model over eval sets and write the metrics report.

Example: ``pite-eval --model runs/stage3/final --data data/synth/eval --out reports/eval.json``
(``--data`` takes folders laid out as pite-synth writes them and/or ``FORMAT=PATH`` pairs).
Prints the report's table; ``--out`` writes the JSON and the table beside it (``.txt``).
``--workers N`` answers the examples in N processes, each with its own copy of the model
(``--ray``: as Ray actors, on a local cluster of N CPUs or the one at ``--ray-address``); the
figures are those of one process. With ``--out``, finished shards are kept in ``<out>.parts/``
until the report is written, so a killed run rerun with the same arguments answers only what
was left.
Exit status 0 when something was evaluated, 1 when nothing was (or the engine cannot load),
2 on a usage error.
"""

from __future__ import annotations

import argparse
import functools
import sys
from pathlib import Path

from pite_ros.engine.base import EngineError
from pite_ros.engine.loader import default_model_dir, load_engine
from pite_ros.engine.onnx_manifest import read_manifest, sha256_file
from training.evaluation.run import SHARD_SIZE, EvalOptions, run_evaluation
from training.evaluation.sources import EVAL_TASKS, FORMATS, SourceError, resolve_sources
from training.workpool import Scale, ShardStore, StaleShards


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pite-eval", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None,
                        help="checkpoint folder (torch) or export folder (onnx); default: the shipped model")
    parser.add_argument("--engine", choices=("torch", "onnx"), default="torch")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR|FORMAT=PATH",
                        help=f"eval folders (pite-synth layout) or FORMAT=PATH with FORMAT in {', '.join(FORMATS)}")
    parser.add_argument("--tasks", default=",".join(EVAL_TASKS),
                        help=f"comma-separated subset of {','.join(EVAL_TASKS)} (default: all)")
    parser.add_argument("--limit", type=int, default=None, help="first N examples of each file")
    parser.add_argument("--batch-size", type=int, default=8, help="examples answered together")
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the model's own")
    parser.add_argument("--out", type=Path, default=None,
                        help="report JSON path (the table goes beside it, same name with .txt)")
    parser.add_argument("--no-meteor", action="store_true", help="skip METEOR and SODA_c (they need Java)")
    parser.add_argument("--no-teacher-forced", action="store_true", help="skip the teacher-forced trajectory score")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads of the engine (0: its default)")
    parser.add_argument("--device", default="cpu", help="torch engine: cpu, cuda or cuda:N (default %(default)s)")
    parser.add_argument("--dtype", default="float32",
                        help="torch engine: float32, bfloat16, float16 (GPU) or auto (as saved; default %(default)s)")
    parser.add_argument("--providers", default="",
                        help="ONNX engine: comma-separated providers, e.g. cuda,cpu (default: CUDA when there, CPU)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--workers", type=int, default=1, help="worker processes, each with its own model")
    parser.add_argument("--ray", action="store_true", help="answer as Ray actors (pip install ray)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: start a local one of --workers CPUs)")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE,
                        help="examples per unit of work, rounded up to whole batches (default %(default)s)")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="where finished shards are kept for a rerun (default: <out>.parts with --out, else none)")
    return parser


def weights_sha256(engine: str, model: str | Path | None) -> str:
    """The SHA-256 of the weights a report scores, so that a report is tied to its weights: the
    checkpoint's ``model.safetensors``, or for an ONNX export the checkpoint it was made from."""
    directory = Path(model) if model else default_model_dir()
    if engine == "onnx":
        return str(read_manifest(directory)["source"]["weights_sha256"])
    return sha256_file(directory / "model.safetensors")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        sources = resolve_sources(args.data)
        options = EvalOptions(
            tasks=tuple(t.strip() for t in args.tasks.split(",") if t.strip()),
            limit=args.limit,
            batch_size=args.batch_size,
            max_new_tokens=args.max_new_tokens,
            meteor=not args.no_meteor,
            teacher_forced=not args.no_teacher_forced,
            progress=not args.no_progress,
            shard_size=args.shard_size,
        )
        scale = Scale(workers=args.workers, use_ray=args.ray, ray_address=args.ray_address)
    except (SourceError, ValueError) as error:
        parser.error(str(error))
    load = functools.partial(load_engine, args.engine, args.model, device=args.device, dtype=args.dtype,
                             providers=args.providers, num_threads=scale.worker_threads(args.threads))
    work_dir = args.work_dir or (args.out.with_suffix(".parts") if args.out is not None else None)
    try:
        engine = load()
    except EngineError as error:
        print(f"pite-eval: {error}", file=sys.stderr)
        return 1
    try:
        meta = {"model": str(args.model) if args.model else "default", "engine": args.engine,
                "data_args": list(args.data), "weights_sha256": weights_sha256(args.engine, args.model)}
        report = run_evaluation(engine, sources, options, meta=meta, scale=scale, load=load, work_dir=work_dir)
    except StaleShards as error:
        print(f"pite-eval: {error}", file=sys.stderr)
        return 2
    finally:
        engine.close()
    text = report.to_text()
    print(text, end="")
    seconds = report.meta["seconds"]
    print(
        f"{report.meta['examples']} examples in {seconds['total']:.1f} s; "
        f"skipped records {report.meta['skipped_records']['count']}; failed examples {report.meta['failed']['count']}"
    )
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report.write(args.out, args.out.with_suffix(".txt"))
        print(f"wrote {args.out} and {args.out.with_suffix('.txt')}")
    if work_dir is not None:
        ShardStore.remove(work_dir)  # the shards are in the report now
    if not report.meta["examples"]:
        print("pite-eval: nothing was evaluated (no example of the requested tasks in the data)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
