"""``pite-annotate``: captioned videos -> PiTe-143k style phrase trajectories.

  pite-annotate run videos.jsonl --out ann/ --workers 2 [--segmenter classical|gt|clipseg|owlv2-sam|grounding-dino-sam|
                                                          sam3-video|sam2-video]
  pite-annotate overlay --out ann/ ID [--png strip.png]
  pite-annotate merge --out ann/
  pite-annotate bench [--videos 12] [--workers 2] [--real /usr/share/doc/opencv-doc/examples/data/vtest.avi]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pite_ros.hub import weights_source
from training.annotate.pipeline import AnnotateConfig
from training.annotate.records import safe_name
from training.annotate.segmenters import available
from training.annotate.tracking import TrackerConfig


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that make an ``AnnotateConfig`` (shared by ``run`` and ``bench``)."""
    defaults, tracker = AnnotateConfig(), TrackerConfig()
    parser.add_argument("--segmenter", default=defaults.segmenter, choices=available(), help="stage-2 back-end")
    parser.add_argument("--model-dir", help="the model back-end's weights: a save_pretrained folder or a Hub id "
                                            "(owlv2-sam, grounding-dino-sam, sam2-video: the box detector)")
    parser.add_argument("--sam-dir", help="SAM's weights, folder or Hub id (owlv2-sam, grounding-dino-sam: SAM; "
                                          "sam2-video: a SAM 2 video checkpoint)")
    parser.add_argument("--device", default="cpu", help="torch device of a model back-end")
    parser.add_argument("--gt-dir", help="ground-truth folder for --segmenter gt (default: <video folder>/../gt)")
    parser.add_argument("--grabcut", choices=("motion", "always", "never"), default="motion",
                        help="GrabCut refinement in the classical back-end")
    parser.add_argument("--num-frames", type=int, default=defaults.num_frames, help="N frames per trajectory")
    parser.add_argument("--num-points", type=int, default=defaults.num_points, help="P points per phrase")
    parser.add_argument("--tracker", choices=("lk", "farneback", "dis"), default=tracker.method)
    parser.add_argument("--fb-threshold", type=float, default=tracker.fb_threshold,
                        help="forward-backward error (pixels) above which a point is lost")
    parser.add_argument("--max-side", type=int, default=defaults.max_side, help="downscale larger frames to this side")
    parser.add_argument("--max-track-frames", type=int, default=defaults.max_track_frames)
    parser.add_argument("--max-instances", type=int, default=defaults.max_instances,
                        help="objects kept per phrase, the most visible (instance segmenters: sam3-video, gt)")
    parser.add_argument("--phrases", choices=("spacy", "rules"), help="noun phrases by (default: spaCy if installed)")


def config_from(args: argparse.Namespace) -> AnnotateConfig:
    """The ``AnnotateConfig`` the parsed options describe."""
    options: dict[str, object] = {}
    if args.segmenter == "classical":
        options["grabcut"] = args.grabcut
    elif args.segmenter == "gt":
        options["gt_dir"] = args.gt_dir
    else:
        if not args.model_dir:
            raise SystemExit(f"--segmenter {args.segmenter} needs --model-dir (a save_pretrained folder or Hub id)")
        options.update(model_dir=args.model_dir, device=args.device)
        if args.segmenter not in ("clipseg", "sam3-video"):
            if not args.sam_dir:
                raise SystemExit(f"--segmenter {args.segmenter} needs --sam-dir")
            options["sam_dir"] = args.sam_dir
        for source in filter(None, (args.model_dir, options.get("sam_dir"))):
            try:
                weights_source(str(source))  # a missing folder stops the run here, not each video
            except FileNotFoundError as error:
                raise SystemExit(str(error)) from None
    if args.max_instances < 1:
        raise SystemExit(f"--max-instances must be at least 1, got {args.max_instances}")
    return AnnotateConfig(
        num_frames=args.num_frames,
        num_points=args.num_points,
        segmenter=args.segmenter,
        segmenter_options=tuple(sorted(options.items())),
        tracker=TrackerConfig(method=args.tracker, fb_threshold=args.fb_threshold),
        max_side=args.max_side,
        max_track_frames=args.max_track_frames,
        max_instances=args.max_instances,
        phrase_backend=args.phrases,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pite-annotate", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="annotate a JSONL of {id?, video, clip?, caption}")
    run.add_argument("input", help="input JSONL")
    run.add_argument("--out", required=True, help="output folder (records/, failures/, annotations.jsonl, ...)")
    run.add_argument("--workers", type=int, default=1, help="worker processes")
    run.add_argument("--ray", action="store_true", help="run the videos as Ray tasks (pip install 'pite_ros[ray]')")
    run.add_argument("--ray-address", help="Ray cluster address (default: start or join a local one)")
    run.add_argument("--retry-failed", action="store_true", help="try failed videos again")
    run.add_argument("--media-root", help="folder relative video paths are resolved against (default: the JSONL's)")
    run.add_argument("--overlay", action="append", default=[], metavar="ID", help="also draw this video's PNG strip")
    run.add_argument("--no-progress", action="store_true")
    add_config_arguments(run)

    overlay = commands.add_parser("overlay", help="draw a finished video's trajectories as a PNG strip")
    overlay.add_argument("id")
    overlay.add_argument("--out", required=True, help="the run's output folder")
    overlay.add_argument("--png", help="PNG path (default: <out>/overlays/<id>.png)")

    merge = commands.add_parser("merge", help="rewrite annotations.jsonl and failures.jsonl from the per-video files")
    merge.add_argument("--out", required=True)

    bench = commands.add_parser("bench", help="measure recall, IoU, trajectory error and throughput")
    from training.annotate.bench import add_arguments

    add_arguments(bench)
    return parser.parse_args(argv)


def overlay_path(out: Path, video_id: str, png: str | None = None) -> Path:
    """Draw the strip of ``video_id`` from ``out/records``; returns the PNG path."""
    from training.annotate.overlay import draw_strip

    record_file = out / "records" / f"{safe_name(video_id)}.json"
    if not record_file.is_file():
        raise SystemExit(f"no record for {video_id!r} in {out / 'records'} (not annotated, or failed)")
    record = json.loads(record_file.read_text(encoding="utf-8"))
    return draw_strip(record, png or out / "overlays" / f"{safe_name(video_id)}.png")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.command == "run":
        from training.annotate.runner import run

        summary = run(
            args.input, args.out, config_from(args), workers=args.workers, use_ray=args.ray,
            ray_address=args.ray_address, retry_failed=args.retry_failed, media_root=args.media_root,
            progress=not args.no_progress,
        )
        print("\n".join(summary.lines()))
        for video_id in args.overlay:
            print(f"overlay {overlay_path(Path(args.out), video_id)}")
    elif args.command == "overlay":
        print(overlay_path(Path(args.out), args.id, args.png))
    elif args.command == "merge":
        from training.annotate.runner import merge

        records, failures = merge(args.out)
        print(f"annotations.jsonl: {records} records; failures.jsonl: {failures} failures")
    else:
        from training.annotate.bench import run_bench

        run_bench(args)


if __name__ == "__main__":
    main(sys.argv[1:])
