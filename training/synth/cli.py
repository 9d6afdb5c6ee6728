"""``pite-synth``: write a synthetic training or evaluation set for all three stages.

Example: ``pite-synth data/synth/train --videos 2000 --split train --seed 0 --workers 2`` and
``pite-synth data/synth/eval --videos 200 --split eval --seed 0`` (eval items come from a
different random stream than train items, whatever the seed).
"""

from __future__ import annotations

import argparse
import time

from training.synth.generate import generate
from training.synth.records import SPLITS
from training.synth.world import WorldConfig


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = WorldConfig()
    parser = argparse.ArgumentParser(prog="pite-synth", description=__doc__.splitlines()[0])
    parser.add_argument("out", help="output folder")
    parser.add_argument("--videos", type=int, default=100, help="clips (stage 2 and 3)")
    parser.add_argument("--images", type=int, default=None, help="stage-1 images (default: as many as clips)")
    parser.add_argument("--split", choices=sorted(SPLITS), default="train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="processes")
    parser.add_argument("--width", type=int, default=defaults.width)
    parser.add_argument("--height", type=int, default=defaults.height)
    parser.add_argument("--fps", type=int, default=defaults.fps)
    parser.add_argument("--min-seconds", type=int, default=defaults.min_seconds)
    parser.add_argument("--max-seconds", type=int, default=defaults.max_seconds)
    parser.add_argument("--max-objects", type=int, default=defaults.max_objects)
    parser.add_argument("--num-frames", type=int, default=defaults.num_frames, help="N of stage-2 trajectories")
    parser.add_argument("--extra-num-frames", type=int, nargs="*", default=[],
                        help="further N: stage2_{N}f.jsonl with the trajectories annotated at N frames")
    parser.add_argument("--num-points", type=int, default=defaults.num_points, help="P of stage-2 trajectories")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        config = WorldConfig(
            width=args.width,
            height=args.height,
            fps=args.fps,
            min_seconds=args.min_seconds,
            max_seconds=args.max_seconds,
            max_objects=args.max_objects,
            num_frames=args.num_frames,
            extra_num_frames=tuple(args.extra_num_frames),
            num_points=args.num_points,
        )
    except ValueError as error:
        raise SystemExit(f"pite-synth: {error}") from None
    images = args.videos if args.images is None else args.images
    began = time.perf_counter()
    manifest = generate(
        args.out, videos=args.videos, images=images, split=args.split, seed=args.seed,
        config=config, workers=args.workers,
    )
    elapsed = time.perf_counter() - began
    for name, count in manifest["counts"].items():
        print(f"{name:28s} {count}")
    rate = 60.0 * args.videos / elapsed if elapsed > 0 else float("inf")
    print(f"wrote {args.out} in {elapsed:.1f} s ({rate:.0f} clips/minute incl. images, {args.workers} workers)")


if __name__ == "__main__":
    main()
