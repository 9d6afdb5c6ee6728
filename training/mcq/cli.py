"""``pite-mcq``: timestamped open QA pairs (JSONL) -> grounded multiple-choice QA (stage-3 JSONL).

    pite-mcq qa.jsonl [more.jsonl ...] -o stage3_mcq.jsonl [--neighbours 50] [--distractors 4]
             [--band 0.2 0.9] [--shortfall skip|widen] [--seed 0] [--batch-size 64]

All input files form one pool of questions (neighbours are searched across them).
``--workers N`` embeds the texts in N processes (``--ray``: as Ray actors), in shards whose
vectors are kept in ``<output>.parts/`` until the output is written, so a killed run rerun
with the same arguments embeds only what was left; the output is byte for byte that of one
process with the same ``--threads`` (``training.mcq.scale``). Bad lines
and questions without enough distractors are skipped and counted; the summary (counts by
reason, first examples as file:line) is printed at the end. The output is written whole
(temporary file + rename). Exit status: 0 when at least
one question was written, 1 when none was, 2 on a usage error (missing input file).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from training.atomic import write_text_atomic
from training.datasets.report import SkipReport
from training.mcq.generate import SHORTFALL_POLICIES, MCQConfig, generate_mcq
from training.mcq.records import read_qa_pairs
from training.mcq.scale import SHARD_SIZE, ShardedEmbedder
from training.workpool import Scale, ShardStore, StaleShards


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = MCQConfig()
    parser = argparse.ArgumentParser(prog="pite-mcq", description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="JSONL files of {id, video, duration, question, answer, timestamps}")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output JSONL (stage-3 multiple choice)")
    parser.add_argument("--neighbours", type=int, default=defaults.neighbours, help="similar questions searched (paper: 50)")
    parser.add_argument("--distractors", type=int, default=defaults.num_distractors, help="distractors per question (paper: 4)")
    parser.add_argument(
        "--band", type=float, nargs=2, default=(defaults.low, defaults.high), metavar=("LOW", "HIGH"),
        help="cosine similarity band of a distractor to the true answer (paper: 0.2 0.9)",
    )  # fmt: skip
    parser.add_argument(
        "--shortfall", choices=SHORTFALL_POLICIES, default=defaults.shortfall,
        help="too few distractors in the band: skip the question, or widen below the band",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed of the draws and shuffles")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per embedding forward pass")
    parser.add_argument("--device", default="cpu", help="torch device of the embedder")
    parser.add_argument("--workers", type=int, default=1, help="embedding processes")
    parser.add_argument("--ray", action="store_true", help="embed as Ray actors (pip install ray)")
    parser.add_argument("--ray-address", help="Ray cluster address (default: start a local one of --workers CPUs)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per process (0: the cores shared among the workers)")
    parser.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="texts per unit of work")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        print(f"pite-mcq: input file not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        config = MCQConfig(
            neighbours=args.neighbours,
            num_distractors=args.distractors,
            low=args.band[0],
            high=args.band[1],
            shortfall=args.shortfall,
            seed=args.seed,
        )
        scale = Scale(workers=args.workers, use_ray=args.ray, ray_address=args.ray_address)
    except ValueError as error:
        print(f"pite-mcq: {error}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    report = SkipReport()
    pairs = read_qa_pairs(args.inputs, report)
    records = []
    work_dir = args.output.with_name(args.output.name + ".parts")
    if pairs:
        embedder = ShardedEmbedder(batch_size=args.batch_size, device=args.device, scale=scale,
                                   threads=scale.worker_threads(args.threads), shard_size=args.shard_size,
                                   work_dir=work_dir, progress=not args.no_progress)
        try:
            records = generate_mcq(pairs, embedder, config, report)
        except StaleShards as error:
            print(f"pite-mcq: {error}", file=sys.stderr)
            return 2
    write_text_atomic(args.output, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    for folder in work_dir.glob("*/") if work_dir.is_dir() else ():
        ShardStore.remove(folder)  # the output is written: the kept vectors are no longer needed
    ShardStore.remove(work_dir)
    print(
        f"pite-mcq: {len(pairs)} QA pairs read, {len(records)} multiple-choice questions written to "
        f"{args.output} in {time.perf_counter() - began:.1f} s"
    )
    if pairs:
        unreadable = f"; {embedder.unreadable} kept shard files unreadable" if embedder.unreadable else ""
        print(f"embedded {embedder.embedded} texts ({embedder.reused} more kept by an earlier unfinished "
              f"run{unreadable})")
    print(report.summary())
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
