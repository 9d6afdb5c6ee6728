"""``pite-bench``: benchmarks, one sub-command each.

``pite-bench engine [--model DIR | --preset NAME] [--write-docs]``: ONNX Runtime fp32 and int8
against torch eager, torch.compile and Hugging Face ``generate()`` on the same clips in one
run (``pite_ros.engine.onnx_bench``): vision, prefill, decode per token, whole answer, peak
memory, ratios and goals; a table and a JSON report; ``--write-docs`` writes the table into
README.md and docs/export-and-runtime.md (``pite_ros.engine.bench_docs``). Without
``--model`` or ``--preset``: the shipped default model when it exists, else the ``tiny``
preset with random weights (the output says which).

``pite-bench node [--model DIR] [--engines torch,onnx]``: the node as it runs
(``pite_ros.node.benchmark``): image-callback cost per frame at 640x480 and 1920x1080,
frames dropped from a 30 Hz camera while questions are answered back to back, query
latency p50/p95 per engine (also while continuous mode captions at 1 Hz), and the continuous-mode
publish rate.

``pite-bench scale [--videos 24] [--steps 40] [--readme]``: annotation videos/min with 1 and 2
workers, local processes against Ray, and training steps/s in 1 and 2 CPU processes
(``training.scale_bench``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]  # README.md and docs/ of a source checkout


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from pite_ros.engine.onnx_bench import ENGINES

    parser = argparse.ArgumentParser(prog="pite-bench", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    engine = commands.add_parser("engine", help="ONNX Runtime fp32 and int8 vs torch and its peers (CPU)")
    which = engine.add_mutually_exclusive_group()
    which.add_argument("--model", type=Path, help="checkpoint directory")
    which.add_argument("--preset", help="a config preset (e.g. tiny, bench-400m) with random weights built here")
    engine.add_argument("--work-dir", type=Path,
                        help="keep the checkpoint and export here and reuse them next time "
                             "(default: a temporary directory)")
    engine.add_argument("--json", type=Path, help="write the JSON report here (default: <work dir>/bench-engine.json)")
    engine.add_argument("--threads", type=int, default=2,
                        help="intra-op threads for every engine (default %(default)s)")
    engine.add_argument("--repeats", type=int, default=3, help="passes over the clips (default %(default)s)")
    engine.add_argument("--clips", type=int, default=3, help="synthetic clips answered per pass (default %(default)s)")
    engine.add_argument("--rounds", type=int, default=2,
                        help="fresh processes per engine, taking turns; the fastest is kept (default %(default)s)")
    engine.add_argument("--max-new-tokens", type=int, help="answer length limit (default: the model's)")
    engine.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset (default %(default)s)")
    engine.add_argument("--write-docs", action="store_true",
                        help="write the table into the README and docs/export-and-runtime.md (their blocks for this "
                             "model: default, the preset's name, or the checkpoint directory's name)")
    node = commands.add_parser("node", help="ingest cost, frames dropped at 30 Hz, query latency, continuous rate")
    node.add_argument("--model", type=Path, help="checkpoint directory (default: the shipped default model)")
    node.add_argument("--engines", default="torch,onnx", help="comma-separated: torch, onnx (default %(default)s)")
    node.add_argument("--seconds", type=float, default=20.0, help="measuring window per engine (default %(default)s)")
    node.add_argument("--threads", type=int, default=0, help="engine threads in the node (0: engine default)")
    node.add_argument("--work-dir", type=Path, help="node logs and the ONNX export (default: a temporary directory)")
    node.add_argument("--json", type=Path, help="write the JSON report here")
    scale = commands.add_parser("scale", help="annotation videos/min and training steps/s with 1 and 2 workers")
    from training.scale_bench import add_arguments

    add_arguments(scale)
    args = parser.parse_args(argv)
    if args.command == "engine" and min(args.threads, args.repeats, args.clips) < 1:
        parser.error("--threads, --repeats and --clips must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "engine":
        return engine_command(args)
    if args.command == "scale":
        from training.scale_bench import run_scale_bench

        run_scale_bench(args)
        return 0
    return node_command(args)


def engine_command(args: argparse.Namespace) -> int:
    from pite_ros.engine.base import EngineError
    from pite_ros.engine.loader import DEFAULT_MODEL_DIR
    from pite_ros.engine.onnx_bench import (ENGINES, BenchSettings, build_random_checkpoint, format_report, goals_for,
                                            run_benchmark)
    from pite_ros.model.checkpoint import CheckpointError
    from pite_ros.model.config import ConfigError

    engines = tuple(name.strip() for name in args.engines.split(",") if name.strip())
    if not engines or set(engines) - set(ENGINES):
        print(f"pite-bench: --engines must be a subset of {','.join(ENGINES)}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pite-bench-") as temporary:
        work = args.work_dir or Path(temporary)
        work.mkdir(parents=True, exist_ok=True)
        try:
            random_weights = False
            if args.model:
                checkpoint, source = args.model, f"given model {args.model}"
            elif args.preset or not (DEFAULT_MODEL_DIR / "config.json").is_file():
                preset = args.preset or "tiny"
                checkpoint = work / f"{preset}-random"
                reason = "asked for" if args.preset else "no shipped default model"
                source, random_weights = f"preset {preset}, random weights ({reason})", True
                if not (checkpoint / "model.safetensors").is_file():
                    build_random_checkpoint(preset, checkpoint)
            else:
                checkpoint, source = DEFAULT_MODEL_DIR, "shipped default model"
            print(f"pite-bench engine: {source}", flush=True)
            settings = BenchSettings(threads=args.threads, repeats=args.repeats, clips=args.clips, rounds=args.rounds,
                                     max_new_tokens=args.max_new_tokens)
            goals = goals_for(args.preset, random_weights)
            report = run_benchmark(checkpoint, work / f"{checkpoint.name}-onnx", source, settings, engines, goals)
            block = "default" if checkpoint == DEFAULT_MODEL_DIR else args.preset or Path(checkpoint).name
        except (CheckpointError, ConfigError, EngineError) as error:
            print(f"pite-bench: {error}", file=sys.stderr)
            return 2
        print(format_report(report))
        if args.write_docs:
            from pite_ros.engine.bench_docs import write_docs

            files = [REPOSITORY / "README.md", REPOSITORY / "docs" / "export-and-runtime.md"]
            for path in write_docs(report, block, files):
                print(f"pite-bench: {path} has no block for {block!r} (<!-- pite-bench engine: {block} -->); "
                      "not written", file=sys.stderr)
        path = args.json or work / "bench-engine.json"
        if args.json or args.work_dir:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(report, indent=2) + "\n")
            print(f"JSON report: {path}")
        else:
            print(json.dumps(report["comparison"], indent=2))
    return 0


def node_command(args: argparse.Namespace) -> int:
    from pite_ros.engine.base import EngineError
    from pite_ros.engine.export import export_onnx
    from pite_ros.engine.loader import default_model_dir
    from pite_ros.model.config import ConfigError, load_config
    from pite_ros.node.client import use_large_image_transport

    use_large_image_transport()  # before rclpy starts here or in the node process
    from pite_ros.node.benchmark import continuous_rate, format_node_report, ingest_costs, live_run

    engines = [name.strip() for name in args.engines.split(",") if name.strip()]
    if not engines or set(engines) - {"torch", "onnx"}:
        print("pite-bench: --engines must be a subset of torch,onnx", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="pite-bench-node-") as temporary:
        work = args.work_dir or Path(temporary)
        try:
            model = args.model or default_model_dir()
            print(f"pite-bench node: model {model}", flush=True)
            ingest = ingest_costs(model_size=load_config(model).image_size)
            report = {"model": str(model), "ingest": ingest, "live": [], "live_continuous": [], "continuous": []}
            for engine in engines:
                model_dir = model
                if engine == "onnx":
                    model_dir = work / "onnx"
                    if not (model_dir / "manifest.json").is_file():
                        export_onnx(model, model_dir)
                report["live"].append(live_run(model_dir, engine, work, seconds=args.seconds, threads=args.threads))
                report["live_continuous"].append(live_run(model_dir, engine, work, seconds=args.seconds,
                                                          threads=args.threads, continuous_hz=1.0))
                report["continuous"].append(continuous_rate(model_dir, engine, work, threads=args.threads))
        except (EngineError, ConfigError, TimeoutError, RuntimeError) as error:
            print(f"pite-bench: {error}", file=sys.stderr)
            return 2
        print(format_node_report(report))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(json.dumps(report, indent=2) + "\n")
            print(f"JSON report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
