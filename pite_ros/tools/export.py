"""``pite-export CHECKPOINT OUT_DIR [--int8] [--fp16]``: ONNX graphs, manifest and parity report.

Exit status: 0 exported and parity passed; 1 parity (or ``--min-agreement``) failed, the
message says which value differed and by how much; 2 the checkpoint or options are unusable.
"""

from __future__ import annotations

import argparse
import logging
import sys

from pite_ros.engine.onnx_graphs import DEFAULT_OPSET
from pite_ros.engine.onnx_parity import Tolerances


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = Tolerances()
    parser = argparse.ArgumentParser(prog="pite-export", description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", help="checkpoint directory (config.json, model.safetensors, tokenizer files)")
    parser.add_argument("out_dir", help="export directory (int8/ and fp16/ variants go inside it)")
    parser.add_argument("--int8", action="store_true",
                        help="also write int8/ (dynamic quantisation) with an agreement report")
    parser.add_argument("--fp16", action="store_true", help="also write fp16/ (float16 graphs, for GPU providers)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default %(default)s)")
    parser.add_argument("--probes", type=int, default=3,
                        help="synthetic clips for the parity check (default %(default)s)")
    parser.add_argument("--held-out", type=int, default=6,
                        help="other clips for the variants' agreement (default %(default)s)")
    parser.add_argument("--max-new-tokens", type=int, default=16,
                        help="greedy tokens compared per clip (default %(default)s)")
    parser.add_argument("--logits-tol", type=float, default=defaults.logits,
                        help="max |logits diff| / max(1, max |logits|) (default %(default)s)")
    parser.add_argument("--traj-tol", type=float, default=defaults.traj,
                        help="max |trajectory diff| (decoder and projector; default %(default)s)")
    parser.add_argument("--min-agreement", type=float, default=0.0,
                        help="fail when a variant's greedy-token agreement with torch is below this share "
                             "(default: report only)")
    args = parser.parse_args(argv)
    if args.probes < 1 or args.held_out < 1 or args.max_new_tokens < 1:
        parser.error("--probes, --held-out and --max-new-tokens must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from pite_ros.engine.export import ExportError, export_onnx
    from pite_ros.model.checkpoint import CheckpointError

    defaults = Tolerances()
    tolerances = Tolerances(visual=defaults.visual, logits=args.logits_tol, traj=args.traj_tol,
                            hidden=defaults.hidden, projector=args.traj_tol)
    try:
        result = export_onnx(args.checkpoint, args.out_dir, int8=args.int8, fp16=args.fp16, opset=args.opset,
                             tolerances=tolerances, probes=args.probes, held_out=args.held_out,
                             max_new_tokens=args.max_new_tokens, min_agreement=args.min_agreement)
    except CheckpointError as error:
        print(f"pite-export: cannot load the checkpoint: {error}", file=sys.stderr)
        return 2
    except ExportError as error:
        print(f"pite-export: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"pite-export: cannot write the export: {error}", file=sys.stderr)
        return 2
    diffs = result.parity["max_abs_diff"]
    print(f"exported {args.checkpoint} -> {result.directory} (opset {args.opset}) in "
          f"{sum(result.seconds.values()):.1f} s")
    print("parity with torch: passed; max abs diff " + ", ".join(f"{name} {value:.2g}" for name, value in diffs.items())
          + f"; greedy tokens identical {result.parity['greedy_identical']}")
    for name, report in result.agreement.items():
        if report.get("measured"):
            print(f"{name}: {result.variants[name]}: greedy-token agreement {report['token_agreement']:.1%} "
                  f"over {report['tokens']} tokens, identical answers {report['identical_answers']}, "
                  f"logits max abs diff {report['logits_max_abs_diff']:.3g}")
        else:
            print(f"{name}: {result.variants[name]}: written; agreement not measured ({report['reason']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
